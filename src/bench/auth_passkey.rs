//! The `passkey` scenario of `tessera bench auth` (see [`super::auth`]):
//! `USER_AUTH` with `WEB_AUTHN`, answered by a software authenticator the
//! bench carries for each user.
//!
//! Setup registers one passkey per user, the way a browser would after a
//! password sign-in: `StartWebAuthnRegistration`, then
//! `CompleteWebAuthnRegistration` with a `none` attestation of a fresh
//! P-256 key (ES256). A timed sign-in asks for the `WEB_AUTHN` challenge,
//! signs the assertion (authenticator data with the user's next signature
//! counter, and the hash of the client data) and answers it for tokens.
//!
//! The server advances each credential's counter in `apply` and refuses
//! one that did not rise, so sign-ins of one user must reach it in the
//! order of their counters: each load task signs in only its own users
//! ([`own_user`]), one at a time, and never shares them with another task.
//!
//! The authenticator is only what the bench needs, built from the
//! WebAuthn data layouts (§6.1 authenticator data, §6.5.4 attestation
//! object, RFC 9053 COSE keys) with `openssl` for the key and signatures
//! and `serde_cbor_2` for the encoding. The server verifies it with
//! webauthn-rs, which the bench does not use, so the two are independent.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{anyhow, Context as _};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use futures::{StreamExt as _, TryStreamExt as _};
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;
use serde_cbor_2::Value;
use sha2::{Digest as _, Sha256};
use tonic::transport::Channel;

use super::auth::{lock_steps, sign_in_all, tokens, StepTimes};
use super::driver::{status_error, Failure};
use crate::client::Client;
use crate::proto::auth_client::AuthClient;
use crate::proto::*;

/// Setup calls in flight at once (as in [`super::auth`]).
const SETUP_CONCURRENCY: usize = 8;
/// The relying party the bench pool names. Its origin `https://localhost`
/// is what the bench's client data says.
pub const RP_ID: &str = "localhost";
/// The origin in the client data.
const ORIGIN: &str = "https://localhost";
/// Authenticator data flags: user present, user verified.
const FLAGS_UP_UV: u8 = 0x01 | 0x04;
/// ... and attested credential data included (registration).
const FLAGS_UP_UV_AT: u8 = FLAGS_UP_UV | 0x40;
/// Bytes of a credential id (what platform authenticators commonly use).
const CREDENTIAL_ID_LEN: usize = 32;

/// A bench user with a passkey.
pub struct PasskeyUser {
    username: String,
    passkey: SoftPasskey,
}

/// A software passkey: the private key the bench holds, the credential
/// id, the user handle (the user's `sub`, as the registration options
/// named it) and the signature counter of its last assertion. Public so
/// that `benches/passkey_verify.rs` can drive the relying party with it
/// directly, without a node.
pub struct SoftPasskey {
    key: PKey<Private>,
    credential_id: Vec<u8>,
    user_handle: String,
    counter: AtomicU32,
}

impl SoftPasskey {
    /// A new ES256 passkey for `PublicKeyCredentialCreationOptions`
    /// (`options_json`), and its `RegistrationResponseJSON` with a `none`
    /// attestation.
    pub fn register(options_json: &str) -> anyhow::Result<(SoftPasskey, String)> {
        let options = CreationOptions::parse(options_json).context("the creation options")?;
        let key = new_key()?;
        let credential_id = crate::clock::random_bytes::<CREDENTIAL_ID_LEN>().to_vec();
        let credential = registration_json(&key, &credential_id, &options)?;
        Ok((
            SoftPasskey {
                key,
                credential_id,
                user_handle: options.user_id,
                counter: AtomicU32::new(0),
            },
            credential,
        ))
    }

