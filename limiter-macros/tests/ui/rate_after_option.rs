use limiter_actix::limit;

fn api_key(req: &actix_web::HttpRequest) -> Option<&str> {
    req.headers().get("x-api-key")?.to_str().ok()
}

#[limit(key = api_key, "1 per minute")]
async fn keyed() -> &'static str {
    "keyed"
}

fn main() {}
