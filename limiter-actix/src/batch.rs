//! The limits one request is charged, with their counter keys in one reusable buffer.
//!
//! Batches are pooled per thread (actix workers are single-threaded), so building keys costs
//! no allocation once a worker has warmed up.

use std::cell::RefCell;

use limiter_core::keys::push_client_tag;
use limiter_core::{Hit, Rate, Strategy};
use smallvec::SmallVec;

use crate::limiter::{LimitKind, Shown};

/// Where a limit comes from; the order of a decision is route, default, application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The n-th `#[limit]` attribute of the handler.
    Route(u16),
    /// The n-th default limit.
    Default(u16),
    /// The n-th application limit.
    Application(u16),
}

impl Origin {
    /// Where the limit was declared, without its place among its kind.
    pub(crate) fn kind(self) -> LimitKind {
        match self {
            Origin::Route(_) => LimitKind::Route,
            Origin::Default(_) => LimitKind::Default,
            Origin::Application(_) => LimitKind::Application,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Item {
    start: u32,
    end: u32,
    pub(crate) rate: Rate,
    pub(crate) strategy: Strategy,
    pub(crate) cost: u64,
    pub(crate) origin: Origin,
}

/// Hits, inline for up to four limits.
pub(crate) type Hits<'a> = SmallVec<[Hit<'a>; 4]>;

#[derive(Debug, Default)]
pub(crate) struct Batch {
    keys: String,
    /// The `{client}` part of the counter keys (see `limiter_core::keys`) for the limiter's
    /// key function, rendered once per request and copied into each key.
    pub(crate) client_tag: String,
    /// Scratch space for a client key before it is rendered (a limit's own key function's).
    pub(crate) scratch: String,
    pub(crate) items: SmallVec<[Item; 8]>,
    /// What the response's headers show, kept while the handler runs.
    pub(crate) shown: Option<Shown>,
}

const POOL_CAP: usize = 256;

// Boxes on purpose: handing out a pointer is what makes take/give and the moves into
// futures cheap.
thread_local! {
    #[allow(clippy::vec_box)]
    static POOL: RefCell<Vec<Box<Batch>>> = const { RefCell::new(Vec::new()) };
}

impl Batch {
    /// A cleared batch. Boxed, so that moving it into futures copies a pointer, not the
    /// inline storage; the boxes are reused.
    pub(crate) fn take() -> Box<Batch> {
        POOL.with(|pool| pool.borrow_mut().pop())
            .unwrap_or_default()
    }

    pub(crate) fn give(mut self: Box<Self>) {
        self.keys.clear();
        self.client_tag.clear();
        self.scratch.clear();
        self.items.clear();
        self.shown = None;
        POOL.with(|pool| {
            let mut pool = pool.borrow_mut();
            if pool.len() < POOL_CAP {
                pool.push(self);
            }
        });
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Adds a limit keyed by the limiter's client key, or with `own_key` by the key in
    /// `scratch`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn push(
        &mut self,
        prefix: &str,
        own_key: bool,
        suffix: &str,
        rate: Rate,
        strategy: Strategy,
        cost: u64,
        origin: Origin,
    ) {
        let start = self.keys.len();
        self.keys.push_str(prefix);
        if own_key {
            push_client_tag(&mut self.keys, &self.scratch);
        } else {
            self.keys.push_str(&self.client_tag);
        }
        self.keys.push_str(suffix);
        self.items.push(Item {
            start: start as u32,
            end: self.keys.len() as u32,
            rate,
            strategy,
            cost,
            origin,
        });
    }

    pub(crate) fn key(&self, item: &Item) -> &str {
        &self.keys[item.start as usize..item.end as usize]
    }

    pub(crate) fn hit(&self, item: &Item) -> Hit<'_> {
        Hit {
            key: self.key(item),
            rate: item.rate,
            strategy: item.strategy,
            cost: item.cost,
        }
    }

    pub(crate) fn hits(&self) -> Hits<'_> {
        self.items.iter().map(|item| self.hit(item)).collect()
    }

    /// `f` of the hits, on the stack for the usual one to three limits: building a `SmallVec`
    /// and moving it out cost more than the rest of the batch's bookkeeping.
    #[inline]
    pub(crate) fn with_hits<R>(&self, f: impl FnOnce(&[Hit<'_>]) -> R) -> R {
        match self.items.as_slice() {
            [a] => f(&[self.hit(a)]),
            [a, b] => f(&[self.hit(a), self.hit(b)]),
            [a, b, c] => f(&[self.hit(a), self.hit(b), self.hit(c)]),
            _ => f(&self.hits()),
        }
    }
}
