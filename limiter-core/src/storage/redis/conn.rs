//! Connection pools (deadpool managers behind one enum) and the script call with its
//! NOSCRIPT fallback, and one retry on a fresh connection when the call surely did not run.
//!
//! # What a failed call tells
//!
//! The redis crate (0.32) reports a multiplexed connection whose socket closed with the same
//! error, an I/O `BrokenPipe`, whether the command was never written (the connection's task
//! had already stopped, or stopped with the command still queued) or was written and its
//! reply lost (the server ran it, then the connection dropped); a reset read after the write
//! is `ConnectionReset`, and a failed write `BrokenPipe` or `ConnectionReset` too, after some
//! bytes may have gone out. `is_connection_dropped`, `is_io_error` and `retry_method` are
//! alike for all of them. So a connection error after sending proves nothing, and a decision
//! is not idempotent: sent again, it is charged twice. What does prove the call did not run:
//! a connection seen closed before anything is sent on it (single servers and Sentinel
//! primaries: this module runs each connection's task, see [`Watched`], and so knows when its
//! socket closed), and the replies of a server that refuses to run it (READONLY from a former
//! primary, MASTERDOWN, CLUSTERDOWN; NOSCRIPT is answered by sending the script). Only those
//! are retried; any other connection failure is returned as [`StorageError::Unavailable`],
//! and the failure policy answers, as after a deadline.
//!
//! On a Cluster this holds for the errors that reach this module only: the crate's cluster
//! client itself sends a command again after its node connection failed (it follows MOVED
//! and ASK the same way, under one retry count), so there a lost reply can still count a
//! request twice.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::redis::aio::{ConnectionLike, MultiplexedConnection};
use ::redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use ::redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use ::redis::{
    Client, Cmd, ErrorKind, RedisConnectionInfo, RedisError, RedisFuture, TlsMode, Value,
};
use deadpool::Runtime;
use deadpool::managed::{
    Manager, Metrics, Object, Pool, PoolError, QueueMode, RecycleError, RecycleResult, Timeouts,
};

use super::options::{RedisOptions, Target};
use crate::error::{ConfigError, StorageError};

/// A single server's multiplexed connection, shared by every call: cloning it is a reference
/// count, where checking one out of the pool builds a 6.6 KB future (deadpool's, sized for
/// opening a connection) and takes the pool's semaphore and lock. The pool opens the
/// connection, and a fresh one after a connection error.
pub(crate) struct Shared {
    pool: Pool<Opener>,
    current: Mutex<Option<Watched>>,
}

impl Shared {
    /// The shared connection, opened through the pool when there is none, or when its socket
    /// closed while idle (a restart, an idle timeout, CLIENT KILL): nothing was sent on it.
    async fn connection(&self) -> Result<Watched, StorageError> {
        if let Some(conn) = self.current_connection() {
            if !conn.is_closed() {
                return Ok(conn);
            }
            tracing::debug!("redis closed the shared connection; opening another");
            self.forget();
        }
        // Boxed: the pool's future is large, and needed only to (re)connect.
        let conn = (*Box::pin(self.pool.get()).await.map_err(pool_error)?).clone();
        if let Ok(mut current) = self.current.lock() {
            *current = Some(conn.clone());
        }
        Ok(conn)
    }

    fn current_connection(&self) -> Option<Watched> {
        self.current.lock().ok()?.clone()
    }

    /// After a connection error: the next call opens a fresh connection.
    fn forget(&self) {
        if let Ok(mut current) = self.current.lock() {
            *current = None;
        }
        self.pool.retain(|_, _| false);
    }
}

/// A multiplexed connection whose task (the one that writes commands and reads replies) this
/// module spawns, so that it knows when the socket closed: the task ends then. The redis
/// crate's own connections hide that, and report a command sent on a closed socket as they
/// report a reply lost after the command ran (see the module docs). A clone costs one
/// reference count more than the connection's own; the task stops, closing the socket, when
/// the last clone is dropped.
#[derive(Clone)]
pub(crate) struct Watched {
    conn: MultiplexedConnection,
    task: Arc<Task>,
}

