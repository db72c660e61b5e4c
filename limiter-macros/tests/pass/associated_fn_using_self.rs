// A handler that is an associated function (registered by hand, `web::get().to(Api::handler)`),
// whose body uses `Self`.
use limiter_actix::limit;

struct Api;

impl Api {
    fn greeting() -> &'static str {
        "hi"
    }

    #[limit("1 per minute")]
    async fn handler() -> &'static str {
        Self::greeting()
    }
}

fn main() {
    let _handler = Api::handler;
}
