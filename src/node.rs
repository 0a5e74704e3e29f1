//! A running node: opens the store, starts Raft, serves the api and peer
//! listeners, and shuts down gracefully.
//!
//! Shutdown (SIGTERM/SIGINT, or [`RunningNode::shutdown`]): a leader first
//! hands leadership to the most caught-up voter, then both listeners stop
//! accepting and finish in-flight calls, then Raft stops.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, Server, ServerTlsConfig};

use crate::api::grpc::admin_layer::AdminAuthLayer;
use crate::api::grpc::cluster::INIT_CLUSTER;
use crate::api::grpc::{admin::AdminApi, auth::AuthApi, cluster::ClusterApi};
use crate::api::MAX_API_REQUEST_BYTES;
use crate::auth::password::PasswordHasher;
use crate::auth::rate_limit::RateLimiter;
use crate::auth::sealing::{SealingCell, SealingKey};
use crate::auth::signing_key::NodeSigningKey;
use crate::config::{NodeConfig, TlsConfig};
use crate::metrics::Metrics;
use crate::proto::admin_server::AdminServer;
use crate::proto::auth_server::AuthServer;
use crate::proto::cluster_server::ClusterServer;
use crate::proto::identity_server::IdentityServer;
use crate::proto::peer_server::PeerServer;
use crate::raft::join::JoinToken;
use crate::raft::network::MAX_PEER_MESSAGE_BYTES;
use crate::raft::peer_auth::PeerIdentity;
use crate::raft::peer_server::PeerService;
use crate::raft::{ConsensusError, PeerSetup, RaftNode};
use crate::service::admin_auth::AdminAuth;
use crate::service::audit::AuditService;
use crate::service::clients::AppClientService;
use crate::service::cluster::ClusterService;
use crate::service::cursor::Cursors;
use crate::service::directory::DirectoryService;
use crate::service::flows::AuthService;
use crate::service::groups::GroupService;
use crate::service::keys::KeyService;
use crate::service::outbox::OutboxService;
use crate::service::pools::PoolService;
use crate::service::tokens::TokenService;
use crate::service::users::UserAdminService;
use crate::store::{Store, StoreError};
use tower::Layer as _;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Opening or checking the data dir failed (including an identity mismatch).
    #[error("{0}")]
    Store(#[from] StoreError),
    /// Raft could not start or initialise.
    #[error("{0}")]
    Consensus(#[from] ConsensusError),
    /// A listener could not bind its address (first).
    #[error("binding {0}: {1}")]
    Bind(String, std::io::Error),
    /// TLS files are missing, unreadable or incomplete.
    #[error("tls: {0}")]
    Tls(String),
    /// Another part of the node could not be set up (keys, join token, courier, server); the message says which.
    #[error("server: {0}")]
    Serve(String),
}

/// A listener's serving task.
type ServerTask = JoinHandle<Result<(), tonic::transport::Error>>;

/// A started node and the handles to stop it.
pub struct RunningNode {
    /// The node's consensus handle (and through it, its store).
    pub raft: Arc<RaftNode>,
    /// Cluster lifecycle operations.
    pub cluster: ClusterService,
    /// User pool operations.
    pub pools: PoolService,
    /// This node's signing keys and the cluster's key set.
    pub keys: KeyService,
    /// The user-facing auth flows.
    pub auth: AuthService,
    /// The node's Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// The bound api address.
    pub api_addr: SocketAddr,
    /// The bound peer address.
    pub peer_addr: SocketAddr,
    /// The bound device-sync (QUIC, UDP) address.
    pub sync_addr: SocketAddr,
    /// Lowercase hex SHA-256 of the sync listener's certificate, which a
    /// device may pin.
    pub sync_fingerprint: String,
    stop: watch::Sender<bool>,
    servers: Vec<ServerTask>,
    /// Background tasks (key maintenance, freshness rounds, outbox sweep,
    /// courier, audit batching), by name: shutdown waits for each, so the
    /// audit batch in hand commits before Raft stops.
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, NodeError> {
    std::fs::read(path).map_err(|e| NodeError::Tls(format!("reading {}: {e}", path.display())))
}

/// Server and client TLS for the peer listener, when fully configured.
fn peer_tls(tls: &TlsConfig) -> Result<Option<(ServerTlsConfig, ClientTlsConfig)>, NodeError> {
    match (&tls.peer_cert, &tls.peer_key, &tls.peer_ca) {
        (Some(cert), Some(key), Some(ca)) => {
            let identity = Identity::from_pem(read(cert)?, read(key)?);
            let ca = Certificate::from_pem(read(ca)?);
            let server = ServerTlsConfig::new()
                .identity(identity.clone())
                .client_ca_root(ca.clone());
            let client = ClientTlsConfig::new().ca_certificate(ca).identity(identity);
            Ok(Some((server, client)))
        }
        (None, None, None) => Ok(None),
        _ => Err(NodeError::Tls(
            "peer TLS needs all of peer_cert, peer_key and peer_ca".into(),
        )),
    }
}

/// The sealing key: the configured file, or the one this node created at
/// init or received when it joined (`keys/sealing.key`), or none yet.
fn open_sealing(cfg: &NodeConfig) -> Result<SealingCell, NodeError> {
    let own = cfg.data_dir.join("keys").join("sealing.key");
    let path = cfg.sealing_key_file.clone().unwrap_or(own);
    let key = if path.exists() {
        Some(SealingKey::load(&path).map_err(|e| NodeError::Serve(format!("sealing key: {e}")))?)
    } else if cfg.sealing_key_file.is_some() {
        return Err(NodeError::Serve(format!(
            "sealing_key_file {} does not exist; remove the setting to let the cluster create and hand over its key",
            path.display()
        )));
    } else {
        None
    };
    Ok(SealingCell::new(key, path))
}

/// `Config::public_url`, or `http(s)://` and the advertised api address
/// (the bound one when the configured address has port 0, as tests do).
fn public_url(cfg: &NodeConfig, bound: SocketAddr, tls: bool) -> String {
    if let Some(u) = &cfg.public_url {
        return u.trim_end_matches('/').to_string();
    }
    let scheme = if tls { "https" } else { "http" };
    match &cfg.advertise_api_addr {
        Some(a) => format!("{scheme}://{a}"),
        None => format!("{scheme}://{bound}"),
    }
}

fn api_tls(tls: &TlsConfig) -> Result<Option<ServerTlsConfig>, NodeError> {
    match (&tls.api_cert, &tls.api_key) {
        (Some(cert), Some(key)) => Ok(Some(
            ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?)),
        )),
        (None, None) => Ok(None),
        _ => Err(NodeError::Tls("api TLS needs both api_cert and api_key".into())),
    }
}

