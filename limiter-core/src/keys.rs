//! The key layout of counters, shared by every store.
//!
//! `{prefix}{{client}}:{scope}:{amount}/{multiples}{unit}`, for example
//! `LIMITER{10.0.0.1}:/slow:1/1minute`. The client part is wrapped in braces so that on a
//! Redis Cluster every counter of one client lands in one hash slot, and one script can decide
//! them together. Client keys longer than 64 bytes, or containing braces, are replaced by
//! `#` and the hex SHA-256 of the key, which bounds key size and keeps the hash tag intact.
//!
//! ```
//! use limiter_core::{keys::counter_key, Rate};
//! let rate: Rate = "1 per minute".parse().unwrap();
//! assert_eq!(counter_key("LIMITER", "10.0.0.1", "/slow", &rate), "LIMITER{10.0.0.1}:/slow:1/1minute");
//! let long = "k".repeat(100);
//! assert_eq!(counter_key("L", &long, "s", &rate).len(), "L{#}:s:1/1minute".len() + 64);
//! ```

use std::fmt::Write;
use std::ops::Range;

use sha2::{Digest, Sha256};

use crate::rate::Rate;

/// Longest client key stored as written.
///
/// ```
/// use limiter_core::keys::{push_client_tag, MAX_PLAIN_CLIENT_KEY};
/// let mut tag = String::new();
/// push_client_tag(&mut tag, &"a".repeat(MAX_PLAIN_CLIENT_KEY));
/// assert_eq!(tag.len(), MAX_PLAIN_CLIENT_KEY + 2); // as written, in braces
/// tag.clear();
/// push_client_tag(&mut tag, &"a".repeat(MAX_PLAIN_CLIENT_KEY + 1));
/// assert!(tag.starts_with("{#")); // hashed
/// ```
pub const MAX_PLAIN_CLIENT_KEY: usize = 64;

/// The storage key of one counter.
///
/// ```
/// use limiter_core::{keys::counter_key, Rate};
/// let rate = Rate::parse("10 per 2 minutes").unwrap();
/// assert_eq!(counter_key("LIMITER", "10.0.0.1", "/api", &rate), "LIMITER{10.0.0.1}:/api:10/2minute");
/// // A brace in the client key would break the hash tag: the key is hashed instead.
/// let key = counter_key("LIMITER", "user{1}", "/api", &rate);
/// assert!(key.starts_with("LIMITER{#") && key.ends_with("}:/api:10/2minute"));
/// ```
pub fn counter_key(prefix: &str, client: &str, scope: &str, rate: &Rate) -> String {
    let suffix = key_suffix(scope, rate);
    let mut key = String::with_capacity(prefix.len() + suffix.len() + 2 + client.len().min(65));
    push_counter_key(&mut key, prefix, client, &suffix);
    key
}

/// The part of a counter key after the client, `:{scope}:{amount}/{multiples}{unit}`: the same
/// for every client, so integrations compute it once per limit and build keys with
/// [`push_counter_key`] without formatting numbers on every request.
///
/// ```
/// use limiter_core::{keys, Rate};
/// let rate: Rate = "1 per minute".parse().unwrap();
/// let mut key = String::new();
/// keys::push_counter_key(&mut key, "LIMITER", "10.0.0.1", &keys::key_suffix("/slow", &rate));
/// assert_eq!(key, keys::counter_key("LIMITER", "10.0.0.1", "/slow", &rate));
/// ```
pub fn key_suffix(scope: &str, rate: &Rate) -> String {
    format!(
        ":{scope}:{}/{}{}",
        rate.amount(),
        rate.multiples(),
        rate.unit().name()
    )
}

/// Appends `{prefix}{{client}}{suffix}` to `out`, hashing long client keys exactly as
/// [`counter_key`] does; `suffix` comes from [`key_suffix`].
///
/// ```
/// use limiter_core::{keys, Rate};
/// let rate = Rate::parse("1 per second").unwrap();
/// let suffix = keys::key_suffix("/search", &rate); // once per limit
/// let mut key = String::new();
/// for client in ["10.0.0.1", "10.0.0.2"] {
///     key.clear();
///     keys::push_counter_key(&mut key, "LIMITER", client, &suffix);
///     assert_eq!(key, keys::counter_key("LIMITER", client, "/search", &rate));
/// }
/// assert_eq!(key, "LIMITER{10.0.0.2}:/search:1/1second");
/// ```
pub fn push_counter_key(out: &mut String, prefix: &str, client: &str, suffix: &str) {
    out.push_str(prefix);
    push_client_tag(out, client);
    out.push_str(suffix);
}

/// Appends the `{client}` part of a counter key: the client key in braces, or `{#` and its
/// hex SHA-256 `}` when it is longer than [`MAX_PLAIN_CLIENT_KEY`] or holds a brace. The same
/// for every limit of a request, so integrations render it once and copy it into each key.
///
/// ```
/// use limiter_core::keys::push_client_tag;
/// let mut tag = String::new();
/// push_client_tag(&mut tag, "10.0.0.1");
/// assert_eq!(tag, "{10.0.0.1}");
/// tag.clear();
/// push_client_tag(&mut tag, "a{b}");
/// assert_eq!(tag.len(), "{#}".len() + 64);
/// ```
pub fn push_client_tag(out: &mut String, client: &str) {
    push_client_tag_of_parts(out, &[client]);
}