    /// The `AuthenticationResponseJSON` answering
    /// `PublicKeyCredentialRequestOptions` (`options_json`), signed with
    /// the next signature counter.
    pub fn answer(&self, options_json: &str) -> anyhow::Result<String> {
        let (challenge, rp_id) = request_options(options_json)?;
        self.assertion(&challenge, &rp_id)
            .map_err(|f| anyhow!("{}: {}", f.code, f.message))
    }
}

/// `passkey` setup: the pool's relying party is `localhost` and
/// `WEB_AUTHN` an allowed first factor; each user signs in with its
/// password and registers a passkey.
pub async fn setup_passkey_users(
    admin: &Client,
    pool_id: &str,
    client_id: &str,
    usernames: &[String],
) -> anyhow::Result<Vec<PasskeyUser>> {
    admin
        .admin()
        .set_user_pool_mfa_config(admin.req(SetUserPoolMfaConfigRequest {
            user_pool_id: pool_id.to_string(),
            mfa_configuration: "OFF".into(),
            web_authn_configuration: Some(WebAuthnConfigurationType {
                relying_party_id: RP_ID.into(),
                user_verification: "preferred".into(),
                ..Default::default()
            }),
            ..Default::default()
        }))
        .await
        .map_err(|s| status_error("SetUserPoolMfaConfig web_authn_configuration", s))?;
    admin
        .admin()
        .update_user_pool(admin.req(UpdateUserPoolRequest {
            user_pool_id: pool_id.to_string(),
            policies: Some(UserPoolPolicyType {
                password_policy: None,
                sign_in_policy: Some(SignInPolicyType {
                    allowed_first_auth_factors: vec!["PASSWORD".into(), "WEB_AUTHN".into()],
                    magic_link_validity_seconds: 0,
                }),
            }),
            ..Default::default()
        }))
        .await
        .map_err(|s| status_error("UpdateUserPool sign_in_policy", s))?;
    let signed_in = sign_in_all(admin, client_id, usernames).await?;
    tracing::info!(users = usernames.len(), "registering a passkey for each bench user");
    futures::stream::iter(usernames.iter().zip(signed_in))
        .map(|(username, t)| async move {
            let mut auth = admin.auth();
            let options = auth
                .start_web_authn_registration(StartWebAuthnRegistrationRequest {
                    access_token: t.access_token.clone(),
                })
                .await
                .map_err(|s| status_error(&format!("StartWebAuthnRegistration {username}"), s))?
                .into_inner()
                .credential_creation_options_document;
            let (passkey, credential) =
                SoftPasskey::register(&options).with_context(|| format!("StartWebAuthnRegistration {username}"))?;
            auth.complete_web_authn_registration(CompleteWebAuthnRegistrationRequest {
                access_token: t.access_token,
                credential_document: credential,
                friendly_credential_name: "bench".into(),
            })
            .await
            .map_err(|s| status_error(&format!("CompleteWebAuthnRegistration {username}"), s))?;
            anyhow::Ok(PasskeyUser {
                username: username.clone(),
                passkey,
            })
        })
        .buffered(SETUP_CONCURRENCY)
        .try_collect()
        .await
}

/// What the bench reads from `PublicKeyCredentialCreationOptions`.
#[derive(Debug, PartialEq)]
struct CreationOptions {
    /// The challenge, base64url, echoed in the client data.
    challenge: String,
    /// The user handle, base64url, returned by every assertion.
    user_id: String,
    /// The relying party the authenticator data is bound to.
    rp_id: String,
}

/// The options object itself, or inside `publicKey` (the shape
/// `navigator.credentials` takes).
fn options_object(json: &str) -> anyhow::Result<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(json).context("not JSON")?;
    Ok(match v.get("publicKey") {
        Some(inner) if inner.is_object() => inner.clone(),
        _ => v,
    })
}

fn str_at<'a>(v: &'a serde_json::Value, path: &[&str]) -> anyhow::Result<&'a str> {
    let mut at = v;
    for p in path {
        at = at.get(p).ok_or_else(|| anyhow!("no {}", path.join(".")))?;
    }
    at.as_str().ok_or_else(|| anyhow!("{} is not a string", path.join(".")))
}

