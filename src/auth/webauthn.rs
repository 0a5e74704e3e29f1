//! The one place that talks to webauthn-rs (`webauthn-rs-core`, Kanidm's
//! WebAuthn implementation): options out, attestations and assertions in.
//!
//! The core crate is used rather than `webauthn-rs`'s passkey wrapper
//! because the pool decides what the wrapper fixes: user verification
//! `required` or `preferred`, whether attestation is required, and the
//! relying party. Everything the library does is kept; what this module
//! adds is plumbing:
//! - the library's states are serialised as JSON (a registration's is
//!   replicated, a sign-in's travels in the signed challenge session);
//! - a sign-in state is serialised without the user's credentials and
//!   given them back, as they are now, when the answer comes
//!   (`set_allowed_credentials`, the library's hook for username-less
//!   sign-in), so a credential deleted or advanced in between counts;
//! - the library's errors become [`Refusal`]s a person can act on.
//!
//! Allowed origins are derived from the relying-party id, as browsers
//! derive what may use it: `https://<rp id>` and its subdomains on any
//! port, `http://localhost` when the RP id is `localhost` (a secure context
//! for browsers), and the cluster's public URL when its host is the RP id
//! or under it (the hosted page).

use std::time::Duration;

use base64::Engine as _;
use sha2::{Digest, Sha256};
use url::Url;
use webauthn_rs_core::error::WebauthnError;
use webauthn_rs_core::proto::{
    AttestationConveyancePreference, AttestationMetadata, AuthenticationState, Credential, ParsedAttestationData,
    PublicKeyCredential, RegisterPublicKeyCredential, RegistrationState, UserVerificationPolicy,
};
use webauthn_rs_core::WebauthnCore;

use crate::model::webauthn::{UserVerification, WebAuthnConfig, WebAuthnCredential};

/// The AAGUID of an authenticator that does not name its model.
pub const ZERO_AAGUID: &str = "00000000-0000-0000-0000-000000000000";

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Why a registration or assertion was refused, in terms a caller can
/// act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The JSON is not a WebAuthn credential or assertion.
    #[error("the credential is malformed: {0}")]
    Malformed(String),
    /// The page that called WebAuthn is not allowed for this relying party.
    #[error("origin {0} is not allowed for relying party {1}")]
    Origin(String, String),
    /// The authenticator signed for another relying party.
    #[error("the authenticator answered for another relying party than {0}")]
    RelyingParty(String),
    /// The client data names another challenge, or another ceremony.
    #[error("the answer is for another challenge or ceremony")]
    Challenge,
    /// User verification is required and the authenticator did not do it.
    #[error("the authenticator did not verify the user (PIN or biometrics), which this user pool requires")]
    UserNotVerified,
    /// The counter shows a clone (the library's own check, against this
    /// node's copy; `apply` checks again against the cluster's).
    #[error("the signature counter did not rise: the authenticator may have been cloned")]
    Counter,
    /// The credential is of a kind the pool does not accept.
    #[error("{0}")]
    NotSupported(String),
    /// The assertion names a credential the user does not have.
    #[error("the passkey is not registered for this user (deleted, or never registered)")]
    UnknownCredential,
    /// The signature does not verify.
    #[error("the passkey's signature does not verify")]
    Signature,
}

impl From<WebauthnError> for Refusal {
    fn from(e: WebauthnError) -> Self {
        use WebauthnError::*;
        match e {
            InvalidRPIDHash => Refusal::RelyingParty(String::new()),
            MismatchedChallenge | InvalidClientDataType | ChallengeNotFound => Refusal::Challenge,
            UserNotVerified => Refusal::UserNotVerified,
            CredentialPossibleCompromise => Refusal::Counter,
            CredentialNotFound => Refusal::UnknownCredential,
            AuthenticationFailure => Refusal::Signature,
            AttestationNotSupported
            | AttestationNotVerifiable
            | AttestationUntrustedAaguid
            | AttestationFormatMissingAaguid
            | CredentialAlteredAlgFromRequest
            | COSEKeyInvalidAlgorithm
            | COSEKeyEDUnsupported
            | CredentialInsecureCryptography
            | CredentialMayNotBeHardwareBound => Refusal::NotSupported(format!("the credential is not supported: {e}")),
            other => Refusal::Malformed(other.to_string()),
        }
    }
}

