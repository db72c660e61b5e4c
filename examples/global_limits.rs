//! The article's global limits: every route together allows 1000 requests per client per day
//! (an application limit, one bucket per client), `/public` also 10 per minute and `/admin`
//! 5 per hour. Route limits are checked first: the 429 reports the route's limit when it is
//! hit, the global one otherwise (see the `X-RateLimit-*` headers).
//!
//! ```sh
//! cargo run --example global_limits
//! curl -i http://127.0.0.1:8080/public
//! ```

use actix_web::{App, HttpServer, Responder, get, web};
use limiter_actix::{Headers, Limiter, limit};
use serde_json::json;

#[get("/public")]
#[limit("10 per minute")]
async fn public_route() -> impl Responder {
    web::Json(json!({"message": "Public access."}))
}

#[get("/admin")]
#[limit("5 per hour")]
async fn admin_route() -> impl Responder {
    web::Json(json!({"message": "Admin access."}))
}

/// No limit of its own: only the global one applies.
#[get("/")]
async fn index() -> impl Responder {
    web::Json(json!({"message": "Index."}))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let limiter = examples::or_exit(
        Limiter::builder()
            .application_limits("1000 per day")
            .default_error_message("You've hit the rate limit!")
            .headers(Headers::XRateLimit)
            .build(),
    );
    let bind = examples::bind_address();
    println!("global_limits listening on http://{bind}");
    HttpServer::new(move || {
        App::new()
            .wrap(limiter.clone())
            .service(public_route)
            .service(admin_route)
            .service(index)
    })
    .bind(bind)?
    .run()
    .await
}
