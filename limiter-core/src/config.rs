//! Storage URIs: `memory://` for one process, `redis://` and friends for a fleet.
//!
//! ```
//! use limiter_core::{StorageUri, config::RedisTopology};
//!
//! assert_eq!(StorageUri::parse("memory://").unwrap(), StorageUri::Memory { max_keys: 1_000_000 });
//! assert_eq!(
//!     StorageUri::parse("memory://?max_keys=5000").unwrap(),
//!     StorageUri::Memory { max_keys: 5000 }
//! );
//! let redis = StorageUri::parse("valkey+cluster://10.0.0.1:7000,10.0.0.2:7000").unwrap();
//! assert!(matches!(redis, StorageUri::Redis { topology: RedisTopology::Cluster, .. }));
//! let err = StorageUri::parse("mongodb://localhost").unwrap_err();
//! assert!(err.to_string().contains("unknown storage scheme \"mongodb\""));
//! ```

use std::str::FromStr;

use crate::error::ConfigError;
use crate::storage::memory::DEFAULT_MAX_KEYS;

/// How a Redis deployment is reached.
///
/// ```
/// use limiter_core::{config::RedisTopology, StorageUri};
/// let topology = |uri| match StorageUri::parse(uri).unwrap() {
///     StorageUri::Redis { topology, .. } => topology,
///     other => panic!("{other:?}"),
/// };
/// assert_eq!(topology("rediss://cache:6380/0"), RedisTopology::Standalone);
/// assert_eq!(topology("redis+unix:///run/redis.sock"), RedisTopology::Unix);
/// assert_eq!(topology("valkey+sentinel://s1:26379,s2:26379/primary"), RedisTopology::Sentinel);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedisTopology {
    /// One server over TCP (`redis://`), or TLS (`rediss://`).
    Standalone,
    /// One server over a Unix socket (`redis+unix://`, `unix://`).
    Unix,
    /// A Redis Cluster, from one or more seed nodes (`redis+cluster://`).
    Cluster,
    /// A primary found through Sentinels (`redis+sentinel://h:p,h:p/service`).
    Sentinel,
}

/// A parsed storage URI.
///
/// ```
/// use limiter_core::StorageUri;
/// let uri: StorageUri = "valkey://cache:6379/0".parse().unwrap();
/// // Valkey is spoken to as Redis.
/// assert!(matches!(uri, StorageUri::Redis { uri, .. } if uri == "redis://cache:6379/0"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StorageUri {
    /// `memory://[?max_keys=N]`: counters in this process.
    Memory {
        /// Cap on keys held.
        max_keys: usize,
    },
    /// A Redis (or Valkey) URI.
    Redis {
        /// The URI as given, with `valkey` spellings mapped to `redis`.
        uri: String,
        /// How it is reached.
        topology: RedisTopology,
    },
}

impl StorageUri {
    /// Parses and checks a storage URI.
    ///
    /// ```
    /// use limiter_core::{ConfigError, StorageUri};
    /// assert_eq!(StorageUri::parse("memory://?max_keys=10").unwrap(), StorageUri::Memory { max_keys: 10 });
    /// let err = StorageUri::parse("redis+sentinel://s1:26379").unwrap_err();
    /// assert!(matches!(err, ConfigError::BadUri { .. }));
    /// assert!(err.to_string().ends_with("no service name; write redis+sentinel://host:26379,host:26380/mymaster"));
    /// ```
    ///
    /// # Errors
    /// [`ConfigError::UnknownScheme`] or [`ConfigError::BadUri`], naming the bad part.
    pub fn parse(uri: &str) -> Result<StorageUri, ConfigError> {
        let bad = |reason: &str| ConfigError::BadUri {
            uri: uri.to_string(),
            reason: reason.to_string(),
        };
        let Some((scheme, rest)) = uri.split_once("://") else {
            return Err(bad(
                "expected scheme://..., e.g. memory:// or redis://localhost:6379/0",
            ));
        };
        let lower = scheme.to_ascii_lowercase();
        let canonical = lower.replacen("valkey", "redis", 1);
        let topology = match canonical.as_str() {
            "memory" => return parse_memory(uri, rest),
            "redis" | "rediss" => RedisTopology::Standalone,
            "redis+unix" | "unix" => RedisTopology::Unix,
            "redis+cluster" | "rediss+cluster" => RedisTopology::Cluster,
            "redis+sentinel" | "rediss+sentinel" => RedisTopology::Sentinel,
            _ => {
                return Err(ConfigError::UnknownScheme {
                    uri: uri.to_string(),
                    scheme: scheme.to_string(),
                });
            }
        };
        let hosts = rest.split(['/', '?']).next().unwrap_or("");
        let hosts = hosts.rsplit('@').next().unwrap_or("");
        if topology != RedisTopology::Unix && hosts.is_empty() {
            return Err(bad("no host; write e.g. redis://localhost:6379/0"));
        }
        if topology == RedisTopology::Unix && !rest.starts_with('/') {
            return Err(bad(
                "expected a socket path, e.g. redis+unix:///run/redis.sock",
            ));
        }
        if topology == RedisTopology::Sentinel {
            let service = rest.split('?').next().unwrap_or("").split_once('/');
            if service.is_none_or(|(_, name)| name.is_empty()) {
                return Err(bad(
                    "no service name; write redis+sentinel://host:26379,host:26380/mymaster",
                ));
            }
        }
        Ok(StorageUri::Redis {
            uri: format!("{canonical}://{rest}"),
            topology,
        })
    }
}

fn parse_memory(uri: &str, rest: &str) -> Result<StorageUri, ConfigError> {
    let (host, query) = rest.split_once('?').unwrap_or((rest, ""));
    if !host.trim_end_matches('/').is_empty() {
        return Err(ConfigError::BadUri {
            uri: uri.to_string(),
            reason: format!("memory:// takes no host, found \"{host}\""),
        });
    }
    let mut max_keys = DEFAULT_MAX_KEYS;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "max_keys" => {
                max_keys =
                    value
                        .parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| ConfigError::Invalid {
                            setting: "max_keys",
                            value: value.to_string(),
                            reason: "expected a whole number above 0".into(),
                        })?;
            }
            _ => {
                return Err(ConfigError::BadUri {
                    uri: uri.to_string(),
                    reason: format!("unknown option \"{name}\"; memory:// accepts max_keys"),
                });
            }
        }
    }
    Ok(StorageUri::Memory { max_keys })
}

impl FromStr for StorageUri {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StorageUri::parse(s)
    }
}
