//! The app-wide middleware: charges application and default limits before routing for routes
//! that do not decide for themselves, learns which routes do, and adds to every request the app
//! data that `#[limit]` wrappers find: the worker's [`RouteView`], which carries the
//! [`Limiter`] (the `Limiter` itself is app data too, for handlers that want it).

use std::borrow::Cow;
use std::cell::{Cell, Ref, RefCell};
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Extensions, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::StatusCode;
use actix_web::rt::task::JoinHandle;
use actix_web::{Error, HttpMessage, HttpResponse};
use limiter_core::Decision;
use pin_project_lite::pin_project;

use crate::batch::Batch;
use crate::limiter::{Headers, Inner, Limiter, Shown};
use crate::routes::{
    Charge, KeyKind, RouteState, Routes, default_suffixes, route_slot, routing_path,
};

/// Put in the request extensions by every `#[limit]`/`#[exempt]` wrapper: "this route decides
/// for itself". A zero-sized value: inserting it allocates nothing.
pub(crate) struct Handled;

/// Put in the request extensions of a [`Before::Keyed`] request, shared with the middleware's
/// [`Pending`]: its wrapper sets it when it runs, so that a failure after the handler (which
/// leaves the middleware no request to look at) is known to be charged already.
pub(crate) struct WrapperRan(pub(crate) Rc<Cell<bool>>);

/// What the middleware did with a request before routing, told to the route's wrapper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Before {
    /// Nothing the wrapper must know about.
    Passed = 0,
    /// Charged it the application and default limits: a wrapper gives that charge back
    /// before deciding itself.
    Charged = 1,
    /// Keyed its application limits, to charge them should the request fail before its
    /// wrapper ([`RouteState::Fallible`]): a wrapper that runs says so ([`WrapperRan`]).
    Keyed = 2,
    /// Charged it the application limits only ([`RouteState::Unrouted`]), which a wrapper
    /// gives back.
    ChargedApplication = 3,
}

/// The app data the middleware gives every request: its worker's [`RouteView`] and what it did
/// before routing. App data, not an extension: each worker has one shared container per
/// [`Before`], where an extension would be a table insertion (and often its allocation) per
/// request. One lookup finds both, from the same limiter: behind limiters on both an App and
/// a scope, a wrapper reads the innermost one's.
pub(crate) struct Visit {
    pub(crate) view: Rc<RouteView>,
    pub(crate) before: Before,
}

/// Per-worker state (actix builds one middleware per worker thread).
struct Worker {
    limiter: Limiter,
    /// The app data a request gets, by what was done with it before routing: the [`Limiter`]
    /// and a [`Visit`]. One container per request, since each one added costs its push and
    /// every later `app_data` lookup (a handler's `web::Data` among them) a table probe.
    data: [Rc<Extensions>; 4],
    routes: Rc<RouteView>,
}

impl Worker {
    fn data(&self, before: Before) -> Rc<Extensions> {
        Rc::clone(&self.data[before as usize])
    }
}

/// A worker's copy of the learned route table, shared by its middleware and (as app data) the
/// `#[limit]` wrappers of its requests.
pub(crate) struct RouteView {
    pub(crate) limiter: Limiter,
    snapshot: RefCell<(u64, Arc<Routes>)>,
}

impl RouteView {
    /// The epoch of the route table this worker reads now.
    fn epoch(&self) -> u64 {
        self.snapshot.borrow().0
    }

    /// The path of the static route whose entry is at `entry` in the table of `epoch`, if
    /// this worker still reads that table. Addresses are only compared, never followed.
    fn static_path_of(&self, epoch: u64, entry: usize) -> Option<Box<str>> {
        let snapshot = self.snapshot.borrow();
        if snapshot.0 != epoch {
            return None;
        }
        let (path, _) = snapshot
            .1
            .static_paths
            .iter()
            .find(|(_, e)| std::ptr::addr_of!(**e) as usize == entry)?;
        Some(path.clone())
    }

