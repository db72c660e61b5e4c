//! `rediss://` against the test's own TLS server (feature `redis-tls`; needs `openssl` to
//! make a throw-away certificate). Run with
//! `cargo test -p limiter-core --features redis-tls --test redis_tls`.
#![cfg(feature = "redis-tls")]

mod common;

use std::process::Command;

use common::{RedisServer, free_port, redis_available, strict_store};
use limiter_core::{Hit, Rate, Storage, Strategy, Timestamp};

#[tokio::test]
async fn rediss_decides_over_tls() {
    if !redis_available() {
        return;
    }
    // A plain server only to own a directory; the TLS one gets its own port.
    let dir = std::env::temp_dir().join(format!("limiter-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status();
    if !made.is_ok_and(|s| s.success()) {
        println!("skipped: openssl not found");
        return;
    }
    let tls_port = free_port();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let tls_port_arg = tls_port.to_string();
    let server = RedisServer::start_with(&[
        "--tls-port",
        &tls_port_arg,
        "--tls-cert-file",
        cert,
        "--tls-key-file",
        key,
        "--tls-ca-cert-file",
        cert,
        "--tls-auth-clients",
        "no",
    ]);
    // Self-signed: `#insecure` skips verification.
    let store = strict_store(&format!("valkeys://127.0.0.1:{tls_port}/0#insecure"))
        .build()
        .unwrap();
    let rate: Rate = "2 per minute".parse().unwrap();
    let hit = [Hit::new("LIMITER{tls}:/:2/1minute", rate, Strategy::Gcra)];
    let now = Timestamp::from_secs(1_700_000_000);
    assert!(store.decide(&hit, now).await.unwrap().admitted);
    assert!(store.decide(&hit, now).await.unwrap().admitted);
    assert!(!store.decide(&hit, now).await.unwrap().admitted);
    // The counter is on the server (seen over its plain port).
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query(&mut server.admin())
        .unwrap();
    assert_eq!(keys, ["LIMITER{tls}:/:2/1minute"]);
    let _ = std::fs::remove_dir_all(&dir);
}
