//! What `#[limit]` and `#[exempt]` expand to call. Not a public API: the macros and this
//! module change together.

use std::borrow::Cow;
use std::future::Future;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};

pub use actix_web::dev::Payload as DevPayload;
pub use actix_web::{FromRequest, HttpRequest, HttpResponse, Responder};
pub use limiter_core::{Strategy, Unit};

use actix_web::HttpMessage;
use actix_web::http::Method;
use hashbrown::HashMap;
use limiter_core::keys::key_suffix;
use limiter_core::{Decision, Rate, StorageError, Timestamp, parse_rates};
use parking_lot::RwLock;
use smallvec::SmallVec;

use crate::batch::{Batch, Hits, Origin};
use crate::limiter::{Breach, BreachFn, Inner, Shown};
use crate::middleware::{Before, Handled, RouteView, Visit, WrapperRan};
use crate::routes::{METHOD_NAMES, METHODS, default_suffixes, method_index, routing_path};

/// A rate written in the attribute, checked by the macro.
#[derive(Debug)]
pub struct RateSpec {
    /// Hits per period.
    pub amount: u64,
    /// Units per period.
    pub multiples: u64,
    /// The unit.
    pub unit: Unit,
}

/// What a hit costs.
#[derive(Debug)]
pub enum Cost {
    /// A constant.
    Fixed(u64),
    /// Computed per request.
    Dynamic(fn(&HttpRequest) -> u64),
}

/// Which bucket a limit counts in.
#[derive(Debug)]
pub enum Scope {
    /// The handler's own (its path, see `Route::scope`).
    Handler,
    /// A scope named in the attribute.
    Named(&'static str),
    /// A bucket shared by every route naming it.
    Shared(&'static str),
}

/// A route limit's key function: writes the client key, `false` for none.
pub type KeyFn = fn(&HttpRequest, &mut String) -> bool;
/// A dynamic limit: the rate string for this request.
pub type DynamicFn = for<'a> fn(&'a HttpRequest) -> Option<Cow<'a, str>>;
/// A route limit's custom rejection.
pub type OnBreachFn = fn(&HttpRequest, &Breach) -> HttpResponse;

/// One `#[limit(...)]` attribute.
#[derive(Debug)]
pub struct Group {
    /// Its rates.
    pub rates: &'static [RateSpec],
    /// Or a function giving them per request.
    pub dynamic: Option<DynamicFn>,
    /// `key = ..`.
    pub key: Option<KeyFn>,
    /// `cost = ..`.
    pub cost: Cost,
    /// `methods = [..]`, upper case.
    pub methods: Option<&'static [&'static str]>,
    /// `per_method`.
    pub per_method: bool,
    /// `scope`/`shared`.
    pub scope: Scope,
    /// `exempt_when = ..`.
    pub exempt_when: Option<fn(&HttpRequest) -> bool>,
    /// `deduct_when = ..`.
    pub deduct_when: Option<fn(&HttpResponse) -> bool>,
    /// `override_defaults = ..`.
    pub override_defaults: bool,
    /// `error_message = ..`.
    pub error_message: Option<&'static str>,
    /// `on_breach = ..`.
    pub on_breach: Option<OnBreachFn>,
    /// `strategy = ..`.
    pub strategy: Option<Strategy>,
}

impl Group {
    /// Every option at its default.
    pub const DEFAULT: Group = Group {
        rates: &[],
        dynamic: None,
        key: None,
        cost: Cost::Fixed(1),
        methods: None,
        per_method: false,
        scope: Scope::Handler,
        exempt_when: None,
        deduct_when: None,
        override_defaults: true,
        error_message: None,
        on_breach: None,
        strategy: None,
    };
}

/// `#[exempt]` flags.
#[derive(Debug, Default)]
pub struct Exempt {
    /// From the application limits.
    pub application: bool,
    /// From the default limits.
    pub defaults: bool,
}

/// Everything the attributes of one handler say.
#[derive(Debug)]
pub struct Route {
    name: &'static str,
    /// The type name of an item nested in the handler: its path, with the type of an
    /// associated function's `impl` (which `module_path!()` does not name).
    path: fn() -> &'static str,
    groups: &'static [Group],
    exempt: Exempt,
    compiled: OnceLock<Compiled>,
}

