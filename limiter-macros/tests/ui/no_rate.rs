use limiter_actix::limit;

#[limit(error_message = "slow down")]
async fn handler() -> &'static str {
    "ok"
}

fn main() {}