    /// The route table, refreshed only when another worker changed it.
    pub(crate) fn routes(&self) -> Ref<'_, Routes> {
        let table = &self.limiter.inner.routes;
        let epoch = table.epoch();
        if self.snapshot.borrow().0 != epoch {
            // Not refreshed while another borrow is alive: the older copy stays correct, only
            // less complete.
            if let Ok(mut snapshot) = self.snapshot.try_borrow_mut() {
                *snapshot = table.snapshot();
            }
        }
        Ref::map(self.snapshot.borrow(), |(_, routes)| &**routes)
    }
}

/// The middleware service made by [`Limiter`]'s `Transform`: what `App::wrap(limiter)` puts
/// in front of the app. Its calls answer a [`LimiterFuture`].
///
/// ```
/// use actix_web::dev::{fn_service, Service, ServiceRequest, Transform};
/// use actix_web::{test, Error, HttpResponse};
/// use limiter_actix::{Limiter, LimiterFuture, LimiterMiddleware};
///
/// # #[actix_web::main]
/// # async fn main() {
/// let limiter = Limiter::builder().application_limits("1 per minute").build().unwrap();
/// let ok = fn_service(|req: ServiceRequest| async {
///     Ok::<_, Error>(req.into_response(HttpResponse::Ok().finish()))
/// });
/// let service: LimiterMiddleware<_> = limiter.new_transform(ok).await.unwrap();
/// let call = || {
///     let req = test::TestRequest::get().peer_addr("192.0.2.1:4000".parse().unwrap());
///     let answer: LimiterFuture<_, _> = service.call(req.to_srv_request());
///     answer
/// };
/// assert_eq!(call().await.unwrap().status(), 200);
/// assert_eq!(call().await.unwrap().status(), 429);
/// # }
/// ```
pub struct LimiterMiddleware<S> {
    service: Rc<S>,
    worker: Rc<Worker>,
}

impl<S, B> Transform<S, ServiceRequest> for Limiter
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = LimiterMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        let routes = Rc::new(RouteView {
            limiter: self.clone(),
            snapshot: RefCell::new(self.inner.routes.snapshot()),
        });
        let data = |before| {
            let mut data = Extensions::new();
            data.insert(self.clone());
            data.insert(Visit {
                view: Rc::clone(&routes),
                before,
            });
            Rc::new(data)
        };
        ready(Ok(LimiterMiddleware {
            service: Rc::new(service),
            worker: Rc::new(Worker {
                limiter: self.clone(),
                data: [
                    Before::Passed,
                    Before::Charged,
                    Before::Keyed,
                    Before::ChargedApplication,
                ]
                .map(data),
                routes,
            }),
        }))
    }
}

/// What to learn from the response.
enum Learn {
    Nothing,
    /// The path matched no route before routing: a 404, unless a middleware inside the
    /// limiter rewrites paths (see [`warn_rewritten_path`]).
    Unmatched,
    Static {
        method: usize,
        prior: RouteState,
        /// The epoch of the table holding the route's entry, and where the entry is: enough
        /// to find the path again should the inner service fail (see [`Post::failed`])
        /// without copying it. None for a path not in the table of static paths yet.
        entry: Option<(u64, usize)>,
    },
    Pattern {
        pattern: String,
        method: usize,
        prior: RouteState,
    },
}

impl Learn {
    /// What the table knew of the route before this request, if it has one.
    fn prior(&self) -> Option<RouteState> {
        match self {
            Learn::Nothing | Learn::Unmatched => None,
            Learn::Static { prior, .. } | Learn::Pattern { prior, .. } => Some(*prior),
        }
    }
}

/// Work left for after the inner service answered.
pub(crate) struct Post {
    worker: Rc<Worker>,
    learn: Learn,
    /// With headers on: the charged batch, with what its headers show.
    headers: Option<Box<Batch>>,
    /// Boxed: rare, and the response future, which holds it, is copied.
    pending: Option<Box<Pending>>,
}

