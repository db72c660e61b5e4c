// Constants in scope named like bindings of the generated code (`args`, `error`, the option
// functions' `req`, `out`, `res`, `breach`) stay the user's: they do not turn those bindings
// into patterns, and the handler compiles as it did without #[limit].
#![allow(non_upper_case_globals)]
use limiter_actix::{Breach, limit};

const args: u8 = 0;
const error: u8 = 1;
const req: u8 = 2;
const out: u8 = 3;
const res: u8 = 4;
const breach: u8 = 5;

fn api_key(r: &limiter_actix::__private::HttpRequest) -> Option<&str> {
    r.headers().get("x-api-key")?.to_str().ok()
}

fn failed(r: &limiter_actix::__private::HttpResponse) -> bool {
    !r.status().is_success()
}

fn busy(_: &limiter_actix::__private::HttpRequest, b: &Breach) -> String {
    format!("retry in {:?}", b.retry_after())
}

#[limit("1 per minute", key = api_key, deduct_when = failed, on_breach = busy)]
async fn handler() -> String {
    format!("{args} {error} {req} {out} {res} {breach}")
}

fn main() {
    let _handler = handler;
}
