//! A 3-primary Redis Cluster started by the test: decisions agree with the memory store,
//! within one slot (one client) and across slots (limits keyed on different clients), keys
//! spread over every node, and reset() reaches them all. A batch across slots whose later
//! call fails leaves no charge behind; failovers are followed.
#![cfg(feature = "redis")]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{
    RedisServer, Rng, admin, all_keys, redis_available, strict_store, trade_like_memory, wait_until,
};
use limiter_core::storage::redis::{FailurePolicy, RedisStore};
use limiter_core::{Hit, ManualClock, MemoryStore, Rate, Storage, Strategy, Timestamp};

/// Three primaries, each with `replicas` replicas; primaries first.
fn start_cluster_with(replicas: usize) -> Vec<RedisServer> {
    let nodes: Vec<RedisServer> = (0..3 * (1 + replicas))
        .map(|_| {
            RedisServer::start_with(&[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
                "--repl-diskless-sync-delay",
                "0",
            ])
        })
        .collect();
    let addresses: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let status = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addresses)
        .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("redis-cli --cluster create");
    assert!(status.success());
    for node in &nodes {
        wait_until(Duration::from_secs(10), "cluster_state:ok", || {
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query(&mut node.admin())
                .unwrap();
            info.contains("cluster_state:ok")
        });
    }
    nodes
}

fn start_cluster() -> Vec<RedisServer> {
    start_cluster_with(0)
}

fn role(node: &RedisServer) -> String {
    let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut node.admin()).unwrap();
    redis::from_redis_value(&role[0]).unwrap()
}

