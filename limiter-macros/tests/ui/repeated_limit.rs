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

// The same options in another order, and a method list within the other's (every method).
#[limit("3 per hour", key = by_user, cost = 2)]
#[limit("10 per day, 3 per hour", cost = 2, methods = [POST], key = by_user)]
async fn reordered() -> &'static str {
    "ok"
}

#[limit("1 per second", methods = [GET, POST])]
#[limit("1 per second", methods = [post])]
async fn methods() -> &'static str {
    "ok"
}

// The same rate with options that make another bucket, or on other requests: no error.
#[limit("2 per minute")]
#[limit("2 per minute", key = by_user)]
#[limit("2 per minute", per_method)]
#[limit("5 per hour", methods = [GET])]
#[limit("5 per hour", methods = [POST, PUT])]
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