impl Route {
    /// A route spec, as a `static`.
    pub const fn new(
        name: &'static str,
        path: fn() -> &'static str,
        groups: &'static [Group],
        exempt: Exempt,
    ) -> Route {
        Route {
            name,
            path,
            groups,
            exempt,
            compiled: OnceLock::new(),
        }
    }

    /// The handler's default scope: its module path and name, with the type for an associated
    /// function (`Users::list` and `Posts::list` of one module count apart) and the
    /// functions a nested handler is declared in (`module::configure::list`; in an
    /// `async fn`, `module::main::{{closure}}::list`): the two look alike in a type name.
    fn scope(&self) -> &'static str {
        // `module::Type::name::{{closure}}::__limiter_marker`: the marker is in the body of the
        // async wrapper.
        let mut path = (self.path)();
        path = path.rsplit_once("::").map_or(path, |(handler, _)| handler);
        while let Some(outer) = path.strip_suffix("::{{closure}}") {
            path = outer;
        }
        // `module::Type::name` (or `module::outer::name`, nested) where the name is
        // `module::name`; anything else (a module-level function's, the same as its name; a
        // trait impl's `<Type as Trait>::name`) keeps the name as written.
        let Some((module, function)) = self.name.rsplit_once("::") else {
            return self.name;
        };
        let qualified = path.len() > self.name.len()
            && path
                .strip_prefix(module)
                .is_some_and(|rest| rest.starts_with("::"))
            && path
                .strip_suffix(function)
                .is_some_and(|rest| rest.ends_with("::"));
        if qualified { path } else { self.name }
    }

    fn compiled(&self) -> &Compiled {
        self.compiled.get_or_init(|| Compiled {
            groups: self
                .groups
                .iter()
                .map(|group| {
                    let scope: Box<str> = match group.scope {
                        Scope::Handler => self.scope().into(),
                        Scope::Named(name) => name.into(),
                        Scope::Shared(name) => format!("shared:{name}").into(),
                    };
                    let rates = group
                        .rates
                        .iter()
                        .filter_map(|r| Rate::new(r.amount, r.multiples, r.unit).ok())
                        .map(|rate| CompiledRate::new(&scope, rate, group.per_method))
                        .collect();
                    CompiledGroup {
                        dynamic: group.dynamic.map(|_| RwLock::default()),
                        scope,
                        rates,
                    }
                })
                .collect(),
        })
    }
}

/// A route's limits with their key suffixes, computed on its first request.
#[derive(Debug)]
struct Compiled {
    groups: Box<[CompiledGroup]>,
}

/// Distinct dynamic rate strings remembered per attribute.
const DYNAMIC_CACHE_CAP: usize = 1024;

/// Parsed dynamic rate strings (`None`: the string does not parse).
type DynamicCache = RwLock<HashMap<Box<str>, Option<Arc<[CompiledRate]>>>>;

#[derive(Debug)]
struct CompiledGroup {
    scope: Box<str>,
    rates: Box<[CompiledRate]>,
    dynamic: Option<DynamicCache>,
}

#[derive(Debug)]
struct CompiledRate {
    rate: Rate,
    suffix: Box<str>,
    /// With `per_method`: a suffix per standard method.
    per_method: Option<Box<[Box<str>]>>,
}

impl CompiledRate {
    fn new(scope: &str, rate: Rate, per_method: bool) -> CompiledRate {
        CompiledRate {
            rate,
            suffix: key_suffix(scope, &rate).into(),
            per_method: per_method.then(|| {
                METHOD_NAMES
                    .iter()
                    .map(|m| key_suffix(&format!("{scope}:{m}"), &rate).into())
                    .collect()
            }),
        }
    }

    fn suffix(&self, scope: &str, method: &Method, index: Option<usize>) -> Cow<'_, str> {
        match (&self.per_method, index) {
            (None, _) => Cow::Borrowed(&self.suffix),
            (Some(suffixes), Some(i)) if i < METHODS => Cow::Borrowed(&suffixes[i]),
            (Some(_), _) => Cow::Owned(key_suffix(&format!("{scope}:{method}"), &self.rate)),
        }
    }
}

