//! The admin-token check, once, as a tower layer in front of the `Admin`
//! and `Cluster` gRPC services.
//!
//! Every admin call carries `authorization: Bearer <admin token>`. Checking
//! it in each handler meant one line per method, and a handler that forgot
//! it was an open admin call. Here the check wraps the whole service: a
//! method is protected unless its full path is on the layer's short list
//! of exemptions, so a new method is admin-only from its first commit.
//!
//! The check runs before the request body is read, so an unauthenticated
//! caller cannot make the node decode (or buffer) a large message.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::server::NamedService;
use tower::{Layer, Service};

use super::{bearer_value, to_status};
use crate::service::admin_auth::AdminAuth;

/// Wraps a gRPC service so that every call but the exempt ones needs the
/// admin token.
#[derive(Clone)]
pub struct AdminAuthLayer {
    auth: AdminAuth,
    /// Full method paths (`/tessera.v1.Cluster/InitCluster`) that do their
    /// own, different authentication.
    exempt: &'static [&'static str],
}

impl AdminAuthLayer {
    /// Every method needs the admin token.
    pub fn new(auth: AdminAuth) -> Self {
        AdminAuthLayer { auth, exempt: &[] }
    }

    /// Every method but `exempt` (full paths) needs the admin token.
    pub fn except(auth: AdminAuth, exempt: &'static [&'static str]) -> Self {
        AdminAuthLayer { auth, exempt }
    }
}

impl<S> Layer<S> for AdminAuthLayer {
    type Service = AdminAuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AdminAuthService {
            inner,
            auth: self.auth.clone(),
            exempt: self.exempt,
        }
    }
}

/// A service behind the admin-token check; see [`AdminAuthLayer`].
#[derive(Clone)]
pub struct AdminAuthService<S> {
    inner: S,
    auth: AdminAuth,
    exempt: &'static [&'static str],
}

impl<S: NamedService> NamedService for AdminAuthService<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for AdminAuthService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        // The clone that was polled ready serves this call; the fresh
        // clone stays for the next poll_ready (tower's usual swap).
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        if self.exempt.contains(&req.uri().path()) {
            return Box::pin(inner.call(req));
        }
        // The Cognito JSON front already checked a SigV4 signature by an
        // admin access key; only in-process code can set this extension.
        if let Some(signed) = req.extensions().get::<crate::api::cognito::call::SignedAdmin>() {
            tracing::debug!(path = %req.uri().path(), access_key_id = %signed.access_key_id, "admin call signed with SigV4");
            return Box::pin(inner.call(req));
        }
        let auth = self.auth.clone();
        Box::pin(async move {
            let token = req
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(bearer_value);
            match auth.check(token).await {
                Ok(()) => inner.call(req).await,
                Err(e) => {
                    tracing::debug!(path = %req.uri().path(), exception = e.exception, "admin call refused");
                    Ok(to_status(e).into_http())
                }
            }
        })
    }
}