impl CreationOptions {
    fn parse(json: &str) -> anyhow::Result<CreationOptions> {
        let v = options_object(json)?;
        Ok(CreationOptions {
            challenge: str_at(&v, &["challenge"])?.to_string(),
            user_id: str_at(&v, &["user", "id"])?.to_string(),
            // WebAuthn: an absent rp.id means the origin's host.
            rp_id: str_at(&v, &["rp", "id"]).unwrap_or(RP_ID).to_string(),
        })
    }
}

/// The challenge and relying party of `PublicKeyCredentialRequestOptions`.
fn request_options(json: &str) -> anyhow::Result<(String, String)> {
    let v = options_object(json)?;
    Ok((
        str_at(&v, &["challenge"])?.to_string(),
        str_at(&v, &["rpId"]).unwrap_or(RP_ID).to_string(),
    ))
}

/// A fresh P-256 key.
fn new_key() -> anyhow::Result<PKey<Private>> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    Ok(PKey::from_ec_key(EcKey::generate(&group)?)?)
}

/// The public half of `key` as a COSE_Key (ES256 on P-256): the CBOR map
/// `{1: 2 (EC2), 3: -7 (ES256), -1: 1 (P-256), -2: x, -3: y}`.
fn cose_key(key: &PKey<Private>) -> anyhow::Result<Vec<u8>> {
    let ec = key.ec_key()?;
    let (mut x, mut y, mut ctx) = (BigNum::new()?, BigNum::new()?, BigNumContext::new()?);
    ec.public_key()
        .affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx)?;
    cose_es256(&x.to_vec_padded(32)?, &y.to_vec_padded(32)?)
}

fn cose_es256(x: &[u8], y: &[u8]) -> anyhow::Result<Vec<u8>> {
    let int = |i: i128| Value::Integer(i);
    let map = Value::Map(
        [
            (int(1), int(2)),
            (int(3), int(-7)),
            (int(-1), int(1)),
            (int(-2), Value::Bytes(x.to_vec())),
            (int(-3), Value::Bytes(y.to_vec())),
        ]
        .into_iter()
        .collect(),
    );
    Ok(serde_cbor_2::to_vec(&map)?)
}

/// Authenticator data (WebAuthn §6.1): the relying party's hash, flags and
/// signature counter, then (at registration) the attested credential data
/// with an all-zero AAGUID, as a `none` attestation has.
fn authenticator_data(rp_id: &str, flags: u8, counter: u32, attested: Option<(&[u8], &[u8])>) -> Vec<u8> {
    let mut d = Vec::with_capacity(37 + attested.map_or(0, |(id, key)| 18 + id.len() + key.len()));
    d.extend_from_slice(&Sha256::digest(rp_id.as_bytes()));
    d.push(flags);
    d.extend_from_slice(&counter.to_be_bytes());
    if let Some((credential_id, cose_key)) = attested {
        d.extend_from_slice(&[0u8; 16]);
        // A credential id is at most 1023 bytes; the bench's are 32.
        d.extend_from_slice(&u16::try_from(credential_id.len()).unwrap_or(u16::MAX).to_be_bytes());
        d.extend_from_slice(credential_id);
        d.extend_from_slice(cose_key);
    }
    d
}

/// The attestation object of a `none` attestation:
/// `{"fmt": "none", "attStmt": {}, "authData": ...}`.
fn attestation_object(auth_data: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    let text = |s: &str| Value::Text(s.to_string());
    let map = Value::Map(
        [
            (text("fmt"), text("none")),
            (text("attStmt"), Value::Map(Default::default())),
            (text("authData"), Value::Bytes(auth_data)),
        ]
        .into_iter()
        .collect(),
    );
    Ok(serde_cbor_2::to_vec(&map)?)
}

