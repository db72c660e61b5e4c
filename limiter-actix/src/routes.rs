//! The route table of DESIGN §5: what the middleware knows about each (method, pattern).
//!
//! actix runs app middleware before routing and has no app-wide hook between routing and the
//! handler, so the middleware learns, from what `#[limit]`/`#[exempt]` wrappers mark in the
//! request extensions, which routes decide for themselves. Reads happen on every request and
//! must cost nothing: each worker keeps its own snapshot (an `Arc` it owns) and only compares
//! an epoch counter; writes (a route seen for the first time, or behaving differently) copy
//! the table under a mutex and bump the epoch.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::HttpRequest;
use actix_web::http::Method;
use hashbrown::HashMap;
use limiter_core::Rate;
use limiter_core::keys::key_suffix;
use parking_lot::Mutex;

/// Standard methods get a slot each (and their own `per_method` key suffixes).
pub(crate) const METHODS: usize = 9;
/// The route table's slots: one per standard method, and one shared by every extension
/// method (WebDAV's `PROPFIND`...). Without it such requests were never learned: charged
/// before routing on every request, a decorated route cost two store calls each and an
/// `#[exempt]` one refused a client over its application limits. Two extension methods
/// answered differently on one pattern make its slot ambiguous, which is safe.
pub(crate) const ROUTE_SLOTS: usize = METHODS + 1;

/// The path as actix's router matches it: percent-decoded (except `%2F`, `%2B`, `%25`), so
/// that `/%61` finds the route `/a`, as the router will. The raw `req.path()` would send such
/// a request to no route at all, charged the application limits only.
pub(crate) fn routing_path(req: &HttpRequest) -> &str {
    req.match_info().as_str()
}

pub(crate) fn method_index(method: &Method) -> Option<usize> {
    Some(match *method {
        Method::GET => 0,
        Method::POST => 1,
        Method::PUT => 2,
        Method::DELETE => 3,
        Method::PATCH => 4,
        Method::HEAD => 5,
        Method::OPTIONS => 6,
        Method::CONNECT => 7,
        Method::TRACE => 8,
        _ => return None,
    })
}

pub(crate) const METHOD_NAMES: [&str; METHODS] = [
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE",
];

/// The route table's slot of `method` (see [`ROUTE_SLOTS`]).
pub(crate) fn route_slot(method: &Method) -> usize {
    method_index(method).unwrap_or(METHODS)
}

/// The name of a route table slot, for logs.
fn slot_name(slot: usize) -> &'static str {
    METHOD_NAMES
        .get(slot)
        .copied()
        .unwrap_or("(extension method)")
}

/// What the middleware does for a route.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum RouteState {
    /// Never seen: charge application + default limits before routing (never under-protect).
    #[default]
    Unknown,
    /// Seen without a wrapper: charge application + default limits before routing.
    Plain,
    /// Seen with a wrapper: let the wrapper decide everything in one call.
    Deferred,
    /// Seen with a wrapper, and seen failing before it (an inner middleware answered `Err`):
    /// the wrapper still decides, but the request is keyed before routing, refused there if
    /// the client is already over its application limits, and charged those limits if it
    /// fails again. (The default limits are the wrapper's to apply: they may not be the
    /// route's.)
    Fallible,
    /// Seen both ways (overlapping patterns, guards): charge before routing; a wrapper that
    /// runs gives that charge back as it decides, in the same store call.
    Ambiguous,
    /// Seen answered without reaching a route: a 404 (the pattern's handlers are guarded for
    /// other methods or headers). Charge the application limits only, as for a path no
    /// pattern matches.
    Unrouted,
}

/// What the middleware charges a request before routing, from least to most.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Charge {
    Nothing,
    Application,
    /// The application and the default limits.
    All,
}

impl RouteState {
    /// The state after a response showed the route `seen` (`Deferred`: a wrapper ran;
    /// `Plain`: no wrapper; `Unrouted`: no route).
    pub(crate) fn observe(self, seen: RouteState) -> RouteState {
        match self {
            RouteState::Unknown => seen,
            RouteState::Fallible if seen == RouteState::Deferred => RouteState::Fallible,
            same if same == seen => same,
            _ => RouteState::Ambiguous,
        }
    }

    /// What the middleware charges before routing a request of a route in this state (a
    /// [`RouteState::Fallible`] route's are only keyed).
    pub(crate) fn charged_before_routing(self) -> Charge {
        match self {
            RouteState::Unknown | RouteState::Plain | RouteState::Ambiguous => Charge::All,
            RouteState::Unrouted => Charge::Application,
            RouteState::Deferred | RouteState::Fallible => Charge::Nothing,
        }
    }

    /// After a request failed before reaching the route's handler.
    fn observe_failure(self) -> RouteState {
        match self {
            RouteState::Deferred => RouteState::Fallible,
            other => other,
        }
    }
}

/// One pattern's states per method, and the key suffixes of the default limits scoped to it.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) states: [RouteState; ROUTE_SLOTS],
    pub(crate) default_suffixes: Arc<[Box<str>]>,
}

