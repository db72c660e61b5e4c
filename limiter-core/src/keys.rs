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

use sha2::{Digest, Sha256};

use crate::rate::Rate;

/// Longest client key stored as written.
pub const MAX_PLAIN_CLIENT_KEY: usize = 64;

/// The storage key of one counter.
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
    out.push('{');
    if client.len() > MAX_PLAIN_CLIENT_KEY || client.bytes().any(|b| b == b'{' || b == b'}') {
        out.push('#');
        for byte in Sha256::digest(client.as_bytes()) {
            let _ = write!(out, "{byte:02x}");
        }
    } else {
        out.push_str(client);
    }
    out.push('}');
}
