//! Settings of a Redis store, from the URI's query or the builder, and the URI parser that
//! turns `redis://`, `redis+cluster://`, `redis+sentinel://`... into connection targets.

use std::time::Duration;

use crate::config::RedisTopology;
use crate::error::ConfigError;

/// What a Redis store does while Redis does not answer within the deadline.
///
/// ```
/// use limiter_core::storage::redis::FailurePolicy;
/// assert_eq!("open".parse::<FailurePolicy>().unwrap(), FailurePolicy::FailOpen);
/// assert_eq!(FailurePolicy::default(), FailurePolicy::FallbackToMemory);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Decide in an in-process memory store with the same limits (each process then counts
    /// on its own), probe Redis with exponential backoff and switch back when it answers.
    #[default]
    FallbackToMemory,
    /// Admit every request, with no per-limit stats ([`crate::Decision::unlimited`]):
    /// nothing was counted, so the web layer shows no rate-limit headers.
    FailOpen,
    /// Return [`crate::StorageError`], so the web layer answers with an error status.
    FailClosed,
}

impl std::str::FromStr for FailurePolicy {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "fallback" | "memory" | "fallback-to-memory" => Ok(FailurePolicy::FallbackToMemory),
            "open" | "fail-open" => Ok(FailurePolicy::FailOpen),
            "closed" | "fail-closed" => Ok(FailurePolicy::FailClosed),
            _ => Err(ConfigError::Invalid {
                setting: "on_failure",
                value: s.to_string(),
                reason: "expected fallback (or memory), open or closed".into(),
            }),
        }
    }
}

/// Where a Redis store takes "now" from.
///
/// ```
/// use limiter_core::storage::redis::{RedisStore, TimeSource};
/// let builder = RedisStore::builder("redis://cache.internal/0?time=server")?;
/// assert_eq!(builder.current_options().time, TimeSource::Server);
/// assert_eq!(TimeSource::default(), TimeSource::Caller);
/// # Ok::<(), limiter_core::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimeSource {
    /// The caller's clock, passed to the script (tests drive it with a manual clock).
    #[default]
    Caller,
    /// The Redis server's `TIME`, for fleets whose clocks disagree. The caller's "now" then
    /// serves the in-memory fallback, and a refund: the script takes its charge's window at
    /// the server's `TIME` less how long before now (on the callers' clock, see
    /// `RedisStoreBuilder::clock`) the charge was made, so a refund after a window or
    /// bucket boundary finds the charge.
    Server,
}

/// Settings of a [`super::RedisStore`]. Every field can be set in the URI's query
/// (`redis://host/0?deadline_ms=50&on_failure=closed`) or with the builder.
///
/// ```
/// use limiter_core::storage::redis::{FailurePolicy, RedisOptions, RedisStore};
/// use std::time::Duration;
///
/// let builder = RedisStore::builder("redis://cache.internal/0?deadline_ms=50&on_failure=closed")?;
/// let options = builder.current_options();
/// assert_eq!(options.deadline, Duration::from_millis(50));
/// assert_eq!(options.on_failure, FailurePolicy::FailClosed);
/// assert_eq!(options.block_cache, RedisOptions::default().block_cache);
/// # Ok::<(), limiter_core::ConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisOptions {
    /// Most connections kept open (`pool_size`, default 8). Each is multiplexed, so a few
    /// carry many concurrent requests: on a single server every decision pipelines on one
    /// shared connection (the others serve administrative calls such as `reset`); Cluster
    /// and Sentinel calls each hold one for the call.
    pub pool_size: usize,
    /// Longest wait for a free connection (`pool_timeout_ms`, default: the deadline).
    pub pool_timeout: Option<Duration>,
    /// Longest wait to open a connection (`connect_timeout_ms`, default: the deadline).
    pub connect_timeout: Option<Duration>,
    /// Deadline of every storage call, connecting and retrying included (`deadline_ms`,
    /// alias `timeout_ms`, default 100 ms). A call that misses it counts as a failure.
    pub deadline: Duration,
    /// What to do when Redis fails (`on_failure`: `fallback`, `open`, `closed`).
    pub on_failure: FailurePolicy,
    /// Where "now" comes from (`time`: `client` or `server`).
    pub time: TimeSource,
    /// Prefix of this limiter's keys (`key_prefix`, default `LIMITER`): what
    /// [`crate::Storage::reset`] deletes: the keys `{prefix}{...}`, as [`crate::keys`] builds
    /// them. It must match the prefix the keys are built with.
    pub key_prefix: String,
    /// Added to every key's TTL (`ttl_grace_ms`, default 1000 ms). TTLs only collect
    /// garbage; the grace keeps a key alive for hosts whose clocks lag a little.
    pub ttl_grace: Duration,
    /// Cap on keys of the in-memory fallback (`fallback_max_keys`, default 100 000).
    pub fallback_max_keys: usize,
    /// First wait before probing Redis again after a failure (`probe_min_ms`, default
    /// 100 ms); it doubles after every failed probe.
    pub probe_min: Duration,
    /// Longest wait between probes (`probe_max_ms`, default 5 s).
    pub probe_max: Duration,
    /// Cap on entries of the block cache (`block_cache`, default 100 000; 0 turns it off):
    /// limits Redis denied, remembered until their retry-after passes so that the same
    /// client is denied without a round trip (see [`super`]'s module docs for the caveats).
    pub block_cache: usize,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            pool_size: 8,
            pool_timeout: None,
            connect_timeout: None,
            deadline: Duration::from_millis(100),
            on_failure: FailurePolicy::FallbackToMemory,
            time: TimeSource::Caller,
            key_prefix: "LIMITER".to_string(),
            ttl_grace: Duration::from_secs(1),
            fallback_max_keys: 100_000,
            probe_min: Duration::from_millis(100),
            probe_max: Duration::from_secs(5),
            block_cache: 100_000,
        }
    }
}

