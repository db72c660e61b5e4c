use limiter_actix::limit;

#[limit("1.5 per second")]
async fn handler() -> &'static str {
    "ok"
}

fn main() {}
