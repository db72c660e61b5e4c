//! Typed errors: configuration (caught at start-up) and storage (handled by the failure policy).

use std::time::Duration;

use crate::rate::RateParseError;
use crate::strategy::STRATEGY_NAMES;
use crate::suggest::{Suggestion, closest};

/// A configuration value that cannot work. Every message names the bad value and what is
/// accepted instead.
///
/// ```
/// use limiter_core::{ConfigError, Strategy};
/// let err = "leaky-bucket".parse::<Strategy>().unwrap_err();
/// assert_eq!(err, ConfigError::UnknownStrategy { value: "leaky-bucket".into() });
/// assert!(err.to_string().starts_with("unknown strategy \"leaky-bucket\"; expected one of fixed-window,"));
/// // A near miss is named.
/// let err = "moving window".parse::<Strategy>().unwrap_err();
/// assert!(err.to_string().ends_with("; did you mean \"moving-window\"?"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A strategy name that does not exist.
    #[error(
        "unknown strategy \"{value}\"; expected one of fixed-window, \
         fixed-window-elastic-expiry (or fixed-window-elastic), moving-window, \
         moving-window-elastic, sliding-window-counter (or sliding-window), gcra (or token-bucket){}",
        Suggestion(closest(value.trim(), &STRATEGY_NAMES.map(|(name, _)| name)))
    )]
    UnknownStrategy {
        /// The name as given.
        value: String,
    },
    /// A storage URI whose scheme no storage handles.
    #[error(
        "unknown storage scheme \"{scheme}\" in \"{uri}\"; expected one of memory://, redis://, \
         rediss://, redis+unix://, redis+cluster://, redis+sentinel:// (or the valkey spellings)"
    )]
    UnknownScheme {
        /// The whole URI.
        uri: String,
        /// Its scheme.
        scheme: String,
    },
    /// A storage URI that cannot be used as written.
    #[error("bad storage URI \"{uri}\": {reason}")]
    BadUri {
        /// The whole URI.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A storage URI whose back-end was compiled out.
    #[error("storage URI \"{uri}\" needs the \"{feature}\" feature of limiter-core{}", if *feature == "redis" { " (limiter-actix enables it by default)" } else { " (not enabled by default; enable it in Cargo.toml)" })]
    FeatureDisabled {
        /// The whole URI.
        uri: String,
        /// The cargo feature to enable.
        feature: &'static str,
    },
    /// A rate string in the configuration that does not parse.
    #[error("bad rate \"{text}\" in {origin}: {source}")]
    Rate {
        /// Where it was found (`default limits`, `application limits`, ...).
        origin: String,
        /// The rate string.
        text: String,
        /// The parse error, with its byte range in `text`.
        source: RateParseError,
    },
    /// Any other value that is out of range.
    #[error("invalid {setting} \"{value}\": {reason}")]
    Invalid {
        /// The setting's name.
        setting: &'static str,
        /// The value as given.
        value: String,
        /// What is accepted.
        reason: String,
    },
}

/// A storage operation that did not complete.
///
/// ```
/// use limiter_core::StorageError;
/// use std::time::Duration;
/// let err = StorageError::Timeout(Duration::from_millis(100));
/// assert_eq!(err.to_string(), "storage did not answer within 100ms");
/// // Non-exhaustive: a match needs a catch-all arm.
/// let transient = match err {
///     StorageError::Timeout(_) | StorageError::Unavailable(_) => true,
///     _ => false,
/// };
/// assert!(transient);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The store did not answer within its deadline.
    #[error("storage did not answer within {0:?}")]
    Timeout(Duration),
    /// The store could not be reached.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The store answered with an error.
    #[error("storage error: {0}")]
    Backend(String),
}

#[cfg(test)]
mod tests {
    use super::ConfigError;

    #[test]
    fn a_missing_feature_says_whether_it_is_on_by_default() {
        let missing = |feature| {
            ConfigError::FeatureDisabled {
                uri: "rediss://h/0".into(),
                feature,
            }
            .to_string()
        };
        let tls = missing("redis-tls");
        assert!(tls.contains("\"redis-tls\" feature"), "{tls}");
        assert!(tls.contains("not enabled by default"), "{tls}");
        assert!(missing("redis").contains("limiter-actix enables it by default"));
    }
}