struct Task {
    ended: Arc<AtomicBool>,
    handle: tokio::task::AbortHandle,
}

impl Drop for Task {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

impl Watched {
    /// The socket closed: a command sent now would not be written.
    fn is_closed(&self) -> bool {
        self.task.ended.load(Ordering::Acquire)
    }

    async fn open(client: &Client) -> Result<Watched, RedisError> {
        let (conn, driver) = client.create_multiplexed_tokio_connection().await?;
        let ended = Arc::new(AtomicBool::new(false));
        let flag = ended.clone();
        let handle = tokio::spawn(async move {
            // The driver returns once the socket is closed or failed (or every clone of the
            // connection is gone).
            driver.await;
            flag.store(true, Ordering::Release);
        })
        .abort_handle();
        Ok(Watched {
            conn,
            task: Arc::new(Task { ended, handle }),
        })
    }
}

impl ConnectionLike for Watched {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.conn.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a ::redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.conn.req_packed_commands(cmd, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }
}

/// Opens [`Watched`] connections: to one server, or to the primary the Sentinels name (asked
/// again for every new connection, so a failover is followed). Connections are not pinged on
/// checkout (that PING would be a second round trip per request); one that fails is detached
/// instead (see [`Checked`]), and one whose socket closed while idle (a restart, an idle
/// timeout, a failover's CLIENT KILL) is dropped by the pool as it hands it out, and the
/// next idle or a new one taken.
pub(crate) enum Opener {
    Single(Client),
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

impl Manager for Opener {
    type Type = Watched;
    type Error = RedisError;

    async fn create(&self) -> Result<Watched, RedisError> {
        // Boxed, its type erased: inline, the redis crate's connecting futures nested in every
        // caller's future took the compiler past its query depth limit. Connecting is rare.
        let open: Pin<Box<dyn Future<Output = Result<Watched, RedisError>> + Send + '_>> =
            Box::pin(async move {
                let client = match self {
                    Opener::Single(client) => client.clone(),
                    Opener::Sentinel(sentinels) => {
                        sentinels.lock().await.async_get_client().await?
                    }
                };
                Watched::open(&client).await
            });
        open.await
    }

    async fn recycle(&self, conn: &mut Watched, _: &Metrics) -> RecycleResult<RedisError> {
        if conn.is_closed() {
            tracing::debug!("redis closed an idle connection; taking another");
            return Err(RecycleError::message("closed by the server"));
        }
        Ok(())
    }
}

/// deadpool-redis' cluster manager without the PING on every checkout (see [`Opener`]).
pub(crate) struct Lane<M>(M);

impl<M: Manager> Manager for Lane<M> {
    type Type = M::Type;
    type Error = M::Error;

    async fn create(&self) -> Result<M::Type, M::Error> {
        self.0.create().await
    }

