//! The `Limiter`: its builder, its configuration, and what it answers.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, UNIX_EPOCH};

use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use limiter_core::keys::{key_suffix, push_client_tag, push_client_tag_of_parts};
use limiter_core::{
    Clock, ConfigError, Decision, Hit, LimitStats, Rate, Storage, StorageError, StorageUri, Store,
    Strategy, Timestamp, parse_rates,
};

use crate::batch::{Batch, Origin};
use crate::header_value::{self, Policy, PolicyItem, PolicyName, Repeating, decimal, repeating};
use crate::key::{Cidr, Proxies, ProxyHeader, client_ip, header_text, keying_with, write_ip_key};
use crate::routes::RouteTable;

/// A custom key function: the client a request counts against, or `None` to skip the limit.
type KeyFn = Arc<dyn Fn(&HttpRequest) -> Option<String> + Send + Sync>;
/// A request filter: `true` exempts the request from every limit.
type RequestFilter = Arc<dyn Fn(&HttpRequest) -> bool + Send + Sync>;
/// A custom response for a rejected request.
type OnBreach = Arc<dyn Fn(&HttpRequest, &Breach) -> HttpResponse + Send + Sync>;

/// Which rate-limit headers responses carry.
///
/// ```
/// use actix_web::{test, web, App};
/// use limiter_actix::{Headers, Limiter, ManualClock, Timestamp};
///
/// # #[actix_web::main]
/// # async fn main() {
/// // The top of a minute, so the fixed window resets 60 s from now.
/// let clock = ManualClock::new(Timestamp::from_secs(1_700_006_400));
/// let limiter = Limiter::builder()
///     .default_limits("10 per minute")
///     .headers(Headers::XRateLimit)
///     .clock(clock)
///     .build()
///     .unwrap();
/// let app = App::new().wrap(limiter).route("/", web::get().to(|| async { "hi" }));
/// let app = test::init_service(app).await;
/// let req = test::TestRequest::get().peer_addr("192.0.2.1:4000".parse().unwrap());
/// let res = test::call_service(&app, req.to_request()).await;
/// assert_eq!(res.headers().get("x-ratelimit-limit").unwrap(), "10");
/// assert_eq!(res.headers().get("x-ratelimit-remaining").unwrap(), "9");
/// assert_eq!(res.headers().get("x-ratelimit-reset").unwrap(), "1700006460");
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Headers {
    /// None but `Retry-After` on a 429 (Flask-Limiter's default).
    #[default]
    Off,
    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (a Unix time), names
    /// configurable with [`LimiterBuilder::header_names`].
    XRateLimit,
    /// The IETF draft fields: `RateLimit-Policy` (every limit applied: `"route-0";q=1;w=60`) and
    /// `RateLimit` (the limit closest to breaching: `"route-0";r=0;t=42`).
    Ietf,
}

/// How `Retry-After` is written.
///
/// ```
/// use actix_web::{test, web, App};
/// use limiter_actix::{Limiter, ManualClock, RetryAfter, Timestamp};
///
/// # #[actix_web::main]
/// # async fn main() {
/// // Wednesday 15 November 2023, 00:00:00 UTC.
/// let clock = ManualClock::new(Timestamp::from_secs(1_700_006_400));
/// let limiter = Limiter::builder()
///     .default_limits("1 per minute")
///     .retry_after(RetryAfter::HttpDate)
///     .clock(clock)
///     .build()
///     .unwrap();
/// let app = App::new().wrap(limiter).route("/", web::get().to(|| async { "hi" }));
/// let app = test::init_service(app).await;
/// let get = || test::TestRequest::get().peer_addr("192.0.2.1:4000".parse().unwrap());
/// test::call_service(&app, get().to_request()).await;
/// let refused = test::call_service(&app, get().to_request()).await;
/// assert_eq!(refused.headers().get("retry-after").unwrap(), "Wed, 15 Nov 2023 00:01:00 GMT");
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RetryAfter {
    /// Seconds to wait, rounded up (`Retry-After: 42`).
    #[default]
    Seconds,
    /// The time to retry at (`Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`).
    HttpDate,
}

/// Where a breached limit was declared: [`Breach::kind`], in an
/// [`on_breach`](LimiterBuilder::on_breach) function.
///
/// ```
/// use limiter_actix::{Breach, LimitKind};
///
/// fn blame(breach: &Breach) -> &'static str {
///     match breach.kind() {
///         LimitKind::Route => "this endpoint's limit",
///         LimitKind::Default => "the default limit",
///         LimitKind::Application => "your overall quota",
///     }
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitKind {
    /// A `#[limit]` on the handler.
    Route,
    /// A default limit of the [`Limiter`].
    Default,
    /// An application limit of the [`Limiter`] (one bucket per client across routes).
    Application,
}

impl LimitKind {
    /// Its name in the IETF fields' limit names (`"route-0"`, `"application-1"`).
    pub(crate) fn ietf_name(self) -> &'static str {
        match self {
            LimitKind::Route => "route",
            LimitKind::Default => "default",
            LimitKind::Application => "application",
        }
    }
}

/// What an [`on_breach`](LimiterBuilder::on_breach) function is told about a rejected
/// request.
///
/// ```
/// use actix_web::http::StatusCode;
/// use actix_web::{test, web, App, HttpRequest, HttpResponse};
/// use limiter_actix::{Breach, LimitKind, Limiter, ManualClock, Timestamp};
///
/// fn busy(_req: &HttpRequest, breach: &Breach) -> HttpResponse {
///     assert_eq!(breach.kind(), LimitKind::Application);
///     assert_eq!(breach.limit().amount(), 1);
///     assert_eq!(breach.stats().remaining, 0);
///     let wait = breach.retry_after().as_secs();
///     HttpResponse::ServiceUnavailable().body(format!("{}; retry in {wait} s", breach.message()))
/// }
///
/// # #[actix_web::main]
/// # async fn main() {
/// let limiter = Limiter::builder()
///     .application_limits("1 per minute")
///     .on_breach(busy)
///     .clock(ManualClock::new(Timestamp::from_secs(1_700_006_400)))
///     .build()
///     .unwrap();
/// let app = App::new().wrap(limiter).route("/", web::get().to(|| async { "hi" }));
/// let app = test::init_service(app).await;
/// let get = || test::TestRequest::get().peer_addr("192.0.2.1:4000".parse().unwrap());
/// test::call_service(&app, get().to_request()).await;
/// let refused = test::call_service(&app, get().to_request()).await;
/// assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
/// // A `Retry-After` is added when the response has none.
/// assert_eq!(refused.headers().get("retry-after").unwrap(), "60");
/// let body = test::read_body(refused).await;
/// assert_eq!(body, "1 per 1 minute; retry in 60 s");
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Breach {
    pub(crate) limit: Rate,
    pub(crate) kind: LimitKind,
    pub(crate) stats: LimitStats,
    pub(crate) retry_after: Duration,
    pub(crate) message: String,
}