/// On a [`RouteState::Fallible`] route: the application limits, keyed before routing and
/// charged only if the request fails before its wrapper, which says when it ran.
struct Pending {
    batch: Box<Batch>,
    wrapper_ran: Rc<Cell<bool>>,
}

impl Post {
    /// The inner service failed with an error instead of a response: on a route that decides
    /// for itself, the request never reached its wrapper, and an inner middleware
    /// (authentication, say) refused it with an `Err`. A [`RouteState::Fallible`] route
    /// charges what it keyed before routing: on Redis the returned task, which the error
    /// waits for, so that the client's next request already finds it counted. A route not
    /// known to fail yet has nothing left to key the request on, so this one stays
    /// uncharged, and the route becomes fallible.
    fn failed(self) -> Option<JoinHandle<()>> {
        let limiter = &self.worker.limiter;
        let inner = &limiter.inner;
        // An error after the wrapper ran (an inner middleware turning its response into an
        // `Err`) was charged by the wrapper already.
        let charge = self.pending.and_then(|pending| {
            let Pending { batch, wrapper_ran } = *pending;
            if wrapper_ran.get() {
                batch.give();
                return None;
            }
            settle_batch(limiter, batch, inner.clock.now(), false)
        });
        let route = match &self.learn {
            Learn::Static {
                method,
                prior: RouteState::Deferred,
                entry: Some((epoch, entry)),
            } => self
                .worker
                .routes
                .static_path_of(*epoch, *entry)
                .map(|path| (KeyKind::StaticPath, Cow::Owned(path.into_string()), *method)),
            Learn::Pattern {
                pattern,
                method,
                prior: RouteState::Deferred,
            } => Some((KeyKind::Pattern, Cow::Borrowed(pattern.as_str()), *method)),
            _ => None,
        };
        if let Some((kind, key, method)) = route {
            inner
                .routes
                .record_failure(kind, &key, method, &inner.defaults);
        }
        if let Some(batch) = self.headers {
            batch.give();
        }
        charge
    }

    fn finish<B>(self, res: &mut ServiceResponse<B>) {
        // Handled by a wrapper of this limiter's: with another limiter inside this one (on a
        // scope), the innermost gives the wrappers their view, and the route is plain here.
        let handled = res.request().extensions().contains::<Handled>()
            && res
                .request()
                .app_data::<Visit>()
                .is_some_and(|visit| Rc::ptr_eq(&visit.view, &self.worker.routes));
        if !handled && matches!(self.learn, Learn::Unmatched) {
            warn_rewritten_path(&self.worker.limiter.inner, res.request());
        }
        let seen = if handled {
            RouteState::Deferred
        } else if unrouted(res) {
            RouteState::Unrouted
        } else {
            RouteState::Plain
        };
        learn_route(&self.worker.limiter, &self.learn, res.request(), seen);
        if let Some(pending) = self.pending {
            // The wrapper decided (or `learn_route` charged a response without it).
            pending.batch.give();
        }
        let inner = &self.worker.limiter.inner;
        if let Some(batch) = self.headers {
            // A wrapper that ran set the headers of its own, complete decision.
            if let Some(shown) = batch.shown.as_ref().filter(|_| !handled) {
                inner.add_shown(res.headers_mut(), &batch, shown);
            }
            batch.give();
        }
    }
}

/// Whether a response that no wrapper made came without reaching a route: a 404 from a
/// default service (the router matched no resource, so part of the path is left unmatched;
/// a handler's own 404 leaves none). A 405 is not: a resource's and a handler's own look
/// alike, and taking a handler's for no route would stop charging its route's defaults.
fn unrouted<B>(res: &ServiceResponse<B>) -> bool {
    res.status() == StatusCode::NOT_FOUND && !res.request().match_info().unprocessed().is_empty()
}

