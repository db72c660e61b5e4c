use limiter_actix::limit;

#[limit("10 per minit")]
async fn handler() -> &'static str {
    "ok"
}

fn main() {}
