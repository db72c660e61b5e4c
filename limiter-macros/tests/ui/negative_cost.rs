use limiter_actix::limit;

#[limit("1 per minute", cost = -1)]
async fn negative() -> &'static str {
    "ok"
}

#[limit("1 per minute", cost = 100000000000000000000)]
async fn too_large() -> &'static str {
    "ok"
}

fn main() {}