/// The client data a browser on `https://localhost` would collect.
fn client_data(ceremony: &str, challenge: &str) -> String {
    serde_json::json!({
        "type": ceremony,
        "challenge": challenge,
        "origin": ORIGIN,
        "crossOrigin": false,
    })
    .to_string()
}

/// The `RegistrationResponseJSON` of a new credential.
fn registration_json(key: &PKey<Private>, credential_id: &[u8], options: &CreationOptions) -> anyhow::Result<String> {
    let cose = cose_key(key)?;
    let auth_data = authenticator_data(&options.rp_id, FLAGS_UP_UV_AT, 0, Some((credential_id, &cose)));
    let id = URL_SAFE_NO_PAD.encode(credential_id);
    Ok(serde_json::json!({
        "id": id,
        "rawId": id,
        "type": "public-key",
        "response": {
            "clientDataJSON": URL_SAFE_NO_PAD.encode(client_data("webauthn.create", &options.challenge)),
            "attestationObject": URL_SAFE_NO_PAD.encode(attestation_object(auth_data)?),
            "transports": ["internal"],
        },
        "clientExtensionResults": {},
    })
    .to_string())
}

/// ECDSA-SHA256 (DER) over `authenticatorData || SHA-256(clientDataJSON)`.
fn sign(key: &PKey<Private>, auth_data: &[u8], client_data: &[u8]) -> Result<Vec<u8>, openssl::error::ErrorStack> {
    let mut signer = Signer::new(MessageDigest::sha256(), key)?;
    signer.update(auth_data)?;
    signer.update(&Sha256::digest(client_data))?;
    signer.sign_to_vec()
}

impl SoftPasskey {
    /// The `AuthenticationResponseJSON` for `challenge`, with the next
    /// signature counter.
    fn assertion(&self, challenge: &str, rp_id: &str) -> Result<String, Failure> {
        let counter = self.counter.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        let auth_data = authenticator_data(rp_id, FLAGS_UP_UV, counter, None);
        let client = client_data("webauthn.get", challenge);
        let signature =
            sign(&self.key, &auth_data, client.as_bytes()).map_err(|e| Failure::new("Sign", e.to_string()))?;
        let id = URL_SAFE_NO_PAD.encode(&self.credential_id);
        Ok(serde_json::json!({
            "id": id,
            "rawId": id,
            "type": "public-key",
            "response": {
                "clientDataJSON": URL_SAFE_NO_PAD.encode(client),
                "authenticatorData": URL_SAFE_NO_PAD.encode(auth_data),
                "signature": URL_SAFE_NO_PAD.encode(signature),
                "userHandle": self.user_handle,
            },
            "clientExtensionResults": {},
        })
        .to_string())
    }
}

/// The `seq`-th user of task `task` out of `tasks`, among `len`: the
/// users `task`, `task + tasks`, `task + 2 × tasks`, ..., in turn. No two
/// tasks share a user, so a user's sign-ins never overlap. Needs
/// `len >= tasks` (checked when the run is planned), else the task's
/// share is empty and it gets user `task % len`.
pub fn own_user(task: usize, tasks: usize, seq: u64, len: usize) -> usize {
    let (tasks, len) = (tasks.max(1), len.max(1));
    let task = task % tasks;
    if task >= len {
        return task % len;
    }
    let share = (len - task).div_ceil(tasks) as u64;
    // Less than `share`, which came from a usize.
    task + usize::try_from(seq % share).unwrap_or(0) * tasks
}