impl Breach {
    /// The breached limit (the first one, in route, default, application order). See
    /// [`Breach`]'s example.
    pub fn limit(&self) -> Rate {
        self.limit
    }
    /// Where it was declared. See [`Breach`]'s example.
    pub fn kind(&self) -> LimitKind {
        self.kind
    }
    /// Its counters (remaining, reset time). See [`Breach`]'s example.
    pub fn stats(&self) -> LimitStats {
        self.stats
    }
    /// How long until the same request would pass every breached limit. See [`Breach`]'s
    /// example.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }
    /// The message the default 429 would carry. See [`Breach`]'s example.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// The content type of this crate's own plain-text answers (a 429, a storage failure).
const PLAIN_TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

/// The default 429 body for `rate` (`10 per 1 minute`): formatted once per rate a thread
/// meets in a row, then shared.
fn rate_message(rate: Rate) -> Bytes {
    thread_local! {
        static LAST: RefCell<Option<(Rate, Bytes)>> = const { RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        match &*last {
            Some((seen, text)) if *seen == rate => text.clone(),
            _ => {
                let text = Bytes::from(rate.to_string());
                *last = Some((rate, text.clone()));
                text
            }
        }
    })
}

/// A borrowed `on_breach` function.
pub(crate) type BreachFn<'a> = &'a dyn Fn(&HttpRequest, &Breach) -> HttpResponse;

pub(crate) enum KeySource {
    PeerIp,
    Custom(KeyFn),
    /// The header's value, else the peer address.
    Header(HeaderName),
}

/// Header names kept as static bytes when configured (in any case): every response clones the
/// names it sets, and a name parsed from a string shares its bytes through a reference count
/// that every worker would bump and drop, an atomic each time.
const STATIC_HEADER_NAMES: [&str; 7] = [
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "retry-after",
];

/// What sets the limiter's headers `names` on a response, replacing any the response has
/// already. `HeaderMap::insert` builds (and here drops) an iterator over the values it
/// replaces, a few hundred bytes moved per header; a response seldom has these names already,
/// and one pass over its few headers tells, so the headers are appended unless it found one.
fn setter<'h, const N: usize>(
    headers: &'h mut HeaderMap,
    names: [&HeaderName; N],
) -> impl FnMut(HeaderName, HeaderValue) + 'h + use<'h, N> {
    let present = headers.keys().any(|key| names.contains(&key));
    move |name, value| {
        if present {
            headers.insert(name, value);
        } else {
            headers.append(name, value);
        }
    }
}

/// The IETF draft's fields.
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The default `X-RateLimit-*` names, written into each response as constants: a clone of a
/// stored name is a call through its bytes' vtable whose result the caller then copies at an
/// odd offset, a store-forwarding stall per header on the CPUs measured.
const DEFAULT_NAMES: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit"),
    HeaderName::from_static("x-ratelimit-remaining"),
    HeaderName::from_static("x-ratelimit-reset"),
];

pub(crate) struct HeaderNames {
    /// The three names are [`DEFAULT_NAMES`].
    defaults: bool,
    limit: HeaderName,
    remaining: HeaderName,
    reset: HeaderName,
    retry_after: HeaderName,
}

/// Scope of application limits: one bucket per client across all routes.
pub(crate) const APPLICATION_SCOPE: &str = "global";

pub(crate) struct Inner {
    pub(crate) enabled: bool,
    pub(crate) store: Store,
    pub(crate) clock: Clock,
    pub(crate) strategy: Strategy,
    pub(crate) prefix: Box<str>,
    key: KeySource,
    pub(crate) proxies: Proxies,
    pub(crate) defaults: Box<[Rate]>,
    pub(crate) application: Box<[(Rate, Box<str>)]>,
    /// The body of a default 429, shared by every rejection.
    default_message: Option<Bytes>,
    pub(crate) headers: Headers,
    names: HeaderNames,
    retry_after: RetryAfter,
    filter: Option<RequestFilter>,
    on_breach: Option<OnBreach>,
    failure_status: StatusCode,
    pub(crate) routes: RouteTable,
    /// Whether the middleware has warned that a path was rewritten inside it.
    pub(crate) rewrite_warned: AtomicBool,
}