/// [`push_client_tag`] of the client key that `parts` make when joined, without joining them
/// first (a key from a request header is its name, `=` and its value).
///
/// ```
/// use limiter_core::keys::{push_client_tag, push_client_tag_of_parts};
/// let (mut joined, mut parts) = (String::new(), String::new());
/// push_client_tag(&mut joined, "x-api-key=k1");
/// push_client_tag_of_parts(&mut parts, &["x-api-key", "=", "k1"]);
/// assert_eq!(parts, joined);
/// ```
#[inline]
pub fn push_client_tag_of_parts(out: &mut String, parts: &[&str]) {
    let len: usize = parts.iter().map(|part| part.len()).sum();
    if len > MAX_PLAIN_CLIENT_KEY || parts.iter().any(|part| has_brace(part.as_bytes())) {
        let mut digest = Sha256::new();
        for part in parts {
            digest.update(part.as_bytes());
        }
        out.push_str("{#");
        for byte in digest.finalize() {
            let _ = write!(out, "{byte:02x}");
        }
        out.push('}');
    } else {
        out.reserve(len + 2);
        out.push('{');
        for part in parts {
            out.push_str(part);
        }
        out.push('}');
    }
}

/// Whether `key` holds a `{` or a `}`, eight bytes at a time: this runs on every request.
#[inline]
fn has_brace(key: &[u8]) -> bool {
    let mut chunks = key.chunks_exact(8);
    let found = chunks.any(|chunk| {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        has_zero_byte(word ^ (ONES * u64::from(b'{')))
            | has_zero_byte(word ^ (ONES * u64::from(b'}')))
    });
    found || chunks.remainder().iter().any(|&b| b == b'{' || b == b'}')
}

const ONES: u64 = u64::from_ne_bytes([1; 8]);
const HIGHS: u64 = ONES << 7;

/// Flags the zero bytes of `word` in their high bits. The lowest flag is exact; the borrow can
/// flag bytes above a zero falsely, never one below it, and never without a zero.
#[inline]
fn zero_bytes(word: u64) -> u64 {
    word.wrapping_sub(ONES) & !word & HIGHS
}

#[inline]
fn has_zero_byte(word: u64) -> bool {
    zero_bytes(word) != 0
}

/// Where the hash tag of `key` is, as Redis Cluster reads it: the bytes between its first `{`
/// and the next `}`, when there are any. Every limit of one client shares it, so stores use
/// it to keep them together (one shard, one cluster slot).
#[inline]
pub(crate) fn tag_span(key: &[u8]) -> Option<Range<usize>> {
    let open = find_byte(key, b'{')?;
    let len = find_byte(&key[open + 1..], b'}')?;
    (len > 0).then_some(open + 1..open + 1 + len)
}

/// The first `needle` in `hay`, eight bytes at a time: the tag is looked for in every key of
/// every request, and a byte loop over `LIMITER{10.0.0.1}` was a quarter of a decision.
#[inline]
fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    let mut chunks = hay.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        // Zero bytes of `word` are the needle's; the lowest flagged one is the first.
        let word =
            u64::from_le_bytes(chunk.try_into().unwrap_or_default()) ^ (ONES * u64::from(needle));
        let zeros = zero_bytes(word);
        if zeros != 0 {
            return Some(at + zeros.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == needle)
        .map(|i| at + i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{prop, prop_assert_eq, proptest};

    /// The tag as the Redis Cluster specification writes it, a byte at a time.
    fn tag_as_specified(key: &[u8]) -> Option<Range<usize>> {
        let open = key.iter().position(|&b| b == b'{')?;
        let len = key[open + 1..].iter().position(|&b| b == b'}')?;
        (len > 0).then_some(open + 1..open + 1 + len)
    }

    #[test]
    fn tags_are_found_where_redis_cluster_finds_them() {
        let cases: [(&str, Option<&str>); 8] = [
            ("LIMITER{10.0.0.1}:/slow:1/1minute", Some("10.0.0.1")),
            ("{a}", Some("a")),
            ("{}", None),
            ("{}{b}", None),
            ("no tag", None),
            ("open{ only", None),
            ("}{x}", Some("x")),
            (
                "0123456789abcdef{0123456789abcdef}",
                Some("0123456789abcdef"),
            ),
        ];
        for (key, tag) in cases {
            let found = tag_span(key.as_bytes()).map(|span| &key[span]);
            assert_eq!(found, tag, "{key}");
        }
    }

    proptest! {
        #[test]
        fn tag_span_matches_the_byte_loop(
            key in prop::collection::vec(prop::sample::select(&b"{}a|z\xfb\xfd\x00\xff\x01"[..]), 0..40)
        ) {
            prop_assert_eq!(tag_span(&key), tag_as_specified(&key));
        }

        #[test]
        fn a_tag_of_parts_is_the_tag_of_the_joined_key(
            parts in prop::collection::vec("[a-z{}=]{0,40}", 0..4)
        ) {
            let (mut joined, mut of_parts) = (String::new(), String::new());
            push_client_tag(&mut joined, &parts.concat());
            let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
            push_client_tag_of_parts(&mut of_parts, &parts);
            prop_assert_eq!(of_parts, joined);
        }

        #[test]
        fn has_brace_matches_the_byte_loop(
            key in prop::collection::vec(prop::sample::select(&b"{}a|z\xfb\xfd\x00\xff\x01"[..]), 0..40)
        ) {
            prop_assert_eq!(has_brace(&key), key.iter().any(|&b| b == b'{' || b == b'}'));
        }
    }
}
