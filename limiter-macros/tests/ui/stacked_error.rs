use limiter_actix::limit;

#[limit("1 per minute")]
#[limit("5 per hour", scope = "a", shared = "b")]
async fn handler() -> &'static str {
    "ok"
}

fn main() {}
