use limiter_actix::limit;

#[limit("1 per minute", override_defaults = "no")]
async fn handler() -> &'static str {
    "ok"
}

fn main() {}
