//! Numeric header values without an allocation each.
//!
//! `HeaderValue::from(u64)` allocates a buffer per value, and the response head frees it when
//! actix reuses the head: two allocator calls per header, three headers per request. Here the
//! digits go into one per-thread buffer and each value shares it (a reference count), so once
//! a worker has warmed up, the buffer is reclaimed in place and no allocator call remains.
//! The limit and the reset time repeat from request to request, so the last of each is kept
//! and cloned (a reference count) while it stays the same.
//!
//! A number below [`SMALL`] (a limit, a remaining count, a retry delay: nearly every value but
//! the reset time) is cut from a static table instead, whose slices are cloned and dropped
//! without touching a reference count: each of those is an atomic instruction, and together
//! they were about a tenth of what the limiter added to a request.

use std::cell::RefCell;

use actix_web::http::header::HeaderValue;
use bytes::{Bytes, BytesMut};

/// Room for this many values before the buffer is reclaimed or replaced.
const ARENA_BYTES: usize = 4096;
/// The longest decimal u64.
const MAX_DIGITS: usize = 20;

thread_local! {
    // Made on first use: a thread-local with a constant initial value is read in line, where
    // one made lazily is read through a call, whose result the caller read back in wider loads
    // than it was written with (a store-forwarding stall).
    static ARENA: RefCell<Option<BytesMut>> = const { RefCell::new(None) };
    static RECENT: RefCell<[(u64, HeaderValue); 2]> = const {
        RefCell::new([(0, HeaderValue::from_static("0")), (0, HeaderValue::from_static("0"))])
    };
}

/// Numbers below this come from [`SMALL_DIGITS`].
const SMALL: u64 = 10_000;
/// The length of every number below [`SMALL`] written out: 10 of one digit, 90 of two...
const SMALL_DIGITS_LEN: usize = 10 + 90 * 2 + 900 * 3 + 9000 * 4;
/// Every number below [`SMALL`] in decimal, one after the other: `0123456789101112...9999`.
static SMALL_DIGITS: [u8; SMALL_DIGITS_LEN] = small_digits();

const fn small_digits() -> [u8; SMALL_DIGITS_LEN] {
    let mut table = [0u8; SMALL_DIGITS_LEN];
    let mut n = 0;
    let mut at = 0;
    while n < SMALL as usize {
        let (start, len) = small_slot(n);
        let mut rest = n;
        let mut i = len;
        while i > 0 {
            i -= 1;
            table[start + i] = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        at += len;
        n += 1;
    }
    assert!(at == SMALL_DIGITS_LEN);
    table
}

/// Where `n` (below [`SMALL`]) is in [`SMALL_DIGITS`], and its length.
const fn small_slot(n: usize) -> (usize, usize) {
    match n {
        0..=9 => (n, 1),
        10..=99 => (10 + (n - 10) * 2, 2),
        100..=999 => (190 + (n - 100) * 3, 3),
        _ => (2890 + (n - 1000) * 4, 4),
    }
}

/// `n` as a header value cut from [`SMALL_DIGITS`], if it is there.
fn small(n: u64) -> Option<HeaderValue> {
    if n >= SMALL {
        return None;
    }
    let (start, len) = small_slot(n as usize);
    let digits = Bytes::from_static(&SMALL_DIGITS[start..start + len]);
    // SAFETY: ASCII digits are valid header value bytes.
    Some(unsafe { HeaderValue::from_maybe_shared_unchecked(digits) })
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
    if let Some(value) = small(n) {
        return value;
    }
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
    if let Some(value) = small(n) {
        return value;
    }
    let mut digits = itoa::Buffer::new();
    let text = digits.format(n).as_bytes();
    let bytes = ARENA.with(|arena| {
        let mut arena = arena.borrow_mut();
        let arena = arena.get_or_insert_with(|| BytesMut::with_capacity(ARENA_BYTES));
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
        // Numbers past the static table, so that each is cut from the buffer.
        let numbers = SMALL..SMALL + 2 * ARENA_BYTES as u64;
        let values: Vec<HeaderValue> = numbers.clone().map(decimal).collect();
        for (n, value) in numbers.zip(&values) {
            assert_eq!(value.to_str().unwrap(), n.to_string());
        }
        drop(values);
        // Once the old values are gone the buffer is reused; new values are still right.
        for n in [0, 7, u64::MAX, 1_000_000_000] {
            assert_eq!(decimal(n).to_str().unwrap(), n.to_string());
        }
    }

    #[test]
    fn every_number_reads_back_on_both_sides_of_the_table_end() {
        for n in (0..SMALL + 100).chain([u64::MAX - 1, u64::MAX]) {
            assert_eq!(decimal(n).to_str().unwrap(), n.to_string());
            assert_eq!(
                repeating(Repeating::Limit, n).to_str().unwrap(),
                n.to_string()
            );
        }
    }

    #[test]
    fn repeating_values_follow_their_changes() {
        for kind in [Repeating::Limit, Repeating::Reset] {
            // Past the static table (kept and cloned) and back into it.
            let big = 1_800_000_000;
            for n in [big, big, big + 1, big + 1, 5, big + 1, big, u64::MAX] {
                assert_eq!(repeating(kind, n).to_str().unwrap(), n.to_string());
            }
        }
        assert_eq!(
            repeating(Repeating::Limit, 100_000).to_str().unwrap(),
            "100000"
        );
        assert_eq!(
            repeating(Repeating::Reset, 200_000).to_str().unwrap(),
            "200000"
        );
        assert_eq!(
            repeating(Repeating::Limit, 100_000).to_str().unwrap(),
            "100000"
        );
    }
}
