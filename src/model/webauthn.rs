//! Passkeys (WebAuthn): a pool's relying-party setting and the
//! credentials its users registered.
//!
//! What is verified (attestation at registration, the assertion at each
//! sign-in) is verified by webauthn-rs (`auth::webauthn`); these types only
//! hold what the store replicates. A credential's signature counter is
//! kept here, outside the library's own record, because `apply` checks and
//! advances it: a counter that goes backwards anywhere in the cluster is a
//! cloned authenticator, and only the state machine sees every sign-in.

use serde::{Deserialize, Serialize};

use super::ValidationError;

/// Most credentials a user may register (Cognito's quota).
pub const MAX_CREDENTIALS_PER_USER: usize = 20;
/// Longest credential id accepted (the WebAuthn spec's bound, in bytes).
pub const MAX_CREDENTIAL_ID_BYTES: usize = 1023;
/// Longest `friendly_credential_name`.
pub const MAX_NAME_CHARS: usize = 64;
/// Largest registration JSON taken at the edge (a packed attestation with
/// its certificate chain is a few KiB; this leaves room, bounded).
pub const MAX_REGISTRATION_JSON: usize = 64 * 1024;
/// Largest assertion JSON taken at the edge.
pub const MAX_ASSERTION_JSON: usize = 16 * 1024;
/// Most AAGUIDs in an attestation allow-list.
pub const MAX_ALLOWED_AAGUIDS: usize = 100;
/// Default life of a registration or sign-in challenge (5 minutes).
pub const DEFAULT_CHALLENGE_SECS: u32 = 300;
/// Bounds of `challenge_validity_seconds`.
pub const CHALLENGE_SECS_RANGE: std::ops::RangeInclusive<u32> = 30..=600;

/// `WebAuthnConfiguration.UserVerification`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum UserVerification {
    /// The authenticator should verify the user (PIN, biometrics) when it
    /// can; Cognito's default.
    #[default]
    Preferred,
    /// Every registration and assertion must carry the UV flag.
    Required,
}

impl UserVerification {
    /// Cognito's wire name.
    pub fn as_cognito(self) -> &'static str {
        match self {
            UserVerification::Preferred => "preferred",
            UserVerification::Required => "required",
        }
    }

    /// Parses a wire name; empty means the default.
    pub fn parse(field: &'static str, s: &str) -> Result<Self, ValidationError> {
        match s {
            "" | "preferred" => Ok(UserVerification::Preferred),
            "required" => Ok(UserVerification::Required),
            other => Err(ValidationError::new(
                field,
                format!(
                    "{:?} is not \"required\" or \"preferred\"",
                    other.chars().take(32).collect::<String>()
                ),
            )),
        }
    }
}

/// A pool's passkey setting (`SetUserPoolMfaConfig`'s
/// `WebAuthnConfiguration`, with Tessera additions). Kept in its own table
/// beside the pool, so pools written before passkeys decode unchanged; a
/// pool without one has [`WebAuthnConfig::default`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct WebAuthnConfig {
    /// The relying-party id; empty means the host of the cluster's public
    /// URL. Credentials are bound to it by the authenticator.
    pub relying_party_id: String,
    /// Whether user verification is required or preferred.
    pub user_verification: UserVerification,
    /// Refuse credentials whose attestation names no verifiable model.
    pub require_attestation: bool,
    /// With `require_attestation`: the authenticator models (AAGUIDs,
    /// lowercase hyphenated) allowed; empty allows any attested model.
    pub allowed_aaguids: Vec<String>,
    /// Life of a challenge in seconds; 0 means [`DEFAULT_CHALLENGE_SECS`].
    pub challenge_validity_secs: u32,
    /// A passkey may answer the MFA step after a password.
    pub passkey_mfa: bool,
}

impl WebAuthnConfig {
    /// The challenge life in seconds.
    pub fn challenge_secs(&self) -> u32 {
        if self.challenge_validity_secs == 0 {
            DEFAULT_CHALLENGE_SECS
        } else {
            self.challenge_validity_secs
        }
    }