impl RedisOptions {
    /// The ranges every option must keep: checked on the URI's query as it is parsed, and
    /// when a store is built (options set as a whole, [`super::RedisStoreBuilder::options`],
    /// skip the setters, which clamp).
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        let invalid = |setting: &'static str, value: String, reason: &str| {
            Err(ConfigError::Invalid {
                setting,
                value,
                reason: reason.into(),
            })
        };
        if self.pool_size == 0 {
            return invalid("pool_size", "0".into(), "expected a whole number above 0");
        }
        if self.fallback_max_keys == 0 {
            return invalid(
                "fallback_max_keys",
                "0".into(),
                "expected a whole number above 0",
            );
        }
        if self.deadline.is_zero() {
            return invalid("deadline_ms", "0".into(), "expected at least 1 millisecond");
        }
        if self.probe_max < self.probe_min {
            return invalid(
                "probe_max_ms",
                self.probe_max.as_millis().to_string(),
                &format!(
                    "expected at least probe_min_ms ({})",
                    self.probe_min.as_millis()
                ),
            );
        }
        Ok(())
    }
}

/// Where the connections go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// One server: a URL redis-rs understands (`redis://`, `rediss://`, `redis+unix://`).
    Single(String),
    /// Cluster seed nodes, as `redis://` URLs.
    Cluster(Vec<String>),
    /// Sentinels, and what to connect to on the primary they name.
    Sentinel {
        sentinels: Vec<String>,
        service: String,
        db: i64,
        username: Option<String>,
        password: Option<String>,
        tls: bool,
        /// `#insecure`: TLS without certificate checks, to the Sentinels and the primary.
        insecure: bool,
    },
}

/// Query options of redis-rs itself, passed through to it.
const PASSTHROUGH: [&str; 4] = ["db", "user", "pass", "protocol"];

const ACCEPTED: &str = "pool_size, pool_timeout_ms, connect_timeout_ms, deadline_ms \
     (timeout_ms), on_failure, time, key_prefix, ttl_grace_ms, fallback_max_keys, probe_min_ms, \
     probe_max_ms, block_cache, and redis' own db, user, pass, protocol";

