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
    let mut key = String::with_capacity(prefix.len() + scope.len() + 24 + client.len().min(65));
    key.push_str(prefix);
    key.push('{');
    if client.len() > MAX_PLAIN_CLIENT_KEY || client.contains(['{', '}']) {
        key.push('#');
        for byte in Sha256::digest(client.as_bytes()) {
            let _ = write!(key, "{byte:02x}");
        }
    } else {
        key.push_str(client);
    }
    let _ = write!(
        key,
        "}}:{scope}:{}/{}{}",
        rate.amount(),
        rate.multiples(),
        rate.unit().name()
    );
    key
}
