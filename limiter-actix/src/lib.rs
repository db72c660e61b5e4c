//! Flask-Limiter's decorator-style rate limiting for actix-web.
//!
//! ```
//! use actix_web::{get, App, HttpResponse};
//! use limiter_actix::{limit, Limiter};
//!
//! #[get("/slow")]
//! #[limit("1 per minute")]
//! async fn slow() -> HttpResponse {
//!     HttpResponse::Ok().body("This is a slow route.")
//! }
//!
//! let limiter = Limiter::builder()
//!     .default_error_message("You've hit the rate limit!")
//!     .storage_uri("memory://")
//!     .build()
//!     .expect("a valid configuration");
//! let app = App::new().wrap(limiter).service(slow);
//! ```
//!
//! - [`Limiter`] is the app-wide middleware, and the app data `#[limit]` handlers find;
//!   [`LimiterBuilder`] lists every option.
//! - [`limit`] and [`exempt`] decorate handlers; [`limit`] lists every option.
//! - Every request is decided in one storage operation covering its route's limits, the
//!   default limits and the application limits; a rejected request charges nothing and
//!   never reads its body.
#![deny(missing_docs)]

mod batch;
mod header_value;
mod key;
mod limiter;
mod middleware;
mod routes;

#[doc(hidden)]
pub mod __private {
    pub use crate::private::*;
}
mod private;

pub use key::{Cidr, ProxyHeader, remote_address};
pub use limiter::{Breach, Headers, LimitKind, Limiter, LimiterBuilder, RetryAfter};
pub use middleware::{LimiterFuture, LimiterMiddleware};

/// The engine underneath: rate strings, strategies, storage.
pub use limiter_core as core;
pub use limiter_core::{
    Clock, ConfigError, LimitStats, ManualClock, Rate, RateParseError, StorageError, StorageUri,
    Store, Strategy, Timestamp, parse_rates,
};

/// Rate-limits a handler, with one or more rate strings checked at compile time.
///
/// `#[limit("...")]` takes a rate string (`"1 per minute"`, `"10/hour"`, `"100 per hour, 5000
/// per day"`); a bad one is a compile error pointing at it, with a suggestion. It goes above or
/// below `#[get]`/`#[post]`/`#[route]`, or on a handler registered by hand
/// (`web::get().to(handler)`), an associated function's too (not in a trait impl; its options
/// name their functions by the type, `key = Api::key`); several stack and are decided together, in one storage call with
/// the default and application limits. The handler keeps its extractors and return type.
///
/// | option | meaning |
/// |---|---|
/// | `key = f` | `fn(&HttpRequest) -> Option<&str>` (or `String`, `Option<String>`...): this limit's client key; `None` or `""` skips the limit |
/// | `cost = N` or `cost = f` | units one request takes (at least 1; `f` is `fn(&HttpRequest) -> u32`/`u64`, and 0 from it skips the limit) |
/// | `methods = [GET, POST]` | the limit applies to these methods only |
/// | `per_method` | a separate bucket per HTTP method |
/// | `scope = "name"` | the bucket's name (default: the handler's path: its module path and name, with its type for an associated function and the functions it is declared in for a nested one, as `std::any::type_name` writes them) |
/// | `shared = "name"` | one bucket for every route naming it |
/// | `exempt_when = f` | `fn(&HttpRequest) -> bool`: `true` skips the limit |
/// | `deduct_when = f` | `fn(&HttpResponse) -> bool`: the hit is given back unless this is true of the response |
/// | `override_defaults = false` | the default limits apply too (by default a route's own limits replace them) |
/// | `error_message = ".."` | the 429 body when this limit is breached |
/// | `on_breach = f` | `fn(&HttpRequest, &Breach) -> impl Responder` for this limit's rejections |
/// | `dynamic = f` | instead of a string: `fn(&HttpRequest) -> &str` (or `String`, `Option<..>`) giving the rate string, parsed once per distinct value (`None` skips the limit; a string that does not parse is logged and the route falls back to the default limits, as in Flask-Limiter) |
/// | `strategy = ".."` | this limit's strategy (default: the limiter's) |
///
/// A decorated handler in an app without a [`Limiter`] answers 500 and logs, once, how to
/// register one.
///
/// ```
/// use actix_web::{get, web, App, HttpRequest, HttpResponse};
/// use limiter_actix::{limit, Limiter};
///
/// fn api_key(req: &HttpRequest) -> Option<&str> {
///     req.headers().get("X-API-Key")?.to_str().ok()
/// }
///
/// fn failed(res: &HttpResponse) -> bool {
///     !res.status().is_success()
/// }
///
/// #[get("/search")]
/// #[limit("10 per minute", key = api_key, error_message = "search quota used")]
/// #[limit("1000 per day", deduct_when = failed)]
/// async fn search() -> &'static str {
///     "results"
/// }
///
/// #[limit("2 per second", strategy = "gcra")]
/// async fn item(id: web::Path<u32>) -> String {
///     format!("item {id}")
/// }
///
/// let app = App::new()
///     .wrap(Limiter::builder().build().unwrap())
///     .service(search)
///     .route("/items/{id}", web::get().to(item));
/// ```
#[doc(inline)]
pub use limiter_macros::limit;

/// Exempts a handler from the default and the application limits: `#[exempt]` from both,
/// `#[exempt(application)]` from the application limits only, `#[exempt(defaults)]` from the
/// default limits only. The handler's own `#[limit]`s still apply.
///
/// ```
/// use actix_web::{get, App};
/// use limiter_actix::{exempt, Limiter};
///
/// #[get("/health")]
/// #[exempt]
/// async fn health() -> &'static str {
///     "ok"
/// }
///
/// let limiter = Limiter::builder()
///     .default_limits("100 per hour")
///     .application_limits("10000 per hour")
///     .build()
///     .unwrap();
/// let app = App::new().wrap(limiter).service(health);
/// ```
#[doc(inline)]
pub use limiter_macros::exempt;

/// The README's examples, compiled as doc tests.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