/// Warns, once per limiter, that a request whose path matched no route before routing
/// reached a plain route all the same: a middleware inside the limiter rewrote its path
/// (actix's `NormalizePath`, say), and the limiter, which finds a route's default limits
/// before routing, charged it the application limits only. Nothing can be charged then that
/// would refuse the client; the fix is the order of the `wrap` calls.
fn warn_rewritten_path(inner: &Inner, req: &actix_web::HttpRequest) {
    // A request the router matched to a resource has no path left unmatched; a default
    // service's (a 404 flood's) has, and is not looked into further.
    if inner.rewrite_warned.load(Ordering::Relaxed) || !req.match_info().unprocessed().is_empty() {
        return;
    }
    // The resource map walked again, for the route's name.
    let Some(pattern) = req.match_pattern() else {
        return;
    };
    if inner.rewrite_warned.swap(true, Ordering::Relaxed) {
        return;
    }
    tracing::warn!(
        %pattern,
        "a request reached route {pattern} by a path that matched no route when the Limiter \
         saw it, so it was not charged that route's default limits: register path-rewriting \
         middleware (NormalizePath) outside the Limiter, `.wrap(limiter).wrap(NormalizePath::trim())`"
    );
}

/// Settles what a response showed about its route (`seen`, see [`RouteState::observe`]):
/// the request is charged what it should have been before routing, and the table learns
/// what changed.
fn learn_route(limiter: &Limiter, learn: &Learn, req: &actix_web::HttpRequest, seen: RouteState) {
    let inner = &limiter.inner;
    let (kind, pattern, method, prior) = match learn {
        Learn::Nothing | Learn::Unmatched => return,
        Learn::Static { method, prior, .. } => (KeyKind::StaticPath, None, *method, *prior),
        Learn::Pattern {
            pattern,
            method,
            prior,
        } => (KeyKind::Pattern, Some(pattern.as_str()), *method, *prior),
    };
    // Nearly every response confirms what the table knows.
    if seen == prior {
        return;
    }
    let charged = prior.charged_before_routing();
    // A wrapper that ran settled the charge itself.
    let owed = match seen {
        RouteState::Deferred => charged,
        seen => seen.charged_before_routing(),
    };
    let learned = prior.observe(seen) != prior;
    // Checked before the path is read.
    if owed == charged && !learned {
        return;
    }
    let key = pattern.unwrap_or_else(|| routing_path(req));
    if owed != charged {
        settle_late(limiter, req, key, charged, owed);
    }
    if learned {
        inner
            .routes
            .record(kind, key, method, seen, &inner.defaults);
    }
}

/// A request was charged `charged` before routing where its response showed it owed `owed`
/// (a route the table did not know as it turned out to be): charge the difference now, or
/// give it back, to keep the counts exact.
fn settle_late(
    limiter: &Limiter,
    req: &actix_web::HttpRequest,
    pattern: &str,
    charged: Charge,
    owed: Charge,
) {
    let inner = &limiter.inner;
    let mut batch = Batch::take();
    if !inner.client_key(req, &mut batch) {
        batch.give();
        return;
    }
    let (less, more) = (charged.min(owed), charged.max(owed));
    if more == Charge::All {
        inner.push_defaults(&mut batch, &default_suffixes(pattern, &inner.defaults));
    }
    if less == Charge::Nothing {
        inner.push_application(&mut batch);
    }
    // The response is ready: it does not wait for the charge.
    drop(settle_batch(
        limiter,
        batch,
        inner.clock.now(),
        owed < charged,
    ));
}

/// Charges `batch`, whose request was let through uncharged (or, with `refund`, gives back
/// what it was charged): on the memory store at once, on Redis in a task of its own
/// (returned, for a caller that waits), which completes even if the request's future is
/// dropped.
fn settle_batch(
    limiter: &Limiter,
    batch: Box<Batch>,
    now: limiter_core::Timestamp,
    refund: bool,
) -> Option<JoinHandle<()>> {
    let inner = &limiter.inner;
    let settled = if refund {
        batch.with_hits(|hits| inner.refund_sync(hits, now))
    } else {
        batch
            .with_hits(|hits| inner.decide_sync(hits, now))
            .is_some()
    };
    if settled {
        batch.give();
        return None;
    }
    let limiter = limiter.clone();
    Some(actix_web::rt::spawn(async move {
        let inner = &limiter.inner;
        if refund {
            inner.refund(&batch.hits(), now).await;
        } else if let Err(error) = inner.decide_remote(&batch.hits(), now).await {
            tracing::warn!(%error, "late charge of a request let through uncharged failed");
        }
        batch.give();
    }))
}

