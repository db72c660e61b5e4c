use limiter_actix::limit;

#[limit("1 per minute", methods = [])]
async fn handler() -> &'static str {
    "ok"
}

fn main() {}