/// The peer identity, join token and sealing-key sink Raft starts with.
fn peer_setup(cfg: &NodeConfig, sealing: &Arc<SealingCell>) -> Result<PeerSetup, NodeError> {
    Ok(PeerSetup {
        identity: PeerIdentity::load_or_create(&cfg.data_dir.join("peer.key"))
            .map_err(|e| NodeError::Serve(format!("peer key: {e}")))?,
        join_token: cfg
            .join_token
            .as_deref()
            .map(JoinToken::parse)
            .transpose()
            .map_err(|e| NodeError::Serve(format!("join_token: {e}")))?,
        on_sealing_key: {
            let sealing = sealing.clone();
            Box::new(move |raw| sealing.install(raw).map_err(|e| e.to_string()))
        },
    })
}

/// Serves the peer port (Raft RPCs, forwarding, snapshots) until `stop`.
fn serve_peer(
    raft: Arc<RaftNode>,
    listener: TcpListener,
    tls: Option<ServerTlsConfig>,
    cfg: &NodeConfig,
    metrics: &Metrics,
    stop: watch::Receiver<bool>,
) -> Result<ServerTask, NodeError> {
    let mut server = Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(5)))
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(8 << 20));
    if let Some(tls) = tls {
        server = server.tls_config(tls).map_err(|e| NodeError::Tls(e.to_string()))?;
    }
    let svc = PeerServer::new(PeerService::new(raft))
        .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES);
    Ok(tokio::spawn(server.add_service(svc).serve_with_incoming_shutdown(
        crate::api::conn_limit::limit(
            incoming(listener),
            cfg.limits.max_peer_connections,
            metrics.peer_connections.clone(),
        ),
        wait_stop(stop),
    )))
}