/// Parses a (canonical, `valkey` already mapped) Redis URI into its target and options.
pub(crate) fn parse(
    uri: &str,
    topology: RedisTopology,
) -> Result<(Target, RedisOptions), ConfigError> {
    let bad = |reason: String| ConfigError::BadUri {
        uri: uri.to_string(),
        reason,
    };
    let (scheme, rest) = uri
        .split_once("://")
        .ok_or_else(|| bad("expected scheme://...".into()))?;
    let tls = scheme.starts_with("rediss");
    if tls && !cfg!(feature = "redis-tls") {
        return Err(ConfigError::FeatureDisabled {
            uri: uri.to_string(),
            feature: "redis-tls",
        });
    }
    let (rest, fragment) = match rest.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (rest, None),
    };
    let (location, query) = rest.split_once('?').unwrap_or((rest, ""));

    let mut options = RedisOptions::default();
    let mut passthrough: Vec<(&str, &str)> = Vec::new();
    let mut probe_ends_given = (false, false);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value);
        let millis = |setting: &'static str| -> Result<Duration, ConfigError> {
            value
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| ConfigError::Invalid {
                    setting,
                    value: value.clone(),
                    reason: "expected a whole number of milliseconds".into(),
                })
        };
        let count = |setting: &'static str| -> Result<usize, ConfigError> {
            value
                .parse::<usize>()
                .ok()
                .ok_or_else(|| ConfigError::Invalid {
                    setting,
                    value: value.clone(),
                    reason: "expected a whole number above 0".into(),
                })
        };
        match name {
            "pool_size" | "max_connections" => options.pool_size = count("pool_size")?,
            "pool_timeout_ms" => options.pool_timeout = Some(millis("pool_timeout_ms")?),
            "connect_timeout_ms" => options.connect_timeout = Some(millis("connect_timeout_ms")?),
            "deadline_ms" | "timeout_ms" => options.deadline = millis("deadline_ms")?,
            "on_failure" => options.on_failure = value.parse()?,
            "time" => {
                options.time = match value.as_str() {
                    "client" | "caller" => TimeSource::Caller,
                    "server" => TimeSource::Server,
                    _ => {
                        return Err(ConfigError::Invalid {
                            setting: "time",
                            value,
                            reason: "expected client or server".into(),
                        });
                    }
                }
            }
            "key_prefix" => options.key_prefix = value,
            "ttl_grace_ms" => options.ttl_grace = millis("ttl_grace_ms")?,
            "fallback_max_keys" => options.fallback_max_keys = count("fallback_max_keys")?,
            "probe_min_ms" => {
                options.probe_min = millis("probe_min_ms")?;
                probe_ends_given.0 = true;
            }
            "probe_max_ms" => {
                options.probe_max = millis("probe_max_ms")?;
                probe_ends_given.1 = true;
            }
            "block_cache" => {
                options.block_cache = value.parse().map_err(|_| ConfigError::Invalid {
                    setting: "block_cache",
                    value: value.clone(),
                    reason: "expected a whole number of entries (0 turns the cache off)".into(),
                })?
            }
            _ if PASSTHROUGH.contains(&name) => {
                passthrough.push((name, pair.split_once('=').map_or("", |(_, v)| v)))
            }
            _ => {
                return Err(bad(format!(
                    "unknown option \"{name}\"; accepted: {ACCEPTED}"
                )));
            }
        }
    }
    // One end given past the other's default: that default follows, as `probe_backoff` makes
    // it (both given and crossed are refused, by `RedisOptions::check`).
    if probe_ends_given != (true, true) && options.probe_max < options.probe_min {
        options.probe_max = options.probe_min;
    }
    // The ranges the query's values must keep: the same rules as options set as a whole.
    options.check()?;
    let query_string = |extra: &[(&str, &str)]| -> String {
        let all: Vec<String> = extra.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if all.is_empty() {
            String::new()
        } else {
            format!("?{}", all.join("&"))
        }
    };

    let (authority, path) = location.split_once('/').unwrap_or((location, ""));
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let node_scheme = if tls { "rediss" } else { "redis" };
    let at = userinfo.map_or(String::new(), |u| format!("{u}@"));
    let hosts: Vec<&str> = hosts.split(',').filter(|h| !h.is_empty()).collect();

    let target = match topology {
        RedisTopology::Standalone | RedisTopology::Unix => {
            if topology == RedisTopology::Standalone && hosts.len() != 1 {
                return Err(bad(
                    "redis:// takes one host; use redis+cluster:// or redis+sentinel:// for \
                     several"
                        .into(),
                ));
            }
            let fragment = fragment.map_or(String::new(), |f| format!("#{f}"));
            if topology == RedisTopology::Unix {
                // redis-rs reads a socket's `db`, `user` and `pass` from the query.
                Target::Single(format!(
                    "{scheme}://{location}{}{fragment}",
                    query_string(&passthrough)
                ))
            } else {
                // ...but a TCP server's only from the path and the `user:pass@` part: the
                // query's are moved there.
                let db = passthrough
                    .iter()
                    .find(|(k, _)| *k == "db")
                    .map_or(path, |(_, v)| v);
                let at = node_userinfo(userinfo, &passthrough);
                let rest = tcp_query(&passthrough);
                Target::Single(format!(
                    "{scheme}://{at}{}/{db}{}{fragment}",
                    hosts[0],
                    query_string(&rest)
                ))
            }
        }
        RedisTopology::Cluster => {
            if !matches!(path, "" | "0") || passthrough.iter().any(|(k, _)| *k == "db") {
                return Err(bad("a Redis Cluster has only database 0".into()));
            }
            let at = node_userinfo(userinfo, &passthrough);
            let query = query_string(&tcp_query(&passthrough));
            let fragment = fragment.map_or(String::new(), |f| format!("#{f}"));
            Target::Cluster(
                hosts
                    .iter()
                    .map(|h| format!("{node_scheme}://{at}{h}/{query}{fragment}"))
                    .collect(),
            )
        }
        RedisTopology::Sentinel => {
            let mut parts = path.split('/');
            let service = parts.next().unwrap_or("").to_string();
            let mut db = match parts.next() {
                None | Some("") => 0,
                Some(d) => d
                    .parse()
                    .map_err(|_| bad(format!("bad database number \"{d}\"")))?,
            };
            if let Some((_, v)) = passthrough.iter().find(|(k, _)| *k == "db") {
                db = v
                    .parse()
                    .map_err(|_| bad(format!("bad database number \"{v}\"")))?;
            }
            let (username, password) = credentials(userinfo, &passthrough);
            let insecure = tls && fragment == Some("insecure");
            let fragment = if insecure { "#insecure" } else { "" };
            Target::Sentinel {
                sentinels: hosts
                    .iter()
                    .map(|h| format!("{node_scheme}://{at}{h}/{fragment}"))
                    .collect(),
                service,
                db,
                username,
                password,
                tls,
                insecure,
            }
        }
    };
    Ok((target, options))
}