pub(crate) type BoxedResponse<B> =
    Pin<Box<dyn Future<Output = Result<ServiceResponse<EitherBody<B>>, Error>>>>;

pub use future::LimiterFuture;
use future::Projection;

mod future {
    #![allow(missing_docs)]
    use super::*;

    pin_project! {
        /// The middleware's response future: see [`LimiterMiddleware`]'s example.
        #[project = Projection]
        pub enum LimiterFuture<S, B>
        where
            S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
        {
            /// Rejected before routing.
            Done { response: Option<ServiceResponse<EitherBody<B>>> },
            /// Passed on.
            Inner { #[pin] fut: S::Future, post: Option<Post> },
            /// Deciding on a store that answers asynchronously.
            Boxed { fut: BoxedResponse<B> },
            /// The inner service failed; its error waits for the failure's charge (a task of
            /// its own, see `charge_batch`).
            Failing { charge: JoinHandle<()>, error: Option<Error> },
        }
    }
}

impl<S, B> Future for LimiterFuture<S, B>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Output = Result<ServiceResponse<EitherBody<B>>, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (charge, error) = match self.as_mut().project() {
            Projection::Done { response } => {
                return match response.take() {
                    Some(response) => Poll::Ready(Ok(response)),
                    None => Poll::Pending,
                };
            }
            Projection::Inner { fut, post } => {
                // Finished where the poll left it, and mapped on the way out: taken out of the
                // poll's result first, the response was copied twice more.
                let mut polled = fut.poll(cx);
                if let Poll::Ready(Ok(res)) = &mut polled {
                    if let Some(post) = post.take() {
                        post.finish(res);
                    }
                }
                match polled {
                    Poll::Ready(Err(error)) => match post.take().and_then(Post::failed) {
                        Some(charge) => (charge, error),
                        None => return Poll::Ready(Err(error)),
                    },
                    pending_or_response => {
                        return pending_or_response.map_ok(ServiceResponse::map_into_left_body);
                    }
                }
            }
            Projection::Boxed { fut } => return fut.as_mut().poll(cx),
            Projection::Failing { charge, error } => {
                // (Once the error is out, the finished charge is not polled again.)
                if error.is_some() && Pin::new(charge).poll(cx).is_ready() {
                    if let Some(error) = error.take() {
                        return Poll::Ready(Err(error));
                    }
                }
                return Poll::Pending;
            }
        };
        self.set(LimiterFuture::Failing {
            charge,
            error: Some(error),
        });
        self.poll(cx)
    }
}

