//! Header values without an allocation each.
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
//!
//! The IETF draft's fields are built the same way: `RateLimit` is written into the shared
//! buffer, and `RateLimit-Policy`, which only changes with the set of limits, is kept per
//! thread for the last few sets seen. Formatted into `String`s, the two cost more than the
//! rest of what the limiter added to a request.

use std::cell::RefCell;

use actix_web::http::header::HeaderValue;
use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

use crate::limiter::LimitKind;

/// Room for this many values before the buffer is reclaimed or replaced.
const ARENA_BYTES: usize = 4096;
/// The longest value cut from the buffer: a `RateLimit` field with two 20-digit numbers.
const MAX_CUT: usize = 96;
/// `RateLimit-Policy` values kept per thread, one per set of limits.
const POLICIES: usize = 8;

thread_local! {
    // Made on first use: a thread-local with a constant initial value is read in line, where
    // one made lazily is read through a call, whose result the caller read back in wider loads
    // than it was written with (a store-forwarding stall).
    static ARENA: RefCell<Option<BytesMut>> = const { RefCell::new(None) };
    static RECENT: RefCell<[(u64, HeaderValue); 2]> = const {
        RefCell::new([(0, HeaderValue::from_static("0")), (0, HeaderValue::from_static("0"))])
    };
    static RECENT_POLICIES: RefCell<Vec<(Policy, HeaderValue)>> =
        const { RefCell::new(Vec::new()) };
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
    // SAFETY: ASCII digits are valid header value bytes. (The checked constructor, which
    // validates them again, was a third of this function's instructions.)
    unsafe { cut(digits.format(n).as_bytes()) }
}

/// `text` copied into the per-thread buffer, as a header value.
///
/// # Safety
/// `text` must be valid header value bytes, at most [`MAX_CUT`] of them.
unsafe fn cut(text: &[u8]) -> HeaderValue {
    debug_assert!(text.len() <= MAX_CUT);
    let bytes = ARENA.with(|arena| {
        let mut arena = arena.borrow_mut();
        let arena = arena.get_or_insert_with(|| BytesMut::with_capacity(ARENA_BYTES));
        if arena.capacity() - arena.len() < text.len() {
            // Reuses the same buffer when every value cut from it has been dropped.
            arena.reserve(ARENA_BYTES);
        }
        arena.extend_from_slice(text);
        arena.split().freeze()
    });
    // SAFETY: the caller's promise.
    unsafe { HeaderValue::from_maybe_shared_unchecked(bytes) }
}

/// A limit's name in the IETF fields: its kind and its place among the limits of that kind
/// (`"route-0"`, `"application-1"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PolicyName {
    pub(crate) kind: LimitKind,
    pub(crate) index: u16,
}

/// One limit of a `RateLimit-Policy` field: `"route-0";q=10;w=60`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PolicyItem {
    pub(crate) name: PolicyName,
    /// Requests allowed per window.
    pub(crate) quota: u64,
    /// The window in seconds.
    pub(crate) window: u64,
}

/// Every limit applied to a request, in the batch's order.
pub(crate) type Policy = SmallVec<[PolicyItem; 4]>;

/// A value being written, on the stack.
struct Text {
    bytes: [u8; MAX_CUT],
    len: usize,
}

impl Text {
    fn new() -> Text {
        Text {
            bytes: [0; MAX_CUT],
            len: 0,
        }
    }

    /// Appends `part`. The values written here are bounded well under [`MAX_CUT`]; past it,
    /// a value would be cut short rather than panic on a request.
    #[inline]
    fn push(&mut self, part: &[u8]) {
        let end = (self.len + part.len()).min(MAX_CUT);
        self.bytes[self.len..end].copy_from_slice(&part[..end - self.len]);
        self.len = end;
    }

    #[inline]
    fn push_decimal(&mut self, n: u64) {
        self.push(itoa::Buffer::new().format(n).as_bytes());
    }

