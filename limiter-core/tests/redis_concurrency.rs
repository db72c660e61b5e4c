//! Two OS processes with many tasks each, against one Redis and limit L, admit exactly L,
//! for every strategy (DESIGN §7). The test binary runs itself twice as the workers.
#![cfg(feature = "redis")]

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{RedisServer, redis_available};
use limiter_core::storage::redis::{FailurePolicy, RedisStore};
use limiter_core::{Hit, Rate, Storage, Strategy, Timestamp};

const PORT_VAR: &str = "LIMITER_TEST_CHILD_REDIS_PORT";
const PROCESSES: usize = 2;
const TASKS: usize = 64;
const TRIES: usize = 4;
/// L for the single limits; the batch has a tighter and a looser limit.
const LIMIT: u64 = 37;
const BATCH: [&str; 2] = ["25 per minute", "40 per hour"];
const NOW: Timestamp = Timestamp::from_secs(1_700_000_000);

/// A limit of one case: key, rate, strategy.
type Limit = (String, Rate, Strategy);

#[test]
fn two_processes_admit_exactly_the_limit() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "--ignored",
                    "--exact",
                    "worker_process",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(PORT_VAR, server.port.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut admitted: BTreeMap<String, u64> = BTreeMap::new();
    let mut attempts: BTreeMap<String, u64> = BTreeMap::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "a worker failed");
        let stdout = String::from_utf8(out.stdout).unwrap();
        for line in stdout.lines() {
            // libtest may print "test worker_process ... " on the same line first.
            if let Some(rest) = line.find("ADMITTED ").map(|at| &line[at + 9..]) {
                let mut parts = rest.split(' ');
                let name = parts.next().unwrap().to_string();
                let n: u64 = parts.next().unwrap().parse().unwrap();
                let tried: u64 = parts.next().unwrap().parse().unwrap();
                *admitted.entry(name.clone()).or_default() += n;
                *attempts.entry(name).or_default() += tried;
            }
            assert!(!line.contains("ERROR"), "{line}");
        }
    }
    println!("admitted: {admitted:?} of {attempts:?} attempts");
    assert_eq!(admitted.len(), Strategy::ALL.len() + 1, "{admitted:?}");
    for strategy in Strategy::ALL {
        assert_eq!(admitted[strategy.name()], LIMIT, "{strategy}");
        assert_eq!(
            attempts[strategy.name()],
            (PROCESSES * TASKS * TRIES) as u64
        );
    }
    assert_eq!(admitted["batch"], 25);
}

#[test]
#[ignore = "a worker process of two_processes_admit_exactly_the_limit"]
fn worker_process() {
    let Ok(port) = std::env::var(PORT_VAR) else {
        println!("run by two_processes_admit_exactly_the_limit only");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = RedisStore::builder(&format!("redis://127.0.0.1:{port}/0"))
            .unwrap()
            .pool_size(4)
            .deadline(Duration::from_secs(10))
            .on_failure(FailurePolicy::FailClosed)
            .build()
            .unwrap();
        let rate = Rate::parse(&format!("{LIMIT} per minute")).unwrap();
        let mut cases: Vec<(String, Vec<Limit>)> = Strategy::ALL
            .iter()
            .map(|&s| {
                let key = format!("LIMITER{{shared}}:{s}:{LIMIT}/1minute");
                (s.name().to_string(), vec![(key, rate, s)])
            })
            .collect();
        cases.push((
            "batch".to_string(),
            BATCH
                .iter()
                .zip([Strategy::MovingWindow, Strategy::Gcra])
                .map(|(r, s)| {
                    (
                        format!("LIMITER{{shared}}:batch:{r}"),
                        Rate::parse(r).unwrap(),
                        s,
                    )
                })
                .collect(),
        ));
        for (name, limits) in cases {
            let mut tasks = Vec::new();
            for _ in 0..TASKS {
                let store = store.clone();
                let limits = limits.clone();
                tasks.push(tokio::spawn(async move {
                    let hits: Vec<Hit<'_>> =
                        limits.iter().map(|(k, r, s)| Hit::new(k, *r, *s)).collect();
                    let mut admitted = 0u64;
                    for _ in 0..TRIES {
                        match store.decide(&hits, NOW).await {
                            Ok(d) => admitted += u64::from(d.admitted),
                            Err(e) => println!("ERROR {e}"),
                        }
                    }
                    admitted
                }));
            }
            let mut admitted = 0;
            for task in tasks {
                admitted += task.await.unwrap();
            }
            println!("ADMITTED {name} {admitted} {}", TASKS * TRIES);
        }
    });
}
