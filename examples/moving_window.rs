//! The article's moving-window app: `/api/data` allows 5 requests in any rolling minute, so a
//! burst at the end of one minute cannot be followed by another at the start of the next.
//! Counters live where `LIMITER_STORAGE_URI` says (`memory://` when unset; a Redis URI such as
//! `redis://localhost:6379/0` shares them between processes when Redis storage is built in).
//!
//! ```sh
//! cargo run --example moving_window
//! # or, counting in Redis (shared with every process started so, each on its own BIND):
//! LIMITER_STORAGE_URI=redis://127.0.0.1:6379/0 cargo run --example moving_window
//! for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w '%{http_code}\n' http://127.0.0.1:8080/api/data; done
//! ```

use actix_web::{App, HttpServer, Responder, get, web};
use limiter_actix::{Limiter, limit};
use serde_json::json;

#[get("/api/data")]
#[limit("5 per minute")]
async fn get_data() -> impl Responder {
    web::Json(json!({"data": "some sensitive data"}))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let storage = std::env::var("LIMITER_STORAGE_URI").unwrap_or_else(|_| "memory://".into());
    let limiter = examples::or_exit(
        Limiter::builder()
            .storage_uri(storage.as_str())
            .strategy("moving-window")
            .default_error_message("You've hit the rate limit!")
            .build(),
    );
    let bind = examples::bind_address();
    println!("moving_window listening on http://{bind} (storage {storage})");
    HttpServer::new(move || App::new().wrap(limiter.clone()).service(get_data))
        .bind(bind)?
        .run()
        .await
}