/// The rate limiter of an app: register it with `App::wrap`, which also makes it the app
/// data that `#[limit]` handlers find.
///
/// ```
/// use actix_web::{get, App, HttpResponse};
/// use limiter_actix::{limit, Limiter};
///
/// #[get("/slow")]
/// #[limit("1 per minute")]
/// async fn slow() -> HttpResponse {
///     HttpResponse::Ok().body("slow")
/// }
///
/// let limiter = Limiter::builder()
///     .default_error_message("You've hit the rate limit!")
///     .build()
///     .unwrap();
/// let app = App::new().wrap(limiter).service(slow);
/// ```
#[derive(Clone)]
pub struct Limiter {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("enabled", &self.inner.enabled)
            .field("strategy", &self.inner.strategy)
            .field("prefix", &self.inner.prefix)
            .field("defaults", &self.inner.defaults)
            .field("store", &self.inner.store)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Limiter`]; every option has Flask-Limiter's default.
///
/// ```
/// use limiter_actix::{Headers, Limiter, RetryAfter};
///
/// let limiter = Limiter::builder()
///     .storage_uri("memory://")
///     .strategy("moving-window")
///     .default_limits("200 per day, 50 per hour")
///     .application_limits("1000 per day")
///     .headers(Headers::XRateLimit)
///     .retry_after(RetryAfter::HttpDate)
///     .key_prefix("myapp")
///     .build()
///     .unwrap();
///
/// let err = Limiter::builder().default_limits("10 per minit").build().unwrap_err();
/// assert!(err.to_string().contains("did you mean \"minute\"?"));
/// ```
#[must_use]
pub struct LimiterBuilder {
    key: KeySource,
    /// Set by `key_header`, checked by `build`.
    key_header: Option<String>,
    trusted: Vec<String>,
    proxy_header: ProxyHeader,
    storage_uri: String,
    store: Option<Store>,
    strategy: String,
    defaults: Option<String>,
    application: Option<String>,
    default_message: Option<String>,
    headers: Headers,
    names: [String; 4],
    retry_after: RetryAfter,
    /// `None` until set: [`DEFAULT_PREFIX`], or a built store's.
    prefix: Option<String>,
    enabled: bool,
    filter: Option<RequestFilter>,
    on_breach: Option<OnBreach>,
    clock: Clock,
    failure_status: StatusCode,
}

/// The key prefix unless one is set.
const DEFAULT_PREFIX: &str = "LIMITER";

impl Default for LimiterBuilder {
    fn default() -> Self {
        LimiterBuilder {
            key: KeySource::PeerIp,
            key_header: None,
            trusted: Vec::new(),
            proxy_header: ProxyHeader::default(),
            storage_uri: "memory://".into(),
            store: None,
            strategy: Strategy::default().name().into(),
            defaults: None,
            application: None,
            default_message: None,
            headers: Headers::Off,
            names: [
                "X-RateLimit-Limit".into(),
                "X-RateLimit-Remaining".into(),
                "X-RateLimit-Reset".into(),
                "Retry-After".into(),
            ],
            retry_after: RetryAfter::Seconds,
            prefix: None,
            enabled: true,
            filter: None,
            on_breach: None,
            clock: Clock::system(),
            failure_status: StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl LimiterBuilder {
    /// Identifies clients by what `f` returns instead of the peer IP (an API key, a user id,
    /// a combination). `None` or an empty key skips the limits keyed by it for that request
    /// (logged at debug), as Flask-Limiter skips a limit whose key is empty.
    ///
    /// ```
    /// use actix_web::{test, web, App, HttpRequest};
    /// use limiter_actix::{remote_address, Limiter};
    ///
    /// // Signed-in users by their id, everyone else by address.
    /// fn user_or_address(req: &HttpRequest) -> Option<String> {
    ///     match req.headers().get("X-User-Id").and_then(|id| id.to_str().ok()) {
    ///         Some(id) => Some(format!("user:{id}")),
    ///         None => remote_address(req),
    ///     }
    /// }
    ///
    /// # #[actix_web::main]
    /// # async fn main() {
    /// let limiter = Limiter::builder()
    ///     .key_fn(user_or_address)
    ///     .default_limits("1 per minute")
    ///     .build()
    ///     .unwrap();
    /// let app = App::new().wrap(limiter).route("/", web::get().to(|| async { "hi" }));
    /// let app = test::init_service(app).await;
    /// let status = |user: &'static str| {
    ///     let req = test::TestRequest::get()
    ///         .insert_header(("X-User-Id", user))
    ///         .peer_addr("192.0.2.1:4000".parse().unwrap());
    ///     let app = &app;
    ///     async move { test::call_service(app, req.to_request()).await.status().as_u16() }
    /// };
    /// // One address, two users: one bucket each.
    /// assert_eq!(status("alice").await, 200);
    /// assert_eq!(status("alice").await, 429);
    /// assert_eq!(status("bob").await, 200);
    /// # }
    /// ```
    pub fn key_fn(
        mut self,
        f: impl Fn(&HttpRequest) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.key = KeySource::Custom(Arc::new(f));
        self.key_header = None;
        self
    }

    /// Identifies clients by the value of the request header `name` (an API key, a tenant id
    /// your gateway sets), and requests without it, or with an empty or non-ASCII value, by
    /// the peer address as the default does. The same as a [`key_fn`](Self::key_fn) reading
    /// the header, without its allocations. Header keys are written `name=value`, so a value
    /// can never count against the address it spells.
    ///
    /// A client can send any value: key by headers your authentication checked or your
    /// proxy set, not by one a client chooses freely.
    ///
    /// ```
    /// use limiter_actix::Limiter;
    ///
    /// let limiter = Limiter::builder()
    ///     .key_header("X-API-Key")
    ///     .default_limits("100 per hour")
    ///     .build()
    ///     .unwrap();
    ///
    /// let err = Limiter::builder().key_header("X API Key").build().unwrap_err();
    /// assert!(err.to_string().contains("key_header"));
    /// ```
    pub fn key_header(mut self, name: impl Into<String>) -> Self {
        self.key_header = Some(name.into());
        self
    }

    /// Proxies whose forwarding header ([`LimiterBuilder::proxy_header`], `X-Forwarded-For`
    /// by default) is believed: addresses or networks (`"10.0.0.0/8"`, `"::1"`). Headers from
    /// any other peer are ignored.
    ///
    /// ```
    /// use actix_web::{test, web, App};
    /// use limiter_actix::Limiter;
    ///
    /// # #[actix_web::main]
    /// # async fn main() {
    /// let limiter = Limiter::builder()
    ///     .trusted_proxies(["10.0.0.0/8"])
    ///     .default_limits("1 per minute")
    ///     .build()
    ///     .unwrap();
    /// let app = App::new().wrap(limiter).route("/", web::get().to(|| async { "hi" }));
    /// let app = test::init_service(app).await;
    /// let status = |peer: &'static str, client: &'static str| {
    ///     let req = test::TestRequest::get()
    ///         .insert_header(("X-Forwarded-For", client))
    ///         .peer_addr(peer.parse().unwrap());
    ///     let app = &app;
    ///     async move { test::call_service(app, req.to_request()).await.status().as_u16() }
    /// };
    /// // Through the proxy, each client is counted apart.
    /// assert_eq!(status("10.0.0.1:4000", "203.0.113.7").await, 200);
    /// assert_eq!(status("10.0.0.1:4000", "203.0.113.8").await, 200);
    /// assert_eq!(status("10.0.0.1:4000", "203.0.113.7").await, 429);
    /// // Anyone else's header is ignored: this client is its own address.
    /// assert_eq!(status("192.0.2.1:4000", "203.0.113.9").await, 200);
    /// assert_eq!(status("192.0.2.1:4000", "203.0.113.10").await, 429);
    /// # }
    /// ```
    ///
    /// An entry that is not an address or a network fails [`build`](Self::build):
    ///
    /// ```
    /// use limiter_actix::Limiter;
    /// let err = Limiter::builder().trusted_proxies(["10.0.0.0/33"]).build().unwrap_err();
    /// assert!(err.to_string().starts_with("invalid trusted_proxies \"10.0.0.0/33\""));
    /// ```
    pub fn trusted_proxies<I, S>(mut self, proxies: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.trusted = proxies
            .into_iter()
            .map(|p| p.as_ref().to_string())
            .collect();
        self
    }

    /// The header the trusted proxies write the client's address in: `X-Forwarded-For`
    /// (default) or `Forwarded`. Only that one is read, so a client cannot choose its address
    /// by sending the other, which a proxy passes through untouched.
    ///
    /// ```
    /// use limiter_actix::{Limiter, ProxyHeader};
    /// let limiter = Limiter::builder()
    ///     .trusted_proxies(["10.0.0.0/8"])
    ///     .proxy_header(ProxyHeader::Forwarded)
    ///     .build()
    ///     .unwrap();
    /// ```
    pub fn proxy_header(mut self, header: ProxyHeader) -> Self {
        self.proxy_header = header;
        self
    }

    /// Where counters live: `memory://` (default) or a Redis URI when that storage is built in
    /// (see the README's "Redis storage" for every URI form and option). Nothing connects
    /// before the first request; a URI that cannot work fails [`build`](Self::build).
    ///
    /// ```
    /// use limiter_actix::Limiter;
    ///
    /// let limiter = Limiter::builder().storage_uri("memory://").build().unwrap();
    ///
    /// let err = Limiter::builder().storage_uri("memcached://localhost:11211").build().unwrap_err();
    /// assert!(err.to_string().starts_with("unknown storage scheme \"memcached\""));
    /// ```
    pub fn storage_uri(mut self, uri: impl Into<String>) -> Self {
        self.storage_uri = uri.into();
        self.store = None;
        self
    }

    /// A store built elsewhere (overrides [`LimiterBuilder::storage_uri`]): a memory store with
    /// a cap of its own, a Redis store with options the URI does not carry, or one store shared
    /// by several limiters.
    ///
    /// ```
    /// use limiter_actix::core::storage::memory::MemoryStore;
    /// use limiter_actix::{Limiter, Store};
    ///
    /// let limiter = Limiter::builder()
    ///     .store(Store::Memory(MemoryStore::new(10_000)))
    ///     .build()
    ///     .unwrap();
    /// let Store::Memory(memory) = limiter.store() else { unreachable!() };
    /// assert_eq!(memory.max_keys(), 10_000);
    /// ```
    pub fn store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    /// The strategy, by Flask-Limiter name (`fixed-window`, `moving-window`, ...) or as a
    /// [`Strategy`]. A `#[limit(.., strategy = "..")]` overrides it for its limit.
    ///
    /// ```
    /// use limiter_actix::{Limiter, Strategy};
    ///
    /// let limiter = Limiter::builder().strategy("moving-window").build().unwrap();
    /// let limiter = Limiter::builder().strategy(Strategy::Gcra).build().unwrap();
    ///
    /// let err = Limiter::builder().strategy("leaky-bucket").build().unwrap_err();
    /// assert!(err.to_string().starts_with("unknown strategy \"leaky-bucket\""));
    /// ```
    pub fn strategy(mut self, strategy: impl ToString) -> Self {
        self.strategy = strategy.to_string();
        self
    }

    /// Limits for every route without limits of its own, one bucket per route and client.
    ///
    /// ```
    /// use actix_web::{test, web, App};
    /// use limiter_actix::Limiter;
    ///
    /// # #[actix_web::main]
    /// # async fn main() {
    /// let limiter = Limiter::builder().default_limits("1 per minute").build().unwrap();
    /// let hi = || async { "hi" };
    /// let app = App::new()
    ///     .wrap(limiter)
    ///     .route("/a", web::get().to(hi))
    ///     .route("/b", web::get().to(hi));
    /// let app = test::init_service(app).await;
    /// let status = |uri: &'static str| {
    ///     let req = test::TestRequest::get().uri(uri).peer_addr("192.0.2.1:4000".parse().unwrap());
    ///     let app = &app;
    ///     async move { test::call_service(app, req.to_request()).await.status().as_u16() }
    /// };
    /// assert_eq!(status("/a").await, 200);
    /// assert_eq!(status("/a").await, 429);
    /// assert_eq!(status("/b").await, 200); // a bucket of its own
    /// # }
    /// ```
    pub fn default_limits(mut self, rates: impl Into<String>) -> Self {
        self.defaults = Some(rates.into());
        self
    }

    /// Limits on every route together, one bucket per client.
    ///
    /// ```
    /// use actix_web::{test, web, App};
    /// use limiter_actix::Limiter;
    ///
    /// # #[actix_web::main]
    /// # async fn main() {
    /// let limiter = Limiter::builder().application_limits("1 per minute").build().unwrap();
    /// let hi = || async { "hi" };
    /// let app = App::new()
    ///     .wrap(limiter)
    ///     .route("/a", web::get().to(hi))
    ///     .route("/b", web::get().to(hi));
    /// let app = test::init_service(app).await;
    /// let status = |uri: &'static str| {
    ///     let req = test::TestRequest::get().uri(uri).peer_addr("192.0.2.1:4000".parse().unwrap());
    ///     let app = &app;
    ///     async move { test::call_service(app, req.to_request()).await.status().as_u16() }
    /// };
    /// assert_eq!(status("/a").await, 200);
    /// assert_eq!(status("/b").await, 429); // one bucket for the whole app
    /// # }
    /// ```
    pub fn application_limits(mut self, rates: impl Into<String>) -> Self {
        self.application = Some(rates.into());
        self
    }

    /// The 429 body (default: the breached rate, `1 per 1 minute`). A
    /// `#[limit(.., error_message = "..")]` overrides it for its limit.
    ///
    /// ```
    /// use actix_web::{test, web, App};
    /// use limiter_actix::Limiter;
    ///
    /// # #[actix_web::main]
    /// # async fn main() {
    /// let limiter = Limiter::builder()
    ///     .default_limits("1 per minute")
    ///     .default_error_message("You've hit the rate limit!")
    ///     .build()
    ///     .unwrap();
    /// let app = App::new().wrap(limiter).route("/", web::get().to(|| async { "hi" }));
    /// let app = test::init_service(app).await;
    /// let get = || test::TestRequest::get().peer_addr("192.0.2.1:4000".parse().unwrap());
    /// test::call_service(&app, get().to_request()).await;
    /// let refused = test::call_service(&app, get().to_request()).await;
    /// assert_eq!(refused.status(), 429);
    /// assert_eq!(test::read_body(refused).await, "You've hit the rate limit!");
    /// # }
    /// ```
    pub fn default_error_message(mut self, message: impl Into<String>) -> Self {
        self.default_message = Some(message.into());
        self
    }

    /// Which rate-limit headers to send (default: none but `Retry-After`). [`Headers`] shows
    /// `X-RateLimit-*`; here are the IETF draft's fields:
    ///
    /// ```
    /// use actix_web::{test, web, App};
    /// use limiter_actix::{Headers, Limiter, ManualClock, Timestamp};
    ///
    /// # #[actix_web::main]
    /// # async fn main() {
    /// let limiter = Limiter::builder()
    ///     .default_limits("10 per minute")
    ///     .headers(Headers::Ietf)
    ///     .clock(ManualClock::new(Timestamp::from_secs(1_700_006_400)))
    ///     .build()
    ///     .unwrap();
    /// let app = App::new().wrap(limiter).route("/", web::get().to(|| async { "hi" }));
    /// let app = test::init_service(app).await;
    /// let req = test::TestRequest::get().peer_addr("192.0.2.1:4000".parse().unwrap());
    /// let res = test::call_service(&app, req.to_request()).await;
    /// assert_eq!(res.headers().get("ratelimit-policy").unwrap(), "\"default-0\";q=10;w=60");
    /// assert_eq!(res.headers().get("ratelimit").unwrap(), "\"default-0\";r=9;t=60");
    /// # }
    /// ```
    pub fn headers(mut self, headers: Headers) -> Self {
        self.headers = headers;
        self
    }

    /// Names of the [`Headers::XRateLimit`] headers.
    ///
    /// ```
    /// use actix_web::{test, web, App};
    /// use limiter_actix::{Headers, Limiter};
    ///
    /// # #[actix_web::main]
    /// # async fn main() {
    /// let limiter = Limiter::builder()
    ///     .default_limits("10 per minute")
    ///     .headers(Headers::XRateLimit)
    ///     .header_names("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
    ///     .build()
    ///     .unwrap();
    /// let app = App::new().wrap(limiter).route("/", web::get().to(|| async { "hi" }));
    /// let app = test::init_service(app).await;
    /// let req = test::TestRequest::get().peer_addr("192.0.2.1:4000".parse().unwrap());
    /// let res = test::call_service(&app, req.to_request()).await;
    /// assert_eq!(res.headers().get("ratelimit-remaining").unwrap(), "9");
    /// assert!(!res.headers().contains_key("x-ratelimit-remaining"));
    ///
    /// let err = Limiter::builder().header_names("Limit:", "Left", "Reset").build().unwrap_err();
    /// assert!(err.to_string().starts_with("invalid header name \"Limit:\""));
    /// # }
    /// ```
    pub fn header_names(
        mut self,
        limit: impl Into<String>,
        remaining: impl Into<String>,
        reset: impl Into<String>,
    ) -> Self {
        self.names[0] = limit.into();
        self.names[1] = remaining.into();
        self.names[2] = reset.into();
        self
    }

    /// Name of the retry header (default `Retry-After`).
    ///
    /// ```
    /// use actix_web::{test, web, App};
    /// use limiter_actix::Limiter;
    ///
    /// # #[actix_web::main]
    /// # async fn main() {
    /// let limiter = Limiter::builder()
    ///     .default_limits("1 per minute")
    ///     .retry_after_header("X-Retry-In")
    ///     .build()
    ///     .unwrap();
    /// let app = App::new().wrap(limiter).route("/", web::get().to(|| async { "hi" }));
    /// let app = test::init_service(app).await;
    /// let get = || test::TestRequest::get().peer_addr("192.0.2.1:4000".parse().unwrap());
    /// test::call_service(&app, get().to_request()).await;
    /// let refused = test::call_service(&app, get().to_request()).await;
    /// assert!(refused.headers().contains_key("x-retry-in"));
    /// assert!(!refused.headers().contains_key("retry-after"));
    /// # }
    /// ```
    pub fn retry_after_header(mut self, name: impl Into<String>) -> Self {
        self.names[3] = name.into();
        self
    }

    /// `Retry-After` as seconds (default) or as an HTTP date; [`RetryAfter`] shows both.
    ///
    /// ```
    /// use limiter_actix::{Limiter, RetryAfter};
    /// let limiter = Limiter::builder().retry_after(RetryAfter::HttpDate).build().unwrap();
    /// ```
    pub fn retry_after(mut self, format: RetryAfter) -> Self {
        self.retry_after = format;
        self
    }

    /// The prefix of every counter key (default `LIMITER`), so several apps can share a store.
    /// A Redis store built elsewhere ([`LimiterBuilder::store`]) or a storage URI may name
    /// its own `key_prefix`: it is used when this is left unset, and must be the same if not.
    ///
    /// ```
    /// use limiter_actix::Limiter;
    ///
    /// let limiter = Limiter::builder().key_prefix("shop").build().unwrap();
    ///
    /// // Braces mark the client's part of a key (a Redis Cluster hash tag).
    /// let err = Limiter::builder().key_prefix("{shop}").build().unwrap_err();
    /// assert!(err.to_string().contains("braces are reserved"));
    /// ```
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// `false` turns every limit off (default `true`), as Flask-Limiter's `RATELIMIT_ENABLED`.
    ///
    /// ```
    /// use actix_web::{test, web, App};
    /// use limiter_actix::Limiter;
    ///
    /// # #[actix_web::main]
    /// # async fn main() {
    /// let on_staging = true;
    /// let limiter = Limiter::builder()
    ///     .default_limits("1 per minute")
    ///     .enabled(!on_staging)
    ///     .build()
    ///     .unwrap();
    /// let app = App::new().wrap(limiter).route("/", web::get().to(|| async { "hi" }));
    /// let app = test::init_service(app).await;
    /// for _ in 0..3 {
    ///     let req = test::TestRequest::get().peer_addr("192.0.2.1:4000".parse().unwrap());
    ///     assert_eq!(test::call_service(&app, req.to_request()).await.status(), 200);
    /// }
    /// # }
    /// ```
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Requests for which `f` returns `true` are exempt from every limit.
    ///
    /// ```
    /// use actix_web::{test, web, App, HttpRequest};
    /// use limiter_actix::Limiter;
    ///
    /// fn internal(req: &HttpRequest) -> bool {
    ///     req.headers().contains_key("X-Internal-Token")
    /// }
    ///
    /// # #[actix_web::main]
    /// # async fn main() {
    /// let limiter = Limiter::builder()
    ///     .default_limits("1 per minute")
    ///     .request_filter(internal)
    ///     .build()
    ///     .unwrap();
    /// let app = App::new().wrap(limiter).route("/", web::get().to(|| async { "hi" }));
    /// let app = test::init_service(app).await;
    /// for _ in 0..3 {
    ///     let req = test::TestRequest::get()
    ///         .insert_header(("X-Internal-Token", "t"))
    ///         .peer_addr("192.0.2.1:4000".parse().unwrap());
    ///     assert_eq!(test::call_service(&app, req.to_request()).await.status(), 200);
    /// }
    /// # }
    /// ```
    pub fn request_filter(
        mut self,
        f: impl Fn(&HttpRequest) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.filter = Some(Arc::new(f));
        self
    }

    /// The response to a rejected request (default: 429 with the limit's message). A
    /// `Retry-After` header is added when the response has none. [`Breach`] shows one in use.
    ///
    /// ```
    /// use actix_web::{HttpRequest, HttpResponse};
    /// use limiter_actix::{Breach, Limiter};
    ///
    /// let limiter = Limiter::builder()
    ///     .default_limits("100 per hour")
    ///     .on_breach(|_req: &HttpRequest, breach: &Breach| {
    ///         HttpResponse::TooManyRequests().json(serde_json::json!({
    ///             "error": breach.message(),
    ///             "retry_after": breach.retry_after().as_secs(),
    ///         }))
    ///     })
    ///     .build()
    ///     .unwrap();
    /// ```
    pub fn on_breach(
        mut self,
        f: impl Fn(&HttpRequest, &Breach) -> HttpResponse + Send + Sync + 'static,
    ) -> Self {
        self.on_breach = Some(Arc::new(f));
        self
    }

    /// Where "now" comes from (default: the system clock; a [`ManualClock`](crate::ManualClock)
    /// in tests, which moves only when told).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use actix_web::{test, web, App};
    /// use limiter_actix::{Limiter, ManualClock, Timestamp};
    ///
    /// # #[actix_web::main]
    /// # async fn main() {
    /// let clock = ManualClock::new(Timestamp::from_secs(1_700_006_400));
    /// let limiter = Limiter::builder()
    ///     .default_limits("1 per minute")
    ///     .clock(clock.clone())
    ///     .build()
    ///     .unwrap();
    /// let app = App::new().wrap(limiter).route("/", web::get().to(|| async { "hi" }));
    /// let app = test::init_service(app).await;
    /// let get = || test::TestRequest::get().peer_addr("192.0.2.1:4000".parse().unwrap());
    /// assert_eq!(test::call_service(&app, get().to_request()).await.status(), 200);
    /// assert_eq!(test::call_service(&app, get().to_request()).await.status(), 429);
    /// clock.advance(Duration::from_secs(60));
    /// assert_eq!(test::call_service(&app, get().to_request()).await.status(), 200);
    /// # }
    /// ```
    pub fn clock(mut self, clock: impl Into<Clock>) -> Self {
        self.clock = clock.into();
        self
    }

    /// The status answered when the store fails closed: 503 (default) or 429. Whether it
    /// fails closed is the store's failure policy (see the README's "When Redis fails").
    ///
    /// ```
    /// use actix_web::http::StatusCode;
    /// use limiter_actix::Limiter;
    ///
    /// let limiter = Limiter::builder()
    ///     .storage_failure_status(StatusCode::TOO_MANY_REQUESTS)
    ///     .build()
    ///     .unwrap();
    ///
    /// let err = Limiter::builder()
    ///     .storage_failure_status(StatusCode::INTERNAL_SERVER_ERROR)
    ///     .build()
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("expected 503"));
    /// ```
    pub fn storage_failure_status(mut self, status: StatusCode) -> Self {
        self.failure_status = status;
        self
    }

    /// Checks every value and builds the limiter.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the bad value: a rate string, a strategy, a storage URI, a
    /// trusted proxy, a header name or a failure status.
    ///
    /// ```
    /// use limiter_actix::{ConfigError, Limiter};
    ///
    /// let err = Limiter::builder().application_limits("5 per hour, 100 per fortnight").build();
    /// let Err(ConfigError::Rate { origin, text, source }) = err else { panic!() };
    /// assert_eq!(origin, "application limits");
    /// // The error's span points at the offending part of `text`.
    /// assert_eq!(&text[source.span()], "fortnight");
    /// ```
    pub fn build(self) -> Result<Limiter, ConfigError> {
        let strategy: Strategy = self.strategy.parse()?;
        let rates = |text: &Option<String>, origin: &str| -> Result<Vec<Rate>, ConfigError> {
            match text {
                None => Ok(Vec::new()),
                Some(text) => parse_rates(text).map_err(|source| ConfigError::Rate {
                    origin: origin.into(),
                    text: text.clone(),
                    source,
                }),
            }
        };
        let defaults = rates(&self.defaults, "default limits")?;
        let application = rates(&self.application, "application limits")?
            .into_iter()
            .map(|rate| (rate, key_suffix(APPLICATION_SCOPE, &rate).into_boxed_str()))
            .collect();
        let trusted = self
            .trusted
            .iter()
            .map(|p| {
                p.parse::<Cidr>().map_err(|reason| ConfigError::Invalid {
                    setting: "trusted_proxies",
                    value: p.clone(),
                    reason,
                })
            })
            .collect::<Result<_, _>>()?;
        let header = |setting: &'static str, name: &String| {
            if let Some(known) = STATIC_HEADER_NAMES
                .iter()
                .find(|known| name.eq_ignore_ascii_case(known))
            {
                return Ok(HeaderName::from_static(known));
            }
            HeaderName::try_from(name.as_str()).map_err(|_| ConfigError::Invalid {
                setting,
                value: name.clone(),
                reason: "expected an HTTP header name (letters, digits, '-')".into(),
            })
        };
        let names = HeaderNames {
            defaults: self.names[..3]
                .iter()
                .zip(&DEFAULT_NAMES)
                .all(|(name, default)| name.eq_ignore_ascii_case(default.as_str())),
            limit: header("header name", &self.names[0])?,
            remaining: header("header name", &self.names[1])?,
            reset: header("header name", &self.names[2])?,
            retry_after: header("header name", &self.names[3])?,
        };
        let key = match &self.key_header {
            Some(name) => KeySource::Header(header("key_header", name)?),
            None => self.key,
        };
        if !matches!(self.failure_status.as_u16(), 429 | 503) {
            return Err(ConfigError::Invalid {
                setting: "storage_failure_status",
                value: self.failure_status.as_u16().to_string(),
                reason: "expected 503 (fail closed, retry later) or 429".into(),
            });
        }
        let (store, prefix) = match self.store {
            Some(store) => {
                let prefix = prefix_of_built_store(&store, self.prefix)?;
                (store, prefix)
            }
            None => store_for(&self.storage_uri, self.prefix, &self.clock)?,
        };
        Ok(Limiter {
            inner: Arc::new(Inner {
                enabled: self.enabled,
                store,
                clock: self.clock,
                strategy,
                prefix: prefix.into_boxed_str(),
                key,
                proxies: Proxies {
                    nets: trusted,
                    header: self.proxy_header,
                },
                defaults: defaults.into_boxed_slice(),
                application,
                default_message: self.default_message.map(Bytes::from),
                headers: self.headers,
                names,
                retry_after: self.retry_after,
                filter: self.filter,
                on_breach: self.on_breach,
                failure_status: self.failure_status,
                routes: RouteTable::default(),
                rewrite_warned: AtomicBool::new(false),
            }),
        })
    }
}

impl Limiter {
    /// A builder with Flask-Limiter's defaults: peer-IP keys, `memory://`, fixed window, no
    /// default or application limits, no headers but `Retry-After`.
    ///
    /// ```
    /// let limiter = limiter_actix::Limiter::builder().build().unwrap();
    /// ```
    pub fn builder() -> LimiterBuilder {
        LimiterBuilder::default()
    }

