use limiter_actix::limit;

// A moving window keeps an entry per hit: no rate may allow more than 2^32 - 1.
#[limit("5000000000 per day", strategy = "moving-window")]
async fn handler() -> &'static str {
    "ok"
}

fn main() {}
