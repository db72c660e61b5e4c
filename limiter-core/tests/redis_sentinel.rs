//! Sentinel: a primary, a replica and two sentinels started by the test. The store finds
//! the primary through the sentinels, decides correctly, and survives a failover with its
//! counts (they were replicated) and without an error.
#![cfg(feature = "redis")]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{RedisServer, admin, free_port, redis_available, wait_for_ping, wait_until};
use limiter_core::storage::redis::{FailurePolicy, RedisStore};
use limiter_core::{Hit, Rate, Storage, Strategy, Timestamp};

/// A sentinel process, killed on drop.
struct Sentinel {
    port: u16,
    child: Child,
    dir: std::path::PathBuf,
}

impl Sentinel {
    fn start(primary_port: u16) -> Sentinel {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("limiter-sentinel-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor limiter 127.0.0.1 {primary_port} 1\n\
                 sentinel down-after-milliseconds limiter 1000\n\
                 sentinel failover-timeout limiter 4000\n",
                dir.display()
            ),
        )
        .unwrap();
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server --sentinel");
        wait_for_ping(port, Duration::from_secs(10));
        Sentinel { port, child, dir }
    }

    fn primary_port(&self) -> u16 {
        let addr: Vec<String> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg("limiter")
            .query(&mut admin(self.port))
            .unwrap();
        addr[1].parse().unwrap()
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn role(port: u16) -> String {
    let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut admin(port)).unwrap();
    redis::from_redis_value(&role[0]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_is_survived() {
    if !redis_available() {
        return;
    }
    // No 5 s pause before the replica's first (diskless) sync.
    let primary = RedisServer::start_with(&["--repl-diskless-sync-delay", "0"]);
    let replica = RedisServer::start_with(&[]);
    redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(primary.port)
        .exec(&mut replica.admin())
        .unwrap();
    wait_until(Duration::from_secs(10), "the replica to sync", || {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut replica.admin())
            .unwrap();
        info.contains("master_link_status:up")
    });
    let sentinels = [Sentinel::start(primary.port), Sentinel::start(primary.port)];
    // Each sentinel must have talked to the replica itself (its INFO says the link to the
    // primary is up) before it can promote it.
    for s in &sentinels {
        wait_until(
            Duration::from_secs(20),
            "sentinels to vet the replica",
            || {
                let replicas: Vec<Vec<String>> = redis::cmd("SENTINEL")
                    .arg("REPLICAS")
                    .arg("limiter")
                    .query(&mut admin(s.port))
                    .unwrap();
                replicas.iter().any(|fields| {
                    let field = |name: &str| {
                        fields
                            .chunks(2)
                            .find(|kv| kv[0] == name)
                            .map(|kv| kv[1].clone())
                    };
                    field("flags").as_deref() == Some("slave")
                        && field("master-link-status").as_deref() == Some("ok")
                })
            },
        );
    }

    let uri = format!(
        "valkey+sentinel://127.0.0.1:{},127.0.0.1:{}/limiter/0",
        sentinels[0].port, sentinels[1].port
    );
    let store = RedisStore::builder(&uri)
        .unwrap()
        .deadline(Duration::from_secs(2))
        .on_failure(FailurePolicy::FailClosed)
        .build()
        .unwrap();
    // Another store, on database 1 so that its connections can be told apart: the ones
    // Sentinel would close when it reconfigures the old primary are closed.
    let killed = RedisStore::builder(&uri.replace("/limiter/0", "/limiter/1"))
        .unwrap()
        .deadline(Duration::from_secs(2))
        .on_failure(FailurePolicy::FailClosed)
        .build()
        .unwrap();
    let rate: Rate = "10 per minute".parse().unwrap();
    let now = Timestamp::from_secs(1_700_000_000);
    let keys: Vec<String> = Strategy::ALL
        .iter()
        .map(|s| format!("LIMITER{{10.0.0.1}}:{s}:10/1minute"))
        .collect();
    let hits: Vec<[Hit<'_>; 1]> = keys
        .iter()
        .zip(Strategy::ALL)
        .map(|(k, s)| [Hit::new(k, rate, s)])
        .collect();
    for hit in &hits {
        for _ in 0..6 {
            assert!(store.decide(hit, now).await.unwrap().admitted);
        }
    }
    // Concurrent calls leave several idle connections in the pool, all to the old primary:
    // after the failover, a retry must not take another of them.
    let peeks: Vec<_> = keys
        .iter()
        .zip(Strategy::ALL)
        .map(|(key, strategy)| {
            let (store, key) = (store.clone(), key.clone());
            tokio::spawn(async move {
                let hit = [Hit::new(&key, rate, strategy)];
                store.peek(&hit, now).await.map(|d| d.stats[0].remaining)
            })
        })
        .collect();
    for peek in peeks {
        assert_eq!(peek.await.unwrap().unwrap(), 4);
    }
    for hit in &hits {
        for _ in 0..6 {
            assert!(killed.decide(hit, now).await.unwrap().admitted);
        }
    }
    let peeks: Vec<_> = hits
        .iter()
        .map(|hit| {
            let (killed, hit) = (killed.clone(), hit[0]);
            let key = hit.key.to_string();
            tokio::spawn(async move {
                let hit = [Hit::new(&key, hit.rate, hit.strategy)];
                killed.peek(&hit, now).await.map(|d| d.stats[0].remaining)
            })
        })
        .collect();
    for peek in peeks {
        assert_eq!(peek.await.unwrap().unwrap(), 4);
    }
    // Everything written is on the replica before the failover. (WAIT on the admin
    // connection would not do: it waits only for that connection's own writes.)
    let offset = |server: &RedisServer, field: &str| -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut server.admin())
            .unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix(field)?.trim().parse().ok())
            .unwrap_or(0)
    };
    let written = offset(&primary, "master_repl_offset:");
    wait_until(Duration::from_secs(10), "the replica to catch up", || {
        offset(&replica, "slave_repl_offset:") >= written
    });

    redis::cmd("SENTINEL")
        .arg("FAILOVER")
        .arg("limiter")
        .exec(&mut admin(sentinels[0].port))
        .unwrap();
    wait_until(
        Duration::from_secs(15),
        "the replica to be promoted",
        || {
            sentinels.iter().all(|s| s.primary_port() == replica.port)
                && role(replica.port) == "master"
        },
    );
    // Sentinel turns the old primary into a replica on its next 10 s INFO round; do what it
    // would do now, so the test does not idle.
    redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(replica.port)
        .exec(&mut primary.admin())
        .unwrap();
    wait_until(Duration::from_secs(15), "the old primary to follow", || {
        role(primary.port) == "slave"
    });
    // Sentinel also closes the normal clients of an instance it reconfigures (CLIENT KILL
    // TYPE normal): the second store's connections here. Those of the first stay open and
    // get READONLY.
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut primary.admin())
        .unwrap();
    let ids: Vec<&str> = clients
        .lines()
        .filter(|line| line.contains(" db=1 "))
        .filter_map(|line| line.strip_prefix("id=")?.split(' ').next())
        .collect();
    assert!(!ids.is_empty());
    for id in ids {
        redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(id)
            .exec(&mut primary.admin())
            .unwrap();
    }
    // A moment for the store's connection tasks to read the closed sockets.
    tokio::time::sleep(Duration::from_millis(100)).await;

    // The store's connections still point at the old primary, now read-only: it must move
    // to the new one without an error, keeping the counts.
    for (hit, strategy) in hits.iter().zip(Strategy::ALL) {
        for i in 0..4 {
            let d = store.decide(hit, now).await.expect("decide after failover");
            assert!(d.admitted, "{strategy}: hit {} of 10", 7 + i);
        }
        let d = store.decide(hit, now).await.unwrap();
        assert!(!d.admitted, "{strategy}: the 11th hit must be denied");
        for i in 0..4 {
            let d = killed
                .decide(hit, now)
                .await
                .expect("decide after the kill");
            assert!(d.admitted, "{strategy}: hit {} of 10 on database 1", 7 + i);
        }
        let d = killed.decide(hit, now).await.unwrap();
        assert!(
            !d.admitted,
            "{strategy}: the 11th hit on database 1 must be denied"
        );
    }
    let on_new_primary: Vec<String> = redis::cmd("KEYS")
        .arg("LIMITER*")
        .query(&mut replica.admin())
        .unwrap();
    assert_eq!(on_new_primary.len(), keys.len());
}