    async fn recycle(&self, _: &mut M::Type, _: &Metrics) -> RecycleResult<M::Error> {
        Ok(())
    }
}

/// The pools of the three kinds of deployment.
pub(crate) enum Pools {
    Single(Shared),
    Cluster(Pool<Lane<deadpool_redis::cluster::Manager>>),
    Sentinel(Pool<Opener>),
}

impl Pools {
    /// Builds the pools; nothing connects until the first call.
    pub(crate) fn new(uri: &str, target: &Target, o: &RedisOptions) -> Result<Pools, ConfigError> {
        let bad = |e: RedisError| ConfigError::BadUri {
            uri: uri.to_string(),
            reason: e.to_string(),
        };
        let timeouts = Timeouts {
            wait: Some(o.pool_timeout.unwrap_or(o.deadline)),
            create: Some(o.connect_timeout.unwrap_or(o.deadline)),
            recycle: None,
        };
        let build_err = |e: deadpool::managed::BuildError| ConfigError::BadUri {
            uri: uri.to_string(),
            reason: e.to_string(),
        };
        Ok(match target {
            Target::Single(url) => {
                let manager = Opener::Single(Client::open(url.as_str()).map_err(bad)?);
                Pools::Single(Shared {
                    pool: Pool::builder(manager)
                        .max_size(o.pool_size)
                        // The connection given back last first: administrative calls
                        // (SCAN) reuse the shared one's socket rather than open another.
                        .queue_mode(QueueMode::Lifo)
                        .timeouts(timeouts)
                        .runtime(Runtime::Tokio1)
                        .build()
                        .map_err(build_err)?,
                    current: Mutex::new(None),
                })
            }
            Target::Cluster(urls) => {
                let manager =
                    deadpool_redis::cluster::Manager::new(urls.clone(), false).map_err(bad)?;
                Pools::Cluster(
                    Pool::builder(Lane(manager))
                        .max_size(o.pool_size)
                        .timeouts(timeouts)
                        .runtime(Runtime::Tokio1)
                        .build()
                        .map_err(build_err)?,
                )
            }
            Target::Sentinel {
                sentinels,
                service,
                db,
                username,
                password,
                tls,
                insecure,
            } => {
                let node = SentinelNodeConnectionInfo {
                    tls_mode: tls.then_some(if *insecure {
                        TlsMode::Insecure
                    } else {
                        TlsMode::Secure
                    }),
                    redis_connection_info: Some(RedisConnectionInfo {
                        db: *db,
                        username: username.clone(),
                        password: password.clone(),
                        ..Default::default()
                    }),
                };
                let client = SentinelClient::build(
                    sentinels.clone(),
                    service.clone(),
                    Some(node),
                    SentinelServerType::Master,
                )
                .map_err(bad)?;
                Pools::Sentinel(
                    Pool::builder(Opener::Sentinel(tokio::sync::Mutex::new(client)))
                        .max_size(o.pool_size)
                        .timeouts(timeouts)
                        .runtime(Runtime::Tokio1)
                        .build()
                        .map_err(build_err)?,
                )
            }
        })
    }

    /// After a call ran out of time: a single server's shared connection is dropped, so the
    /// next call opens a fresh one. A socket gone silent (a dead host, a dropped conntrack
    /// entry) raises no error, and every later call would wait on it until the kernel gives
    /// up, minutes later. Calls in flight keep their clone of it. (The pools of the other
    /// deployments already close a connection whose call was cancelled.)
    pub(crate) fn after_timeout(&self) {
        if let Pools::Single(shared) = self {
            shared.forget();
        }
    }

    /// Sends `cmd`; on NOSCRIPT sends `on_noscript` (the same call as EVAL) on the same
    /// connection. A connection that failed is dropped. The call is sent once more, on a
    /// fresh connection, when it surely did not run, or whatever the failure when `repeat`
    /// allows it (see the module docs).
    pub(crate) async fn query(
        &self,
        cmd: &Cmd,
        on_noscript: Option<&(dyn Fn() -> Cmd + Sync)>,
        repeat: Repeat,
    ) -> Result<Value, StorageError> {
        // The cluster's and Sentinel's futures boxed: inline, the largest (some 20 KB, the
        // cluster client's) would size every caller's future, copied into a fresh allocation
        // on every request. A single server's is a few hundred bytes (see `Shared`).
        match self {
            Pools::Single(p) => query_shared(p, cmd, on_noscript, repeat).await,
            Pools::Cluster(p) => Box::pin(query_on(p, cmd, on_noscript, repeat)).await,
            Pools::Sentinel(p) => Box::pin(query_on(p, cmd, on_noscript, repeat)).await,
        }
    }

