use limiter_actix::limit;

// The same rate, spelled another way, in two limits with the same options: one bucket.
#[limit("2 per minute")]
#[limit("5 per hour", key = by_user)]
#[limit("10 per day, 2/minute")]
async fn handler() -> &'static str {
    "ok"
}

// Written twice, word for word.
#[limit(dynamic = plan, per_method)]
#[limit(dynamic = plan, per_method)]
async fn dynamic() -> &'static str {
    "ok"
}

// The same rate with options that make another bucket: no error.
#[limit("2 per minute")]
#[limit("2 per minute", key = by_user)]
#[limit("2 per minute", per_method)]
async fn fine() -> &'static str {
    "ok"
}

fn by_user(_: &actix_web::HttpRequest) -> Option<String> {
    None
}

fn plan(_: &actix_web::HttpRequest) -> &'static str {
    "1 per second"
}

fn main() {}
