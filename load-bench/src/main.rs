//! Load benchmark: the same actix handler behind no limiter, a middleware that limits nothing
//! (`passthrough`: the floor under any limiter written as middleware), actix-governor,
//! actix-limitation and this project's limiter, driven in alternating rounds by a keep-alive
//! load generator.
//!
//! ```sh
//! cargo run --release -p limiter-load-bench                 # every variant, every scenario
//! cargo run --release -p limiter-load-bench -- --seconds 2 --rounds 2 --only none,governor
//! cargo run --release -p limiter-load-bench -- --scenarios under --flood 0   # no flood
//! cargo run --release -p limiter-load-bench -- inproc    # the apps called in-process
//! cargo run --release -p limiter-load-bench -- instructions   # the same, counted by callgrind
//! ```
//!
//! Options: `--seconds` per run (3), `--rounds` (3), `--connections` (64), `--only` variants,
//! `--scenarios` (under, many, over), `--flood` distinct keys for the flood (10 000 000; 0
//! skips it), `--redis-flood` distinct keys for the Redis flood (200 000; 0 skips it).
//!
//! Each server runs in its own process with one actix worker; the load generator runs here
//! on one thread. Requests per second alone vary ±15 % run to run on a 2-core machine, so
//! the harness reports the server's CPU time per request (summed over its threads from
//! `/proc/<pid>/task/*/schedstat`) and what each limiter adds over no limiter. For the Redis
//! variants it reads INFO commandstats of its own redis-server: script calls per request,
//! and all commands per request (Redis counts the commands a script runs there too).

mod flood;
mod inproc;
mod load;
mod passthrough;
mod serve;
mod serve_ours;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use load::{LoadReport, Scenario};

/// One way of serving the handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// No rate limiter at all.
    None,
    /// A middleware that reads the client header and passes every request on: what any
    /// limiter written as actix middleware costs before it limits anything.
    Passthrough,
    /// actix-governor, keyed by the client header, with its headers on.
    Governor,
    /// actix-governor without its `x-ratelimit-*` headers: the limiter's own cost.
    GovernorBare,
    /// actix-limitation on Redis, keyed by the client header.
    Limitation,
    /// limiter on memory, fixed window (route + application limit, headers on).
    MemoryFixed,
    /// limiter on memory, fixed window, configured as governor is: one application-wide
    /// limit from the middleware, no `#[limit]` on the handler, headers on.
    MemoryApp,
    /// `memory-app` without rate-limit headers, to set beside `governor-bare`.
    MemoryBare,
    /// `memory-app` with the IETF draft's `RateLimit-Policy` and `RateLimit` headers.
    MemoryIetf,
    /// limiter on memory, GCRA.
    MemoryGcra,
    /// limiter on memory, moving window.
    MemoryMoving,
    /// limiter on Redis, fixed window.
    RedisFixed,
    /// limiter on Redis, moving window.
    RedisMoving,
}

impl Variant {
    const ALL: [Variant; 13] = [
        Variant::None,
        Variant::Passthrough,
        Variant::Governor,
        Variant::GovernorBare,
        Variant::MemoryFixed,
        Variant::MemoryApp,
        Variant::MemoryBare,
        Variant::MemoryIetf,
        Variant::MemoryGcra,
        Variant::MemoryMoving,
        Variant::RedisFixed,
        Variant::RedisMoving,
        Variant::Limitation,
    ];

    fn name(self) -> &'static str {
        match self {
            Variant::None => "none",
            Variant::Passthrough => "passthrough",
            Variant::Governor => "governor",
            Variant::GovernorBare => "governor-bare",
            Variant::Limitation => "limitation",
            Variant::MemoryFixed => "memory-fixed",
            Variant::MemoryApp => "memory-app",
            Variant::MemoryBare => "memory-bare",
            Variant::MemoryIetf => "memory-ietf",
            Variant::MemoryGcra => "memory-gcra",
            Variant::MemoryMoving => "memory-moving",
            Variant::RedisFixed => "redis-fixed",
            Variant::RedisMoving => "redis-moving",
        }
    }

    /// Ours configured as governor is: one application limit, charged by the middleware, on
    /// a plain handler (`memory-app` and its headerless and IETF forms).
    pub fn app_limit_only(self) -> bool {
        matches!(
            self,
            Variant::MemoryApp | Variant::MemoryBare | Variant::MemoryIetf
        )
    }

    fn parse(name: &str) -> Option<Variant> {
        Variant::ALL.into_iter().find(|v| v.name() == name)
    }

    fn needs_redis(self) -> bool {
        matches!(
            self,
            Variant::Limitation | Variant::RedisFixed | Variant::RedisMoving
        )
    }
}

