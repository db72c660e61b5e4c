//! An ambiguous route for tests: two GET handlers on `/amb`, told apart by a guard, one of
//! them decorated with `#[limit]`, the other plain.

use actix_web::body::{MessageBody, to_bytes};
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::{App, FromRequest, Handler, Responder, web};
use limiter_actix::Limiter;

/// The app: `decorated` answers requests with `x-version: 2`, a plain handler answering
/// "plain" the others.
pub async fn guarded_pair<F, Args>(
    limiter: Limiter,
    decorated: F,
) -> impl Service<
    actix_http::Request,
    Response = ServiceResponse<impl MessageBody>,
    Error = actix_web::Error,
>
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    test::init_service(
        App::new()
            .wrap(limiter)
            .service(
                web::resource("/amb")
                    .guard(actix_web::guard::Header("x-version", "2"))
                    .route(web::get().to(decorated)),
            )
            .route("/amb", web::get().to(|| async { "plain" })),
    )
    .await
}

/// The status and body `app` answers `req` (a request to `/amb`) with, sent to the
/// decorated handler or to the plain one.
pub async fn call<S, B>(app: &S, req: TestRequest, decorated: bool) -> (StatusCode, String)
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let req = if decorated {
        req.insert_header(("x-version", "2"))
    } else {
        req
    };
    let res = test::call_service(app, req.to_request()).await;
    let status = res.status();
    let Ok(bytes) = to_bytes(res.into_body()).await else {
        panic!("body could not be read")
    };
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}