    /// The store counters live in.
    ///
    /// ```
    /// use limiter_actix::{Limiter, Store};
    ///
    /// let limiter = Limiter::builder().build().unwrap();
    /// assert!(matches!(limiter.store(), Store::Memory(_)));
    /// ```
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Forgets every counter of its store: on Redis, the counter keys `prefix{...}` of the
    /// limiter's key prefix (other keys that merely begin with the prefix stay); a memory store
    /// is emptied, the counters of other limiters sharing it included.
    ///
    /// # Errors
    /// The store's error, if it could not be reached.
    ///
    /// ```
    /// use actix_web::{test, web, App};
    /// use limiter_actix::Limiter;
    ///
    /// # #[actix_web::main]
    /// # async fn main() {
    /// let limiter = Limiter::builder().default_limits("1 per minute").build().unwrap();
    /// let app = App::new().wrap(limiter.clone()).route("/", web::get().to(|| async { "hi" }));
    /// let app = test::init_service(app).await;
    /// let get = || test::TestRequest::get().peer_addr("192.0.2.1:4000".parse().unwrap());
    /// test::call_service(&app, get().to_request()).await;
    /// assert_eq!(test::call_service(&app, get().to_request()).await.status(), 429);
    /// limiter.reset().await.unwrap();
    /// assert_eq!(test::call_service(&app, get().to_request()).await.status(), 200);
    /// # }
    /// ```
    pub async fn reset(&self) -> Result<(), StorageError> {
        self.inner.store.reset().await
    }
}

/// The store a storage URI names, and the limiter's key prefix, `set` if set. A Redis store
/// deletes on `reset()` the keys under its `key_prefix`, which must be the one the counter
/// keys are written with: see [`agreed_prefix`]. The store measures the age of a charge it
/// refunds on the limiter's `clock`, which dates the charges.
fn store_for(
    uri: &str,
    set: Option<String>,
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))] clock: &Clock,
) -> Result<(Store, String), ConfigError> {
    match StorageUri::parse(uri)? {
        #[cfg(feature = "redis")]
        StorageUri::Redis { .. } => {
            use limiter_core::storage::redis::{RedisOptions, RedisStore};
            let builder = RedisStore::builder(uri)?;
            // The URI's prefix only when it names one: the store takes whichever is agreed.
            let named = &builder.current_options().key_prefix;
            let named = (*named != RedisOptions::default().key_prefix).then_some(named.as_str());
            let prefix = agreed_prefix(named, set, "storage URI's")?;
            let store = builder.key_prefix(&prefix).clock(clock.clone()).build()?;
            Ok((Store::Redis(store), prefix))
        }
        parsed => Ok((Store::from_uri(&parsed)?, agreed_prefix(None, set, "")?)),
    }
}

