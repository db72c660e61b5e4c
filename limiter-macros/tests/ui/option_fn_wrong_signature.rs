// An option's function of the wrong type is an error at that function, not on the whole
// attribute (nor with suggestions written after it).
use limiter_actix::__private::{HttpRequest, HttpResponse};
use limiter_actix::{Breach, limit};

fn key_by_value(_: HttpRequest) -> Option<String> {
    None
}

fn deduct_on_request(_: &HttpRequest) -> bool {
    true
}

fn breach_swapped(_: &Breach, _: &HttpRequest) -> HttpResponse {
    HttpResponse::TooManyRequests().finish()
}

#[limit("1 per minute", key = key_by_value)]
async fn keyed() -> &'static str {
    "ok"
}

#[limit("1 per minute", deduct_when = deduct_on_request)]
async fn deducted() -> &'static str {
    "ok"
}

#[limit("1 per minute", on_breach = breach_swapped)]
async fn answered() -> &'static str {
    "ok"
}

fn main() {}
