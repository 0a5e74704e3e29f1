//! `tessera dev`: the first command a new user runs. One real process on
//! loopback: initialised on first start, token file private, restartable on
//! the same data with the same token. Also checks that standard gRPC tooling
//! finds the health and reflection services.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use common::{free_ports, http_get, pin_binary, poll_until};
use tessera::client::Client;

fn spawn_dev(bin: &std::path::Path, dir: &std::path::Path, api: &str, peer: &str) -> Result<std::process::Child> {
    let log = std::fs::File::create(dir.with_extension("log"))?;
    Ok(Command::new(bin)
        .args(["dev", "--data-dir"])
        .arg(dir)
        .args(["--api-addr", api, "--peer-addr", peer])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()?)
}

async fn wait_token(dir: &std::path::Path, api: &str) -> Result<String> {
    let token_path = dir.join("admin-token");
    poll_until(
        "dev node ready",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            let ready = http_get(api, "/readyz").await.map(|r| r.status == 200).unwrap_or(false);
            Ok((ready && token_path.exists()).then_some(()))
        },
    )
    .await?;
    Ok(std::fs::read_to_string(&token_path)?.trim().to_string())
}

fn terminate(child: &mut std::process::Child) -> Result<std::process::ExitStatus> {
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status()?;
    for _ in 0..150 {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill()?;
    anyhow::bail!("dev node did not stop within 15 s of SIGTERM")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_node_initialises_once_and_restarts_on_its_data() -> Result<()> {
    let root = tempfile::tempdir()?;
    let bin = pin_binary(root.path())?;
    let ports = free_ports(2)?;
    let api = format!("127.0.0.1:{}", ports[0]);
    let peer = format!("127.0.0.1:{}", ports[1]);
    let dir = root.path().join("dev");

    let mut child = spawn_dev(&bin, &dir, &api, &peer)?;
    let token = wait_token(&dir, &api).await?;
    assert!(token.starts_with("tsr_"), "token file holds a token");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("admin-token"))?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the admin token file must be private");
    }
    let client = Client::connect(&format!("http://{api}"), Some(token.clone())).await?;
    let pool = client.create_user_pool("dev pool").await?;

    // gRPC health checking and reflection answer like any gRPC server.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{api}"))?
        .connect()
        .await?;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let served = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "tessera.v1.Admin".into(),
        })
        .await?
        .into_inner();
    assert_eq!(
        served.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // Server reflection lists our services, so grpcurl and friends work.
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{api}"))?
        .connect()
        .await?;
    let mut reflection = ServerReflectionClient::new(channel);
    let ask = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter([ask]))
        .await?
        .into_inner();
    let answer = answers.message().await?.context("no reflection answer")?;
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        anyhow::bail!("unexpected reflection answer: {answer:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in ["tessera.v1.Admin", "tessera.v1.Cluster", "grpc.health.v1.Health"] {
        assert!(names.iter().any(|n| n == want), "reflection lists {want}: {names:?}");
    }

    let status = terminate(&mut child)?;
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
    let first_out = {
        use std::io::Read;
        let mut s = String::new();
        child.stdout.take().context("stdout")?.read_to_string(&mut s)?;
        s
    };
    assert!(first_out.contains(&token), "dev prints the admin token");
    assert!(first_out.contains(&api), "dev prints its api endpoint");

    // Restart on the same data: same token, same pool, no second init.
    let mut child = spawn_dev(&bin, &dir, &api, &peer)?;
    let token_again = wait_token(&dir, &api).await?;
    assert_eq!(token, token_again, "restart keeps the token");
    let client = Client::connect(&format!("http://{api}"), Some(token)).await?;
    let again = client.describe_user_pool(&pool.id, true).await?;
    assert_eq!(again.name, "dev pool");
    let status = terminate(&mut child)?;
    assert!(status.success());
    Ok(())
}
