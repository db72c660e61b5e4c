//! The load generator: keep-alive HTTP/1.1 connections on one thread, each sending the next
//! request as soon as the previous response is read, for a fixed time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Distinct clients in the many-clients scenario.
const MANY_CLIENTS: u64 = 10_000;

/// What the clients do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// One client, always under its limits.
    Under,
    /// 10 000 clients taking turns, all under their limits.
    Many,
    /// One client far over its route limit (10 per minute): nearly every request is a 429.
    Over,
}

impl Scenario {
    pub const ALL: [Scenario; 3] = [Scenario::Under, Scenario::Many, Scenario::Over];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Under => "under",
            Scenario::Many => "many",
            Scenario::Over => "over",
        }
    }

    pub fn parse(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Scenario::Under => "one client under its limit",
            Scenario::Many => "10 000 clients, each under its limit",
            Scenario::Over => "one client far over its limit (10 per minute)",
        }
    }
}

/// What one load run saw.
#[derive(Default)]
pub struct LoadReport {
    pub requests: u64,
    pub limited: u64,
    pub elapsed: Duration,
    /// Latencies in microseconds, sorted.
    latencies: Vec<u32>,
}

impl LoadReport {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies.len() - 1) as f64 * q).round() as usize;
        f64::from(self.latencies[i])
    }
}

/// Drives `bind` with `connections` connections for `duration`.
pub fn run(bind: &str, scenario: Scenario, connections: usize, duration: Duration) -> LoadReport {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let next_client = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let deadline = started + duration;
        let tasks: Vec<_> = (0..connections)
            .map(|_| {
                let next_client = next_client.clone();
                let bind = bind.to_string();
                tokio::spawn(
                    async move { connection(&bind, scenario, deadline, &next_client).await },
                )
            })
            .collect();
        let mut report = LoadReport::default();
        for task in tasks {
            if let Ok((requests, limited, latencies)) = task.await {
                report.requests += requests;
                report.limited += limited;
                report.latencies.extend(latencies);
            }
        }
        report.elapsed = started.elapsed();
        report.latencies.sort_unstable();
        report
    })
}

async fn connection(
    bind: &str,
    scenario: Scenario,
    deadline: Instant,
    next_client: &AtomicU64,
) -> (u64, u64, Vec<u32>) {
    let (mut requests, mut limited, mut latencies) = (0, 0, Vec::new());
    let Ok(mut stream) = TcpStream::connect(bind).await else {
        return (requests, limited, latencies);
    };
    let _ = stream.set_nodelay(true);
    let mut buffer = Vec::with_capacity(4096);
    let mut request = Vec::with_capacity(128);
    while Instant::now() < deadline {
        let client = match scenario {
            Scenario::Many => next_client.fetch_add(1, Ordering::Relaxed) % MANY_CLIENTS,
            Scenario::Under | Scenario::Over => 0,
        };
        request.clear();
        request.extend_from_slice(b"GET /hello HTTP/1.1\r\nHost: bench\r\nX-Client: c");
        request.extend_from_slice(client.to_string().as_bytes());
        request.extend_from_slice(b"\r\n\r\n");
        let sent = Instant::now();
        if stream.write_all(&request).await.is_err() {
            break;
        }
        let Some(status) = read_response(&mut stream, &mut buffer).await else {
            break;
        };
        latencies.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
        requests += 1;
        if status == 429 {
            limited += 1;
        }
    }
    (requests, limited, latencies)
}

/// Reads one response; returns its status code.
async fn read_response(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<u16> {
    loop {
        if let Some(end) = find(buffer, b"\r\n\r\n") {
            let head = std::str::from_utf8(&buffer[..end]).ok()?;
            let status = head.get(9..12)?.parse().ok()?;
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            let total = end + 4 + length;
            if buffer.len() >= total {
                buffer.drain(..total);
                return Some(status);
            }
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