impl<S, B> Service<ServiceRequest> for LimiterMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = LimiterFuture<S, B>;

    actix_web::dev::forward_ready!(service);

    // Every path adds one of the worker's app data containers: `decided` the one that marks
    // the request charged, or the plain one, the others.
    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        let worker = &self.worker;
        let inner = &*worker.limiter.inner;
        if !inner.enabled || inner.filtered(req.request()) {
            req.add_data_container(worker.data(Before::Passed));
            return LimiterFuture::Inner {
                fut: self.service.call(req),
                post: None,
            };
        }
        let method = route_slot(req.method());
        // Taken only for a request this middleware charges (or, on a fallible route, keys for a
        // charge should it fail): a route known to decide for itself never needs one.
        let mut pooled: Option<Box<Batch>> = None;
        // Built first and filled in place: a `Learn` built apart and moved in right away was
        // read back in wider loads than it had just been written with, a store-forwarding
        // stall.
        let mut post = Post {
            worker: Rc::clone(worker),
            learn: Learn::Nothing,
            headers: None,
            pending: None,
        };
        // Find the route and, unless it decides for itself, build the charge.
        let charge = {
            let routes = worker.routes.routes();
            let path = routing_path(req.request());
            match routes.static_paths.get(path) {
                Some(entry) => {
                    let prior = entry.states[method];
                    let charge = prior != RouteState::Deferred
                        && inner.client_key(req.request(), batch_of(&mut pooled));
                    if charge {
                        let batch = batch_of(&mut pooled);
                        push_before_routing(inner, batch, prior, &entry.default_suffixes);
                    }
                    post.learn = Learn::Static {
                        method,
                        prior,
                        entry: Some((worker.routes.epoch(), std::ptr::addr_of!(*entry) as usize)),
                    };
                    charge
                }
                None => pattern_route(inner, &req, &routes, method, &mut pooled, &mut post.learn),
            }
        };
        let batch = match pooled {
            Some(batch) if charge && !batch.is_empty() => batch,
            other => {
                if let Some(batch) = other {
                    batch.give();
                }
                req.add_data_container(worker.data(Before::Passed));
                return LimiterFuture::Inner {
                    fut: self.service.call(req),
                    post: Some(post),
                };
            }
        };
        if post.learn.prior() == Some(RouteState::Fallible) {
            req.add_data_container(worker.data(Before::Keyed));
            // The wrapper decides, unless the client is already refused.
            let refused = batch.with_hits(|hits| inner.refused_uncharged(hits, inner.clock.now()));
            return match refused {
                Some(decision) => {
                    let response = rejection(&req, batch, &decision, &post);
                    LimiterFuture::Done {
                        response: Some(answer(req, response)),
                    }
                }
                None => {
                    let wrapper_ran = Rc::new(Cell::new(false));
                    req.extensions_mut()
                        .insert(WrapperRan(Rc::clone(&wrapper_ran)));
                    post.pending = Some(Box::new(Pending { batch, wrapper_ran }));
                    LimiterFuture::Inner {
                        fut: self.service.call(req),
                        post: Some(post),
                    }
                }
            };
        }
        let mut decision = Decision::unlimited();
        let now = inner.clock.now();
        if !batch.with_hits(|hits| inner.decide_sync_into(hits, now, &mut decision)) {
            return remote(Rc::clone(&self.service), req, batch, post);
        }
        match decided(&mut req, batch, &decision, &mut post) {
            None => LimiterFuture::Inner {
                fut: self.service.call(req),
                post: Some(post),
            },
            Some(response) => LimiterFuture::Done {
                response: Some(answer(req, response)),
            },
        }
    }
}

/// The decision on a store that answers asynchronously (Redis), boxed.
fn remote<S, B>(
    service: Rc<S>,
    mut req: ServiceRequest,
    batch: Box<Batch>,
    mut post: Post,
) -> LimiterFuture<S, B>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    LimiterFuture::Boxed {
        fut: Box::pin(async move {
            let inner = &post.worker.limiter.inner;
            let decision = inner.decide_remote(&batch.hits(), inner.clock.now()).await;
            let decision = match decision {
                Ok(decision) => decision,
                Err(error) => {
                    batch.give();
                    req.add_data_container(post.worker.data(Before::Passed));
                    return Ok(answer(req, inner.storage_failure(&error)));
                }
            };
            match decided(&mut req, batch, &decision, &mut post) {
                None => match service.call(req).await {
                    Ok(mut res) => {
                        post.finish(&mut res);
                        Ok(res.map_into_left_body())
                    }
                    Err(error) => {
                        if let Some(charge) = post.failed() {
                            let _ = charge.await;
                        }
                        Err(error)
                    }
                },
                Some(response) => Ok(answer(req, response)),
            }
        }),
    }
}