/// Serves the api port (gRPC and the HTTP routes on one listener) until
/// `stop`.
fn serve_api(
    router: axum::Router,
    tls: Option<ServerTlsConfig>,
    listener: TcpListener,
    cfg: &NodeConfig,
    metrics: &Metrics,
    stop: watch::Receiver<bool>,
) -> Result<ServerTask, NodeError> {
    let mut server = Server::builder()
        .accept_http1(true)
        .tcp_nodelay(true)
        .concurrency_limit_per_connection(256)
        .timeout(Duration::from_secs(60));
    if let Some(tls) = tls {
        server = server.tls_config(tls).map_err(|e| NodeError::Tls(e.to_string()))?;
    }
    Ok(tokio::spawn(
        server.add_routes(Routes::from(router)).serve_with_incoming_shutdown(
            crate::api::conn_limit::limit(
                incoming(listener),
                cfg.limits.max_api_connections,
                metrics.api_connections.clone(),
            ),
            wait_stop(stop),
        ),
    ))
}

/// What the api port's gRPC services are built from.
struct ApiParts {
    raft: Arc<RaftNode>,
    admin_auth: AdminAuth,
    pools: PoolService,
    cluster: ClusterService,
    keys: KeyService,
    auth: AuthService,
    hasher: PasswordHasher,
    deliver: bool,
    sealing: Arc<SealingCell>,
    audit: AuditService,
    identity: crate::service::identity::IdentityService,
    sync: crate::service::sync::SyncService,
    bootstrap_token: Option<String>,
    account_id: String,
}

/// The gRPC services of the api port: Admin and Cluster behind the admin
/// check (`AdminAuthLayer`), Auth, Identity (admin calls behind the layer),
/// Sync (each call authenticates its caller), health and reflection.
async fn grpc_routes(p: ApiParts) -> Result<Routes, NodeError> {
    let ApiParts {
        raft,
        admin_auth,
        pools,
        cluster,
        keys,
        auth,
        hasher,
        deliver,
        sealing,
        audit,
        identity,
        sync,
        bootstrap_token,
        account_id,
    } = p;
    let (health_reporter, health_svc) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<AdminServer<AdminApi>>().await;
    health_reporter.set_serving::<ClusterServer<ClusterApi>>().await;
    health_reporter.set_serving::<AuthServer<AuthApi>>().await;
    health_reporter
        .set_serving::<IdentityServer<crate::api::grpc::identity::IdentityApi>>()
        .await;
    health_reporter
        .set_serving::<crate::proto::sync_server::SyncServer<crate::api::grpc::sync::SyncApi>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| NodeError::Serve(e.to_string()))?;
    let federation = crate::service::federation::FederationService::new(
        raft.clone(),
        Cursors::new(sealing.clone()),
        sealing.clone(),
    );
    let admin = AdminApi {
        pools,
        clients: AppClientService::new(raft.clone(), sealing.clone()),
        users: UserAdminService::new(raft.clone(), hasher.clone(), deliver, sealing.clone()),
        outbox: OutboxService::new(raft.clone(), sealing.clone()),
        groups: GroupService::new(raft.clone(), Cursors::new(sealing.clone())),
        resource_servers: crate::service::resource_servers::ResourceServerService::new(
            raft.clone(),
            Cursors::new(sealing.clone()),
        ),
        admin_keys: crate::service::admin_keys::AdminKeyService::new(raft.clone(), sealing.clone()),
        branding: crate::service::branding::BrandingService::new(raft.clone()),
        directory: DirectoryService::new(raft, hasher, Cursors::new(sealing)),
        audit,
        sign_in: auth.clone(),
        federation,
        account_id,
    };
    let cluster = ClusterApi {
        cluster,
        keys,
        bootstrap_token,
    };
    let admin_auth_identity = admin_auth.clone();
    let mut builder = Routes::builder();
    builder
        .add_service(
            AdminAuthLayer::new(admin_auth.clone())
                .layer(AdminServer::new(admin).max_decoding_message_size(MAX_API_REQUEST_BYTES)),
        )
        .add_service(
            AdminAuthLayer::except(admin_auth, &[INIT_CLUSTER])
                .layer(ClusterServer::new(cluster).max_decoding_message_size(MAX_API_REQUEST_BYTES)),
        )
        .add_service(AuthServer::new(AuthApi { auth }).max_decoding_message_size(MAX_API_REQUEST_BYTES))
        .add_service(
            AdminAuthLayer::except(admin_auth_identity, crate::api::grpc::identity::PUBLIC_METHODS).layer(
                IdentityServer::new(crate::api::grpc::identity::IdentityApi { identity })
                    .max_decoding_message_size(MAX_API_REQUEST_BYTES),
            ),
        )
        // No admin layer: identities call Sync with their own tokens, and
        // each method authenticates its caller. Its own request bound
        // admits a whole 1 MiB dataset update.
        .add_service(
            crate::proto::sync_server::SyncServer::new(crate::api::grpc::sync::SyncApi { sync })
                .max_decoding_message_size(crate::api::grpc::sync::MAX_SYNC_REQUEST_BYTES),
        )
        .add_service(health_svc)
        .add_service(reflection);
    Ok(builder.routes())
}