/// The user name and password, decoded: the URI's `user:pass@`, each part replaced by the
/// query's `user` or `pass` if given (those reach the data nodes only).
fn credentials(
    userinfo: Option<&str>,
    passthrough: &[(&str, &str)],
) -> (Option<String>, Option<String>) {
    let (mut user, mut pass) = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((user, pass)) => (
                Some(percent_decode(user)).filter(|u| !u.is_empty()),
                Some(percent_decode(pass)),
            ),
            None => (Some(percent_decode(u)), None),
        },
        None => (None, None),
    };
    for (k, v) in passthrough {
        match *k {
            "user" => user = Some(percent_decode(v)),
            "pass" => pass = Some(percent_decode(v)),
            _ => {}
        }
    }
    (user, pass)
}

/// The `user:pass@` of a TCP node's URL, where redis-rs reads the credentials (it ignores the
/// query's): [`credentials`], encoded again.
fn node_userinfo(userinfo: Option<&str>, passthrough: &[(&str, &str)]) -> String {
    match credentials(userinfo, passthrough) {
        (user, Some(pass)) => format!(
            "{}:{}@",
            percent_encode(user.as_deref().unwrap_or("")),
            percent_encode(&pass)
        ),
        (Some(user), None) => format!("{}@", percent_encode(&user)),
        (None, None) => String::new(),
    }
}

/// What stays in a TCP node's query: redis' own options but those moved into the URL.
fn tcp_query<'a>(passthrough: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    passthrough
        .iter()
        .filter(|(k, _)| !matches!(*k, "db" | "user" | "pass"))
        .copied()
        .collect()
}