/// Static routes are keyed by path (so a request finds them without asking actix's resource
/// map), other routes by their pattern.
#[derive(Clone, Debug, Default)]
pub(crate) struct Routes {
    pub(crate) static_paths: HashMap<Box<str>, Entry>,
    pub(crate) patterns: HashMap<Box<str>, Entry>,
}

#[derive(Debug, Default)]
pub(crate) struct RouteTable {
    current: Mutex<Arc<Routes>>,
    epoch: AtomicU64,
}

/// Whether a learned key is a static path or a dynamic pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyKind {
    StaticPath,
    Pattern,
}

pub(crate) fn default_suffixes(pattern: &str, defaults: &[Rate]) -> Arc<[Box<str>]> {
    defaults
        .iter()
        .map(|rate| key_suffix(pattern, rate).into_boxed_str())
        .collect()
}

impl RouteTable {
    #[inline]
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub(crate) fn snapshot(&self) -> (u64, Arc<Routes>) {
        let current = self.current.lock();
        (self.epoch(), current.clone())
    }

    /// Records one response, which showed the route `seen` (see [`RouteState::observe`]);
    /// returns the route's new state.
    pub(crate) fn record(
        &self,
        kind: KeyKind,
        key: &str,
        method: usize,
        seen: RouteState,
        defaults: &[Rate],
    ) -> RouteState {
        self.update(kind, key, method, defaults, |state| state.observe(seen))
    }

    /// Records a request that failed (an `Err`) before reaching the route's handler.
    pub(crate) fn record_failure(
        &self,
        kind: KeyKind,
        key: &str,
        method: usize,
        defaults: &[Rate],
    ) {
        self.update(kind, key, method, defaults, RouteState::observe_failure);
    }

    fn update(
        &self,
        kind: KeyKind,
        key: &str,
        method: usize,
        defaults: &[Rate],
        observe: impl FnOnce(RouteState) -> RouteState,
    ) -> RouteState {
        let mut current = self.current.lock();
        let map = |routes: &Routes| match kind {
            KeyKind::StaticPath => routes.static_paths.get(key).map(|e| e.states[method]),
            KeyKind::Pattern => routes.patterns.get(key).map(|e| e.states[method]),
        };
        let before = map(&current).unwrap_or_default();
        let after = observe(before);
        if after == before {
            return after;
        }
        let routes = Arc::make_mut(&mut current);
        let table = match kind {
            KeyKind::StaticPath => &mut routes.static_paths,
            KeyKind::Pattern => &mut routes.patterns,
        };
        let entry = table.entry(key.into()).or_insert_with(|| Entry {
            states: [RouteState::Unknown; ROUTE_SLOTS],
            default_suffixes: default_suffixes(key, defaults),
        });
        entry.states[method] = after;
        if after == RouteState::Ambiguous {
            tracing::debug!(
                route = key,
                method = slot_name(method),
                "route seen with and without a #[limit]/#[exempt] wrapper; charging it before routing from now on"
            );
        }
        if after == RouteState::Fallible {
            tracing::debug!(
                route = key,
                method = slot_name(method),
                "a request failed before the route's #[limit]/#[exempt] wrapper (an inner middleware's Err); keying the route before routing from now on"
            );
        }
        self.epoch.fetch_add(1, Ordering::AcqRel);
        after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_settle_or_turn_ambiguous() {
        use RouteState::{Ambiguous, Deferred, Fallible, Plain, Unknown, Unrouted};
        assert_eq!(Unknown.observe(Plain), Plain);
        assert_eq!(Unknown.observe(Deferred), Deferred);
        assert_eq!(Unknown.observe(Unrouted), Unrouted);
        assert_eq!(Plain.observe(Plain), Plain);
        assert_eq!(Plain.observe(Deferred), Ambiguous);
        assert_eq!(Plain.observe(Unrouted), Ambiguous);
        assert_eq!(Deferred.observe(Plain), Ambiguous);
        assert_eq!(Unrouted.observe(Unrouted), Unrouted);
        assert_eq!(Unrouted.observe(Deferred), Ambiguous);
        assert_eq!(Ambiguous.observe(Deferred), Ambiguous);
        assert_eq!(Deferred.observe_failure(), Fallible);
        assert_eq!(Fallible.observe(Deferred), Fallible);
        assert_eq!(Fallible.observe(Plain), Ambiguous);
        assert_eq!(Plain.observe_failure(), Plain);
    }

    #[test]
    fn record_bumps_epoch_only_on_change() {
        let table = RouteTable::default();
        let e0 = table.epoch();
        table.record(KeyKind::StaticPath, "/a", 0, RouteState::Deferred, &[]);
        let e1 = table.epoch();
        assert!(e1 > e0);
        table.record(KeyKind::StaticPath, "/a", 0, RouteState::Deferred, &[]);
        assert_eq!(table.epoch(), e1);
        let (_, routes) = table.snapshot();
        assert_eq!(routes.static_paths["/a"].states[0], RouteState::Deferred);
    }
}
