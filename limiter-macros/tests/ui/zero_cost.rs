use limiter_actix::limit;

#[limit("1 per minute", cost = 0)]
async fn handler() -> &'static str {
    "ok"
}

fn main() {}