/// The key prefix of a limiter given a store built elsewhere, `set` the limiter's if set: a
/// Redis store keeps its own (see [`agreed_prefix`]).
fn prefix_of_built_store(store: &Store, set: Option<String>) -> Result<String, ConfigError> {
    match store {
        #[cfg(feature = "redis")]
        Store::Redis(redis) => agreed_prefix(Some(&redis.options().key_prefix), set, "store's"),
        _ => agreed_prefix(None, set, ""),
    }
}

/// One key prefix from the limiter's (`set`, if set) and the one `whose` Redis store names
/// (`named`, if any): either alone, or both the same, else `reset()` would keep this
/// limiter's counters and delete another's. Neither: [`DEFAULT_PREFIX`]. Whichever it is
/// holds no braces, which mark the client part of counter keys.
fn agreed_prefix(
    named: Option<&str>,
    set: Option<String>,
    whose: &str,
) -> Result<String, ConfigError> {
    let agreed = match (named, set) {
        (Some(named), Some(set)) if named != set => Err(ConfigError::Invalid {
            setting: "key_prefix",
            value: named.into(),
            reason: format!(
                "the {whose} key_prefix differs from the limiter's (\"{set}\"); set it in one place"
            ),
        }),
        (_, Some(set)) => Ok(set),
        (Some(named), None) => Ok(named.into()),
        (None, None) => Ok(DEFAULT_PREFIX.into()),
    }?;
    if agreed.contains(['{', '}']) {
        return Err(ConfigError::Invalid {
            setting: "key_prefix",
            value: agreed,
            reason: "braces are reserved for the client part of counter keys".into(),
        });
    }
    Ok(agreed)
}