    /// Appends `"kind-index"`.
    #[inline]
    fn push_name(&mut self, name: PolicyName) {
        self.push(b"\"");
        self.push(name.kind.ietf_name().as_bytes());
        self.push(b"-");
        self.push_decimal(u64::from(name.index));
        self.push(b"\"");
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The `RateLimit` field: `"route-0";r=4;t=42`.
pub(crate) fn rate_limit(name: PolicyName, remaining: u64, until_reset: u64) -> HeaderValue {
    let mut text = Text::new();
    text.push_name(name);
    text.push(b";r=");
    text.push_decimal(remaining);
    text.push(b";t=");
    text.push_decimal(until_reset);
    // SAFETY: quotes, a name of lowercase letters, digits, `-`, `;` and `=` are valid header
    // value bytes; the longest name and two 20-digit numbers make 68 of them.
    unsafe { cut(text.as_bytes()) }
}

/// The `RateLimit-Policy` field: `"route-0";q=1;w=60, "application-0";q=10;w=3600`.
pub(crate) fn policy(items: &[PolicyItem]) -> HeaderValue {
    RECENT_POLICIES.with(|recent| {
        let mut recent = recent.borrow_mut();
        if let Some((_, value)) = recent.iter().find(|(kept, _)| kept.as_slice() == items) {
            return value.clone();
        }
        let mut all = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let mut one = Text::new();
            if i > 0 {
                one.push(b", ");
            }
            one.push_name(item.name);
            one.push(b";q=");
            one.push_decimal(item.quota);
            one.push(b";w=");
            one.push_decimal(item.window);
            all.extend_from_slice(one.as_bytes());
        }
        // SAFETY: as in `rate_limit`, with `,` and spaces between the limits.
        let value = unsafe { HeaderValue::from_maybe_shared_unchecked(Bytes::from(all)) };
        // The oldest set goes first when the list is full (few apps have more sets of limits
        // than this; those that do build the field again, as every request once did).
        if recent.len() == POLICIES {
            recent.remove(0);
        }
        recent.push((items.iter().copied().collect(), value.clone()));
        value
    })
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

    fn item(kind: LimitKind, index: u16, quota: u64, window: u64) -> PolicyItem {
        PolicyItem {
            name: PolicyName { kind, index },
            quota,
            window,
        }
    }

    #[test]
    fn rate_limit_fields_read_back_up_to_their_longest() {
        let route = PolicyName {
            kind: LimitKind::Route,
            index: 0,
        };
        assert_eq!(
            rate_limit(route, 4, 42).to_str().unwrap(),
            "\"route-0\";r=4;t=42"
        );
        let longest = PolicyName {
            kind: LimitKind::Application,
            index: u16::MAX,
        };
        assert_eq!(
            rate_limit(longest, u64::MAX, u64::MAX).to_str().unwrap(),
            format!("\"application-65535\";r={0};t={0}", u64::MAX)
        );
        // Many more than the buffer holds at once, each still right.
        let values: Vec<HeaderValue> = (0..ARENA_BYTES as u64)
            .map(|n| rate_limit(route, n, n + 1))
            .collect();
        for (n, value) in values.iter().enumerate() {
            assert_eq!(
                value.to_str().unwrap(),
                format!("\"route-0\";r={n};t={}", n + 1)
            );
        }
    }

    #[test]
    fn policies_follow_their_set_of_limits_past_the_kept_ones() {
        let two = [
            item(LimitKind::Route, 0, 1, 60),
            item(LimitKind::Application, 0, 10, 3600),
        ];
        let expected = "\"route-0\";q=1;w=60, \"application-0\";q=10;w=3600";
        assert_eq!(policy(&two).to_str().unwrap(), expected);
        // More sets than are kept, in turns, then the first again.
        for round in 0..3 {
            for quota in 0..2 * POLICIES as u64 {
                let set = [item(LimitKind::Default, 1, quota, 60 + round)];
                assert_eq!(
                    policy(&set).to_str().unwrap(),
                    format!("\"default-1\";q={quota};w={}", 60 + round)
                );
            }
        }
        assert_eq!(policy(&two).to_str().unwrap(), expected);
        assert_eq!(policy(&two[..1]).to_str().unwrap(), "\"route-0\";q=1;w=60");
    }
}
