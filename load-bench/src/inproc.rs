//! The servers' apps called in-process, without sockets or HTTP parsing: what each limiter adds
//! to a request, with far less noise than the load runs (the same requests go through every
//! variant; only the middleware and the handler wrapper differ). Also runs under
//! `valgrind --tool=callgrind` to count instructions per request.
//!
//! `cargo run --release -p limiter-load-bench -- inproc [REQUESTS] [ROUNDS] [VARIANTS] [one|many]`
//!
//! `instructions [REQUESTS] [VARIANTS] [under|over]` runs each variant once more under
//! callgrind, counting only the requests after a warm-up (see [`counted`]).

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::process::Command;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use actix_web::Error;
use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::HeaderValue;
use actix_web::test::{TestRequest, init_service};

use crate::Variant;
use crate::load::Scenario;

/// Distinct clients in the many-clients case, as in the load runs.
const MANY_CLIENTS: usize = 10_000;

/// Requests a counted run makes before the requests it counts: the first requests' one-time
/// work (allocations that stay, the TSC clock's calibration) is not what a request costs.
const WARM_UP: usize = 1_000;

/// Time per request of `requests` requests through `app`, clients taking turns. Over the
/// limit, nearly every answer is a 429.
async fn drive<S, B>(app: &S, clients: &[HeaderValue], requests: usize, over: bool) -> Duration
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    if requests == 0 {
        return Duration::ZERO;
    }
    let start = Instant::now();
    for i in 0..requests {
        let client = clients[i % clients.len()].clone();
        let req = TestRequest::get()
            .uri("/hello")
            .insert_header(("x-client", client))
            .to_request();
        let res = app.call(req).await.expect("the app answers");
        let limited = over && res.status() == StatusCode::TOO_MANY_REQUESTS;
        assert!(res.status().is_success() || limited, "{}", res.status());
        black_box(res);
    }
    start.elapsed() / requests as u32
}

/// `future` run to its end in one poll, in a function of its own: `instructions` has
/// callgrind collect inside this function only (`--toggle-collect`). The in-process apps
/// answer without waiting, so one poll finishes them. No other function here may be named
/// `counted…`: the pattern toggles on every match (a `counted_run` not inlined once counted
/// about 400 instructions per request).
#[inline(never)]
fn counted<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("an in-process request waited; only memory variants are counted"),
    }
}

/// `requests` requests through `variant`'s app after `warm_up` others, in [`counted`].
async fn measure(
    variant: Variant,
    clients: &[HeaderValue],
    requests: usize,
    scenario: Scenario,
    warm_up: usize,
) -> Duration {
    let over = scenario == Scenario::Over;
    macro_rules! drive_app {
        ($factory:expr) => {{
            let app = init_service(($factory)()).await;
            drive(&app, clients, warm_up, over).await;
            counted(drive(&app, clients, requests, over))
        }};
    }
    crate::serve::with_app!(variant, scenario, "", drive_app)
}

/// `inproc [REQUESTS] [ROUNDS] [VARIANTS] [one|many|both] [under|over]`: alternating rounds,
/// medians, added time over none. `over` sets every limit at 10 per minute (the bare app still
/// answers 200), so nearly every answer of a limiter is a 429.
pub fn run(args: &[String]) {
    let requests: usize = args
        .first()
        .map_or(200_000, |a| a.parse().expect("requests"));
    let rounds: usize = args.get(1).map_or(5, |a| a.parse().expect("rounds"));
    let variants = variants(args.get(2));
    let one = vec![HeaderValue::from_static("client-1")];
    let many: Vec<HeaderValue> = (0..MANY_CLIENTS)
        .map(|i| HeaderValue::from_str(&format!("client-{i}")).expect("ascii"))
        .collect();
    let system = actix_web::rt::System::new();
    let only = args.get(3).map(String::as_str).filter(|o| *o != "both");
    let scenario = scenario(args.get(4));
    for (name, clients) in [("one", &one), ("many", &many)] {
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
        for round in 0..rounds {
            for k in 0..variants.len() {
                let index = (k + round) % variants.len();
                // Each round builds a fresh app: one pass over the clients first, so that the
                // timed requests find their keys, as after the load runs' warm-up, rather than
                // timing 10 000 first insertions whose share depends on REQUESTS.
                let warm_up = WARM_UP.max(clients.len());
                let time = system.block_on(measure(
                    variants[index],
                    clients,
                    requests,
                    scenario,
                    warm_up,
                ));
                times[index].push(time.as_secs_f64() * 1e9);
            }
        }
        let medians: Vec<f64> = times.iter_mut().map(|t| crate::median(t)).collect();
        let name = if name == "one" {
            "one client"
        } else {
            "10 000 clients"
        };
        let over = if scenario == Scenario::Over {
            ", over the limit"
        } else {
            ""
        };
        println!("\nin-process, {name}{over}: {requests} requests x {rounds} rounds");
        print_table(&variants, &medians, "ns/req", "added ns");
    }
}