    /// Deletes every key matching `pattern` (SCAN + UNLINK), on every primary of a cluster.
    /// Each round trip has `deadline`. Returns how many keys were deleted.
    pub(crate) async fn scan_delete(
        &self,
        pattern: &str,
        deadline: Duration,
    ) -> Result<u64, StorageError> {
        match self {
            Pools::Single(p) => scan_delete_on(&p.pool, pattern, deadline).await,
            Pools::Sentinel(p) => scan_delete_on(p, pattern, deadline).await,
            Pools::Cluster(p) => {
                let mut conn = Checked(Some(timed(deadline, p.get()).await?.map_err(pool_error)?));
                let slots = timed(
                    deadline,
                    ::redis::cmd("CLUSTER")
                        .arg("SLOTS")
                        .query_async::<Value>(conn.conn()),
                )
                .await?
                .map_err(backend)?;
                let mut primaries: Vec<(String, u16)> = Vec::new();
                if let Value::Array(ranges) = slots {
                    for range in ranges {
                        let Value::Array(parts) = range else { continue };
                        let Some(Value::Array(node)) = parts.get(2) else {
                            continue;
                        };
                        let host = node
                            .first()
                            .and_then(|v| ::redis::from_redis_value::<String>(v).ok());
                        let port = node
                            .get(1)
                            .and_then(|v| ::redis::from_redis_value::<u16>(v).ok());
                        if let (Some(host), Some(port)) = (host, port) {
                            if !primaries.contains(&(host.clone(), port)) {
                                primaries.push((host, port));
                            }
                        }
                    }
                }
                let mut deleted = 0;
                for (host, port) in primaries {
                    let mut cursor = 0u64;
                    loop {
                        let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                            host: host.clone(),
                            port,
                        });
                        let mut scan = ::redis::cmd("SCAN");
                        scan.arg(cursor)
                            .arg("MATCH")
                            .arg(pattern)
                            .arg("COUNT")
                            .arg(500);
                        let page = timed(deadline, conn.conn().route_command(&scan, route))
                            .await?
                            .map_err(backend)?;
                        let (next, keys): (u64, Vec<String>) =
                            ::redis::from_redis_value(&page).map_err(backend)?;
                        for key in keys {
                            // Keys of one node lie in many slots: one UNLINK each.
                            let n: u64 = timed(
                                deadline,
                                ::redis::cmd("UNLINK").arg(&key).query_async(conn.conn()),
                            )
                            .await?
                            .map_err(backend)?;
                            deleted += n;
                        }
                        cursor = next;
                        if cursor == 0 {
                            break;
                        }
                    }
                }
                conn.release();
                Ok(deleted)
            }
        }
    }
}

async fn scan_delete_on(
    pool: &Pool<Opener>,
    pattern: &str,
    deadline: Duration,
) -> Result<u64, StorageError> {
    let mut conn = Checked(Some(
        timed(deadline, pool.get()).await?.map_err(pool_error)?,
    ));
    let mut cursor = 0u64;
    let mut deleted = 0;
    loop {
        let mut scan = ::redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000);
        let (next, keys): (u64, Vec<String>) = timed(deadline, scan.query_async(conn.conn()))
            .await?
            .map_err(backend)?;
        if !keys.is_empty() {
            let n: u64 = timed(
                deadline,
                ::redis::cmd("UNLINK").arg(&keys).query_async(conn.conn()),
            )
            .await?
            .map_err(backend)?;
            deleted += n;
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    conn.release();
    Ok(deleted)
}

async fn timed<T>(
    deadline: Duration,
    f: impl std::future::Future<Output = T>,
) -> Result<T, StorageError> {
    tokio::time::timeout(deadline, f)
        .await
        .map_err(|_| StorageError::Timeout(deadline))
}

fn backend(e: RedisError) -> StorageError {
    if is_connection_error(&e) {
        StorageError::Unavailable(e.to_string())
    } else {
        StorageError::Backend(e.to_string())
    }
}

/// A checked-out connection that goes back to the pool only when [`Checked::release`]d:
/// dropped mid-call (an error, or the deadline cancelling the future) it is detached and
/// closed, because its state (a half-read reply, a hung socket) is unknown.
struct Checked<M: Manager>(Option<Object<M>>);

impl<M: Manager> Checked<M> {
    fn conn(&mut self) -> &mut M::Type {
        self.0.as_mut().expect("present until released")
    }

    fn release(mut self) {
        drop(self.0.take());
    }
}

impl<M: Manager> Drop for Checked<M> {
    fn drop(&mut self) {
        if let Some(object) = self.0.take() {
            drop(Object::take(object));
        }
    }
}

/// Whether a call may be sent again after a failure that does not tell whether it ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Repeat {
    /// Running it twice does no harm (PING, DEL).
    Safe,
    /// Running it twice counts a request twice (the decision scripts).
    OnlyIfNotRun,
}

