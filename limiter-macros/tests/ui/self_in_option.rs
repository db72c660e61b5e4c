use limiter_actix::limit;

struct Api;

impl Api {
    #[limit("1 per minute", key = Self::key)]
    async fn list() -> &'static str {
        "ok"
    }
}

fn main() {}
