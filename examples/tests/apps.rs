//! Each example, built and started as a process on a free port, does what the article says.

// limiter-core's helper: the Redis test starts its own redis-server and stops it.
#[path = "../../limiter-core/tests/common/mod.rs"]
mod redis_server;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The target directory these tests were built in (`<target>/<profile>/deps/apps-*`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .to_path_buf()
}

fn example_binary(name: &str) -> PathBuf {
    static BUILD: Once = Once::new();
    let profile = profile_dir();
    BUILD.call_once(|| {
        let target = profile.parent().unwrap();
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .args([
                "build",
                "--quiet",
                "-p",
                "examples",
                "--examples",
                "--target-dir",
            ])
            .arg(target)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile.file_name().is_some_and(|p| p == "release") {
            cargo.arg("--release");
        }
        let status = cargo.status().expect("cargo runs");
        assert!(status.success(), "building the examples failed");
    });
    profile.join("examples").join(name)
}

struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(name: &str, env: &[(&str, &str)]) -> Server {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(example_binary(name))
        .env("BIND", &addr)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .spawn()
        .expect("the example starts");
    let server = Server { child, addr };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(&server.addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "{name} did not start listening on {}",
            server.addr
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on its own connection.
fn get(server: &Server, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        server.addr
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Response {
        status,
        headers,
        body: body.to_string(),
    }
}

fn minute_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 60
}

/// Runs `check` on a freshly started server until one run falls within one clock-aligned
/// minute, at most 3 times, and returns that server. Fixed windows reset at the top of the
/// minute, which legitimately lets a request through mid-check: a run that straddles a
/// boundary is discarded, whatever it found (a failed assertion included), and the next one
/// starts on a server with fresh counters.
fn within_one_minute(start_server: impl Fn() -> Server, check: impl Fn(&Server)) -> Server {
    for _ in 0..3 {
        let server = start_server();
        let before = minute_now();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&server)));
        if minute_now() == before {
            if let Err(failure) = outcome {
                std::panic::resume_unwind(failure);
            }
            return server;
        }
    }
    panic!("three checks in a row straddled a minute boundary");
}