impl CompiledGroup {
    /// The rates of a dynamic limit's string, parsed once per distinct string.
    fn dynamic_rates(
        &self,
        route: &str,
        text: &str,
        per_method: bool,
    ) -> Option<Arc<[CompiledRate]>> {
        let cache = self.dynamic.as_ref()?;
        if let Some(rates) = cache.read().get(text) {
            return rates.clone();
        }
        let rates: Option<Arc<[CompiledRate]>> = match parse_rates(text) {
            Ok(rates) => Some(
                rates
                    .into_iter()
                    .map(|rate| CompiledRate::new(&self.scope, rate, per_method))
                    .collect(),
            ),
            Err(error) => {
                tracing::error!(route, value = text, %error, "dynamic limit does not parse; it is skipped (the default limits apply)");
                None
            }
        };
        let mut cache = cache.write();
        if cache.len() < DYNAMIC_CACHE_CAP {
            cache.insert(text.into(), rates.clone());
        }
        rates
    }
}

/// Client keys a `key = ..` function may return.
pub trait IntoClientKey {
    /// Writes the key; `false` when there is none (an empty key is none, as in Flask-Limiter).
    fn write_key(self, out: &mut String) -> bool;
}

impl IntoClientKey for &str {
    fn write_key(self, out: &mut String) -> bool {
        out.push_str(self);
        !self.is_empty()
    }
}
impl IntoClientKey for String {
    fn write_key(self, out: &mut String) -> bool {
        self.as_str().write_key(out)
    }
}
impl IntoClientKey for Cow<'_, str> {
    fn write_key(self, out: &mut String) -> bool {
        (*self).write_key(out)
    }
}
impl<T: IntoClientKey> IntoClientKey for Option<T> {
    fn write_key(self, out: &mut String) -> bool {
        self.is_some_and(|key| key.write_key(out))
    }
}

/// Costs a `cost = ..` function may return.
pub trait IntoCost {
    /// The cost in units.
    fn into_cost(self) -> u64;
}
macro_rules! into_cost {
    ($($t:ty),*) => {$(
        impl IntoCost for $t {
            fn into_cost(self) -> u64 {
                self as u64
            }
        }
    )*};
}
into_cost!(u8, u16, u32, u64, usize);

/// Rate strings a `dynamic = ..` function may return.
pub trait IntoRateText<'a> {
    /// The rate string, or `None` for no limit.
    fn into_rate_text(self) -> Option<Cow<'a, str>>;
}
impl<'a, 'b: 'a> IntoRateText<'a> for &'b str {
    fn into_rate_text(self) -> Option<Cow<'a, str>> {
        Some(Cow::Borrowed(self))
    }
}
impl<'a> IntoRateText<'a> for String {
    fn into_rate_text(self) -> Option<Cow<'a, str>> {
        Some(Cow::Owned(self))
    }
}
impl<'a, 'b: 'a> IntoRateText<'a> for Cow<'b, str> {
    fn into_rate_text(self) -> Option<Cow<'a, str>> {
        Some(self)
    }
}
impl<'a, T: IntoRateText<'a>> IntoRateText<'a> for Option<T> {
    fn into_rate_text(self) -> Option<Cow<'a, str>> {
        self.and_then(IntoRateText::into_rate_text)
    }
}

/// Turns a handler's return value into a response.
pub fn respond<R: Responder>(value: R, req: &HttpRequest) -> HttpResponse {
    value.respond_to(req).map_into_boxed_body()
}

/// The response for an extractor that failed.
pub fn extract_error(error: impl Into<actix_web::Error>) -> HttpResponse {
    HttpResponse::from_error(error.into())
}

/// The request and its payload, the one argument of a `#[limit]` wrapper: extracted
/// together, where two extractors cost actix's tuple of extractor futures twice over.
pub struct Parts(HttpRequest, DevPayload);

impl FromRequest for Parts {
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Parts, std::convert::Infallible>>;

    #[inline]
    fn from_request(req: &HttpRequest, payload: &mut DevPayload) -> Self::Future {
        std::future::ready(Ok(Parts(req.clone(), payload.take())))
    }
}

