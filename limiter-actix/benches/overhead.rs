//! What the limiter adds per request, measured side by side in one run: the same app without a
//! limiter, with a `#[limit]` route, with a plain route under default limits, and the memory
//! store's decision alone (the part that is the store's, not the integration's).

use std::net::SocketAddr;

use actix_web::dev::Service;
use actix_web::test::{TestRequest, init_service};
use actix_web::{App, get, web};
use criterion::{Criterion, criterion_group, criterion_main};
use limiter_actix::core::{Hit, MemoryStore, Timestamp};
use limiter_actix::{Limiter, Strategy, limit, parse_rates};

#[get("/limited")]
#[limit("1000000000 per day")]
async fn limited() -> &'static str {
    "ok"
}

#[get("/bare")]
async fn bare() -> &'static str {
    "ok"
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    let peer: SocketAddr = "10.1.2.3:5000".parse().unwrap();
    let mut group = c.benchmark_group("per_request");

    let plain_app = local.block_on(&rt, init_service(App::new().service(bare)));
    group.bench_function("no_limiter", |b| {
        b.iter(|| {
            local.block_on(&rt, async {
                let req = TestRequest::get().uri("/bare").peer_addr(peer).to_request();
                plain_app.call(req).await.unwrap()
            })
        })
    });

    let limiter = Limiter::builder()
        .default_limits("1000000000 per day")
        .build()
        .unwrap();
    let app = local.block_on(
        &rt,
        init_service(
            App::new()
                .wrap(limiter)
                .service(limited)
                .service(bare)
                .route("/plain", web::get().to(|| async { "ok" })),
        ),
    );
    for (name, uri) in [
        ("limit_attribute", "/limited"),
        ("default_limits", "/plain"),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                local.block_on(&rt, async {
                    let req = TestRequest::get().uri(uri).peer_addr(peer).to_request();
                    app.call(req).await.unwrap()
                })
            })
        });
    }

    let store = MemoryStore::default();
    let rate = parse_rates("1000000000 per day").unwrap()[0];
    let now = Timestamp::from_secs(1_700_000_000);
    group.bench_function("store_decision_alone", |b| {
        b.iter(|| {
            let hit = [Hit::new(
                "LIMITER{10.1.2.3}:limited:1000000000/1day",
                rate,
                Strategy::FixedWindow,
            )];
            store.decide_now(&hit, now)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