#[test]
fn quickstart_limits_slow_to_one_per_minute() {
    within_one_minute(
        || start("quickstart", &[]),
        |server| {
            let first = get(server, "/slow", &[]);
            assert_eq!(first.status, 200);
            assert_eq!(first.body, r#"{"message":"This is a slow route."}"#);
            let second = get(server, "/slow", &[]);
            assert_eq!(second.status, 429);
            assert_eq!(second.body, "You've hit the rate limit!");
            let retry: u64 = second.header("retry-after").unwrap().parse().unwrap();
            assert!((1..=60).contains(&retry), "Retry-After {retry}");
            // /fast has its own, larger budget.
            for _ in 0..10 {
                let fast = get(server, "/fast", &[]);
                assert_eq!(fast.status, 200);
                assert_eq!(fast.body, r#"{"message":"This is a fast route."}"#);
            }
        },
    );
}

#[test]
fn moving_window_allows_five_in_any_rolling_minute() {
    let server = start("moving_window", &[("LIMITER_STORAGE_URI", "memory://")]);
    for _ in 0..5 {
        let res = get(&server, "/api/data", &[]);
        assert_eq!(res.status, 200);
        assert_eq!(res.body, r#"{"data":"some sensitive data"}"#);
    }
    // A rolling window: no reset at the top of the minute, so the 6th is denied whenever it
    // comes within 60 s, and must wait until the first hit leaves the window.
    let sixth = get(&server, "/api/data", &[]);
    assert_eq!(sixth.status, 429);
    assert_eq!(sixth.body, "You've hit the rate limit!");
    let retry: u64 = sixth.header("retry-after").unwrap().parse().unwrap();
    assert!((55..=60).contains(&retry), "Retry-After {retry}");
}

#[test]
fn moving_window_on_redis_shares_five_between_two_processes() {
    if !redis_server::redis_available() {
        return;
    }
    let redis = redis_server::RedisServer::start();
    let env = [("LIMITER_STORAGE_URI", redis.url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // What memory storage cannot do: two processes (workers, hosts) admit 5 in total.
    let servers = [start("moving_window", &env), start("moving_window", &env)];
    for i in 0..5 {
        let res = get(&servers[i % 2], "/api/data", &[]);
        assert_eq!(res.status, 200, "request {}", i + 1);
        assert_eq!(res.body, r#"{"data":"some sensitive data"}"#);
    }
    for server in &servers {
        let res = get(server, "/api/data", &[]);
        assert_eq!(res.status, 429);
        assert_eq!(res.body, "You've hit the rate limit!");
        let retry: u64 = res.header("retry-after").unwrap().parse().unwrap();
        assert!((55..=60).contains(&retry), "Retry-After {retry}");
    }
    // The hits are in the test's Redis: one moving-window log of the 5 admitted requests.
    let mut admin = redis.admin();
    let keys = redis_server::all_keys(&mut admin);
    assert_eq!(keys.len(), 1, "{keys:?}");
    let logged: usize = redis::cmd("LLEN").arg(&keys[0]).query(&mut admin).unwrap();
    assert_eq!(logged, 5);
}

#[test]
fn moving_window_rejects_a_bad_storage_uri() {
    let output = Command::new(example_binary("moving_window"))
        .env("BIND", "127.0.0.1:1")
        .env("LIMITER_STORAGE_URI", "mongodb://localhost")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown storage scheme \"mongodb\""));
}

#[test]
fn global_limits_route_limits_first_then_the_global_one() {
    let server = within_one_minute(
        || start("global_limits", &[]),
        |server| {
            for _ in 0..10 {
                assert_eq!(get(server, "/public", &[]).status, 200);
            }
            let public = get(server, "/public", &[]);
            assert_eq!(public.status, 429);
            assert_eq!(public.body, "You've hit the rate limit!");
            // The route's limit is the one reported.
            assert_eq!(public.header("x-ratelimit-limit"), Some("10"));
        },
    );
    let used = 10;
    for _ in 0..5 {
        assert_eq!(get(&server, "/admin", &[]).status, 200);
    }
    let admin = get(&server, "/admin", &[]);
    assert_eq!(admin.status, 429);
    assert_eq!(admin.header("x-ratelimit-limit"), Some("5"));
    // Every admitted request counted against the global 1000 per day.
    let index = get(&server, "/", &[]);
    assert_eq!(index.status, 200);
    assert_eq!(index.header("x-ratelimit-limit"), Some("1000"));
    let remaining: u32 = index
        .header("x-ratelimit-remaining")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(remaining, 1000 - used - 5 - 1);
    for _ in 0..remaining {
        assert_eq!(get(&server, "/", &[]).status, 200);
    }
    let over = get(&server, "/", &[]);
    assert_eq!(over.status, 429);
    assert_eq!(over.header("x-ratelimit-limit"), Some("1000"));
    assert_eq!(over.header("x-ratelimit-remaining"), Some("0"));
}

#[test]
fn api_keys_count_per_key_and_per_ip_for_anonymous_clients() {
    within_one_minute(
        || start("api_keys", &[]),
        |server| {
            let call = |key: Option<&str>| match key {
                Some(key) => get(server, "/api/data", &[("X-API-Key", key)]),
                None => get(server, "/api/data", &[]),
            };
            for _ in 0..10 {
                assert_eq!(call(Some("alice")).status, 200);
            }
            let over = call(Some("alice"));
            assert_eq!(over.status, 429);
            assert_eq!(over.body, "You've hit the rate limit!");
            // Another key from the same address has its own budget...
            let res = call(Some("bob"));
            assert_eq!(res.status, 200);
            assert_eq!(res.header("x-ratelimit-remaining"), Some("9"));
            // ...and so does the address itself, for requests without a key.
            let anonymous = call(None);
            assert_eq!(anonymous.status, 200);
            assert_eq!(anonymous.header("x-ratelimit-remaining"), Some("9"));
        },
    );
}
