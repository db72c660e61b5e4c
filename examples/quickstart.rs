//! The article's first app: `/slow` allows 1 request per minute, `/fast` 100 per hour, per
//! client IP, counted in memory; a client over a limit gets a 429 saying
//! "You've hit the rate limit!".
//!
//! ```sh
//! cargo run --example quickstart
//! curl -i http://127.0.0.1:8080/slow   # 200
//! curl -i http://127.0.0.1:8080/slow   # 429 You've hit the rate limit!
//! ```

use actix_web::{App, HttpServer, Responder, get, web};
use limiter_actix::{Limiter, limit};
use serde_json::json;

#[get("/slow")]
#[limit("1 per minute")]
async fn slow_route() -> impl Responder {
    web::Json(json!({"message": "This is a slow route."}))
}

#[get("/fast")]
#[limit("100 per hour")]
async fn fast_route() -> impl Responder {
    web::Json(json!({"message": "This is a fast route."}))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let limiter = examples::or_exit(
        Limiter::builder()
            .default_error_message("You've hit the rate limit!")
            .storage_uri("memory://") // one process; use Redis to share counters across hosts
            .build(),
    );
    let bind = examples::bind_address();
    println!("quickstart listening on http://{bind}");
    HttpServer::new(move || {
        App::new()
            .wrap(limiter.clone())
            .service(slow_route)
            .service(fast_route)
    })
    .bind(bind)?
    .run()
    .await
}