impl RunningNode {
    /// Starts a node from `cfg` and returns once both listeners are bound.
    pub async fn start(cfg: NodeConfig) -> Result<Self, NodeError> {
        std::fs::create_dir_all(&cfg.data_dir).map_err(|e| NodeError::Store(StoreError::Io(e)))?;
        let store = Store::open(&cfg.data_dir)?;
        let metrics = Arc::new(Metrics::new());
        let peer_tls = peer_tls(&cfg.tls)?;
        let api_tls = api_tls(&cfg.tls)?;
        if peer_tls.is_none() {
            tracing::warn!("peer listener is plaintext: configure tls.peer_cert, peer_key and peer_ca for mutual TLS");
        }
        if api_tls.is_none() {
            tracing::warn!("api listener is plaintext: configure tls.api_cert and api_key to serve TLS");
        }
        let sealing = Arc::new(open_sealing(&cfg)?);
        let peer = peer_setup(&cfg, &sealing)?;
        let raft = RaftNode::start(
            cfg.node_id,
            store,
            &cfg.data_dir,
            cfg.raft_settings(),
            metrics.clone(),
            peer_tls.as_ref().map(|(_, c)| c.clone()),
            peer,
        )
        .await?;

        let peer_listener = TcpListener::bind(&cfg.peer_addr)
            .await
            .map_err(|e| NodeError::Bind(cfg.peer_addr.clone(), e))?;
        let api_listener = TcpListener::bind(&cfg.api_addr)
            .await
            .map_err(|e| NodeError::Bind(cfg.api_addr.clone(), e))?;
        let peer_addr = peer_listener
            .local_addr()
            .map_err(|e| NodeError::Bind(cfg.peer_addr.clone(), e))?;
        let api_addr = api_listener
            .local_addr()
            .map_err(|e| NodeError::Bind(cfg.api_addr.clone(), e))?;

        let (stop, stop_rx) = watch::channel(false);
        let mut servers = Vec::new();

        servers.push(serve_peer(
            raft.clone(),
            peer_listener,
            peer_tls.as_ref().map(|(t, _)| t.clone()),
            &cfg,
            &metrics,
            stop_rx.clone(),
        )?);

        // Api listener: gRPC services plus plain HTTP on one port.
        let cluster = ClusterService::new(raft.clone(), cfg.advertised(), sealing.clone());
        let pools =
            PoolService::new(raft.clone(), Cursors::new(sealing.clone()), sealing.clone()).with_region(cfg.region());
        let key_dir = cfg.data_dir.join("keys");
        let signing_key = Arc::new(
            NodeSigningKey::load_or_create(&key_dir, cfg.node_id)
                .map_err(|e| NodeError::Serve(format!("token signing key: {e}")))?,
        );
        let keys =
            KeyService::new(raft.clone(), signing_key, key_dir, cfg.signing_key_rotation_days).with_tokens(cfg.tokens);
        let mut tasks = vec![("key maintenance", tokio::spawn(keys.clone().maintain(stop.subscribe())))];
        // Bounded staleness: keeps asking a quorum to vouch for this node's
        // state, so that the auth paths can refuse once it cannot.
        tasks.push((
            "freshness rounds",
            tokio::spawn(crate::raft::freshness::maintain(raft.clone(), stop.subscribe())),
        ));
        let hasher = match cfg.password_hash_concurrency {
            Some(n) => PasswordHasher::new(n, Duration::from_secs(5)),
            None => PasswordHasher::per_core(),
        };
        let deliver = cfg.courier.delivers();
        tasks.push((
            "outbox sweep",
            tokio::spawn(crate::courier::sweep_expired(raft.clone(), stop.subscribe())),
        ));
        if let Some(sender) = crate::courier::Sender::from_config(&cfg.courier)
            .map_err(|e| NodeError::Serve(format!("courier: {}", e.message)))?
        {
            tasks.push((
                "courier",
                tokio::spawn(crate::courier::run(
                    raft.clone(),
                    sender,
                    sealing.clone(),
                    metrics.clone(),
                    stop.subscribe(),
                )),
            ));
        }
        let tokens = TokenService::new(raft.clone(), keys.clone());
        let (audit, audit_task) = AuditService::start(raft.clone(), Cursors::new(sealing.clone()), stop.subscribe());
        tasks.push(("audit batching", audit_task));
        let limits = cfg.limits;
        let limiter = Arc::new(RateLimiter::new(limits.rates()));
        // One key cache for identity pools and federated sign-in.
        let oidc = crate::auth::oidc::OidcVerifier::new(cfg.oidc_config());
        let identity = crate::service::identity::IdentityService::new(
            raft.clone(),
            tokens.clone(),
            keys.clone(),
            oidc.clone(),
            sealing.clone(),
            limiter.clone(),
        )
        .with_region(cfg.region());
        let sync =
            crate::service::sync::SyncService::new(raft.clone(), identity.clone(), sealing.clone(), cfg.sync.limits());
        raft.hub().set_bounds(cfg.sync.queue_bounds());
        let sync_server = crate::sync::server::SyncServer::start(
            cfg.sync_settings().map_err(|e| NodeError::Serve(e.to_string()))?,
            sync.clone(),
            metrics.clone(),
            stop.subscribe(),
        )
        .await
        .map_err(|e| match e {
            crate::sync::server::SyncServerError::Bind(addr, io) => NodeError::Bind(addr, io),
            other => NodeError::Serve(other.to_string()),
        })?;
        let (sync_addr, sync_info) = (sync_server.local_addr, sync_server.info.clone());
        tasks.push(("sync listener", sync_server.into_task()));
        let oauth = crate::service::oauth::OAuthService::new(raft.clone(), tokens.clone(), sealing.clone());
        let auth = AuthService::new(
            raft.clone(),
            tokens,
            hasher.clone(),
            sealing.clone(),
            deliver,
            audit.clone(),
            limiter,
            oidc,
        )
        .with_public_url(&public_url(&cfg, api_addr, api_tls.is_some()));
        let front_keys = crate::service::admin_keys::AdminKeyService::new(raft.clone(), sealing.clone());
        let sync_sealing = sealing.clone();
        let routes = grpc_routes(ApiParts {
            raft: raft.clone(),
            admin_auth: AdminAuth::new(raft.clone()),
            pools: pools.clone(),
            cluster: cluster.clone(),
            keys: keys.clone(),
            auth: auth.clone(),
            hasher,
            deliver,
            sealing,
            audit,
            identity,
            sync: sync.clone(),
            bootstrap_token: cfg.bootstrap_token.clone(),
            account_id: cfg.arn_account().to_string(),
        })
        .await?;
        // The Cognito JSON front and Cognito Sync's REST routes call the
        // gRPC services in process.
        let grpc_for_sync = routes.clone().into_axum_router();
        let front = crate::api::cognito::CognitoFront::new(
            routes.clone().into_axum_router(),
            raft.clone(),
            front_keys,
            cfg.region(),
        )
        .map_err(NodeError::Serve)?;
        let router = crate::api::http::routes(routes.into_axum_router(), raft.clone(), metrics.clone(), keys.clone());
        let router = crate::api::cognito::routes(router, front);
        let sync_rest = crate::api::cognito::sync_rest::SyncRest::new(grpc_for_sync, sync_sealing, cfg.region())
            .map_err(NodeError::Serve)?;
        let router = crate::api::cognito::sync_rest::routes(router, sync_rest);
        let router = crate::api::http::with_sync_info(router, raft.clone(), sync_info.clone());
        let router = crate::api::http::magic_link::with_magic_link(router, auth.clone());
        let router = crate::api::http::oauth::routes(router, oauth, auth.clone());
        servers.push(serve_api(router, api_tls, api_listener, &cfg, &metrics, stop_rx)?);
        tracing::info!(node_id = cfg.node_id, %api_addr, %peer_addr, %sync_addr, "node started");
        Ok(RunningNode {
            raft,
            cluster,
            pools,
            keys,
            auth,
            metrics,
            api_addr,
            peer_addr,
            sync_addr,
            sync_fingerprint: sync_info.fingerprint_sha256,
            stop,
            servers,
            tasks,
        })
    }

