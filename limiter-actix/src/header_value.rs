//! Numeric header values without an allocation each.
//!
//! `HeaderValue::from(u64)` allocates a buffer per value, and the response head frees it when
//! actix reuses the head: two allocator calls per header, three headers per request. Here the
//! digits go into one per-thread buffer and each value shares it (a reference count), so once
//! a worker has warmed up, the buffer is reclaimed in place and no allocator call remains.
//! The limit and the reset time repeat from request to request, so the last of each is kept
//! and cloned (a reference count) while it stays the same.

use std::cell::RefCell;

use actix_web::http::header::HeaderValue;
use bytes::BytesMut;

/// Room for this many values before the buffer is reclaimed or replaced.
const ARENA_BYTES: usize = 4096;
/// The longest decimal u64.
const MAX_DIGITS: usize = 20;

thread_local! {
    static ARENA: RefCell<BytesMut> = RefCell::new(BytesMut::with_capacity(ARENA_BYTES));
    static RECENT: RefCell<[(u64, HeaderValue); 2]> = const {
        RefCell::new([(0, HeaderValue::from_static("0")), (0, HeaderValue::from_static("0"))])
    };
}

/// Values that repeat across requests, each with its last value kept.
#[derive(Clone, Copy)]
pub(crate) enum Repeating {
    /// The amount of the limit shown.
    Limit = 0,
    /// When its window resets.
    Reset = 1,
}

/// `n` in decimal as a header value, the same value as last time for `kind` cloned.
pub(crate) fn repeating(kind: Repeating, n: u64) -> HeaderValue {
    RECENT.with(|recent| {
        let (last, value) = &mut recent.borrow_mut()[kind as usize];
        if *last != n {
            *value = decimal(n);
            *last = n;
        }
        value.clone()
    })
}

/// `n` in decimal as a header value.
pub(crate) fn decimal(n: u64) -> HeaderValue {
    let mut digits = itoa::Buffer::new();
    let text = digits.format(n).as_bytes();
    let bytes = ARENA.with(|arena| {
        let mut arena = arena.borrow_mut();
        if arena.capacity() - arena.len() < MAX_DIGITS {
            // Reuses the same buffer when every value cut from it has been dropped.
            arena.reserve(ARENA_BYTES);
        }
        arena.extend_from_slice(text);
        arena.split().freeze()
    });
    // SAFETY: ASCII digits are valid header value bytes. (The checked constructor, which
    // validates them again, was a third of this function's instructions.)
    unsafe { HeaderValue::from_maybe_shared_unchecked(bytes) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_back_and_survive_the_buffer_being_reused() {
        let values: Vec<HeaderValue> = (0..2 * ARENA_BYTES as u64).map(decimal).collect();
        for (n, value) in values.iter().enumerate() {
            assert_eq!(value.to_str().unwrap(), n.to_string());
        }
        drop(values);
        // Once the old values are gone the buffer is reused; new values are still right.
        for n in [0, 7, u64::MAX, 1_000_000_000] {
            assert_eq!(decimal(n).to_str().unwrap(), n.to_string());
        }
    }

    #[test]
    fn repeating_values_follow_their_changes() {
        for kind in [Repeating::Limit, Repeating::Reset] {
            for n in [0, 0, 5, 5, 6, 0, u64::MAX] {
                assert_eq!(repeating(kind, n).to_str().unwrap(), n.to_string());
            }
        }
        assert_eq!(repeating(Repeating::Limit, 10).to_str().unwrap(), "10");
        assert_eq!(repeating(Repeating::Reset, 20).to_str().unwrap(), "20");
        assert_eq!(repeating(Repeating::Limit, 10).to_str().unwrap(), "10");
    }
}
