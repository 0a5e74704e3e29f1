//! `tessera identity-pool`, `tessera identity` and `tessera role` end to
//! end: the real binary with `--output json` against a real node. A role
//! from a policy file; an identity pool with a user-pool (Cognito) provider
//! and an OpenID Connect provider; an update that changes one flag and keeps
//! the providers (the RPC replaces everything, the CLI must not); roles and
//! rule mappings set and read back; a role in use refused deletion with a
//! clear message; an empty identity list; the pool deleted. Also: a
//! malformed policy document is refused with InvalidParameterException
//! naming the element at fault, and flag errors name the flag.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::process::Output;

use anyhow::{ensure, Context, Result};
use common::{json_stdout, run_cli, TestCluster};
use serde_json::Value;

const POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "OwnFolder", "Effect": "Allow", "Action": ["files:Get", "files:Put"],
     "Resource": "files:/home/${identity.id}/*"}
  ]
}"#;

/// Runs an admin command through node 1 and returns its output, whatever
/// the exit status, for the checks of refusals.
async fn cli_admin(c: &TestCluster, args: &[&str]) -> Result<Output> {
    let mut all = c.admin_args(1);
    all.extend(args.iter().map(|s| s.to_string()));
    run_cli(&c.bin, all).await
}

/// Requires a non-zero exit whose stderr contains every one of `want`.
fn refused(out: &Output, what: &str, want: &[&str]) -> Result<String> {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    ensure!(
        !out.status.success(),
        "{what} succeeded; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    for w in want {
        ensure!(stderr.contains(w), "{what}: stderr lacks {w:?}: {stderr}");
    }
    Ok(stderr)
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_pool_role_and_identity_commands_through_the_binary() {
    let c = TestCluster::start(1).await.expect("a 1-node cluster forms");
    let r = body(&c).await;
    c.finish(r);
}

async fn body(c: &TestCluster) -> Result<()> {
    let dir = c.root().join("cli-identity");
    std::fs::create_dir_all(&dir)?;

    // A user pool and an app client, for the Cognito provider.
    let status = c.cli_admin_json(1, &["cluster", "status"]).await?;
    let public_url = str_at(&status, "/public_url").to_string();
    ensure!(!public_url.is_empty(), "cluster status has no public_url: {status}");
    let pool = c.cli_admin_json(1, &["pool", "create", "--name", "school"]).await?;
    let user_pool_id = str_at(&pool, "/id").to_string();
    let app = c
        .cli_admin_json(
            1,
            &["app-client", "create", "--pool-id", &user_pool_id, "--name", "web"],
        )
        .await?;
    let client_id = str_at(&app, "/client_id").to_string();
    ensure!(!client_id.is_empty(), "app-client create printed no client_id: {app}");

    // A role from a policy file.
    let policy_file = dir.join("teachers.json");
    std::fs::write(&policy_file, POLICY)?;
    let policy_path = policy_file.to_string_lossy().to_string();
    let role = c
        .cli_admin_json(
            1,
            &[
                "role",
                "create",
                "--name",
                "Teachers",
                "--description",
                "staff",
                "--policy-file",
                &policy_path,
            ],
        )
        .await?;
    ensure!(
        str_at(&role, "/role_arn") == "arn:tessera:iam:::role/Teachers",
        "{role}"
    );
    ensure!(
        str_at(&role, "/policy_document").contains("files:/home/${identity.id}/*"),
        "the stored policy keeps the resource: {role}"
    );
    // Update keeps what it is not given: a new description, same policy.
    let updated = c
        .cli_admin_json(
            1,
            &["role", "update", "--name", "Teachers", "--description", "all staff"],
        )
        .await?;
    ensure!(str_at(&updated, "/description") == "all staff", "{updated}");
    ensure!(
        str_at(&updated, "/policy_document") == str_at(&role, "/policy_document"),
        "role update without a policy kept it: {updated}"
    );
    let roles = c.cli_admin_json(1, &["role", "list"]).await?;
    ensure!(
        roles["roles"]
            .as_array()
            .is_some_and(|rs| rs.iter().any(|r| str_at(r, "/role_name") == "Teachers")),
        "role list shows Teachers: {roles}"
    );

    // A malformed policy is refused by the server, naming what is wrong.
    let bad_file = dir.join("bad.json");
    std::fs::write(
        &bad_file,
        r#"{"Statement": [{"Effect": "Maybe", "Action": "files:Get", "Resource": "*"}]}"#,
    )?;
    let out = cli_admin(
        c,
        &[
            "role",
            "create",
            "--name",
            "Broken",
            "--policy-file",
            &bad_file.to_string_lossy(),
        ],
    )
    .await?;
    refused(
        &out,
        "role create with Effect Maybe",
        &["InvalidParameterException", "Statement[0].Effect", "\"Maybe\""],
    )?;
    std::fs::write(&bad_file, r#"{"Statement": [ {"Effect": "Allow",  }"#)?;
    let out = cli_admin(
        c,
        &[
            "role",
            "create",
            "--name",
            "Broken",
            "--policy-file",
            &bad_file.to_string_lossy(),
        ],
    )
    .await?;
    refused(
        &out,
        "role create with broken JSON",
        &["InvalidParameterException", "not valid JSON"],
    )?;

    // An identity pool with a Cognito provider (scheme included, as the
    // flag allows) and an OpenID Connect provider.
    let cognito_name = format!("{public_url}/{user_pool_id}");
    let cognito_key = cognito_name
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .to_string();
    let cognito_flag = format!("{cognito_name},{client_id},server-side-check");
    let created = c
        .cli_admin_json(
            1,
            &[
                "identity-pool",
                "create",
                "--name",
                "school identities",
                "--allow-unauthenticated",
                "--cognito-provider",
                &cognito_flag,
                "--oidc-provider",
                "issuer=https://login.example.com/realm,client-id=web,client-id=ios,jwks-uri=https://login.example.com/realm/keys",
                "--tag",
                "team=edu",
            ],
        )
        .await?;
    let id = str_at(&created, "/identity_pool_id").to_string();
    ensure!(
        id.starts_with("local:"),
        "identity-pool create printed an id: {created}"
    );

    let got = c
        .cli_admin_json(1, &["identity-pool", "get", "--identity-pool-id", &id])
        .await?;
    let check_providers = |p: &Value, when: &str| -> Result<()> {
        ensure!(
            str_at(p, "/cognito_identity_providers/0/provider_name") == cognito_key
                && str_at(p, "/cognito_identity_providers/0/client_id") == client_id
                && p.pointer("/cognito_identity_providers/0/server_side_token_check") == Some(&Value::Bool(true)),
            "{when}: the Cognito provider: {p}"
        );
        ensure!(
            str_at(p, "/open_id_connect_providers/0/provider_name") == "login.example.com/realm"
                && str_at(p, "/open_id_connect_providers/0/issuer") == "https://login.example.com/realm"
                && str_at(p, "/open_id_connect_providers/0/jwks_uri") == "https://login.example.com/realm/keys"
                && p.pointer("/open_id_connect_providers/0/client_ids") == Some(&serde_json::json!(["web", "ios"])),
            "{when}: the OIDC provider: {p}"
        );
        ensure!(str_at(p, "/identity_pool_tags/team") == "edu", "{when}: the tag: {p}");
        Ok(())
    };
    ensure!(
        got["allow_unauthenticated_identities"] == Value::Bool(true),
        "created with guests: {got}"
    );
    check_providers(&got, "get")?;

    // Update one flag: everything else survives.
    let after = c
        .cli_admin_json(
            1,
            &[
                "identity-pool",
                "update",
                "--identity-pool-id",
                &id,
                "--allow-unauthenticated",
                "false",
            ],
        )
        .await?;
    ensure!(
        after["allow_unauthenticated_identities"] == Value::Bool(false),
        "update turned guests off: {after}"
    );
    ensure!(str_at(&after, "/identity_pool_name") == "school identities", "{after}");
    check_providers(&after, "update's answer")?;
    let again = c
        .cli_admin_json(1, &["identity-pool", "get", "--identity-pool-id", &id])
        .await?;
    check_providers(&again, "get after update")?;
    ensure!(
        again["allow_unauthenticated_identities"] == Value::Bool(false),
        "{again}"
    );

    // Roles and mappings: a token mapping for the user pool (written with
    // its scheme), ordered rules for the OIDC provider with a claim holding
    // a ':' and a role given by ARN.
    let token_mapping = format!("{cognito_name}:Deny");
    let set = c
        .cli_admin_json(
            1,
            &[
                "identity-pool",
                "set-roles",
                "--identity-pool-id",
                &id,
                "--authenticated-role",
                "Teachers",
                "--unauthenticated-role",
                "arn:aws:iam::123456789012:role/Teachers",
                "--token-mapping",
                &token_mapping,
                "--rule",
                "login.example.com/realm:custom:dept:Equals:math:arn:tessera:iam:::role/Teachers",
                "--rule",
                "https://login.example.com/realm:email:StartsWith:t.:Teachers",
                "--ambiguous",
                "login.example.com/realm=Deny",
            ],
        )
        .await?;
    let roles = c
        .cli_admin_json(1, &["identity-pool", "get-roles", "--identity-pool-id", &id])
        .await?;
    ensure!(
        set == roles,
        "set-roles prints what get-roles then shows: {set} vs {roles}"
    );
    ensure!(
        str_at(&roles, "/roles/authenticated") == "arn:tessera:iam:::role/Teachers"
            && str_at(&roles, "/roles/unauthenticated") == "arn:tessera:iam:::role/Teachers",
        "roles: {roles}"
    );
    let mappings = &roles["role_mappings"];
    let token = &mappings[cognito_key.as_str()];
    ensure!(
        str_at(token, "/type") == "Token" && str_at(token, "/ambiguous_role_resolution") == "Deny",
        "token mapping for {cognito_key}: {roles}"
    );
    let oidc = &mappings["login.example.com/realm"];
    ensure!(
        str_at(oidc, "/type") == "Rules" && str_at(oidc, "/ambiguous_role_resolution") == "Deny",
        "rules mapping: {roles}"
    );
    let rules: Vec<(&str, &str, &str, &str)> = oidc
        .pointer("/rules_configuration/rules")
        .and_then(Value::as_array)
        .context("rules")?
        .iter()
        .map(|r| {
            (
                str_at(r, "/claim"),
                str_at(r, "/match_type"),
                str_at(r, "/value"),
                str_at(r, "/role_arn"),
            )
        })
        .collect();
    ensure!(
        rules
            == [
                ("custom:dept", "Equals", "math", "arn:tessera:iam:::role/Teachers"),
                ("email", "StartsWith", "t.", "arn:tessera:iam:::role/Teachers"),
            ],
        "rules in the order given: {rules:?}"
    );

    // The same mappings round-trip through a file of get-roles' output.
    let roles_file = dir.join("roles.json");
    std::fs::write(&roles_file, serde_json::to_string(&roles)?)?;
    let from_file = c
        .cli_admin_json(
            1,
            &[
                "identity-pool",
                "set-roles",
                "--identity-pool-id",
                &id,
                "--mappings-json",
                &roles_file.to_string_lossy(),
            ],
        )
        .await?;
    ensure!(
        from_file == roles,
        "--mappings-json of get-roles' output: {from_file} vs {roles}"
    );

    // Flag errors name the flag and what the pool has.
    let out = cli_admin(
        c,
        &[
            "identity-pool",
            "set-roles",
            "--identity-pool-id",
            &id,
            "--rule",
            "accounts.google.com:email:Equals:x:Teachers",
        ],
    )
    .await?;
    refused(
        &out,
        "a rule for a provider the pool lacks",
        &["--rule", "does not name a login provider", "login.example.com/realm"],
    )?;
    let out = cli_admin(c, &["identity-pool", "set-roles", "--identity-pool-id", &id]).await?;
    refused(&out, "set-roles with nothing", &["nothing to set", "--clear"])?;

    // The pool shows in the list.
    let list = c.cli_admin_json(1, &["identity-pool", "list"]).await?;
    ensure!(
        list["identity_pools"].as_array().is_some_and(|ps| ps
            .iter()
            .any(|p| str_at(p, "/identity_pool_id") == id && str_at(p, "/identity_pool_name") == "school identities")),
        "identity-pool list shows {id}: {list}"
    );

    // A role in use cannot be deleted, and says why.
    let out = cli_admin(c, &["role", "delete", "--name", "Teachers"]).await?;
    refused(
        &out,
        "deleting a role in use",
        &["ResourceConflictException", "Teachers", "is used by identity pool", &id],
    )?;

    // No one has signed in: no identities.
    let ids = c
        .cli_admin_json(1, &["identity", "list", "--identity-pool-id", &id])
        .await?;
    ensure!(
        ids["identities"].as_array().is_some_and(Vec::is_empty),
        "identity list of a new pool is empty: {ids}"
    );
    let out = cli_admin(c, &["identity", "delete", "--identity-id", "local:zz"]).await?;
    refused(&out, "deleting a malformed identity id", &["InvalidParameterException"])?;

    // The public calls, with no admin token: a guest's GetId and its
    // credentials (what `tessera sync` takes); a forged login is refused.
    c.cli_admin_json(
        1,
        &[
            "identity-pool",
            "update",
            "--identity-pool-id",
            &id,
            "--allow-unauthenticated",
            "true",
        ],
    )
    .await?;
    let public = |args: &[&str]| {
        let mut all = vec![
            "--endpoint".to_string(),
            c.node(1).url(),
            "--output".into(),
            "json".into(),
        ];
        all.extend(args.iter().map(|s| s.to_string()));
        run_cli(&c.bin, all)
    };
    let out = public(&["identity", "get-id", "--identity-pool-id", &id]).await?;
    let got = json_stdout(&out)?;
    let guest = str_at(&got, "/identity_id").to_string();
    ensure!(guest.starts_with("local:"), "get-id printed a guest identity: {got}");
    let out = public(&["identity", "credentials", "--identity-id", &guest]).await?;
    let creds = json_stdout(&out)?;
    ensure!(
        str_at(&creds, "/identity_id") == guest
            && str_at(&creds, "/credentials/session_token").split('.').count() == 3
            && str_at(&creds, "/credentials/access_key_id").starts_with("TSIA"),
        "credentials for the guest: {creds}"
    );
    let out = public(&[
        "identity",
        "get-id",
        "--identity-pool-id",
        &id,
        "--login",
        "login.example.com/realm=not-a-token",
    ])
    .await?;
    refused(&out, "GetId with a forged login", &["Unauthenticated"])?;

    // Delete the pool; then the role is free to go.
    let deleted = c
        .cli_admin_json(1, &["identity-pool", "delete", "--identity-pool-id", &id])
        .await?;
    ensure!(str_at(&deleted, "/deleted") == id, "{deleted}");
    let out = cli_admin(c, &["identity-pool", "get", "--identity-pool-id", &id]).await?;
    refused(&out, "getting a deleted pool", &["NotFound"])?;
    let list = c.cli_admin_json(1, &["identity-pool", "list"]).await?;
    ensure!(
        list["identity_pools"]
            .as_array()
            .is_some_and(|ps| ps.iter().all(|p| str_at(p, "/identity_pool_id") != id)),
        "identity-pool list no longer shows {id}: {list}"
    );
    c.cli_admin_json(1, &["role", "delete", "--name", "Teachers"]).await?;
    let out = cli_admin(c, &["role", "get", "--name", "Teachers"]).await?;
    refused(&out, "getting a deleted role", &["NoSuchEntityException"])?;
    Ok(())
}