/// Every byte but the unreserved ones (`A-Z a-z 0-9 - . _ ~`) as `%XX`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(uri: &str) -> Target {
        let crate::config::StorageUri::Redis { uri, topology } =
            crate::config::StorageUri::parse(uri).unwrap()
        else {
            panic!("not a redis uri")
        };
        parse(&uri, topology).unwrap().0
    }

    #[test]
    fn standalone_keeps_redis_own_options_and_strips_ours() {
        assert_eq!(
            target("redis://localhost:6379/2?deadline_ms=50&protocol=resp3"),
            Target::Single("redis://localhost:6379/2?protocol=resp3".into())
        );
        assert_eq!(
            target("valkey+unix:///run/valkey.sock?db=1&pool_size=2"),
            Target::Single("redis+unix:///run/valkey.sock?db=1".into())
        );
        // redis-rs reads a TCP server's database and credentials only from the path and the
        // userinfo: the query's go there, re-encoded.
        assert_eq!(
            target("redis://localhost:6379?db=3&user=app&pass=p%40ss:w&protocol=resp3"),
            Target::Single("redis://app:p%40ss%3Aw@localhost:6379/3?protocol=resp3".into())
        );
        assert_eq!(
            target("redis://u:pw@localhost:6379/1?pass=other"),
            Target::Single("redis://u:other@localhost:6379/1".into())
        );
        assert_eq!(
            target("redis://u:pw@localhost:6379/1"),
            Target::Single("redis://u:pw@localhost:6379/1".into())
        );
        assert_eq!(
            target("redis+cluster://h1:7000,h2:7001?pass=pw"),
            Target::Cluster(vec![
                "redis://:pw@h1:7000/".into(),
                "redis://:pw@h2:7001/".into()
            ])
        );
    }

    #[test]
    fn cluster_and_sentinel_split_their_hosts() {
        assert_eq!(
            target("redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7001"),
            Target::Cluster(vec![
                "redis://:pw@10.0.0.1:7000/".into(),
                "redis://:pw@10.0.0.2:7001/".into()
            ])
        );
        assert_eq!(
            target("valkey+sentinel://u:p%40ss@h1:26379,h2:26380/mymaster/3"),
            Target::Sentinel {
                sentinels: vec![
                    "redis://u:p%40ss@h1:26379/".into(),
                    "redis://u:p%40ss@h2:26380/".into()
                ],
                service: "mymaster".into(),
                db: 3,
                username: Some("u".into()),
                password: Some("p@ss".into()),
                tls: false,
                insecure: false,
            }
        );
    }

    #[cfg(feature = "redis-tls")]
    #[test]
    fn sentinels_over_tls_may_skip_certificate_checks() {
        let Target::Sentinel {
            sentinels,
            tls,
            insecure,
            ..
        } = target("rediss+sentinel://h1:26379,h2:26380/mymaster#insecure")
        else {
            panic!("not a sentinel target");
        };
        assert_eq!(
            sentinels,
            ["rediss://h1:26379/#insecure", "rediss://h2:26380/#insecure"]
        );
        assert!(tls && insecure);
        let Target::Sentinel {
            sentinels,
            insecure,
            ..
        } = target("rediss+sentinel://h1:26379/mymaster")
        else {
            panic!("not a sentinel target");
        };
        assert_eq!(sentinels, ["rediss://h1:26379/"]);
        assert!(!insecure);
    }

    #[test]
    fn options_set_as_a_whole_keep_the_query_s_rules() {
        let built = |edit: fn(&mut RedisOptions)| {
            let mut options = RedisOptions::default();
            edit(&mut options);
            crate::storage::redis::RedisStore::builder("redis://h/0")
                .unwrap()
                .options(options)
                .build()
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        assert_eq!(built(|_| {}), Ok(()));
        assert_eq!(
            built(|o| o.pool_size = 0),
            Err("invalid pool_size \"0\": expected a whole number above 0".into())
        );
        assert_eq!(
            built(|o| o.fallback_max_keys = 0),
            Err("invalid fallback_max_keys \"0\": expected a whole number above 0".into())
        );
        assert_eq!(
            built(|o| o.deadline = Duration::ZERO),
            Err("invalid deadline_ms \"0\": expected at least 1 millisecond".into())
        );
        assert_eq!(
            built(|o| o.probe_max = Duration::from_millis(50)),
            Err("invalid probe_max_ms \"50\": expected at least probe_min_ms (100)".into())
        );
        // The same rule through the query.
        let err = crate::storage::redis::RedisStore::builder(
            "redis://h/0?probe_min_ms=100&probe_max_ms=50",
        )
        .and_then(|builder| builder.build())
        .unwrap_err();
        assert!(err.to_string().starts_with("invalid probe_max_ms"), "{err}");
    }

    /// A query that sets one end of the probe backoff past the other's default built before
    /// `RedisOptions::check` (the default end followed, as `probe_backoff` makes it), and must
    /// still: only two ends both given and crossed are refused.
    #[test]
    fn a_query_that_sets_one_end_of_the_probe_backoff_still_builds() {
        let built = |uri: &str| {
            crate::storage::redis::RedisStore::builder(uri)
                .and_then(|b| b.build())
                .map(|store| (store.options().probe_min, store.options().probe_max))
                .map_err(|e| e.to_string())
        };
        let ms = Duration::from_millis;
        assert_eq!(
            built("redis://h/0?probe_min_ms=10000"),
            Ok((ms(10_000), ms(10_000)))
        );
        assert_eq!(built("redis://h/0?probe_max_ms=50"), Ok((ms(100), ms(100))));
        assert!(built("redis://h/0?probe_min_ms=100&probe_max_ms=50").is_err());
    }

    #[test]
    fn options_come_from_the_query() {
        let (_, o) = parse(
            "redis://h/0?pool_size=3&deadline_ms=250&on_failure=closed&time=server&key_prefix=app&ttl_grace_ms=0&probe_min_ms=10&probe_max_ms=20&pool_timeout_ms=5&connect_timeout_ms=7&fallback_max_keys=9&block_cache=0",
            RedisTopology::Standalone,
        )
        .unwrap();
        assert_eq!(o.pool_size, 3);
        assert_eq!(o.deadline, Duration::from_millis(250));
        assert_eq!(o.on_failure, FailurePolicy::FailClosed);
        assert_eq!(o.time, TimeSource::Server);
        assert_eq!(o.key_prefix, "app");
        assert_eq!(o.ttl_grace, Duration::ZERO);
        assert_eq!(o.probe_min, Duration::from_millis(10));
        assert_eq!(o.probe_max, Duration::from_millis(20));
        assert_eq!(o.pool_timeout, Some(Duration::from_millis(5)));
        assert_eq!(o.connect_timeout, Some(Duration::from_millis(7)));
        assert_eq!(o.fallback_max_keys, 9);
        assert_eq!(o.block_cache, 0);
        let (_, o) = parse("redis://h/0?block_cache=250", RedisTopology::Standalone).unwrap();
        assert_eq!(o.block_cache, 250);
        assert_eq!(RedisOptions::default().block_cache, 100_000);
    }

    #[test]
    fn bad_options_name_what_is_accepted() {
        let err = parse("redis://h/0?pool=3", RedisTopology::Standalone).unwrap_err();
        assert!(err.to_string().contains("unknown option \"pool\""), "{err}");
        assert!(err.to_string().contains("pool_size"), "{err}");
        let err = parse("redis://h/0?on_failure=maybe", RedisTopology::Standalone).unwrap_err();
        assert!(err.to_string().contains("fallback"), "{err}");
        let err = parse("redis://h/0?block_cache=-1", RedisTopology::Standalone).unwrap_err();
        assert!(err.to_string().contains("block_cache"), "{err}");
        let err = parse("redis://h/0?deadline_ms=0", RedisTopology::Standalone).unwrap_err();
        assert!(err.to_string().contains("at least 1"), "{err}");
        let err = parse("redis+cluster://h:1/3", RedisTopology::Cluster).unwrap_err();
        assert!(err.to_string().contains("only database 0"), "{err}");
        let err = parse("redis://a:1,b:2/0", RedisTopology::Standalone).unwrap_err();
        assert!(err.to_string().contains("one host"), "{err}");
    }

    #[cfg(not(feature = "redis-tls"))]
    #[test]
    fn tls_needs_its_feature() {
        let err = parse("rediss://h/0", RedisTopology::Standalone).unwrap_err();
        assert!(err.to_string().contains("redis-tls"), "{err}");
    }
}
