//! The `passthrough` variant's middleware: what any rate limiter written as actix middleware
//! costs before it limits anything. It reads the client's key header, as every limiter here
//! does, passes the request on, and gives back the response with its body in an `EitherBody`,
//! the type a middleware that can answer a request itself (a 429) must return. It decides
//! nothing and adds no header: the floor under `governor-bare` and `memory-bare`.

use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::Error;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use pin_project_lite::pin_project;

use crate::serve::CLIENT_HEADER;

/// The `Transform` registered with `App::wrap`.
#[derive(Clone, Copy)]
pub struct Passthrough;

pub struct PassthroughMiddleware<S> {
    service: S,
}

impl<S, B> Transform<S, ServiceRequest> for Passthrough
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = PassthroughMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(PassthroughMiddleware { service }))
    }
}

impl<S, B> Service<ServiceRequest> for PassthroughMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = PassthroughFuture<S::Future>;

    actix_web::dev::forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        // Read as a limiter reads its key; kept from being optimized away.
        black_box(req.headers().get(CLIENT_HEADER));
        PassthroughFuture {
            fut: self.service.call(req),
        }
    }
}

pin_project! {
    pub struct PassthroughFuture<F> {
        #[pin]
        fut: F,
    }
}

impl<F, B> Future for PassthroughFuture<F>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
{
    type Output = Result<ServiceResponse<EitherBody<B>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project()
            .fut
            .poll(cx)
            .map_ok(ServiceResponse::map_into_left_body)
    }
}