/// The limit the rate-limit headers show, with its stats: all a response keeps of a decision
/// while the handler runs (a quarter of the decision's size).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shown {
    index: usize,
    stats: LimitStats,
}

impl Shown {
    /// The breached limit, else the one closest to breaching; `None` when no limit applied.
    #[inline]
    pub(crate) fn of(decision: &Decision) -> Option<Shown> {
        let index = decision
            .breached
            .or_else(|| (0..decision.stats.len()).min_by_key(|&i| decision.stats[i].remaining))?;
        Some(Shown {
            index,
            stats: *decision.stats.get(index)?,
        })
    }
}

impl Inner {
    pub(crate) fn filtered(&self, req: &HttpRequest) -> bool {
        self.filter.as_ref().is_some_and(|f| f(req))
    }

    /// Renders the request's client key into `batch.client_tag`; `false` when there is none.
    pub(crate) fn client_key(&self, req: &HttpRequest, batch: &mut Batch) -> bool {
        batch.client_tag.clear();
        let found = match &self.key {
            KeySource::PeerIp => self.peer_key(req, batch),
            // An empty key is none, as in Flask-Limiter.
            KeySource::Custom(f) => {
                match keying_with(&self.proxies, || f(req)).filter(|key| !key.is_empty()) {
                    Some(key) => {
                        push_client_tag(&mut batch.client_tag, &key);
                        true
                    }
                    None => false,
                }
            }
            KeySource::Header(name) => match req
                .headers()
                .get(name)
                .and_then(header_text)
                .filter(|value| !value.is_empty())
            {
                Some(value) => {
                    push_client_tag_of_parts(&mut batch.client_tag, &[name.as_str(), "=", value]);
                    true
                }
                None => self.peer_key(req, batch),
            },
        };
        if !found {
            tracing::debug!(
                path = req.path(),
                "no client key for this request; its limits are skipped"
            );
        }
        found
    }