/// One `passkey` sign-in of `users[index]`: `USER_AUTH` with
/// `PREFERRED_CHALLENGE=WEB_AUTHN`, then the signed assertion.
pub(super) async fn passkey_sign_in(
    auth: &mut AuthClient<Channel>,
    client_id: &str,
    users: &[PasskeyUser],
    index: usize,
    steps: &Mutex<StepTimes>,
) -> Result<(), Failure> {
    let user = &users[index];
    let t0 = Instant::now();
    let r = auth
        .initiate_auth(InitiateAuthRequest {
            auth_flow: "USER_AUTH".into(),
            auth_parameters: [
                ("USERNAME".to_string(), user.username.clone()),
                ("PREFERRED_CHALLENGE".to_string(), "WEB_AUTHN".to_string()),
            ]
            .into_iter()
            .collect(),
            client_id: client_id.to_string(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let t1 = Instant::now();
    if r.challenge_name != "WEB_AUTHN" {
        return Err(Failure::new(
            "NoChallenge",
            format!("expected WEB_AUTHN, got {:?}", r.challenge_name),
        ));
    }
    let options = r
        .challenge_parameters
        .get("CREDENTIAL_REQUEST_OPTIONS")
        .ok_or_else(|| Failure::new("NoOptions", "WEB_AUTHN without CREDENTIAL_REQUEST_OPTIONS".into()))?;
    let (challenge, rp_id) = request_options(options).map_err(|e| Failure::new("BadOptions", format!("{e:#}")))?;
    let credential = user.passkey.assertion(&challenge, &rp_id)?;
    let t2 = Instant::now();
    let answer = auth
        .respond_to_auth_challenge(RespondToAuthChallengeRequest {
            client_id: client_id.to_string(),
            challenge_name: r.challenge_name,
            session: r.session,
            challenge_responses: [
                ("USERNAME".to_string(), user.username.clone()),
                ("CREDENTIAL".to_string(), credential),
            ]
            .into_iter()
            .collect(),
        })
        .await?
        .into_inner();
    let t3 = Instant::now();
    tokens(InitiateAuthResponse {
        authentication_result: answer.authentication_result,
        ..Default::default()
    })?;
    // The bench's own signing (tens of µs) is in neither step.
    lock_steps(steps).record(t1 - t0, None, t3 - t2);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use openssl::ecdsa::EcdsaSig;

    use super::*;

    #[test]
    fn cose_key_is_the_es256_map() {
        let (x, y) = ([0xaa; 32], [0xbb; 32]);
        let bytes = cose_es256(&x, &y).unwrap();
        let Value::Map(m) = serde_cbor_2::from_slice::<Value>(&bytes).unwrap() else {
            panic!("not a map");
        };
        let get = |k: i128| m.get(&Value::Integer(k)).cloned();
        assert_eq!(m.len(), 5);
        assert_eq!(get(1), Some(Value::Integer(2)));
        assert_eq!(get(3), Some(Value::Integer(-7)));
        assert_eq!(get(-1), Some(Value::Integer(1)));
        assert_eq!(get(-2), Some(Value::Bytes(x.to_vec())));
        assert_eq!(get(-3), Some(Value::Bytes(y.to_vec())));
        // Integer keys encode as CBOR integers: 0x01, 0x03, 0x20 (-1), ...
        assert_eq!(bytes[0], 0xa5);
        assert_eq!(&bytes[1..3], &[0x01, 0x02]);
        // A real key's coordinates are 32 bytes even with leading zeros.
        let real = cose_key(&new_key().unwrap()).unwrap();
        assert_eq!(real.len(), bytes.len());
    }

    #[test]
    fn authenticator_data_has_the_webauthn_layout() {
        let d = authenticator_data("localhost", FLAGS_UP_UV, 0x0102_0304, None);
        assert_eq!(d.len(), 37);
        assert_eq!(&d[..32], Sha256::digest(b"localhost").as_slice());
        assert_eq!(d[32], 0x05);
        assert_eq!(&d[33..37], &[1, 2, 3, 4]);

        let (id, key) = ([9u8; 32], [7u8; 77]);
        let d = authenticator_data("localhost", FLAGS_UP_UV_AT, 0, Some((&id, &key)));
        assert_eq!(d[32], 0x45);
        assert_eq!(&d[33..37], &[0; 4]);
        assert_eq!(&d[37..53], &[0; 16], "AAGUID");
        assert_eq!(&d[53..55], &[0, 32], "credential id length");
        assert_eq!(&d[55..87], &id);
        assert_eq!(&d[87..], &key);
    }

    #[test]
    fn attestation_object_is_a_none_statement() {
        let bytes = attestation_object(vec![1, 2, 3]).unwrap();
        let Value::Map(m) = serde_cbor_2::from_slice::<Value>(&bytes).unwrap() else {
            panic!("not a map");
        };
        let get = |k: &str| m.get(&Value::Text(k.into())).cloned();
        assert_eq!(get("fmt"), Some(Value::Text("none".into())));
        assert_eq!(get("attStmt"), Some(Value::Map(Default::default())));
        assert_eq!(get("authData"), Some(Value::Bytes(vec![1, 2, 3])));
    }

    #[test]
    fn options_are_read_with_or_without_public_key() {
        let inner = r#"{"challenge":"Y2g","user":{"id":"c3Vi","name":"u"},"rp":{"id":"localhost","name":"x"}}"#;
        let want = CreationOptions {
            challenge: "Y2g".into(),
            user_id: "c3Vi".into(),
            rp_id: "localhost".into(),
        };
        assert_eq!(CreationOptions::parse(inner).unwrap(), want);
        assert_eq!(
            CreationOptions::parse(&format!(r#"{{"publicKey":{inner}}}"#)).unwrap(),
            want
        );
        assert!(CreationOptions::parse(r#"{"challenge":"x"}"#).is_err());
        let (c, rp) = request_options(r#"{"publicKey":{"challenge":"abc","rpId":"example.com"}}"#).unwrap();
        assert_eq!((c.as_str(), rp.as_str()), ("abc", "example.com"));
    }

    #[test]
    fn assertions_verify_and_their_counters_rise() {
        let key = new_key().unwrap();
        let user = SoftPasskey {
            key,
            credential_id: vec![5; 32],
            user_handle: "c3Vi".into(),
            counter: AtomicU32::new(0),
        };
        let mut counters = Vec::new();
        for _ in 0..2 {
            let j: serde_json::Value = serde_json::from_str(&user.assertion("Y2g", "localhost").unwrap()).unwrap();
            let r = &j["response"];
            let b = |k: &str| URL_SAFE_NO_PAD.decode(r[k].as_str().unwrap()).unwrap();
            let (auth_data, client, sig) = (b("authenticatorData"), b("clientDataJSON"), b("signature"));
            let c: serde_json::Value = serde_json::from_slice(&client).unwrap();
            assert_eq!(c["type"], "webauthn.get");
            assert_eq!(c["challenge"], "Y2g");
            assert_eq!(c["origin"], ORIGIN);
            assert_eq!(r["userHandle"], "c3Vi");
            let mut signed = auth_data.clone();
            signed.extend_from_slice(&Sha256::digest(&client));
            let digest = Sha256::digest(&signed);
            let ec = user.key.ec_key().unwrap();
            assert!(EcdsaSig::from_der(&sig).unwrap().verify(&digest, &ec).unwrap());
            counters.push(u32::from_be_bytes(auth_data[33..37].try_into().unwrap()));
        }
        assert_eq!(counters, vec![1, 2]);
    }

    #[test]
    fn each_task_has_its_own_users() {
        for (tasks, len) in [(32, 256), (16, 64), (5, 12), (3, 3)] {
            let mut owner = vec![None; len];
            for task in 0..tasks {
                let mut seen = BTreeSet::new();
                for seq in 0..(2 * len as u64) {
                    let u = own_user(task, tasks, seq, len);
                    assert!(u < len);
                    assert!(
                        *owner[u].get_or_insert(task) == task,
                        "user {u} shared ({tasks} tasks, {len} users)"
                    );
                    seen.insert(u);
                }
                assert_eq!(seen.len(), (len - task).div_ceil(tasks), "task {task} cycles its share");
            }
            assert!(owner.iter().all(Option::is_some), "every user signs in");
        }
    }
}
