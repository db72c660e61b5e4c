// A free-function handler whose body defines a local type with an `impl` that names `Self`:
// that `Self` is the local type's, and the handler is no associated function.
use limiter_actix::limit;

#[limit("1 per minute")]
async fn handler() -> String {
    struct Greeting(&'static str);
    impl Greeting {
        fn new() -> Self {
            Greeting("hi")
        }
    }
    Greeting::new().0.to_string()
}

fn main() {
    let _handler = handler;
}