    /// Renders the peer address (or, from a trusted proxy, the client it forwarded for) as
    /// the client tag.
    fn peer_key(&self, req: &HttpRequest, batch: &mut Batch) -> bool {
        let Some(ip) = client_ip(req, &self.proxies) else {
            return false;
        };
        batch.scratch.clear();
        write_ip_key(&mut batch.scratch, ip);
        push_client_tag(&mut batch.client_tag, &batch.scratch);
        true
    }

    /// Adds what the middleware charges before routing: the default limits scoped to
    /// `pattern` (none when no route matched) and the application limits.
    pub(crate) fn push_app_and_defaults(
        &self,
        batch: &mut Batch,
        default_suffixes: Option<&[Box<str>]>,
    ) {
        if let Some(suffixes) = default_suffixes {
            self.push_defaults(batch, suffixes);
        }
        self.push_application(batch);
    }

    /// The default limits, scoped to the route whose key suffixes are `suffixes`.
    pub(crate) fn push_defaults(&self, batch: &mut Batch, suffixes: &[Box<str>]) {
        for (i, (rate, suffix)) in self.defaults.iter().zip(suffixes).enumerate() {
            batch.push(
                &self.prefix,
                false,
                suffix,
                *rate,
                self.strategy,
                1,
                Origin::Default(i as u16),
            );
        }
    }

    pub(crate) fn push_application(&self, batch: &mut Batch) {
        for (i, (rate, suffix)) in self.application.iter().enumerate() {
            batch.push(
                &self.prefix,
                false,
                suffix,
                *rate,
                self.strategy,
                1,
                Origin::Application(i as u16),
            );
        }
    }