/// Runs a decorated handler: decides every applicable limit in one call, then (only if
/// admitted) runs the extractors and the handler, whose body is `handler`.
///
/// The common case (memory store, or a client Redis' block cache already knows is blocked;
/// nothing charged before routing; no `deduct_when`) decides right here, synchronously, and
/// the returned future holds little more than the handler's own: actix boxes every handler
/// future, so its size is an allocation and a copy per request.
/// A store that must be asked (Redis, past its block cache) is asked by a small boxed future
/// of its own, and the handler runs after it, here.
/// Everything else goes through `run_slow`, boxed once more.
pub fn run<F, Fut>(route: &'static Route, parts: Parts, handler: F) -> Run<F, Fut>
where
    F: FnOnce(HttpRequest, DevPayload) -> Fut + 'static,
    Fut: Future<Output = HttpResponse> + 'static,
{
    let Parts(req, payload) = parts;
    // The worker's view of the routes, which the middleware adds to every request, carries
    // the limiter; the futures below hold it by `Rc`, where a clone of the `Limiter` would be
    // an atomic increment and decrement per request.
    let Some(visit) = req.app_data::<Visit>() else {
        return Run::Ready {
            response: Some(missing_limiter(route)),
        };
    };
    let view = &visit.view;
    let inner = &*view.limiter.inner;
    let before = visit.before;
    {
        let mut extensions = req.extensions_mut();
        extensions.insert(Handled);
        if before == Before::Keyed {
            if let Some(WrapperRan(ran)) = extensions.get::<WrapperRan>() {
                ran.set(true);
            }
        }
    }
    let charged = matches!(before, Before::Charged | Before::ChargedApplication);
    if charged || route.groups.iter().any(|g| g.deduct_when.is_some()) {
        return Run::Slow {
            fut: Box::pin(run_slow(
                Rc::clone(view),
                before,
                route,
                req,
                payload,
                handler,
            )),
        };
    }
    if !inner.enabled || inner.filtered(&req) {
        return Run::Handler {
            fut: handler(req, payload),
            after: None,
        };
    }
    let mut batch = Batch::take();
    collect(route, view, &req, &mut batch);
    if batch.is_empty() {
        batch.give();
        return Run::Handler {
            fut: handler(req, payload),
            after: None,
        };
    }
    // The memory store always answers here; Redis only from its block cache.
    let mut decision = Decision::unlimited();
    let now = inner.clock.now();
    if !batch.with_hits(|hits| inner.decide_sync_into(hits, now, &mut decision)) {
        // The store must be asked: the limits collected here go to it, and come back with
        // its answer.
        let view = Rc::clone(view);
        return Run::Remote {
            decide: Box::pin(decide_remote(Rc::clone(&view), batch, now)),
            next: Some((view, req, payload, handler)),
            route,
        };
    }
    // Held by `Rc`: the view borrows from the request, which the handler takes.
    let view = Rc::clone(view);
    decided(view, route, req, payload, handler, batch, &decision)
}

/// What follows a decision on `batch`: the rejection, or the handler, whose response gets the
/// decision's headers.
fn decided<F, Fut>(
    view: Rc<RouteView>,
    route: &'static Route,
    req: HttpRequest,
    payload: DevPayload,
    handler: F,
    mut batch: Box<Batch>,
    decision: &Decision,
) -> Run<F, Fut>
where
    F: FnOnce(HttpRequest, DevPayload) -> Fut,
{
    let inner = &*view.limiter.inner;
    if !decision.admitted {
        let response = reject(route, inner, &req, &batch, decision);
        batch.give();
        return Run::Ready {
            response: Some(response),
        };
    }
    let after = if inner.headers == crate::limiter::Headers::Off {
        batch.give();
        None
    } else {
        batch.shown = Shown::of(decision);
        Some((view, batch))
    };
    Run::Handler {
        fut: handler(req, payload),
        after,
    }
}

/// Asks the store about `batch`, and hands it back with the answer.
async fn decide_remote(
    view: Rc<RouteView>,
    batch: Box<Batch>,
    now: Timestamp,
) -> (Box<Batch>, Result<Decision, StorageError>) {
    let result = view.limiter.inner.decide_remote(&batch.hits(), now).await;
    (batch, result)
}

pub use run_future::Run;
use run_future::RunProjection;

mod run_future {
    // pin-project-lite takes no doc comments on enum fields.
    #![allow(missing_docs)]
    use super::*;

    /// The store's answer about a batch, with the batch.
    pub type Remote =
        std::pin::Pin<Box<dyn Future<Output = (Box<Batch>, Result<Decision, StorageError>)>>>;

    pin_project_lite::pin_project! {
        /// The future of a decorated handler (see [`run`]).
        #[project = RunProjection]
        pub enum Run<F, Fut> {
            /// Answered without running the handler.
            Ready { response: Option<HttpResponse> },
            /// Admitted: the handler runs; `after` adds the decision's headers to its response.
            Handler { #[pin] fut: Fut, after: Option<(Rc<RouteView>, Box<Batch>)> },
            /// Waiting for the store's answer; `next` is what runs the handler after it.
            Remote {
                decide: Remote,
                next: Option<(Rc<RouteView>, HttpRequest, DevPayload, F)>,
                route: &'static Route,
            },
            /// Every other case.
            Slow { fut: std::pin::Pin<Box<dyn Future<Output = HttpResponse>>> },
        }
    }
}

impl<F, Fut> Future for Run<F, Fut>
where
    F: FnOnce(HttpRequest, DevPayload) -> Fut,
    Fut: Future<Output = HttpResponse>,
{
    type Output = HttpResponse;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<HttpResponse> {
        use std::task::Poll;
        loop {
            let next = match self.as_mut().project() {
                RunProjection::Ready { response } => {
                    return match response.take() {
                        Some(response) => Poll::Ready(response),
                        None => Poll::Pending,
                    };
                }
                RunProjection::Handler { fut, after } => {
                    // Headed where the poll left it: taken out of the poll's result, the
                    // response was copied once more.
                    let mut polled = fut.poll(cx);
                    if let Poll::Ready(response) = &mut polled {
                        if let Some((view, batch)) = after.take() {
                            if let Some(shown) = &batch.shown {
                                let inner = &view.limiter.inner;
                                inner.add_shown(response.headers_mut(), &batch, shown);
                            }
                            batch.give();
                        }
                    }
                    return polled;
                }
                RunProjection::Remote {
                    decide,
                    next,
                    route,
                } => {
                    let Poll::Ready((batch, result)) = decide.as_mut().poll(cx) else {
                        return Poll::Pending;
                    };
                    let Some((view, req, payload, handler)) = next.take() else {
                        return Poll::Pending;
                    };
                    match result {
                        Ok(decision) => {
                            decided(view, route, req, payload, handler, batch, &decision)
                        }
                        Err(error) => {
                            batch.give();
                            Run::Ready {
                                response: Some(view.limiter.inner.storage_failure(&error)),
                            }
                        }
                    }
                }
                RunProjection::Slow { fut } => return fut.as_mut().poll(cx),
            };
            self.set(next);
        }
    }
}

/// The rejection of a request a route decided: the breached route limit's own message and
/// `on_breach`, if it was a route limit.
fn reject(
    route: &Route,
    inner: &Inner,
    req: &HttpRequest,
    batch: &Batch,
    decision: &Decision,
) -> HttpResponse {
    let group = match decision.breached.map(|i| batch.items[i].origin) {
        Some(Origin::Route(g)) => route.groups.get(usize::from(g)),
        _ => None,
    };
    let on_breach = group.and_then(|g| g.on_breach);
    let on_breach = on_breach.as_ref().map(|f| f as BreachFn<'_>);
    inner.rejection(
        req,
        batch,
        decision,
        group.and_then(|g| g.error_message),
        on_breach,
    )
}

/// [`run`] for a request the middleware charged before routing, or a route with
/// `deduct_when`.
async fn run_slow<F, Fut>(
    view: Rc<RouteView>,
    before: Before,
    route: &'static Route,
    req: HttpRequest,
    payload: DevPayload,
    handler: F,
) -> HttpResponse
where
    F: FnOnce(HttpRequest, DevPayload) -> Fut,
    Fut: Future<Output = HttpResponse>,
{
    let inner = &*view.limiter.inner;
    // The middleware did not know this route yet (or found it ambiguous) and charged it as a
    // plain one: that charge is given back as what really applies is decided, in one call.
    let refunds = match before {
        Before::Charged => Some(middleware_charge(inner, &req, true)),
        Before::ChargedApplication => Some(middleware_charge(inner, &req, false)),
        Before::Passed | Before::Keyed => None,
    };
    let mut batch = Batch::take();
    if inner.enabled && !inner.filtered(&req) {
        collect(route, &view, &req, &mut batch);
    }
    if batch.is_empty() {
        batch.give();
        if let Some(refunds) = refunds {
            inner.refund(&refunds.hits(), inner.clock.now()).await;
            refunds.give();
        }
        return handler(req, payload).await;
    }
    let ask = refunds.map_or(Ask::Store, Ask::Swap);
    decide_and_handle(inner, route, req, payload, handler, batch, ask).await
}

/// How [`decide_and_handle`] asks the store.
enum Ask {
    /// Any way: `decide_sync` was not tried yet.
    Store,
    /// Giving back the middleware's charge (this batch) in the same call.
    Swap(Box<Batch>),
}

/// Decides `batch` on the store, asked as `ask` says, then runs the handler if admitted
/// (refunding the `deduct_when` limits its response does not match) and adds the headers.
async fn decide_and_handle<F, Fut>(
    inner: &Inner,
    route: &'static Route,
    req: HttpRequest,
    payload: DevPayload,
    handler: F,
    batch: Box<Batch>,
    ask: Ask,
) -> HttpResponse
where
    F: FnOnce(HttpRequest, DevPayload) -> Fut,
    Fut: Future<Output = HttpResponse>,
{
    // Kept to date the refunds of `deduct_when`, which may come in a later bucket.
    let decided_at = inner.clock.now();
    let decision = match ask {
        Ask::Store => inner.decide(&batch.hits(), decided_at).await,
        Ask::Swap(refunds) => {
            let decision = inner
                .refund_and_decide(&refunds.hits(), &batch.hits(), decided_at)
                .await;
            refunds.give();
            decision
        }
    };
    let mut decision = match decision {
        Ok(decision) => decision,
        Err(error) => {
            batch.give();
            return inner.storage_failure(&error);
        }
    };
    if !decision.admitted {
        let response = reject(route, inner, &req, &batch, &decision);
        batch.give();
        return response;
    }
    let mut response = handler(req.clone(), payload).await;
    if route.groups.iter().any(|g| g.deduct_when.is_some()) {
        // Each group's `deduct_when` asked once: does this response count?
        let counts: SmallVec<[bool; 4]> = route
            .groups
            .iter()
            .map(|g| g.deduct_when.is_none_or(|deduct| deduct(&response)))
            .collect();
        let mut refunds: Hits<'_> = Hits::new();
        for (item, stats) in batch.items.iter().zip(decision.stats.iter_mut()) {
            if matches!(item.origin, Origin::Route(g) if !counts[usize::from(g)]) {
                refunds.push(batch.hit(item));
                // The headers tell what the client has left: the refunded hits are back.
                stats.remaining = stats.remaining.saturating_add(item.cost).min(stats.limit);
            }
        }
        inner.refund(&refunds, decided_at).await;
    }
    inner.add_headers(response.headers_mut(), &batch, &decision);
    batch.give();
    response
}

/// Adds the route's, the default and the application limits that apply to `req`, in that order.
fn collect(route: &Route, view: &RouteView, req: &HttpRequest, batch: &mut Batch) {
    let inner = &*view.limiter.inner;
    let compiled = route.compiled();
    let method = req.method();
    let method_index = method_index(method);
    let mut client: Option<bool> = None;
    // As in Flask-Limiter: defaults apply unless a route limit for this method overrides them.
    let mut defaults_apply = true;
    for (g, (group, compiled)) in route.groups.iter().zip(compiled.groups.iter()).enumerate() {
        if group
            .methods
            .is_some_and(|methods| !methods.contains(&method.as_str()))
        {
            continue;
        }
        // A dynamic string that does not parse overrides nothing: as in Flask-Limiter, the
        // route falls back to the default limits rather than to no limit at all.
        let defaults_before = defaults_apply;
        if group.override_defaults {
            defaults_apply = false;
        }
        if group.exempt_when.is_some_and(|exempt| exempt(req)) {
            continue;
        }
        let cost = match group.cost {
            Cost::Fixed(cost) => cost,
            Cost::Dynamic(f) => f(req),
        };
        if cost == 0 {
            continue;
        }
        let own_key = match group.key {
            Some(key) => {
                batch.scratch.clear();
                if !key(req, &mut batch.scratch) {
                    tracing::debug!(
                        route = route.name,
                        "key function gave no key; this limit is skipped"
                    );
                    continue;
                }
                true
            }
            None => {
                if !*client.get_or_insert_with(|| inner.client_key(req, batch)) {
                    continue;
                }
                false
            }
        };
        let strategy = group.strategy.unwrap_or(inner.strategy);
        let push = |rates: &[CompiledRate], batch: &mut Batch| {
            for rate in rates {
                let suffix = rate.suffix(&compiled.scope, method, method_index);
                let origin = Origin::Route(g as u16);
                batch.push(
                    &inner.prefix,
                    own_key,
                    &suffix,
                    rate.rate,
                    strategy,
                    cost,
                    origin,
                );
            }
        };
        match group.dynamic {
            None => push(&compiled.rates, batch),
            Some(dynamic) => {
                if let Some(text) = dynamic(req) {
                    match compiled.dynamic_rates(route.name, &text, group.per_method) {
                        Some(rates) => push(&rates, batch),
                        None => defaults_apply = defaults_before,
                    }
                }
            }
        }
    }
    let defaults = defaults_apply && !route.exempt.defaults && !inner.defaults.is_empty();
    let application = !route.exempt.application && !inner.application.is_empty();
    if !(defaults || application) || !*client.get_or_insert_with(|| inner.client_key(req, batch)) {
        return;
    }
    if defaults {
        // Default limits count per route: scoped to the pattern this request matched. A
        // static route's suffixes were computed when the middleware learned it.
        let routes = view.routes();
        let learned = routes.static_paths.get(routing_path(req));
        let suffixes = match learned {
            Some(entry) => Some(Arc::clone(&entry.default_suffixes)),
            None => req
                .match_pattern()
                .map(|pattern| default_suffixes(&pattern, &inner.defaults)),
        };
        drop(routes);
        for (i, (rate, suffix)) in inner
            .defaults
            .iter()
            .zip(suffixes.iter().flat_map(|s| s.iter()))
            .enumerate()
        {
            batch.push(
                &inner.prefix,
                false,
                suffix,
                *rate,
                inner.strategy,
                1,
                Origin::Default(i as u16),
            );
        }
    }
    if application {
        inner.push_application(batch);
    }
}

/// What the middleware charged `req` before routing (see [`Before::Charged`]), to give back:
/// the application limits, and with `defaults` the default limits of the pattern it found.
/// Its decision was made moments ago: dated now, the refund finds its bucket unless a
/// decision on the same key rolled it meanwhile.
fn middleware_charge(inner: &Inner, req: &HttpRequest, defaults: bool) -> Box<Batch> {
    let mut batch = Batch::take();
    if inner.client_key(req, &mut batch) {
        let suffixes = defaults
            .then(|| req.resource_map().match_pattern(routing_path(req)))
            .flatten()
            .map(|pattern| default_suffixes(&pattern, &inner.defaults));
        inner.push_app_and_defaults(&mut batch, suffixes.as_deref());
    }
    batch
}

fn missing_limiter(route: &Route) -> HttpResponse {
    static LOGGED: std::sync::Once = std::sync::Once::new();
    LOGGED.call_once(|| {
        tracing::error!(
            handler = route.name,
            "a #[limit]/#[exempt] handler ran in an app without a Limiter: answering 500. \
             Build one with limiter_actix::Limiter::builder()...build() and register it with \
             App::new().wrap(limiter)"
        );
    });
    HttpResponse::InternalServerError().body("rate limiter not configured")
}
