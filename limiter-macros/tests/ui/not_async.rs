use limiter_actix::limit;

#[limit("1 per minute")]
fn handler() -> &'static str {
    "ok"
}

fn main() {}
