use limiter_actix::limit;

#[limit("1 per minute", keyy = api_key)]
async fn handler() -> &'static str {
    "ok"
}

fn main() {}