/// How a call failed, as far as the error tells (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    /// The server refused to run it: the connection points at the wrong server (a former
    /// primary answers READONLY after a failover), or the cluster client found no
    /// connection to send it on.
    NotRun,
    /// The connection failed after the call was handed to it: it may have run.
    Unknown,
    /// Any other error reply; the connection is fine.
    Reply,
}

impl Failure {
    fn of(e: &RedisError) -> Failure {
        match e.kind() {
            ErrorKind::ReadOnly
            | ErrorKind::MasterDown
            | ErrorKind::ClusterDown
            | ErrorKind::ClusterConnectionNotFound => Failure::NotRun,
            _ if is_connection_error(e) => Failure::Unknown,
            _ => Failure::Reply,
        }
    }

    /// Whether the call goes once more to a fresh connection (its first failure).
    fn retried(self, repeat: Repeat) -> bool {
        self == Failure::NotRun || (self == Failure::Unknown && repeat == Repeat::Safe)
    }

    /// The error returned when the call is not retried (again).
    fn error(self, e: RedisError) -> StorageError {
        match self {
            Failure::Unknown => {
                StorageError::Unavailable(format!("redis connection lost during a call: {e}"))
            }
            Failure::NotRun => StorageError::Unavailable(e.to_string()),
            Failure::Reply => backend(e),
        }
    }
}

async fn query_on<M>(
    pool: &Pool<M>,
    cmd: &Cmd,
    on_noscript: Option<&(dyn Fn() -> Cmd + Sync)>,
    repeat: Repeat,
) -> Result<Value, StorageError>
where
    M: Manager<Error = RedisError>,
    M::Type: ConnectionLike + Send,
{
    let mut attempt = 0u8;
    loop {
        attempt += 1;
        let mut conn = Checked(Some(pool.get().await.map_err(pool_error)?));
        let mut result = cmd.query_async::<Value>(conn.conn()).await;
        if let (Err(e), Some(eval)) = (&result, on_noscript) {
            if e.kind() == ErrorKind::NoScriptError {
                // A restarted server or SCRIPT FLUSH: EVAL sends the source, which also
                // caches it for the next EVALSHA.
                tracing::debug!("redis lost the limiter script; sending it again");
                result = eval().query_async::<Value>(conn.conn()).await;
            }
        }
        let e = match result {
            Ok(value) => {
                conn.release();
                return Ok(value);
            }
            Err(e) => e,
        };
        let failure = Failure::of(&e);
        if failure == Failure::Reply {
            // The server answered: the connection is fine.
            conn.release();
            return Err(failure.error(e));
        }
        drop(conn);
        // The idle ones most likely share its fate (after a Sentinel failover they all
        // point at the old primary): the retry opens a fresh connection.
        pool.retain(|_, _| false);
        if attempt >= 2 || !failure.retried(repeat) {
            return Err(failure.error(e));
        }
        tracing::debug!("redis call failed ({e}); retrying on a fresh connection");
    }
}

