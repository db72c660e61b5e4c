use limiter_actix::limit;

#[limit("1 per minute", strategy = "leaky-bucket")]
async fn handler() -> &'static str {
    "ok"
}

fn main() {}
