use limiter_actix::limit;

#[limit("2 per minute")]
#[limit("5 per hour")]
#[limit("2 per minute")]
async fn handler() -> &'static str {
    "ok"
}

fn main() {}
