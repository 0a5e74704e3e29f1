//! The Cognito JSON protocol as `tessera bench auth --protocol
//! cognito-json` speaks it: one keep-alive HTTP/1.1 connection per load
//! task, as an AWS SDK's connection pool holds one per request in flight.
//!
//! The bench measures what the front costs next to gRPC, so the client
//! side is kept as lean as the gRPC client: a raw hyper connection, the
//! body written with serde_json, the answer parsed only as far as needed.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use serde_json::Value;

use super::driver::Failure;

/// The target prefix of user-pool actions.
pub const USER_POOLS: &str = "AWSCognitoIdentityProviderService";

/// A lazily opened connection to one endpoint.
pub struct JsonConn {
    /// `host:port`.
    authority: String,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl JsonConn {
    /// A connection to `endpoint` (`http://host:port`), opened on first use.
    pub fn new(endpoint: &str) -> Self {
        let authority = endpoint.trim_start_matches("http://").trim_end_matches('/').to_string();
        JsonConn {
            authority,
            sender: None,
        }
    }

    async fn connect(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, Failure> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = tokio::net::TcpStream::connect(&self.authority)
                .await
                .map_err(|e| Failure::new("Connect", e.to_string()))?;
            let _ = stream.set_nodelay(true);
            let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| Failure::new("Connect", e.to_string()))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        self.sender
            .as_mut()
            .ok_or_else(|| Failure::new("Connect", "no connection".into()))
    }

    /// `host:port` of the endpoint, for the `Host` header.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// Sends `req` on the connection (opening it first if it is not open)
    /// and reads the whole answer.
    pub async fn send(&mut self, req: http::Request<Full<Bytes>>) -> Result<(http::StatusCode, Bytes), Failure> {
        let sender = self.connect().await?;
        sender
            .ready()
            .await
            .map_err(|e| Failure::new("Connect", e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| Failure::new("Transport", e.to_string()))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| Failure::new("Transport", e.to_string()))?
            .to_bytes();
        Ok((status, bytes))
    }

    /// Calls `action` of the user-pool API with `body`; an error answer is
    /// a failure named by its `__type`.
    pub async fn call(&mut self, action: &str, body: &Value) -> Result<Value, Failure> {
        let req = http::Request::post("/")
            .header(http::header::HOST, self.authority.clone())
            .header(http::header::CONTENT_TYPE, "application/x-amz-json-1.1")
            .header("x-amz-target", format!("{USER_POOLS}.{action}"))
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| Failure::new("Request", e.to_string()))?;
        let (status, bytes) = self.send(req).await?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| Failure::new("BadJson", e.to_string()))?;
        if status.is_success() {
            Ok(value)
        } else {
            Err(Failure::new(
                value["__type"].as_str().unwrap_or("HttpError"),
                value["message"].as_str().unwrap_or_default().to_string(),
            ))
        }
    }
}
