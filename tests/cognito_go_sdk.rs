//! A second AWS SDK against the Cognito JSON front: the AWS SDK for Go v1
//! (Debian's `golang-github-aws-aws-sdk-go-dev`), with only its endpoint
//! changed, signs up and signs in on a real three-node cluster
//! (`tests/go/cognito_sdk/main.go`; issue 13, test 4). boto3 is the broad
//! suite (`tests/cognito_boto3.rs`); this one proves the front is Cognito's
//! protocol and not botocore's reading of it: another serializer, another
//! SigV4 signer, another error decoder that builds typed exceptions.
//!
//! The Go SDK comes from Debian rather than the Go module proxy, which this
//! project's machines cannot reach: it builds offline in GOPATH mode
//! (`GO111MODULE=off`) in seconds. `make deps` installs `golang-go` and the
//! SDK; without them the test fails and says so, rather than passing
//! without having run.
//!
//! Run with: `cargo test --test cognito_go_sdk -- --nocapture`

// Tests time their phases with the clock freely; the ban is for the state
// machine.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::{json, Value};
use tessera::proto::CreateAdminAccessKeyRequest;

use common::TestCluster;

/// Where Debian installs Go library sources (GOPATH layout).
const DEBIAN_GOPATH: &str = "/usr/share/gocode";
const SDK_PACKAGE: &str = "github.com/aws/aws-sdk-go/service/cognitoidentityprovider";
const KEY_ID: &str = "AKIAGOSDKTEST0000001";
const SECRET: &str = "go/Sdk+Secret-0123456789abcdefghijklmnop";
/// A cold build of the SDK's packages takes about 10 s on an idle core;
/// the bound is for a machine busy with cargo builds.
const BUILD_TIMEOUT: Duration = Duration::from_secs(300);
/// The flow is a dozen calls; most of the bound is for the program's own
/// waits for followers to apply (10 s per step at most).
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Steps that must be in the program's report: a program that stopped
/// early or skipped the flow must not pass.
const REQUIRED_STEPS: &[&str] = &[
    "CreateUserPool (signed, node 1)",
    "CreateUserPoolClient (signed, node 1)",
    "SignUp (unsigned, node 2)",
    "SignUp twice gives UsernameExistsException (node 2)",
    "AdminConfirmSignUp (signed, node 1)",
    "InitiateAuth USER_PASSWORD_AUTH (unsigned, node 3)",
    "InitiateAuth REFRESH_TOKEN_AUTH (unsigned, node 3)",
    "GetUser with the access token (unsigned, node 2)",
    "wrong password gives NotAuthorizedException (node 3)",
    "CreateIdentityPool (signed, node 1)",
    "GetId, a guest identity (unsigned, node 2)",
];

