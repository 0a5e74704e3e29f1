//! `tessera bench oauth`: server-to-server tokens from
//! `POST /{pool_id}/oauth2/token` with the client-credentials grant
//! (issue 14's floor: at least 8,000 tokens/s on one node of a 2-core
//! machine).
//!
//! Setup, not measured: a pool, a resource server with two scopes, and a
//! confidential app client allowed them, then one token from every
//! endpoint so that each node has applied the client. Each caller then
//! holds one keep-alive HTTP/1.1 connection, as a service's HTTP client
//! pool does, and asks for tokens back to back with HTTP Basic client
//! authentication and an explicit scope. A call counts only if it answers
//! 200 with an access token.

use std::fmt::Write as _;

use anyhow::{bail, Context as _};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use serde::Serialize;

use super::cognito_json::JsonConn;
use super::driver::{
    delete_pool, merge_kinds, open_pool, render, run_load, status_error, write_endpoints, write_errors, write_window,
    Caller, Failure, LoadFlags, LoadPlan,
};
use super::stats::LatencySummary;
use super::{group_thousands, OutputFormat, DEFAULT_ENDPOINT};
use crate::proto::*;

/// The floor: tokens per second on one node.
pub const TARGET_PER_SEC: f64 = 8_000.0;
/// The bench's resource server.
const IDENTIFIER: &str = "https://bench.tessera.test";

/// The flags of `tessera bench oauth`.
#[derive(Debug, Clone, clap::Args)]
pub struct OAuthBenchArgs {
    /// Api endpoints, comma-separated; callers are spread over them.
    #[arg(long, env = "TESSERA_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    pub endpoint: String,
    /// Admin token (printed by `cluster init` and `dev`), for the setup.
    #[arg(long, env = "TESSERA_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Callers, each with its own HTTP/1.1 connection.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Keep the bench pool instead of deleting it.
    #[arg(long)]
    pub keep_pool: bool,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct OAuthBenchReport {
    /// Endpoints the callers used.
    pub endpoints: Vec<String>,
    /// Callers.
    pub concurrency: usize,
    /// Seconds of warm-up.
    pub warmup_secs: f64,
    /// Seconds measured.
    pub duration_secs: f64,
    /// Tokens issued in the window.
    pub tokens: u64,
    /// The figure: tokens per second.
    pub tokens_per_sec: f64,
    /// Latency of a token request.
    pub latency: LatencySummary,
    /// Failed calls by code.
    pub errors: std::collections::BTreeMap<String, u64>,
    /// One message per code.
    pub error_samples: std::collections::BTreeMap<String, String>,
    /// The floor.
    pub target_per_sec: f64,
    /// The pool, when kept.
    pub pool_id: Option<String>,
}

impl OAuthBenchReport {
    /// Whether the floor was met with no failed call.
    pub fn passed(&self) -> bool {
        self.tokens_per_sec >= self.target_per_sec && self.errors.is_empty()
    }

