use limiter_actix::exempt;

#[exempt(aplication)]
async fn handler() -> &'static str {
    "ok"
}

fn main() {}