/// Each variant's value and what it adds over `none`'s, when `none` is among them.
fn print_table(variants: &[Variant], values: &[f64], unit: &str, added: &str) {
    println!("{:<15} {unit:>10} {added:>10}", "variant");
    let baseline = variants.iter().position(|&v| v == Variant::None);
    for (variant, value) in variants.iter().zip(values) {
        let added = baseline
            .filter(|_| *variant != Variant::None)
            .map_or("-".to_string(), |b| format!("{:+.0}", value - values[b]));
        println!("{:<15} {value:>10.0} {added:>10}", variant.name());
    }
}

/// The variants named in `list` (comma-separated), or every in-process one.
fn variants(list: Option<&String>) -> Vec<Variant> {
    list.map_or_else(
        || {
            Variant::ALL
                .into_iter()
                .filter(|v| !v.needs_redis())
                .collect()
        },
        |list| {
            list.split(',')
                .map(|v| match Variant::parse(v) {
                    Some(v) if v.needs_redis() => panic!("{v:?} runs over sockets only"),
                    Some(v) => v,
                    None => panic!("unknown variant {v}"),
                })
                .collect()
        },
    )
}

/// The scenario named, under (the default) or over: one client, so not many.
fn scenario(name: Option<&String>) -> Scenario {
    let Some(name) = name else {
        return Scenario::Under;
    };
    match Scenario::parse(name) {
        Some(scenario) if scenario != Scenario::Many => scenario,
        _ => panic!("unknown scenario {name}: under or over"),
    }
}

/// `instructions [REQUESTS] [VARIANTS] [under|over]`: instructions per request of each
/// variant, one client, counted by callgrind in a run of this program per variant (see
/// [`run_counted`]), and what each adds over none. The counts repeat exactly from run to run
/// of one build (a rebuild can move them by a hundred), where times move by a third on some hosts.
pub fn instructions(args: &[String]) {
    let requests: usize = args
        .first()
        .map_or(20_000, |a| a.parse().expect("requests"));
    let variants = variants(args.get(1));
    let scenario_name = args.get(2).map_or("under", String::as_str);
    // Checked here, so that a bad name is not reported as a failed callgrind run.
    let over = scenario(args.get(2)) == Scenario::Over;
    let exe = std::env::current_exe().expect("this program's path");
    let mut counts = Vec::new();
    for &variant in &variants {
        let out = std::env::temp_dir().join(format!(
            "limiter-load-bench-{}-{}.callgrind",
            std::process::id(),
            variant.name()
        ));
        let status = Command::new("valgrind")
            .arg("--tool=callgrind")
            .arg("--quiet")
            .arg("--collect-atstart=no")
            .arg("--toggle-collect=limiter_load_bench::inproc::counted*")
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg(&exe)
            .args([
                "counted-run",
                variant.name(),
                &requests.to_string(),
                scenario_name,
            ])
            .stdout(std::process::Stdio::null())
            .status();
        match status {
            Ok(status) if status.success() => {}
            Ok(status) => panic!("callgrind's run of {} failed: {status}", variant.name()),
            Err(e) => {
                panic!("valgrind could not start ({e}): install it (apt-get install valgrind)")
            }
        }
        let text = std::fs::read_to_string(&out).expect("callgrind's output");
        let _ = std::fs::remove_file(&out);
        let total: u64 = text
            .lines()
            .find_map(|line| {
                line.strip_prefix("totals:")
                    .or(line.strip_prefix("summary:"))
            })
            .and_then(|n| n.split_whitespace().next()?.parse().ok())
            .expect("callgrind's total");
        assert!(
            total > 0,
            "callgrind counted nothing inside `counted`: was it renamed?"
        );
        counts.push(total as f64 / requests as f64);
    }
    println!(
        "\ninstructions per request, one client{}: {requests} requests after {WARM_UP} (callgrind)",
        if over { ", over the limit" } else { "" }
    );
    print_table(&variants, &counts, "instr/req", "added");
}

/// `counted-run VARIANT REQUESTS SCENARIO`, under callgrind: [`WARM_UP`] requests, then
/// `REQUESTS` inside [`counted`], the only requests callgrind counts.
pub fn run_counted(args: &[String]) {
    let variant = Variant::parse(&args[0]).expect("known variant");
    let requests: usize = args[1].parse().expect("requests");
    let clients = [HeaderValue::from_static("client-1")];
    let system = actix_web::rt::System::new();
    system.block_on(measure(
        variant,
        &clients,
        requests,
        scenario(args.get(2)),
        WARM_UP,
    ));
}