/// A relying party as one pool configures it.
pub struct RelyingParty {
    core: WebauthnCore,
    /// The RP id.
    pub id: String,
    policy: UserVerificationPolicy,
    require_attestation: bool,
    allowed_aaguids: Vec<String>,
}

/// What a verified registration yields, ready to replicate.
pub struct Registered {
    /// The credential with everything the store keeps.
    pub credential: WebAuthnCredential,
}

/// What a verified assertion yields.
#[derive(Debug, Clone)]
pub struct Asserted {
    /// The credential that signed (base64url).
    pub credential_id: String,
    /// The counter it carried.
    pub counter: u32,
    /// Its backup state now.
    pub backup_state: bool,
    /// Whether the user was verified.
    pub user_verified: bool,
}

/// A sign-in challenge: options for the browser and the state to keep.
pub struct SignInChallenge {
    /// `PublicKeyCredentialRequestOptions` as JSON.
    pub options_json: String,
    /// The library's state, without credentials, as JSON.
    pub state_json: String,
    /// A digest of the challenge, which `apply` spends.
    pub challenge_id: String,
}

impl RelyingParty {
    /// The relying party `rp_id` (checked by the caller), whose pages may
    /// also be served from `public_url`, with `cfg`'s policy.
    pub fn new(rp_id: &str, public_url: &str, cfg: &WebAuthnConfig) -> Result<Self, String> {
        let mut origins = vec![Url::parse(&format!("https://{rp_id}")).map_err(|e| e.to_string())?];
        if rp_id == "localhost" {
            origins.push(Url::parse("http://localhost").map_err(|e| e.to_string())?);
        }
        if let Ok(u) = Url::parse(public_url) {
            let under = u
                .host_str()
                .is_some_and(|h| h == rp_id || h.ends_with(&format!(".{rp_id}")));
            if under && !origins.iter().any(|o| o.origin() == u.origin()) {
                origins.push(u);
            }
        }
        let core = WebauthnCore::new_unsafe_experts_only(
            rp_id,
            rp_id,
            origins,
            Duration::from_secs(u64::from(cfg.challenge_secs())),
            Some(true),
            Some(true),
        );
        Ok(RelyingParty {
            core,
            id: rp_id.to_string(),
            policy: match cfg.user_verification {
                UserVerification::Required => UserVerificationPolicy::Required,
                UserVerification::Preferred => UserVerificationPolicy::Preferred,
            },
            require_attestation: cfg.require_attestation,
            allowed_aaguids: cfg.allowed_aaguids.clone(),
        })
    }

    /// Options for `navigator.credentials.create()` and the state to keep.
    /// The user handle is the user's `sub`, which username-less sign-in
    /// reads back; `exclude` are the ids (base64url) the user has.
    pub fn start_registration(
        &self,
        sub: &str,
        username: &str,
        display_name: &str,
        exclude: &[String],
    ) -> Result<(String, String), String> {
        let exclude = exclude
            .iter()
            .filter_map(|id| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(id).ok())
            .map(Into::into)
            .collect();
        let builder = self
            .core
            .new_challenge_register_builder(sub.as_bytes(), username, display_name)
            .map_err(|e| e.to_string())?
            .user_verification_policy(self.policy)
            .exclude_credentials(Some(exclude))
            // Discoverable, so the credential can sign in with no username.
            .require_resident_key(true)
            .attestation(if self.require_attestation {
                AttestationConveyancePreference::Direct
            } else {
                AttestationConveyancePreference::None
            });
        let (ccr, state) = self
            .core
            .generate_challenge_register(builder)
            .map_err(|e| e.to_string())?;
        let options = serde_json::to_string(&ccr.public_key).map_err(|e| e.to_string())?;
        let state = serde_json::to_string(&state).map_err(|e| e.to_string())?;
        Ok((options, state))
    }