struct Options {
    seconds: f64,
    rounds: usize,
    connections: usize,
    variants: Vec<Variant>,
    scenarios: Vec<Scenario>,
    flood_keys: u64,
    redis_flood_keys: u64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve") {
        // serve VARIANT SCENARIO BIND [REDIS_URL]
        let variant = Variant::parse(&args[2]).expect("known variant");
        let scenario = Scenario::parse(&args[3]).expect("known scenario");
        let redis = args.get(5).cloned().unwrap_or_default();
        serve::run(variant, scenario, &args[4], &redis).expect("server runs");
        return;
    }
    if args.get(1).map(String::as_str) == Some("load") {
        // load BIND SCENARIO SECONDS: drive a server started by hand (to profile it).
        let scenario = Scenario::parse(&args[3]).expect("known scenario");
        let seconds = args[4].parse().expect("seconds");
        let report = load::run(&args[2], scenario, 64, Duration::from_secs_f64(seconds));
        println!("{} requests, {:.0}/s", report.requests, report.per_second());
        return;
    }
    if args.get(1).map(String::as_str) == Some("inproc") {
        inproc::run(&args[2..]);
        return;
    }
    if args.get(1).map(String::as_str) == Some("instructions") {
        inproc::instructions(&args[2..]);
        return;
    }
    if args.get(1).map(String::as_str) == Some("counted-run") {
        inproc::run_counted(&args[2..]);
        return;
    }
    if args.get(1).map(String::as_str) == Some("flood-side") {
        flood::run_side(&args[2], args[3].parse().expect("a key count"));
        return;
    }
    let options = parse_options(&args[1..]);
    orchestrate(&options);
    if options.flood_keys > 0 {
        flood::compare(options.flood_keys);
    }
    if options.redis_flood_keys > 0 {
        match Redis::start() {
            Some(redis) => flood::redis(options.redis_flood_keys, &redis),
            None => eprintln!("redis-server not found or not starting: the Redis flood is skipped"),
        }
    }
}

const USAGE: &str = "\
limiter-load-bench [--seconds S] [--rounds N] [--connections N] [--only V,..] [--scenarios S,..] [--flood KEYS] [--redis-flood KEYS]
limiter-load-bench inproc [REQUESTS] [ROUNDS] [VARIANTS] [one|many|both] [under|over]
limiter-load-bench instructions [REQUESTS] [VARIANTS] [under|over]   (needs valgrind)

--flood 0 skips the key flood (default 10000000 keys), --redis-flood 0 the Redis one
(default 200000 keys)";