/// Finds the route of a path that is not a known static path (a pattern, or none: a 404),
/// puts what to learn of it in `learn` and, unless it decides for itself, builds its charge.
fn pattern_route(
    inner: &Inner,
    req: &ServiceRequest,
    routes: &Routes,
    method: usize,
    pooled: &mut Option<Box<Batch>>,
    learn: &mut Learn,
) -> bool {
    let path = routing_path(req.request());
    match req.resource_map().match_pattern(path) {
        // No route: a 404 is charged the application limits only.
        None => {
            *learn = Learn::Unmatched;
            let charge = inner.client_key(req.request(), batch_of(pooled));
            if charge {
                inner.push_application(batch_of(pooled));
            }
            charge
        }
        Some(pattern) => {
            let entry = routes.patterns.get(pattern.as_str());
            let prior = entry.map_or(RouteState::Unknown, |entry| entry.states[method]);
            let charge =
                prior != RouteState::Deferred && inner.client_key(req.request(), batch_of(pooled));
            if charge {
                let fresh;
                let suffixes = match entry {
                    Some(entry) => &entry.default_suffixes,
                    None => {
                        fresh = default_suffixes(&pattern, &inner.defaults);
                        &fresh
                    }
                };
                push_before_routing(inner, batch_of(pooled), prior, suffixes);
            }
            *learn = if pattern == path {
                Learn::Static {
                    method,
                    prior,
                    entry: None,
                }
            } else {
                Learn::Pattern {
                    pattern,
                    method,
                    prior,
                }
            };
            charge
        }
    }
}

/// The limits a request is keyed with before routing: what its route's state charges
/// ([`RouteState::charged_before_routing`]); on a [`RouteState::Fallible`] route, which
/// charges nothing there, the application limits (its wrapper applies the default limits if
/// the route has them).
fn push_before_routing(
    inner: &Inner,
    batch: &mut Batch,
    prior: RouteState,
    default_suffixes: &[Box<str>],
) {
    if prior.charged_before_routing() == Charge::All {
        inner.push_app_and_defaults(batch, Some(default_suffixes));
    } else {
        inner.push_application(batch);
    }
}

/// The batch a charge is built in, taken from the pool on first use.
fn batch_of(pooled: &mut Option<Box<Batch>>) -> &mut Batch {
    pooled.get_or_insert_with(Batch::take)
}

/// Acts on the middleware's decision: an admitted request is marked charged and `post` keeps
/// the batch its headers show; a refused one gets its 429 (or the configured answer). Either
/// way `req` gets its app data. (`req` and `post` by reference: moved in and out, they were
/// read back in wider loads than they had just been written with, a store-forwarding stall.)
fn decided(
    req: &mut ServiceRequest,
    mut batch: Box<Batch>,
    decision: &Decision,
    post: &mut Post,
) -> Option<HttpResponse> {
    let inner = &post.worker.limiter.inner;
    if !decision.admitted {
        req.add_data_container(post.worker.data(Before::Passed));
        return Some(rejection(req, batch, decision, post));
    }
    let charged = match post.learn.prior().map(RouteState::charged_before_routing) {
        Some(Charge::Application) => Before::ChargedApplication,
        _ => Before::Charged,
    };
    req.add_data_container(post.worker.data(charged));
    if inner.headers == Headers::Off {
        batch.give();
    } else {
        batch.shown = Shown::of(decision);
        post.headers = Some(batch);
    }
    None
}

/// The 429 (or the configured answer) for a request refused before routing.
fn rejection(
    req: &ServiceRequest,
    batch: Box<Batch>,
    decision: &Decision,
    post: &Post,
) -> HttpResponse {
    let inner = &post.worker.limiter.inner;
    let response = inner.rejection(req.request(), &batch, decision, None, None);
    batch.give();
    response
}

/// `response` as the answer to `req`, which goes no further.
fn answer<B>(req: ServiceRequest, response: HttpResponse) -> ServiceResponse<EitherBody<B>> {
    let (req, _) = req.into_parts();
    ServiceResponse::new(req, response).map_into_right_body()
}