    /// The refusal of `hits` at `now` when it is known without charging anything: a peek on
    /// the memory store, the block cache on Redis. Never with an elastic limit among them,
    /// which must record the refused hit.
    pub(crate) fn refused_uncharged(&self, hits: &[Hit<'_>], now: Timestamp) -> Option<Decision> {
        if hits.iter().any(|hit| hit.strategy.is_elastic()) {
            return None;
        }
        let decision = match &self.store {
            Store::Memory(memory) => memory.peek_now(hits, now),
            #[cfg(feature = "redis")]
            Store::Redis(redis) => redis.decide_locally(hits, now)?,
            #[allow(unreachable_patterns)]
            _ => return None,
        };
        (!decision.admitted).then_some(decision)
    }

    /// The decision without a future: always on the memory store, on Redis only for a client
    /// its block cache knows is blocked.
    #[inline]
    pub(crate) fn decide_sync(&self, hits: &[Hit<'_>], now: Timestamp) -> Option<Decision> {
        let mut decision = Decision::unlimited();
        self.decide_sync_into(hits, now, &mut decision)
            .then_some(decision)
    }

    /// [`Inner::decide_sync`] written into `decision` (see
    /// [`limiter_core::MemoryStore::decide_into`]): false, and `decision` left alone, when the
    /// store must be asked.
    #[inline]
    pub(crate) fn decide_sync_into(
        &self,
        hits: &[Hit<'_>],
        now: Timestamp,
        decision: &mut Decision,
    ) -> bool {
        match &self.store {
            Store::Memory(memory) => {
                memory.decide_into(hits, now, decision);
                true
            }
            // A client Redis recently blocked is rejected from the local block cache.
            #[cfg(feature = "redis")]
            Store::Redis(redis) => match redis.decide_locally(hits, now) {
                Some(local) => {
                    *decision = local;
                    true
                }
                None => false,
            },
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    pub(crate) async fn decide(
        &self,
        hits: &[Hit<'_>],
        now: Timestamp,
    ) -> Result<Decision, StorageError> {
        match self.decide_sync(hits, now) {
            Some(decision) => Ok(decision),
            None => self.decide_remote(hits, now).await,
        }
    }

    /// [`Inner::decide`] after `decide_sync` had no answer: the store is asked (Redis looks at
    /// its block cache once more, which another request may have filled meanwhile).
    pub(crate) async fn decide_remote(
        &self,
        hits: &[Hit<'_>],
        now: Timestamp,
    ) -> Result<Decision, StorageError> {
        self.store.decide(hits, now).await
    }

    /// Gives back `refunds`, charged moments ago, and decides `hits`: on Redis in one script
    /// call where a refund then a decision would be two round trips.
    pub(crate) async fn refund_and_decide(
        &self,
        refunds: &[Hit<'_>],
        hits: &[Hit<'_>],
        now: Timestamp,
    ) -> Result<Decision, StorageError> {
        self.store.refund_and_decide(refunds, hits, now).await
    }

    /// Gives back what `hits` took in a decision made at `charged_at` (a sliding window
    /// counter finds the charge's bucket by it); a failure is logged (the charge then stands).
    pub(crate) async fn refund(&self, hits: &[Hit<'_>], charged_at: Timestamp) {
        if hits.is_empty() || self.refund_sync(hits, charged_at) {
            return;
        }
        let result = self.store.refund(hits, charged_at).await;
        if let Err(error) = result {
            tracing::warn!(%error, "rate limit refund failed; the charge stands");
        }
    }

    /// [`Inner::refund`] without a future: false, nothing given back, when the store must be
    /// asked (Redis).
    pub(crate) fn refund_sync(&self, hits: &[Hit<'_>], charged_at: Timestamp) -> bool {
        match &self.store {
            Store::Memory(memory) => {
                memory.refund_now(hits, charged_at);
                true
            }
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The answer when the store failed closed.
    pub(crate) fn storage_failure(&self, error: &StorageError) -> HttpResponse {
        tracing::error!(%error, status = self.failure_status.as_u16(), "rate limit storage failed; rejecting the request");
        let mut response =
            HttpResponse::build(self.failure_status).body("rate limit storage unavailable");
        response.headers_mut().insert(CONTENT_TYPE, PLAIN_TEXT);
        self.set_retry_after(response.headers_mut(), Duration::from_secs(1));
        response
    }

    /// The answer to a rejected request: `message` and `on_breach` are the breached route
    /// limit's own, if any.
    pub(crate) fn rejection(
        &self,
        req: &HttpRequest,
        batch: &Batch,
        decision: &Decision,
        message: Option<&'static str>,
        on_breach: Option<BreachFn<'_>>,
    ) -> HttpResponse {
        let index = decision.breached.unwrap_or(0);
        let item = &batch.items[index];
        let retry_after = decision.retry_after.unwrap_or_default();
        // A flood of blocked clients is answered here: the default body is shared bytes, with
        // no formatting and no allocation per rejection.
        let body = match (message, &self.default_message) {
            (Some(message), _) => Bytes::from_static(message.as_bytes()),
            (None, Some(message)) => message.clone(),
            (None, None) => rate_message(item.rate),
        };
        let own = self.on_breach.as_deref().map(|f| f as BreachFn<'_>);
        let mut response = match on_breach.or(own) {
            Some(f) => {
                let breach = Breach {
                    limit: item.rate,
                    kind: item.origin.kind(),
                    stats: decision.stats[index],
                    retry_after,
                    message: String::from_utf8_lossy(&body).into_owned(),
                };
                f(req, &breach)
            }
            None => {
                let mut response = HttpResponse::TooManyRequests().body(body);
                response.headers_mut().insert(CONTENT_TYPE, PLAIN_TEXT);
                response
            }
        };
        if !response.headers().contains_key(&self.names.retry_after) {
            self.set_retry_after(response.headers_mut(), retry_after);
        }
        self.add_headers(response.headers_mut(), batch, decision);
        response
    }

    fn set_retry_after(&self, headers: &mut HeaderMap, after: Duration) {
        /// 10000-01-01T00:00:00Z in seconds since the epoch.
        const FIRST_SECOND_OF_YEAR_10000: u64 = 253_402_300_800;
        let secs = after.as_micros().div_ceil(1_000_000).max(1) as u64;
        let date = (self.retry_after == RetryAfter::HttpDate).then(|| {
            // The first whole second at or after the moment the request would pass (and at
            // least the next second): `now`'s fraction counts, or the date could name a second
            // in which the client is still refused.
            let now = self.clock.now();
            now.saturating_add(after)
                .as_secs_ceil()
                .max(now.as_micros() / 1_000_000 + 1)
        });
        // An HTTP date has four digits of year: httpdate panics on a later time (a manual
        // clock set past 9999). That, or a date that is no header value, is told in seconds.
        let value = date
            .filter(|&at_secs| at_secs < FIRST_SECOND_OF_YEAR_10000)
            .and_then(|at_secs| {
                let at = UNIX_EPOCH + Duration::from_secs(at_secs);
                HeaderValue::from_str(&httpdate::fmt_http_date(at)).ok()
            })
            .unwrap_or_else(|| decimal(secs));
        let name = if self.names.retry_after == RETRY_AFTER {
            RETRY_AFTER
        } else {
            self.names.retry_after.clone()
        };
        headers.insert(name, value);
    }

    /// Adds the configured rate-limit headers for a decision over `batch`.
    pub(crate) fn add_headers(&self, headers: &mut HeaderMap, batch: &Batch, decision: &Decision) {
        if self.headers == Headers::Off {
            return;
        }
        if let Some(shown) = Shown::of(decision) {
            self.add_shown(headers, batch, &shown);
        }
    }

    /// Adds the configured rate-limit headers showing one limit of `batch`. (`shown` by
    /// reference: a copy made right before the call was read back in wider loads than it was
    /// written with, a store-forwarding stall.)
    pub(crate) fn add_shown(&self, headers: &mut HeaderMap, batch: &Batch, shown: &Shown) {
        let &Shown {
            index: current,
            stats,
        } = shown;
        match self.headers {
            Headers::Off => {}
            Headers::XRateLimit => {
                let reset = stats.reset.as_secs_ceil();
                let [limit, remaining, reset_name] = if self.names.defaults {
                    DEFAULT_NAMES
                } else {
                    [
                        self.names.limit.clone(),
                        self.names.remaining.clone(),
                        self.names.reset.clone(),
                    ]
                };
                let mut set = setter(headers, [&limit, &remaining, &reset_name]);
                set(limit, repeating(Repeating::Limit, stats.limit));
                set(remaining, decimal(stats.remaining));
                set(reset_name, repeating(Repeating::Reset, reset));
            }
            Headers::Ietf => self.add_ietf(headers, batch, current, stats),
        }
    }

    /// The IETF draft's `RateLimit-Policy` and `RateLimit` headers.
    fn add_ietf(&self, headers: &mut HeaderMap, batch: &Batch, current: usize, stats: LimitStats) {
        // Each limit's place among those of its kind.
        let mut counts = [0u16; 3];
        let mut policy = Policy::new();
        for item in &batch.items {
            let kind = item.origin.kind();
            let index = &mut counts[kind as usize];
            policy.push(PolicyItem {
                name: PolicyName {
                    kind,
                    index: *index,
                },
                quota: item.rate.amount(),
                window: item.rate.period().as_secs(),
            });
            *index += 1;
        }
        let mut set = setter(headers, [&RATELIMIT_POLICY, &RATELIMIT]);
        set(RATELIMIT_POLICY, header_value::policy(&policy));
        // `current` indexes the batch's limits, as the stats it came from do.
        if let Some(shown) = policy.get(current) {
            // In microseconds: through `Duration`s the comparison cost 28 instructions more.
            let mut until_reset = stats
                .reset
                .as_micros()
                .saturating_sub(self.clock.now().as_micros());
            // On a denial more quota comes when the request would pass, which for GCRA and the
            // sliding window is before their reset: `t` must not be later than `Retry-After`.
            if let Some(retry_after) = stats.retry_after {
                let retry_after = u64::try_from(retry_after.as_micros()).unwrap_or(u64::MAX);
                until_reset = until_reset.min(retry_after);
            }
            let until_reset = until_reset.div_ceil(1_000_000);
            set(
                RATELIMIT,
                header_value::rate_limit(shown.name, stats.remaining, until_reset),
            );
        }
    }
}
