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
//! - [`limit`] and [`exempt`] decorate handlers; every option is described on [`limit`].
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

pub use key::{remote_address, Cidr};
pub use limiter::{
    Breach, Headers, KeyFn, LimitKind, Limiter, LimiterBuilder, OnBreach, RequestFilter, RetryAfter,
};
pub use middleware::{LimiterFuture, LimiterMiddleware};

/// The engine underneath: rate strings, strategies, storage.
pub use limiter_core as core;
pub use limiter_core::{
    parse_rates, Clock, ConfigError, LimitStats, ManualClock, Rate, RateParseError, StorageError,
    StorageUri, Store, Strategy, Timestamp,
};

pub use limiter_macros::{exempt, limit};

/// The README's examples, compiled as doc tests.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
