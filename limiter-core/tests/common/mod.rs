//! Shared by the Redis tests: each test starts its own `redis-server` on a free port, with
//! no persistence, and kills it when the guard drops. No test touches a server it did not
//! start.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Whether the Redis tests can run. Without `redis-server` they print that they are
/// skipped and pass, unless `LIMITER_REQUIRE_REDIS=1`, which makes that a failure.
pub fn redis_available() -> bool {
    let found = which("redis-server").is_some() && which("redis-cli").is_some();
    if !found {
        if std::env::var("LIMITER_REQUIRE_REDIS").as_deref() == Ok("1") {
            panic!("redis-server / redis-cli not found on PATH and LIMITER_REQUIRE_REDIS=1");
        }
        println!("skipped: redis-server not found");
    }
    found
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    // Ports below 30000 stay clear of the ephemeral range the OS hands out, so a redis
    // started later does not collide with a client socket; the listener proves it is free.
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 20_000 + (std::process::id() % 400) * 20;
    loop {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % 5_000;
        let port = (base + offset) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok()
        {
            return port;
        }
    }
}

/// A `redis-server` this test started; killed (and its directory removed) on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
    extra: Vec<String>,
}

impl RedisServer {
    /// A plain server on a free port.
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// A server with extra command-line settings (`["--cluster-enabled", "yes"]`).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        Self::start_on(free_port(), extra)
    }

    pub fn start_on(port: u16, extra: &[&str]) -> RedisServer {
        let dir = std::env::temp_dir().join(format!("limiter-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = RedisServer {
            port,
            child: None,
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .args(["--dir", self.dir.to_str().unwrap()])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        wait_for_ping(self.port, Duration::from_secs(10));
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// A plain connection for the test's own inspection.
    pub fn admin(&self) -> redis::Connection {
        admin(self.port)
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn pause(&self) {
        signal(self.pid(), libc::SIGSTOP);
    }

    pub fn resume(&self) {
        signal(self.pid(), libc::SIGCONT);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            signal(child.id() as i32, libc::SIGCONT);
        }
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) on a child this test started.
    unsafe {
        libc::kill(pid, sig);
    }
}

pub fn admin(port: u16) -> redis::Connection {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let conn = client
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn
}

pub fn wait_for_ping(port: u16, limit: Duration) {
    // (No let chain: limiter-actix's tests, edition 2021, include this module.)
    let pong = || -> Option<String> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
        let mut conn = client
            .get_connection_with_timeout(Duration::from_millis(200))
            .ok()?;
        redis::cmd("PING").query(&mut conn).ok()
    };
    let start = Instant::now();
    loop {
        if pong().is_some() {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "redis on port {port} did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `f` every 20 ms until it returns true or `limit` passes.
pub fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `INFO commandstats` as (command, calls).
pub fn command_calls(conn: &mut redis::Connection) -> Vec<(String, u64)> {
    let info: String = redis::cmd("INFO").arg("commandstats").query(conn).unwrap();
    info.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("cmdstat_")?;
            let (name, stats) = rest.split_once(':')?;
            let calls = stats
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_string(), calls))
        })
        .collect()
}

/// How many times `name` ran, from [`command_calls`] (0 when it never did).
pub fn calls_of(calls: &[(String, u64)], name: &str) -> u64 {
    calls
        .iter()
        .find(|(command, _)| command == name)
        .map_or(0, |(_, n)| *n)
}

/// Every key on the server.
pub fn all_keys(conn: &mut redis::Connection) -> Vec<String> {
    redis::cmd("KEYS").arg("*").query(conn).unwrap()
}

/// A small deterministic generator (xorshift64*), so a failing trace can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// A store on `uri` for tests: a deadline no slow machine misses, and fail-closed, so that
/// trouble with Redis fails the test instead of being answered quietly from memory.
pub fn strict_store(uri: &str) -> limiter_core::storage::redis::RedisStoreBuilder {
    limiter_core::storage::redis::RedisStore::builder(uri)
        .unwrap()
        .deadline(Duration::from_secs(5))
        .on_failure(limiter_core::storage::redis::FailurePolicy::FailClosed)
}

/// `store.refund_and_decide(earlier, batch, now)`, asserted equal to what the memory store
/// says after giving `earlier` back and deciding `batch` (`memory` is left in that state).
pub async fn trade_like_memory(
    store: &limiter_core::storage::redis::RedisStore,
    memory: &limiter_core::MemoryStore,
    earlier: &[limiter_core::Hit<'_>],
    batch: &[limiter_core::Hit<'_>],
    now: limiter_core::Timestamp,
    context: &str,
) -> limiter_core::Decision {
    use limiter_core::Storage;
    memory.refund_now(earlier, now);
    let expected = memory.decide_now(batch, now);
    let got = store
        .refund_and_decide(earlier, batch, now)
        .await
        .expect("refund and decide");
    assert_eq!(got, expected, "{earlier:?} traded for {batch:?}, {context}");
    got
}