const CLIENTS: [&str; 6] = [
    "10.0.0.1",
    "10.0.0.2",
    "10.0.0.3",
    "api-key-7",
    "user:42",
    "10.9.9.9",
];
const RATES: [&str; 5] = [
    "3 per second",
    "5 per 2 seconds",
    "2 per 3 seconds",
    "4 per minute",
    "1 per second",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_decides_like_memory_within_and_across_slots() {
    if !redis_available() {
        return;
    }
    let nodes = start_cluster();
    let uri = format!(
        "redis+cluster://127.0.0.1:{},127.0.0.1:{}?ttl_grace_ms=600000",
        nodes[0].port, nodes[1].port
    );
    let store = strict_store(&uri)
        // Every stat against memory's: the block cache answers a blocked request's other
        // limits without asking Redis (tests/redis_block_cache.rs covers it).
        .block_cache(0)
        .build()
        .unwrap();

    // Slots really differ: the clients' keys land on more than one node.
    let slot_of = |key: &str| -> i64 {
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut nodes[0].admin())
            .unwrap()
    };
    let slots: std::collections::BTreeSet<i64> = CLIENTS
        .iter()
        .map(|c| slot_of(&format!("LIMITER{{{c}}}:x")))
        .collect();
    assert!(slots.len() >= 3, "{slots:?}");

    let mut steps = 0;
    let (mut cross_slot, mut cross_denied, mut swaps) = (0, 0, 0);
    for seed in 1..=24u64 {
        let mut rng = Rng::new(seed);
        let memory = MemoryStore::new(10_000);
        let clock = ManualClock::new(Timestamp::from_micros(
            1_700_000_000_000_000 + rng.below(9_000_000),
        ));
        // The elastic fixed window is left out of cross-slot batches: a refund cannot move
        // its window end back (documented), so it differs from memory there by design.
        let strategy = [
            Strategy::FixedWindow,
            Strategy::MovingWindow,
            Strategy::MovingWindowElastic,
            Strategy::SlidingWindowCounter,
            Strategy::Gcra,
        ][seed as usize % 5];
        let across = seed % 3 != 0;
        let limits: Vec<(String, Rate)> = (0..6)
            .map(|i| {
                let client = if across {
                    *rng.pick(&CLIENTS)
                } else {
                    CLIENTS[seed as usize % 6]
                };
                let rate: Rate = rng.pick(&RATES).parse().unwrap();
                (format!("LIMITER{{{client}}}:c{seed}-{i}:{rate}"), rate)
            })
            .collect();
        // The last admitted batch, which a step may trade for its own (refund and decide).
        let mut last: Option<Vec<Hit<'_>>> = None;
        for step in 0..80 {
            steps += 1;
            let size = 1 + rng.below(4) as usize;
            let mut batch: Vec<Hit<'_>> = Vec::new();
            for _ in 0..size {
                let (key, rate) = rng.pick(&limits);
                if batch.iter().all(|h| h.key != key) {
                    batch.push(Hit::new(key, *rate, strategy).with_cost(1 + rng.below(10) / 8));
                }
            }
            let tags: std::collections::BTreeSet<&str> = batch
                .iter()
                .map(|h| h.key.split('}').next().unwrap())
                .collect();
            let now = clock.now();
            let got = match last.take().filter(|_| rng.chance(25)) {
                Some(earlier) => {
                    let context = format!("seed {seed} step {step}");
                    let got =
                        trade_like_memory(&store, &memory, &earlier, &batch, now, &context).await;
                    swaps += 1;
                    got
                }
                None => {
                    let expected = memory.decide_now(&batch, now);
                    let got = store.decide(&batch, now).await.expect("decide");
                    assert_eq!(got, expected, "seed {seed} step {step}: {batch:?}");
                    got
                }
            };
            if got.admitted {
                last = Some(batch.clone());
            }
            if tags.len() > 1 {
                cross_slot += 1;
                cross_denied += u64::from(!got.admitted);
            }
            clock.advance(Duration::from_micros(rng.below(600_000)));
        }
    }
    println!(
        "cluster agreed with memory on {steps} steps, {cross_slot} across slots \
         ({cross_denied} denied), {swaps} refunds and decisions together"
    );
    assert!(cross_slot > 100 && cross_denied > 20 && swaps > 100);

    // Keys sit on every primary; reset() deletes them everywhere.
    let counts: Vec<usize> = nodes
        .iter()
        .map(|n| all_keys(&mut admin(n.port)).len())
        .collect();
    assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
    store.reset().await.unwrap();
    let counts: Vec<usize> = nodes
        .iter()
        .map(|n| all_keys(&mut admin(n.port)).len())
        .collect();
    assert_eq!(counts, [0, 0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_later_slot_fails_leaves_no_charge_in_the_earlier_one() {
    if !redis_available() {
        return;
    }
    let nodes = start_cluster();
    let uri = format!("redis+cluster://127.0.0.1:{}", nodes[0].port);
    let store = strict_store(&uri).block_cache(0).build().unwrap();
    let rate: Rate = "3 per minute".parse().unwrap();
    let now = Timestamp::from_secs(1_700_000_010);
    // The node that holds a key answers EXISTS; the others redirect (MOVED).
    let owner = |key: &str| {
        nodes
            .iter()
            .position(|n| {
                redis::cmd("EXISTS")
                    .arg(key)
                    .query::<i64>(&mut n.admin())
                    .is_ok()
            })
            .expect("a node holds the key")
    };
    let key_of = |client: &str| format!("LIMITER{{{client}}}:/x:3/1minute");
    let first = key_of(CLIENTS[0]);
    let second = CLIENTS
        .iter()
        .map(|c| key_of(c))
        .find(|k| owner(k) != owner(&first))
        .expect("clients on two nodes");
    let hits = [
        Hit::new(&first, rate, Strategy::FixedWindow),
        Hit::new(&second, rate, Strategy::FixedWindow),
    ];
    assert!(store.decide(&hits, now).await.unwrap().admitted);

    // The second slot's node now refuses the scripts (NOPERM): its call fails after the
    // first slot was charged, and the failure policy answers.
    let acl = |rule: &[&str]| {
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg("default")
            .arg(rule)
            .exec(&mut nodes[owner(&second)].admin())
            .unwrap();
    };
    acl(&["-eval", "-evalsha"]);
    assert!(store.decide(&hits, now).await.is_err());
    acl(&["+eval", "+evalsha"]);

    // Redis holds only the first request's charges.
    let other = strict_store(&uri).block_cache(0).build().unwrap();
    let left = other.peek(&hits, now).await.unwrap();
    assert_eq!(left.stats[0].remaining, 2, "{left:?}");
    assert_eq!(left.stats[1].remaining, 2, "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_failover_is_survived() {
    if !redis_available() {
        return;
    }
    let nodes = start_cluster_with(1);
    wait_until(Duration::from_secs(15), "three replicas", || {
        nodes.iter().filter(|n| role(n) == "slave").count() == 3
    });
    let replicas: Vec<&RedisServer> = nodes.iter().filter(|n| role(n) == "slave").collect();
    // Every node must know the replicas as such, or the primaries will not vote.
    for node in &nodes {
        wait_until(
            Duration::from_secs(15),
            "every node to see three replicas",
            || {
                let view: String = redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query(&mut node.admin())
                    .unwrap();
                view.matches("slave").count() == 3
            },
        );
    }
    for replica in &replicas {
        wait_until(Duration::from_secs(15), "replicas to sync", || {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut replica.admin())
                .unwrap();
            info.contains("master_link_status:up")
        });
    }
    let uri = format!("redis+cluster://127.0.0.1:{}", nodes[0].port);
    let store = RedisStore::builder(&uri)
        .unwrap()
        .deadline(Duration::from_secs(3))
        .on_failure(FailurePolicy::FailClosed)
        .build()
        .unwrap();
    let rate: Rate = "10 per minute".parse().unwrap();
    let now = Timestamp::from_secs(1_700_000_000);
    let keys: Vec<String> = CLIENTS
        .iter()
        .map(|c| format!("LIMITER{{{c}}}:/:10/1minute"))
        .collect();
    for key in &keys {
        for _ in 0..6 {
            let d = store
                .decide(&[Hit::new(key, rate, Strategy::FixedWindow)], now)
                .await;
            assert!(d.unwrap().admitted);
        }
    }
    // Every replica takes over from its primary, one after another (a manual failover loses
    // no write).
    for replica in &replicas {
        // A manual failover whose election fails is simply asked for again.
        wait_until(Duration::from_secs(20), "a replica to take over", || {
            if role(replica) == "master" {
                return true;
            }
            redis::cmd("CLUSTER")
                .arg("FAILOVER")
                .exec(&mut replica.admin())
                .unwrap();
            let start = std::time::Instant::now();
            while start.elapsed() < Duration::from_secs(3) {
                if role(replica) == "master" {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            false
        });
    }
    // The store follows the new primaries without an error, counts intact.
    for key in &keys {
        let hit = [Hit::new(key, rate, Strategy::FixedWindow)];
        for i in 0..4 {
            let d = store
                .decide(&hit, now)
                .await
                .expect("decide after failover");
            assert!(d.admitted, "{key}: hit {} of 10", 7 + i);
        }
        assert!(
            !store.decide(&hit, now).await.unwrap().admitted,
            "{key}: the 11th hit"
        );
    }
}