    /// Hands over leadership if leading, drains both listeners, waits for
    /// the background tasks (the audit batch in hand commits), stops Raft.
    pub async fn shutdown(self) {
        self.raft.step_down().await;
        let _ = self.stop.send(true);
        for s in self.servers {
            match tokio::time::timeout(Duration::from_secs(10), s).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "server ended with an error"),
                Ok(Err(e)) => tracing::warn!(error = %e, "server task failed"),
                Err(_) => tracing::warn!("server did not drain within 10 s"),
            }
        }
        for (name, task) in self.tasks {
            match tokio::time::timeout(Duration::from_secs(10), task).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(task = name, error = %e, "background task failed"),
                Err(_) => tracing::warn!(task = name, "background task did not stop within 10 s"),
            }
        }
        self.raft.shutdown().await;
        tracing::info!("node stopped");
    }

    /// Runs until SIGTERM or SIGINT, then shuts down gracefully. If Raft
    /// stops on a fatal error first, shuts down and returns the error, so
    /// the process exits non-zero and a supervisor restarts it.
    pub async fn run_until_signal(self) -> Result<(), NodeError> {
        let raft = self.raft.clone();
        tokio::select! {
            _ = wait_for_signal() => {
                tracing::info!("signal received; shutting down");
                self.shutdown().await;
                Ok(())
            }
            fatal = raft.wait_fatal() => {
                tracing::error!(error = %fatal, "raft stopped on a fatal error; shutting down");
                self.shutdown().await;
                Err(NodeError::Consensus(ConsensusError::Fatal(fatal)))
            }
        }
    }
}

/// Accepted sockets with Nagle's algorithm off. `Server::tcp_nodelay` does
/// not apply to a caller-supplied listener, and with Nagle on, small Raft
/// and api messages wait for the peer's 40 ms delayed ACK.
fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(30)))
}

async fn wait_stop(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