/// `go` with the environment of a GOPATH-mode, offline build against
/// Debian's Go sources.
fn go_command(gocache: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("go");
    cmd.env("GO111MODULE", "off")
        .env("GOPATH", DEBIAN_GOPATH)
        // Never reach for the network: everything is in DEBIAN_GOPATH.
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        // In the target dir: kept between runs (rebuilds take a second),
        // gone with `cargo clean`, and independent of $HOME.
        .env("GOCACHE", gocache)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Fails, naming `make deps`, when Go or the SDK is missing: a skipped SDK
/// test would read as a passing one.
async fn check_toolchain(gocache: &Path) -> Result<()> {
    const HINT: &str = "`make deps` installs them (apt packages golang-go and golang-github-aws-aws-sdk-go-dev)";
    let version = go_command(gocache)
        .arg("version")
        .output()
        .await
        .map_err(|e| anyhow!("cannot run `go` ({e}): this test needs Go and the AWS SDK for Go; {HINT}"))?;
    ensure!(
        version.status.success(),
        "`go version` failed ({}): {}; {HINT}",
        version.status,
        String::from_utf8_lossy(&version.stderr)
    );
    let sdk = Path::new(DEBIAN_GOPATH).join("src").join(SDK_PACKAGE);
    ensure!(
        sdk.is_dir(),
        "the AWS SDK for Go is not installed ({} is missing); {HINT}",
        sdk.display()
    );
    Ok(())
}

/// Builds `tests/go/cognito_sdk` into `out_dir`; returns the binary.
async fn build_program(out_dir: &Path, gocache: &Path) -> Result<std::path::PathBuf> {
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/go/cognito_sdk");
    let bin = out_dir.join("cognito_sdk");
    let started = Instant::now();
    let build = go_command(gocache)
        .current_dir(src)
        .arg("build")
        .arg("-o")
        .arg(&bin)
        .arg(".")
        .output();
    let out = tokio::time::timeout(BUILD_TIMEOUT, build)
        .await
        .map_err(|_| anyhow!("`go build` of {src} did not finish in {BUILD_TIMEOUT:?}"))?
        .context("running `go build`")?;
    ensure!(
        out.status.success(),
        "`go build` of {src} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("go build: {:.1?}", started.elapsed());
    Ok(bin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_sdk_for_go_signs_up_and_signs_in_with_only_the_endpoint_changed() -> Result<()> {
    let gocache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-build-cache");
    check_toolchain(&gocache).await?;
    // Built before the cluster starts, so the nodes do not sit idle (and
    // the build does not compete with their elections).
    let out_dir = tempfile::Builder::new().prefix("tessera-go-sdk-").tempdir()?;
    let program = build_program(out_dir.path(), &gocache).await?;

    let c = TestCluster::start(3).await?;
    let client = c.client(1).await?;
    client
        .admin()
        .create_admin_access_key(client.req(CreateAdminAccessKeyRequest {
            access_key_id: KEY_ID.into(),
            secret_access_key: SECRET.into(),
            description: "AWS SDK for Go test".into(),
        }))
        .await
        .map_err(|s| anyhow!("CreateAdminAccessKey: {s}"))?;

    let endpoints = (1..=3).map(|id| c.node(id).url()).collect::<Vec<_>>().join(",");
    let started = Instant::now();
    let run = go_run(&program, &endpoints);
    let out = tokio::time::timeout(RUN_TIMEOUT, run)
        .await
        .map_err(|_| anyhow!("the Go SDK program did not finish in {RUN_TIMEOUT:?}"))?
        .with_context(|| format!("running {}", program.display()))?;
    eprintln!("go program: {:.1?}", started.elapsed());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success(),
        "the Go SDK program crashed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let line = stdout.lines().last().unwrap_or_default();
    let report: Value = serde_json::from_str(line).with_context(|| format!("the program's output: {stdout}"))?;
    eprintln!("{report}");
    if !stderr.trim().is_empty() {
        // The SDK's wire log, with TESSERA_SDK_DEBUG=1 in the test's
        // environment (the program inherits it).
        eprintln!("{stderr}");
    }
    let steps = report["steps"].as_array().context("no steps in the report")?;
    let missing: Vec<&str> = REQUIRED_STEPS
        .iter()
        .copied()
        .filter(|name| !steps.iter().any(|s| s["name"] == json!(name)))
        .collect();
    ensure!(
        missing.is_empty(),
        "steps missing from the report: {missing:?}\n{report}"
    );
    let failed: Vec<String> = steps
        .iter()
        .filter(|s| s["ok"] != json!(true))
        .map(|s| {
            format!(
                "  {}: {}",
                s["name"].as_str().unwrap_or("?"),
                s["error"].as_str().unwrap_or("")
            )
        })
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} of {} steps of the AWS SDK for Go failed (rerun with TESSERA_SDK_DEBUG=1 and --nocapture to see the wire):\n{}",
            failed.len(),
            steps.len(),
            failed.join("\n")
        );
    }
    Ok(())
}

/// Runs the built program against `endpoints` with the admin key.
async fn go_run(program: &Path, endpoints: &str) -> std::io::Result<std::process::Output> {
    tokio::process::Command::new(program)
        .args(["-endpoints", endpoints, "-key-id", KEY_ID, "-secret", SECRET])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
}