    /// Verifies a registration (`credential_json`, the browser's
    /// `RegistrationResponseJSON`) against the kept `state_json`, and the
    /// pool's attestation policy.
    pub fn finish_registration(
        &self,
        state_json: &str,
        credential_json: &str,
        name: &str,
    ) -> Result<Registered, Refusal> {
        let reg: RegisterPublicKeyCredential =
            serde_json::from_str(credential_json).map_err(|e| Refusal::Malformed(short(&e)))?;
        let state: RegistrationState =
            serde_json::from_str(state_json).map_err(|e| Refusal::Malformed(format!("registration state: {e}")))?;
        let cred = self
            .core
            .register_credential(&reg, &state, None)
            .map_err(|e| self.refusal(e, &client_origin(reg.response.client_data_json.as_slice())))?;
        let aaguid = aaguid_of(reg.response.attestation_object.as_slice()).unwrap_or_else(|| ZERO_AAGUID.into());
        if self.require_attestation {
            let attested = matches!(
                cred.attestation.data,
                ParsedAttestationData::Basic(_) | ParsedAttestationData::AttCa(_)
            );
            if !attested {
                return Err(Refusal::NotSupported(format!(
                    "this user pool requires an attested authenticator; this one sent {:?} attestation",
                    format_name(&cred.attestation_format)
                )));
            }
            let model = match &cred.attestation.metadata {
                AttestationMetadata::Packed { aaguid } | AttestationMetadata::Tpm { aaguid, .. } => {
                    Some(aaguid.hyphenated().to_string())
                }
                _ => None,
            };
            if !self.allowed_aaguids.is_empty() && !model.as_ref().is_some_and(|m| self.allowed_aaguids.contains(m)) {
                return Err(Refusal::NotSupported(format!(
                    "the authenticator model {} is not in this user pool's allowed_aaguids",
                    model.as_deref().unwrap_or(&aaguid)
                )));
            }
        }
        // What the browser reported (hints, not security properties): the
        // library keeps transports only for some attestation formats.
        let raw = serde_json::from_str::<serde_json::Value>(credential_json).unwrap_or_default();
        let attachment = raw
            .get("authenticatorAttachment")
            .and_then(|a| a.as_str())
            .filter(|a| *a == "platform" || *a == "cross-platform")
            .unwrap_or_default()
            .to_string();
        const KNOWN: [&str; 6] = ["usb", "nfc", "ble", "internal", "hybrid", "smart-card"];
        let mut transports: Vec<String> = raw
            .pointer("/response/transports")
            .and_then(|t| t.as_array())
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str())
            .filter(|t| KNOWN.contains(t))
            .map(str::to_string)
            .collect();
        transports.sort();
        transports.dedup();
        Ok(Registered {
            credential: WebAuthnCredential {
                credential_id: b64url(cred.cred_id.as_slice()),
                name: name.to_string(),
                relying_party_id: self.id.clone(),
                credential_json: serde_json::to_string(&cred).map_err(|e| Refusal::Malformed(e.to_string()))?,
                sign_count: cred.counter,
                transports,
                aaguid,
                attestation_format: format_name(&cred.attestation_format),
                authenticator_attachment: attachment,
                backup_eligible: cred.backup_eligible,
                backup_state: cred.backup_state,
                created_at: 0,
                last_used_at: 0,
            },
        })
    }

    /// Options for `navigator.credentials.get()`: listing `creds` (a
    /// username-less sign-in lists none).
    pub fn start_sign_in(&self, creds: &[WebAuthnCredential]) -> Result<SignInChallenge, String> {
        let creds = creds.iter().filter_map(|c| library_credential(c).ok()).collect();
        let builder = self
            .core
            .new_challenge_authenticate_builder(creds, Some(self.policy))
            .map_err(|e| e.to_string())?;
        let (rcr, mut state) = self
            .core
            .generate_challenge_authenticate(builder)
            .map_err(|e| e.to_string())?;
        let challenge = rcr.public_key.challenge.as_slice();
        let challenge_id = hex::encode(&Sha256::digest(challenge)[..16]);
        // The credentials come back from the store at the answer.
        state.set_allowed_credentials(Vec::new());
        Ok(SignInChallenge {
            options_json: serde_json::to_string(&rcr.public_key).map_err(|e| e.to_string())?,
            state_json: serde_json::to_string(&state).map_err(|e| e.to_string())?,
            challenge_id,
        })
    }

    /// Verifies an assertion against the kept state and the user's
    /// credentials as they are now.
    pub fn finish_sign_in(
        &self,
        state_json: &str,
        creds: &[WebAuthnCredential],
        assertion: &PublicKeyCredential,
    ) -> Result<Asserted, Refusal> {
        let mut state: AuthenticationState =
            serde_json::from_str(state_json).map_err(|e| Refusal::Malformed(format!("sign-in state: {e}")))?;
        let creds = creds
            .iter()
            .map(library_credential)
            .collect::<Result<Vec<_>, _>>()
            .map_err(Refusal::Malformed)?;
        state.set_allowed_credentials(creds);
        let result = self
            .core
            .authenticate_credential(assertion, &state)
            .map_err(|e| self.refusal(e, &client_origin(assertion.response.client_data_json.as_slice())))?;
        Ok(Asserted {
            credential_id: b64url(result.cred_id().as_slice()),
            counter: result.counter(),
            backup_state: result.backup_state(),
            user_verified: result.user_verified(),
        })
    }

    fn refusal(&self, e: WebauthnError, origin: &str) -> Refusal {
        if matches!(e, WebauthnError::InvalidRPOrigin) {
            return Refusal::Origin(origin.to_string(), self.id.clone());
        }
        match Refusal::from(e) {
            Refusal::RelyingParty(_) => Refusal::RelyingParty(self.id.clone()),
            other => other,
        }
    }
}