/// [`query_on`] for a single server, whose connection is multiplexed: every call clones the
/// one shared connection, so concurrent calls pipeline on one socket (64 concurrent tasks send
/// ~30 calls per server read, about a third less CPU per call on both ends than a connection
/// per call). Cancelling a call is safe here: the multiplexer drops the late reply. A
/// connection error drops the shared connection and every idle one of the pool, since the
/// failed one can no longer be told apart; the next call opens a fresh one.
async fn query_shared(
    shared: &Shared,
    cmd: &Cmd,
    on_noscript: Option<&(dyn Fn() -> Cmd + Sync)>,
    repeat: Repeat,
) -> Result<Value, StorageError> {
    // A byte, packed with `repeat`: the decision's future stays within 1 KB (see `decide`).
    // For the same reason the NOSCRIPT resend is written out here as in `query_on`: an async
    // helper shared by both made the decision's future 1 120 bytes.
    let mut attempt = 0u8;
    loop {
        attempt += 1;
        let mut conn = shared.connection().await?;
        let mut result = cmd.query_async::<Value>(&mut conn).await;
        if let (Err(e), Some(eval)) = (&result, on_noscript) {
            if e.kind() == ErrorKind::NoScriptError {
                tracing::debug!("redis lost the limiter script; sending it again");
                result = eval().query_async::<Value>(&mut conn).await;
            }
        }
        let e = match result {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        let failure = Failure::of(&e);
        if failure == Failure::Reply {
            return Err(failure.error(e));
        }
        shared.forget();
        if attempt >= 2 || !failure.retried(repeat) {
            return Err(failure.error(e));
        }
        tracing::debug!("redis call failed ({e}); retrying on a fresh connection");
    }
}

/// Errors after which the connection is useless, or points at the wrong server (a former
/// primary after a Sentinel failover answers READONLY).
fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
        || matches!(
            e.kind(),
            ErrorKind::ReadOnly | ErrorKind::MasterDown | ErrorKind::ClusterDown
        )
}

fn pool_error(e: PoolError<RedisError>) -> StorageError {
    match e {
        PoolError::Timeout(kind) => {
            StorageError::Unavailable(format!("no redis connection in time ({kind:?})"))
        }
        PoolError::Backend(e) => StorageError::Unavailable(e.to_string()),
        other => StorageError::Unavailable(other.to_string()),
    }
}

/// The hash slot of a key (CRC16-XMODEM of its hash tag, mod 16384), as Redis Cluster
/// computes it.
pub(crate) fn key_slot(key: &str) -> u16 {
    let key = key.as_bytes();
    let tagged = crate::keys::tag_span(key).map_or(key, |tag| &key[tag]);
    let mut crc: u16 = 0;
    for &byte in tagged {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16_384
}

/// Generous per-round-trip deadline for administrative calls (reset's SCAN pages).
pub(crate) fn admin_deadline(deadline: Duration) -> Duration {
    deadline.max(Duration::from_secs(2))
}

#[cfg(test)]
mod tests {
    use super::key_slot;

    #[test]
    fn slots_match_redis_cluster() {
        // The cluster spec's check value of its CRC16: "123456789" hashes to 0x31C3, which
        // is below 16384, so it is the slot too.
        assert_eq!(key_slot("123456789"), 0x31C3);
        // Values from CLUSTER KEYSLOT.
        assert_eq!(key_slot("foo"), 12_182);
        assert_eq!(key_slot("{user1000}.following"), key_slot("user1000"));
        assert_eq!(key_slot("user1000"), 3_443);
        // An empty first tag: the whole key is hashed, not "bar".
        assert_eq!(key_slot("foo{}{bar}"), 8_363);
        assert_eq!(key_slot("bar"), 5_061);
        assert_eq!(key_slot("foo{{bar}}zap"), key_slot("{bar"));
    }
}