fn parse_options(args: &[String]) -> Options {
    let mut options = Options {
        seconds: 3.0,
        rounds: 3,
        connections: 64,
        variants: Variant::ALL.to_vec(),
        scenarios: Scenario::ALL.to_vec(),
        flood_keys: 10_000_000,
        redis_flood_keys: 200_000,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if matches!(flag.as_str(), "--help" | "-h") {
            let variants: Vec<&str> = Variant::ALL.iter().map(|v| v.name()).collect();
            let scenarios: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
            println!(
                "{USAGE}\nvariants: {}\nscenarios: {}",
                variants.join(", "),
                scenarios.join(", ")
            );
            std::process::exit(0);
        }
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--seconds" => options.seconds = value.parse().expect("--seconds N"),
            "--rounds" => options.rounds = value.parse().expect("--rounds N"),
            "--connections" => options.connections = value.parse().expect("--connections N"),
            "--only" => {
                options.variants = value
                    .split(',')
                    .map(|v| Variant::parse(v).unwrap_or_else(|| panic!("unknown variant {v}")))
                    .collect();
            }
            "--flood" => options.flood_keys = value.parse().expect("--flood N"),
            "--redis-flood" => {
                options.redis_flood_keys = value.parse().expect("--redis-flood N");
            }
            "--scenarios" => {
                options.scenarios = value
                    .split(',')
                    .map(|s| Scenario::parse(s).unwrap_or_else(|| panic!("unknown scenario {s}")))
                    .collect();
            }
            other => panic!("unknown option {other}"),
        }
    }
    options
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A redis-server of the harness's own, on a free port, stopped on drop.
pub(crate) struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Option<Redis> {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .ok()?;
        let redis = Redis { child, port };
        wait_for_port(port, Duration::from_secs(5)).then_some(redis)
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub(crate) fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Keys held and memory used (MB) by the server now.
    pub(crate) fn keys_and_used_mb(&self) -> (u64, f64) {
        let used = self
            .cli(&["info", "memory"])
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(f64::NAN, |bytes| bytes / (1024.0 * 1024.0));
        let keys = self.cli(&["dbsize"]).trim().parse().unwrap_or(0);
        (keys, used)
    }

    /// Commands the server received since the last reset: (script calls, all commands,
    /// connections). Redis counts the commands a script runs in its commandstats too, so
    /// "all" includes those; for a client that sends no scripts it is what the client sent.
    /// A command Redis rejects (an unknown one, or `CLIENT SETINFO` before Redis 7.2, which
    /// redis-rs sends on every new connection) is in no commandstats line: it is counted from
    /// the error replies. Read in one `INFO all`, whose own connection is not counted.
    fn commands(&self) -> (u64, u64, u64) {
        let stats = self.cli(&["info", "all"]);
        let stat = |name: &str| -> u64 {
            stats
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        let rejected = stat("total_error_replies");
        let connections = stat("total_connections_received").saturating_sub(1);
        let calls = |line: &str| -> u64 {
            line.split("calls=")
                .nth(1)
                .and_then(|rest| rest.split(',').next()?.parse().ok())
                .unwrap_or(0)
        };
        let mut scripts = 0;
        let mut all = 0;
        for line in stats.lines().filter(|l| l.starts_with("cmdstat_")) {
            if line.starts_with("cmdstat_config") || line.starts_with("cmdstat_info") {
                continue;
            }
            if line.starts_with("cmdstat_evalsha:") || line.starts_with("cmdstat_eval:") {
                scripts += calls(line);
            }
            all += calls(line);
            // Rejected calls of known commands are in their line and in the error replies.
            all -= line
                .split("rejected_calls=")
                .nth(1)
                .and_then(|rest| rest.split(',').next()?.parse::<u64>().ok())
                .unwrap_or(0)
                .min(all);
        }
        (scripts, all + rejected, connections)
    }

    /// CPU time of `redis-server` so far (all its threads).
    fn cpu(&self) -> Duration {
        cpu_time(self.child.id())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for_port(port: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// CPU time of every thread of a process so far.
fn cpu_time(pid: u32) -> Duration {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the server runs");
    let nanos: u64 = tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}

#[derive(Default)]
struct Sample {
    report: LoadReport,
    cpu: Duration,
    redis_commands: Option<(u64, u64, u64)>,
    /// `redis-server`'s CPU time over the run, for the Redis variants.
    redis_cpu: Option<Duration>,
}

fn measure(
    variant: Variant,
    scenario: Scenario,
    options: &Options,
    redis: Option<&Redis>,
) -> Option<Sample> {
    if variant.needs_redis() && redis.is_none() {
        return None;
    }
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let exe = std::env::current_exe().expect("own path");
    let redis_url = redis.map(Redis::url).unwrap_or_default();
    let mut server = Command::new(exe)
        .args(["serve", variant.name(), scenario.name(), &bind, &redis_url])
        .stdout(Stdio::null())
        .spawn()
        .expect("server starts");
    let mut sample = None;
    if wait_for_port(port, Duration::from_secs(10)) {
        // Warm up: connections, the limiter's first keys, the server's allocator.
        load::run(
            &bind,
            scenario,
            options.connections,
            Duration::from_millis(500),
        );
        if let Some(redis) = redis {
            redis.cli(&["config", "resetstat"]);
        }
        let before = cpu_time(server.id());
        let redis_before = redis.map(Redis::cpu);
        let report = load::run(
            &bind,
            scenario,
            options.connections,
            Duration::from_secs_f64(options.seconds),
        );
        let cpu = cpu_time(server.id()).saturating_sub(before);
        let redis_cpu = redis
            .zip(redis_before)
            .filter(|_| variant.needs_redis())
            .map(|(redis, before)| redis.cpu().saturating_sub(before));
        let redis_commands = redis.filter(|_| variant.needs_redis()).map(Redis::commands);
        sample = Some(Sample {
            report,
            cpu,
            redis_commands,
            redis_cpu,
        });
    } else {
        eprintln!("{} did not start", variant.name());
    }
    let _ = server.kill();
    let _ = server.wait();
    sample
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn orchestrate(options: &Options) {
    let redis = if options.variants.iter().any(|v| v.needs_redis()) {
        let redis = Redis::start();
        if redis.is_none() {
            eprintln!("redis-server not found or not starting: Redis variants are skipped");
        }
        redis
    } else {
        None
    };
    println!(
        "load: {} connections, keep-alive, {} s per run, {} rounds, variants alternating; \
         server: 1 actix worker",
        options.connections, options.seconds, options.rounds
    );
    for &scenario in &options.scenarios {
        let mut samples: BTreeMap<usize, Vec<Sample>> = BTreeMap::new();
        for round in 0..options.rounds {
            // Rotate the order each round so no variant always runs first or last.
            let n = options.variants.len();
            for k in 0..n {
                let index = (k + round) % n;
                let variant = options.variants[index];
                if let Some(sample) = measure(variant, scenario, options, redis.as_ref()) {
                    samples.entry(index).or_default().push(sample);
                }
            }
        }
        print_scenario(scenario, options, &samples);
    }
}

fn print_scenario(scenario: Scenario, options: &Options, samples: &BTreeMap<usize, Vec<Sample>>) {
    println!("\nscenario: {}", scenario.describe());
    println!(
        "{:<15} {:>9} {:>8} {:>8} {:>10} {:>10} {:>7}  redis scripts/cmds/conns per req, redis-server us/req",
        "variant", "req/s", "p50 us", "p99 us", "cpu us/req", "added us", "429 %"
    );
    let cpu_per_request = |s: &Sample| s.cpu.as_secs_f64() * 1e6 / s.report.requests.max(1) as f64;
    let baseline = options
        .variants
        .iter()
        .position(|&v| v == Variant::None)
        .and_then(|i| samples.get(&i))
        .map(|s| median(&mut s.iter().map(cpu_per_request).collect::<Vec<_>>()));
    for (&index, runs) in samples {
        let variant = options.variants[index];
        let rps = median(
            &mut runs
                .iter()
                .map(|s| s.report.per_second())
                .collect::<Vec<_>>(),
        );
        let p50 = median(
            &mut runs
                .iter()
                .map(|s| s.report.percentile(0.50))
                .collect::<Vec<_>>(),
        );
        let p99 = median(
            &mut runs
                .iter()
                .map(|s| s.report.percentile(0.99))
                .collect::<Vec<_>>(),
        );
        let cpu = median(&mut runs.iter().map(cpu_per_request).collect::<Vec<_>>());
        let limited = median(
            &mut runs
                .iter()
                .map(|s| 100.0 * s.report.limited as f64 / s.report.requests.max(1) as f64)
                .collect::<Vec<_>>(),
        );
        let added = baseline
            .filter(|_| variant != Variant::None)
            .map_or("-".to_string(), |b| format!("{:+.3}", cpu - b));
        // The median over the runs of a per-request amount the Redis variants have, or "-".
        let redis_median = |amount: &dyn Fn(&Sample) -> Option<f64>, decimals: usize| {
            let mut values: Vec<f64> = runs
                .iter()
                .filter_map(|s| Some(amount(s)? / s.report.requests.max(1) as f64))
                .collect();
            if values.is_empty() {
                "-".to_string()
            } else {
                format!("{:.*}", decimals, median(&mut values))
            }
        };
        let per_request = |pick: fn((u64, u64, u64)) -> u64| {
            redis_median(&|s| Some(pick(s.redis_commands?) as f64), 2)
        };
        let redis_cpu = redis_median(&|s| Some(s.redis_cpu?.as_secs_f64() * 1e6), 3);
        let redis = format!(
            "{}/{}/{}, {}",
            per_request(|(scripts, _, _)| scripts),
            per_request(|(_, all, _)| all),
            per_request(|(_, _, connections)| connections),
            redis_cpu
        );
        println!(
            "{:<15} {:>9.0} {:>8.0} {:>8.0} {:>10.3} {:>10} {:>7.1}  {}",
            variant.name(),
            rps,
            p50,
            p99,
            cpu,
            added,
            limited,
            redis
        );
    }
}