/// Parses an assertion (`AuthenticationResponseJSON`).
pub fn parse_assertion(json: &str) -> Result<PublicKeyCredential, Refusal> {
    let assertion: PublicKeyCredential = serde_json::from_str(json).map_err(|e| Refusal::Malformed(short(&e)))?;
    // No stored credential is longer (registration refuses them), so a
    // longer id is refused here, before it becomes a store key, a read
    // barrier and a counted failure.
    let len = assertion.raw_id.as_slice().len();
    if len > crate::model::webauthn::MAX_CREDENTIAL_ID_BYTES {
        return Err(Refusal::Malformed(format!(
            "the credential id is {len} bytes; a WebAuthn credential id is at most {} bytes",
            crate::model::webauthn::MAX_CREDENTIAL_ID_BYTES
        )));
    }
    Ok(assertion)
}

/// The user handle of an assertion, as a `sub`, for username-less
/// sign-in.
pub fn user_handle(assertion: &PublicKeyCredential) -> Option<String> {
    let h = assertion.get_user_unique_id()?;
    String::from_utf8(h.to_vec())
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= 128)
}

/// The library's credential from the stored one, with the counter and
/// backup state the cluster last accepted.
fn library_credential(c: &WebAuthnCredential) -> Result<Credential, String> {
    let mut cred: Credential =
        serde_json::from_str(&c.credential_json).map_err(|e| format!("stored passkey {}: {e}", c.credential_id))?;
    cred.counter = c.sign_count;
    cred.backup_state = c.backup_state;
    Ok(cred)
}

/// The origin the client data names, for the error message.
fn client_origin(client_data_json: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(client_data_json)
        .ok()
        .and_then(|v| v.get("origin")?.as_str().map(|s| s.chars().take(100).collect()))
        .unwrap_or_default()
}

/// The AAGUID in an attestation object's authenticator data (bytes 37..53
/// after the RP id hash, flags and counter), lowercase hyphenated.
fn aaguid_of(attestation_object: &[u8]) -> Option<String> {
    let v: serde_cbor_2::Value = serde_cbor_2::from_slice(attestation_object).ok()?;
    let serde_cbor_2::Value::Map(m) = v else {
        return None;
    };
    let auth_data = m.iter().find_map(|(k, v)| match (k, v) {
        (serde_cbor_2::Value::Text(k), serde_cbor_2::Value::Bytes(b)) if k == "authData" => Some(b),
        _ => None,
    })?;
    let raw: [u8; 16] = auth_data.get(37..53)?.try_into().ok()?;
    Some(uuid::Uuid::from_bytes(raw).hyphenated().to_string())
}

/// The wire name of an attestation format (`none`, `packed`, ...).
fn format_name(f: &webauthn_rs_core::proto::AttestationFormat) -> String {
    serde_json::to_value(f)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn short(e: &serde_json::Error) -> String {
    e.to_string().chars().take(200).collect()
}

/// The id (base64url) of the credential an assertion names.
pub fn credential_id_of(assertion: &PublicKeyCredential) -> String {
    b64url(assertion.raw_id.as_slice())
}
