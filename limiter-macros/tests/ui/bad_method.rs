use limiter_actix::limit;

#[limit("1 per minute", methods = [GET, PSOT])]
async fn handler() -> &'static str {
    "ok"
}

fn main() {}
