//! An authentication middleware for tests: it refuses a request without an `x-token` header
//! with an `Err`, as actix-web-httpauth does, before the handler's `#[limit]` wrapper runs;
//! with the token [`FAILS_AFTER_THE_HANDLER`], it answers `Err` after the handler ran.

use actix_web::App;
use actix_web::body::MessageBody;
use actix_web::dev::{HttpServiceFactory, Service, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::test::{self, TestRequest};
use limiter_actix::Limiter;

/// The middleware, for `actix_web::middleware::from_fn`.
pub async fn token_required(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let Some(token) = req.headers().get("x-token") else {
        return Err(actix_web::error::ErrorUnauthorized("no token"));
    };
    let fails_after = token == FAILS_AFTER_THE_HANDLER.1;
    let res = next.call(req).await?;
    if fails_after {
        return Err(actix_web::error::ErrorUnauthorized("session expired"));
    }
    Ok(res)
}

/// A token [`token_required`] refuses only after the handler ran (a session found expired on
/// the way out, say).
pub const FAILS_AFTER_THE_HANDLER: (&str, &str) = ("x-token", "expired");

/// The status `app` answers `req` with, a token added or not; an `Err` counts as the
/// response actix would make of it.
pub async fn status_with_token<S, B>(app: &S, req: TestRequest, token: bool) -> StatusCode
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    let req = if token {
        req.insert_header(("x-token", "t"))
    } else {
        req
    };
    match app.call(req.to_request()).await {
        Ok(res) => res.status(),
        Err(error) => error.error_response().status(),
    }
}

/// An app of `services` behind `limiter`, with [`token_required`] between them: the
/// `Limiter` runs first, then the authentication, then the handlers' wrappers.
pub async fn app_behind_auth<F>(
    limiter: Limiter,
    services: F,
) -> impl Service<
    actix_http::Request,
    Response = ServiceResponse<impl MessageBody>,
    Error = actix_web::Error,
>
where
    F: HttpServiceFactory + 'static,
{
    test::init_service(
        App::new()
            .wrap(actix_web::middleware::from_fn(token_required))
            .wrap(limiter)
            .service(services),
    )
    .await
}
