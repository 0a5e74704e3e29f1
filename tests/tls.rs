//! TLS on the api port and mutual TLS between peers, with certificates made
//! for the test by rcgen. Nodes run in-process over real loopback sockets.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tessera::client::Client;
use tessera::config::{LogFormat, NodeConfig, RaftConfig, TlsConfig};
use tessera::node::RunningNode;
use tessera::proto::peer_client::PeerClient;
use tessera::proto::NodeStatusRequest;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// A CA, one peer certificate per name in `peers`, and an api
    /// certificate for `localhost`.
    fn new(dir: &Path, peers: &[&str]) -> Pki {
        let ca_params = {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p
        };
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        for name in peers.iter().copied().chain(["localhost"]) {
            let key = KeyPair::generate().unwrap();
            let params = CertificateParams::new(vec![name.to_string()]).unwrap();
            let cert = params.signed_by(&key, &ca).unwrap();
            std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        }
        Pki { dir: dir.to_path_buf() }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    fn read(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.path(file)).unwrap()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(id: u64, dir: &Path, pki: &Pki, peer_cert: &str, join_token: &str) -> NodeConfig {
    NodeConfig {
        node_id: id,
        data_dir: dir.join(format!("n{id}")),
        api_addr: format!("127.0.0.1:{}", free_port()),
        peer_addr: format!("127.0.0.1:{}", free_port()),
        advertise_api_addr: None,
        advertise_peer_addr: None,
        sync_addr: Some(format!("127.0.0.1:{}", free_udp_port())),
        advertise_sync_addr: None,
        public_url: None,
        account_id: None,
        region: None,
        log_format: LogFormat::Text,
        tls: TlsConfig {
            api_cert: Some(pki.path("localhost.pem")),
            api_key: Some(pki.path("localhost.key")),
            peer_cert: Some(pki.path(&format!("{peer_cert}.pem"))),
            peer_key: Some(pki.path(&format!("{peer_cert}.key"))),
            peer_ca: Some(pki.path("ca.pem")),
        },
        raft: RaftConfig {
            heartbeat_ms: 50,
            election_timeout_min_ms: 300,
            election_timeout_max_ms: 600,
            propose_timeout_ms: 5_000,
            ..Default::default()
        },
        sealing_key_file: None,
        signing_key_rotation_days: 30,
        limits: Default::default(),
        password_hash_concurrency: None,
        courier: Default::default(),
        join_token: Some(join_token.to_string()),
        bootstrap_token: None,
        allow_plaintext_peers: false,
        tokens: Default::default(),
        oidc: Default::default(),
        sync: Default::default(),
    }
}

async fn client(pki: &Pki, node: &RunningNode, token: Option<String>) -> Client {
    let url = format!("https://localhost:{}", node.api_addr.port());
    Client::connect_tls(&url, &pki.read("ca.pem"), "localhost", token)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_cluster_replicates_and_refuses_impostors() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), &["node-1", "node-2", "node-9"]);

    let join = tessera::raft::join::JoinToken::generate().reveal();
    let n1 = RunningNode::start(config(1, dir.path(), &pki, "node-1", &join))
        .await
        .unwrap();
    let n2 = RunningNode::start(config(2, dir.path(), &pki, "node-2", &join))
        .await
        .unwrap();

    // Init through the TLS api port, register node 2's join token, then add
    // node 2 over mutual TLS.
    let c1 = client(&pki, &n1, None).await;
    let init = c1.init_cluster("").await.unwrap();
    let token = Some(init.admin_token.clone());
    let c1 = c1.with_token(token.clone());
    c1.create_join_token(tessera::proto::CreateJoinTokenRequest {
        token: join.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    c1.add_node(2, &n2.peer_addr.to_string(), &n2.api_addr.to_string())
        .await
        .unwrap();

    // A write through node 2 is forwarded to the leader over mutual TLS.
    let c2 = client(&pki, &n2, token.clone()).await;
    let pool = c2.create_user_pool("over tls").await.unwrap();
    let seen = c1.describe_user_pool(&pool.id, true).await.unwrap();
    assert_eq!(seen.name, "over tls");

    // A plaintext client cannot talk to the TLS api port.
    let plain = Client::connect(&format!("http://127.0.0.1:{}", n1.api_addr.port()), token.clone()).await;
    if let Ok(plain) = plain {
        assert!(plain.list_user_pools(1, "", false).await.is_err());
    }

    // A peer with a valid certificate for node 9, claiming to be node 2
    // with the real cluster id, is refused: TLS alone proves no membership,
    // and without a member's credential the call is Unauthenticated.
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pki.read("ca.pem")))
        .identity(Identity::from_pem(pki.read("node-9.pem"), pki.read("node-9.key")))
        .domain_name("node-1");
    let channel = Endpoint::from_shared(format!("https://127.0.0.1:{}", n1.peer_addr.port()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut impostor = PeerClient::new(channel);
    let mut req = tonic::Request::new(NodeStatusRequest {});
    req.metadata_mut().insert("x-tessera-from", "2".parse().unwrap());
    req.metadata_mut().insert("x-tessera-to", "1".parse().unwrap());
    req.metadata_mut()
        .insert("x-tessera-cluster-id", init.cluster_id.parse().unwrap());
    let err = impostor.node_status(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    assert!(!err.message().contains("node 1"), "names the node: {}", err.message());

    // A peer without a client certificate does not get past the handshake.
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pki.read("ca.pem")))
        .domain_name("node-1");
    let no_cert = Endpoint::from_shared(format!("https://127.0.0.1:{}", n1.peer_addr.port()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .timeout(Duration::from_secs(3))
        .connect()
        .await;
    if let Ok(channel) = no_cert {
        let mut anon = PeerClient::new(channel);
        let mut req = tonic::Request::new(NodeStatusRequest {});
        req.metadata_mut().insert("x-tessera-from", "2".parse().unwrap());
        req.metadata_mut().insert("x-tessera-to", "1".parse().unwrap());
        assert!(anon.node_status(req).await.is_err());
    }

    n2.shutdown().await;
    n1.shutdown().await;
}