    /// Prints the report in `format`.
    pub fn print(&self, format: OutputFormat) {
        print!(
            "{}",
            render(self, format, || {
                let mut s = String::from("bench oauth: client_credentials tokens from /oauth2/token\n");
                write_endpoints(&mut s, &self.endpoints, self.concurrency, self.concurrency);
                write_window(&mut s, self.warmup_secs, self.duration_secs);
                let l = &self.latency;
                let _ = writeln!(
                    s,
                    "  tokens        {} ({:.0}/s; floor {:.0}/s: {})",
                    group_thousands(self.tokens),
                    self.tokens_per_sec,
                    self.target_per_sec,
                    if self.tokens_per_sec >= self.target_per_sec {
                        "PASS"
                    } else {
                        "FAIL"
                    }
                );
                let _ = writeln!(
                    s,
                    "  latency       p50 {}  p99 {}  p99.9 {}  max {}",
                    super::format_micros(l.p50_us),
                    super::format_micros(l.p99_us),
                    super::format_micros(l.p999_us),
                    super::format_micros(l.max_us)
                );
                write_errors(&mut s, &self.errors, &self.error_samples);
                if let Some(p) = &self.pool_id {
                    let _ = writeln!(s, "  pool          {p} (kept)");
                }
                s
            })
        );
    }
}

/// One caller: a connection and the request it repeats.
struct TokenCaller {
    conn: JsonConn,
    path: String,
    authorization: String,
    body: Bytes,
}

impl Caller for TokenCaller {
    async fn call(&mut self, _seq: u64) -> (&'static str, Result<(), Failure>) {
        ("ClientCredentials", self.token().await)
    }
}

impl TokenCaller {
    async fn token(&mut self) -> Result<(), Failure> {
        let req = http::Request::post(self.path.as_str())
            .header(http::header::HOST, self.conn.authority())
            .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(http::header::AUTHORIZATION, self.authorization.as_str())
            .body(Full::new(self.body.clone()))
            .map_err(|e| Failure::new("Request", e.to_string()))?;
        let (status, body) = self.conn.send(req).await?;
        if !status.is_success() {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            return Err(Failure::new(
                v["error"].as_str().unwrap_or("HttpError"),
                v["error_description"].as_str().unwrap_or_default().to_string(),
            ));
        }
        let marker = b"\"access_token\":\"ey";
        if !body.windows(marker.len()).any(|w| w == marker) {
            return Err(Failure::new("NoToken", String::from_utf8_lossy(&body).into_owned()));
        }
        Ok(())
    }
}

/// Runs the bench.
pub async fn run(args: OAuthBenchArgs) -> anyhow::Result<OAuthBenchReport> {
    let plan = LoadPlan::from_flags(LoadFlags {
        endpoint: &args.endpoint,
        token: args.token.as_deref(),
        token_needed_for: "the bench creates its pool, resource server and client",
        concurrency: args.concurrency,
        connections: Some(1),
        warmup: args.warmup,
        duration: args.duration,
    })?;
    let admin = plan.admin_client().await?;
    let (pool, _) = open_pool(&admin, None, "bench-oauth").await?;
    let result = measure(&plan, &admin, &pool.id).await;
    let kept = args.keep_pool.then(|| pool.id.clone());
    if !args.keep_pool {
        delete_pool(&admin, &pool.id).await;
    }
    let mut report = result?;
    report.pool_id = kept;
    Ok(report)
}

async fn measure(plan: &LoadPlan, admin: &crate::client::Client, pool_id: &str) -> anyhow::Result<OAuthBenchReport> {
    admin
        .admin()
        .create_resource_server(
            admin.req(CreateResourceServerRequest {
                user_pool_id: pool_id.to_string(),
                identifier: IDENTIFIER.into(),
                name: "Bench API".into(),
                scopes: ["read", "write"]
                    .into_iter()
                    .map(|s| ResourceServerScopeType {
                        scope_name: s.into(),
                        scope_description: format!("{s} for the bench"),
                    })
                    .collect(),
            }),
        )
        .await
        .map_err(|s| status_error("CreateResourceServer", s))?;
    let client = admin
        .admin()
        .create_user_pool_client(admin.req(CreateUserPoolClientRequest {
            user_pool_id: pool_id.to_string(),
            client_name: "bench-service".into(),
            generate_secret: true,
            allowed_oauth_flows_user_pool_client: true,
            allowed_oauth_flows: vec!["client_credentials".into()],
            allowed_oauth_scopes: vec![format!("{IDENTIFIER}/read"), format!("{IDENTIFIER}/write")],
            ..Default::default()
        }))
        .await
        .map_err(|s| status_error("CreateUserPoolClient", s))?
        .into_inner()
        .user_pool_client
        .context("CreateUserPoolClient returned no client")?;
    let authorization = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", client.client_id, client.client_secret))
    );
    let path = format!("/{pool_id}/oauth2/token");
    let body = Bytes::from(format!(
        "grant_type=client_credentials&scope={}%2Fread",
        IDENTIFIER.replace(':', "%3A").replace('/', "%2F")
    ));
    let caller = |endpoint: &str| TokenCaller {
        conn: JsonConn::new(endpoint),
        path: path.clone(),
        authorization: authorization.clone(),
        body: body.clone(),
    };
    // Every node must know the client before the clock starts.
    for endpoint in &plan.endpoints {
        let mut c = caller(endpoint);
        let mut last = None;
        for _ in 0..100 {
            match c.token().await {
                Ok(()) => {
                    last = None;
                    break;
                }
                Err(f) => last = Some(f),
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        if let Some(f) = last {
            bail!("{endpoint} gives no token after 5 s: {}: {}", f.code, f.message);
        }
    }
    let endpoints = plan.endpoints.clone();
    let by_kind = run_load(plan, None, |task, _| caller(&endpoints[task % endpoints.len()])).await?;
    let stats = merge_kinds(by_kind)?;
    let secs = plan.duration.as_secs_f64();
    Ok(OAuthBenchReport {
        endpoints: plan.endpoints.clone(),
        concurrency: plan.concurrency,
        warmup_secs: plan.warmup.as_secs_f64(),
        duration_secs: secs,
        tokens: stats.ok,
        tokens_per_sec: stats.ok as f64 / secs,
        latency: stats.latency_summary(),
        errors: stats.errors.clone(),
        error_samples: stats.error_samples.clone(),
        target_per_sec: TARGET_PER_SEC,
        pool_id: None,
    })
}
