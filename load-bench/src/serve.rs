//! The servers under test: one handler, one actix worker, and the variant's limiter.

use std::time::Duration;

use actix_governor::{
    Governor, GovernorConfig, GovernorConfigBuilder, KeyExtractor, SimpleKeyExtractionError,
};
use actix_web::dev::ServiceRequest;
use actix_web::http::header::HeaderName;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

use crate::load::Scenario;
use crate::passthrough::Passthrough;
use crate::Variant;

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

pub fn run(variant: Variant, scenario: Scenario, bind: &str, redis: &str) -> std::io::Result<()> {
    let system = actix_web::rt::System::new();
    system.block_on(async move {
        let (amount, period) = route_rate(scenario);
        // One worker, as every variant; each `App` has a type of its own, hence a macro.
        macro_rules! serve {
            ($factory:expr) => {
                HttpServer::new($factory).workers(1).bind(bind)?.run().await
            };
        }
        match variant {
            Variant::None => serve!(|| App::new().route("/hello", web::get().to(hello))),
            Variant::Passthrough => serve!(|| App::new()
                .wrap(Passthrough)
                .route("/hello", web::get().to(hello))),
            Variant::Governor => {
                let config = governor_config(scenario);
                serve!(move || App::new()
                    .wrap(Governor::new(&config))
                    .route("/hello", web::get().to(hello)))
            }
            Variant::GovernorBare => {
                let config = governor_bare_config(scenario);
                serve!(move || App::new()
                    .wrap(Governor::new(&config))
                    .route("/hello", web::get().to(hello)))
            }
            Variant::Limitation => {
                let limiter = web::Data::new(
                    actix_limitation::Limiter::builder(redis)
                        .key_by(|req: &ServiceRequest| client_of(req.request()))
                        .limit(amount as usize)
                        .period(period)
                        .build()
                        .expect("a valid actix-limitation config"),
                );
                serve!(move || App::new()
                    .app_data(limiter.clone())
                    .wrap(actix_limitation::RateLimiter::default())
                    .route("/hello", web::get().to(hello)))
            }
            ours => crate::serve_ours::run(ours, scenario, bind, redis).await,
        }
    })
}
