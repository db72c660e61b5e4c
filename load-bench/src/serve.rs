//! The servers under test: one handler, one actix worker, and the variant's limiter.

use std::time::Duration;

use actix_governor::{
    GovernorConfig, GovernorConfigBuilder, KeyExtractor, SimpleKeyExtractionError,
};
use actix_web::dev::ServiceRequest;
use actix_web::http::header::HeaderName;
use actix_web::{HttpRequest, HttpResponse, HttpServer};

use crate::Variant;
use crate::load::Scenario;

/// Route and application limits per scenario: never reached, or 10 per minute on the route.
pub fn route_rate(scenario: Scenario) -> (u32, Duration) {
    match scenario {
        Scenario::Under | Scenario::Many => (1_000_000_000, Duration::from_secs(60)),
        Scenario::Over => (10, Duration::from_secs(60)),
    }
}

pub async fn hello() -> HttpResponse {
    HttpResponse::Ok().body("hello")
}

/// The header every variant keys by, set by the load generator.
pub const CLIENT_HEADER: HeaderName = HeaderName::from_static("x-client");

/// The client, for the peers' key extractors: the `X-Client` header, its name parsed once.
/// This crate's limiter reads the same header through `key_header`.
pub fn client_of(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get(CLIENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// actix-governor keyed by the same header as every other variant.
#[derive(Clone)]
pub struct ClientHeader;

impl KeyExtractor for ClientHeader {
    type Key = String;
    type KeyExtractionError = SimpleKeyExtractionError<&'static str>;

    fn extract(&self, req: &ServiceRequest) -> Result<String, Self::KeyExtractionError> {
        client_of(req.request()).ok_or_else(|| SimpleKeyExtractionError::new("no client header"))
    }
}

/// actix-governor's configuration for `scenario`, headers on.
pub fn governor_config(
    scenario: Scenario,
) -> GovernorConfig<ClientHeader, governor::middleware::StateInformationMiddleware> {
    governor_builder(scenario)
        .use_headers()
        .finish()
        .expect("a valid governor config")
}

/// actix-governor's configuration for `scenario` without its `x-ratelimit-*` headers.
pub fn governor_bare_config(
    scenario: Scenario,
) -> GovernorConfig<ClientHeader, governor::middleware::NoOpMiddleware> {
    governor_builder(scenario)
        .finish()
        .expect("a valid governor config")
}

fn governor_builder(
    scenario: Scenario,
) -> GovernorConfigBuilder<ClientHeader, governor::middleware::NoOpMiddleware> {
    let (amount, period) = route_rate(scenario);
    let mut builder = GovernorConfigBuilder::default().key_extractor(ClientHeader);
    builder.period(period / amount).burst_size(amount);
    builder
}

/// Hands `$with!` a factory (`move || App`) of `$variant`'s app for `$scenario`: the servers
/// and the in-process runs build every app here. Each variant's `App` has a type of its own
/// (its middleware is in it), hence a macro.
macro_rules! with_app {
    ($variant:expr, $scenario:expr, $redis:expr, $with:ident) => {{
        use actix_web::{App, web};
        use $crate::Variant;
        use $crate::serve::{governor_bare_config, governor_config, hello, route_rate};
        let scenario: $crate::load::Scenario = $scenario;
        let route = || web::get().to(hello);
        match $variant {
            Variant::None => $with!(move || App::new().route("/hello", route())),
            Variant::Passthrough => $with!(move || App::new()
                .wrap($crate::passthrough::Passthrough)
                .route("/hello", route())),
            Variant::Governor => {
                let config = governor_config(scenario);
                $with!(move || App::new()
                    .wrap(actix_governor::Governor::new(&config))
                    .route("/hello", route()))
            }
            Variant::GovernorBare => {
                let config = governor_bare_config(scenario);
                $with!(move || App::new()
                    .wrap(actix_governor::Governor::new(&config))
                    .route("/hello", route()))
            }
            Variant::Limitation => {
                let (amount, period) = route_rate(scenario);
                let limiter = web::Data::new(
                    actix_limitation::Limiter::builder($redis)
                        .key_by(|req: &actix_web::dev::ServiceRequest| {
                            $crate::serve::client_of(req.request())
                        })
                        .limit(amount as usize)
                        .period(period)
                        .build()
                        .expect("a valid actix-limitation config"),
                );
                $with!(move || App::new()
                    .app_data(limiter.clone())
                    .wrap(actix_limitation::RateLimiter::default())
                    .route("/hello", route()))
            }
            ours => {
                let limiter = $crate::serve_ours::limiter(ours, scenario, $redis)
                    .expect("a valid limiter config");
                $with!(move || App::new()
                    .wrap(limiter.clone())
                    .route("/hello", $crate::serve_ours::hello_route(ours, scenario)))
            }
        }
    }};
}
pub(crate) use with_app;

pub fn run(variant: Variant, scenario: Scenario, bind: &str, redis: &str) -> std::io::Result<()> {
    let system = actix_web::rt::System::new();
    system.block_on(async move {
        // One worker, as every variant.
        macro_rules! serve {
            ($factory:expr) => {
                HttpServer::new($factory).workers(1).bind(bind)?.run().await
            };
        }
        with_app!(variant, scenario, redis, serve)
    })
}