    /// Checks every field (at the edge, and again in `apply` for a peer's
    /// entry).
    pub fn validate(&self) -> Result<(), ValidationError> {
        let field = "web_authn_configuration";
        if !self.relying_party_id.is_empty() {
            valid_rp_id(&self.relying_party_id)
                .map_err(|e| ValidationError::new("web_authn_configuration.relying_party_id", e))?;
        }
        if self.challenge_validity_secs != 0 && !CHALLENGE_SECS_RANGE.contains(&self.challenge_validity_secs) {
            return Err(ValidationError::new(
                "web_authn_configuration.challenge_validity_seconds",
                format!(
                    "{} is outside {}..={} (0 means {DEFAULT_CHALLENGE_SECS})",
                    self.challenge_validity_secs,
                    CHALLENGE_SECS_RANGE.start(),
                    CHALLENGE_SECS_RANGE.end()
                ),
            ));
        }
        if self.allowed_aaguids.len() > MAX_ALLOWED_AAGUIDS {
            return Err(ValidationError::new(
                field,
                format!("allowed_aaguids: at most {MAX_ALLOWED_AAGUIDS}"),
            ));
        }
        for a in &self.allowed_aaguids {
            if uuid::Uuid::parse_str(a).map(|u| u.hyphenated().to_string()) != Ok(a.clone()) {
                return Err(ValidationError::new(
                    "web_authn_configuration.allowed_aaguids",
                    format!(
                        "{:?} is not a lowercase hyphenated AAGUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
                        a.chars().take(40).collect::<String>()
                    ),
                ));
            }
        }
        if !self.allowed_aaguids.is_empty() && !self.require_attestation {
            return Err(ValidationError::new(
                "web_authn_configuration.allowed_aaguids",
                "an AAGUID allow-list needs require_attestation: without attestation the model is only the authenticator's claim",
            ));
        }
        Ok(())
    }
}

/// Whether `id` can be a relying-party id: a lowercase DNS name (WebAuthn
/// refuses IP addresses), at most 253 characters.
pub fn valid_rp_id(id: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "{:?} is not a lowercase domain name",
            id.chars().take(64).collect::<String>()
        )
    };
    if id.is_empty() || id.len() > 253 || id.parse::<std::net::IpAddr>().is_ok() {
        return Err(bad());
    }
    for label in id.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(bad());
        }
    }
    Ok(())
}

/// A registered passkey, as replicated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebAuthnCredential {
    /// The credential id, base64url without padding.
    pub credential_id: String,
    /// The user's name for it.
    pub name: String,
    /// The relying party it was made for.
    pub relying_party_id: String,
    /// webauthn-rs's `Credential` (public key, policy, attestation) as
    /// JSON, exactly as registration verified it. Its own counter is
    /// stale: [`Self::sign_count`] is the one that counts.
    pub credential_json: String,
    /// The authenticator's signature counter at its last accepted use.
    pub sign_count: u32,
    /// Transports the browser reported (`internal`, `usb`, ...).
    pub transports: Vec<String>,
    /// The authenticator's model, lowercase hyphenated (zeros when it did
    /// not say).
    pub aaguid: String,
    /// `none`, `packed`, ...
    pub attestation_format: String,
    /// `platform` or `cross-platform`, when the browser said.
    pub authenticator_attachment: String,
    /// Backup eligibility (a synced passkey).
    pub backup_eligible: bool,
    /// Whether it is backed up now.
    pub backup_state: bool,
    /// Registration time (proposer's clock, Unix ms).
    pub created_at: i64,
    /// Last accepted sign-in (Unix ms), 0 if never.
    pub last_used_at: i64,
}

/// A registration started and not completed: the library's state, bound to
/// who started it. One per user; a newer start replaces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRegistration {
    /// Random id, spent by the completion.
    pub id: String,
    /// The app client whose access token started it.
    pub client_id: String,
    /// The relying party the options named.
    pub relying_party_id: String,
    /// webauthn-rs's `RegistrationState` as JSON.
    pub state_json: String,
    /// When it stops being accepted (Unix ms).
    pub expires_at: i64,
}
