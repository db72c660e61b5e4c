//! Per-API-key limits: clients sending `X-API-Key` are counted by their key (wherever they
//! connect from), anonymous clients by their IP address.
//!
//! ```sh
//! cargo run --example api_keys
//! curl -i -H 'X-API-Key: alice' http://127.0.0.1:8080/api/data
//! ```

use actix_web::{App, HttpServer, Responder, get, web};
use limiter_actix::{Headers, Limiter, limit};
use serde_json::json;

#[get("/api/data")]
#[limit("10 per minute")]
async fn get_data() -> impl Responder {
    web::Json(json!({"data": "some sensitive data"}))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let limiter = examples::or_exit(
        Limiter::builder()
            // The key when the request sends one, else the address.
            .key_header("X-API-Key")
            .default_error_message("You've hit the rate limit!")
            .headers(Headers::XRateLimit)
            .build(),
    );
    let bind = examples::bind_address();
    println!("api_keys listening on http://{bind}");
    HttpServer::new(move || App::new().wrap(limiter.clone()).service(get_data))
        .bind(bind)?
        .run()
        .await
}
