//! What the user flows (`SetUserMFAPreference`) and the admin API
//! (`AdminSetUserMFAPreference`, `SetUserPoolMfaConfig`) share about MFA
//! settings: reading a request's per-factor settings into a command, with
//! Cognito's refusals, and proposing it with its audit event.
//!
//! The sign-in challenges, software-token association and recovery codes
//! are user flows: `service::flows::mfa`.

use super::{submit_audited, ServiceError};
use crate::command::{MfaPreferenceChange, SetUserMfaPreference};
use crate::model::auth_event::AuthEvent;
use crate::model::mfa::{MfaFactor, MfaSummary, PoolMfaConfig};
use crate::model::user::User;
use crate::raft::RaftNode;

/// One factor's `MfaSettings` (`Enabled`, `PreferredMfa`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FactorSetting {
    /// `Enabled`.
    pub enabled: bool,
    /// `PreferredMfa`.
    pub preferred: bool,
}

/// The settings of a `SetUserMFAPreference` request; `None` leaves a
/// factor as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MfaPreferenceRequest {
    /// `SMSMfaSettings`.
    pub sms: Option<FactorSetting>,
    /// `SoftwareTokenMfaSettings`.
    pub software_token: Option<FactorSetting>,
    /// `EmailMfaSettings`.
    pub email: Option<FactorSetting>,
}

/// The changes a preference request makes, refused as Cognito refuses
/// them: at least one factor, at most one preferred, and only factors the
/// pool allows may be enabled (whether the user has set the factor up is
/// decided in `apply`).
pub fn preference_changes(
    req: &MfaPreferenceRequest,
    pool: &PoolMfaConfig,
) -> Result<Vec<MfaPreferenceChange>, ServiceError> {
    let given = [
        (MfaFactor::Sms, req.sms, "sms_mfa_settings"),
        (
            MfaFactor::SoftwareToken,
            req.software_token,
            "software_token_mfa_settings",
        ),
        (MfaFactor::Email, req.email, "email_mfa_settings"),
    ];
    let mut changes = Vec::new();
    for (factor, setting, field) in given {
        let Some(s) = setting else { continue };
        if s.preferred && !s.enabled {
            return Err(ServiceError::invalid(format!("{field}: preferred_mfa needs enabled")));
        }
        if s.enabled && !pool.allows(factor) {
            return Err(ServiceError::invalid(format!(
                "{field}: {} is not enabled for this user pool (SetUserPoolMfaConfig)",
                factor.as_cognito()
            )));
        }
        changes.push(MfaPreferenceChange {
            factor,
            enabled: s.enabled,
            preferred: s.preferred,
        });
    }
    if changes.is_empty() {
        return Err(ServiceError::invalid(
            "give at least one of sms_mfa_settings, software_token_mfa_settings, email_mfa_settings",
        ));
    }
    if changes.iter().filter(|c| c.preferred).count() > 1 {
        return Err(ServiceError::invalid("only one factor can be preferred_mfa"));
    }
    Ok(changes)
}

/// Proposes a preference change for `user`, with `event` in the same
/// entry; a factor that is not set up is refused in `apply`
/// (`InvalidParameterException`).
pub(crate) async fn set_preference(
    node: &RaftNode,
    user: &User,
    changes: Vec<MfaPreferenceChange>,
    event: AuthEvent,
) -> Result<MfaSummary, ServiceError> {
    let detail = changes
        .iter()
        .map(|c| {
            format!(
                "{} {}{}",
                c.factor.as_cognito(),
                if c.enabled { "enabled" } else { "disabled" },
                if c.preferred { ", preferred" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let base = event.detail.clone();
    let event = event
        .user(&user.username, &user.sub)
        .detail(format!("{base}: {detail}"));
    let cmd = SetUserMfaPreference {
        pool_id: user.pool_id.clone(),
        sub: user.sub.clone(),
        changes,
        now: crate::clock::now_millis(),
    };
    submit_audited(node, cmd, event).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::mfa::MfaConfiguration;

    #[test]
    fn preference_requests_are_refused_as_cognito_does() {
        let pool = PoolMfaConfig {
            mfa_configuration: MfaConfiguration::Optional,
            software_token_enabled: true,
            ..PoolMfaConfig::default()
        };
        let on = FactorSetting {
            enabled: true,
            preferred: true,
        };
        let ok = MfaPreferenceRequest {
            software_token: Some(on),
            sms: Some(FactorSetting::default()),
            ..Default::default()
        };
        assert_eq!(
            preference_changes(&ok, &pool).unwrap().len(),
            2,
            "disabling SMS is fine"
        );
        let sms = MfaPreferenceRequest {
            sms: Some(on),
            ..Default::default()
        };
        let err = preference_changes(&sms, &pool).unwrap_err();
        assert_eq!(err.exception, "InvalidParameterException");
        assert!(err.message.contains("not enabled for this user pool"), "{err}");
        let sms_pool = PoolMfaConfig {
            sms_enabled: true,
            ..pool.clone()
        };
        assert_eq!(preference_changes(&sms, &sms_pool).unwrap().len(), 1);
        assert!(preference_changes(&MfaPreferenceRequest::default(), &pool).is_err());
        let no_totp = PoolMfaConfig::default();
        let err = preference_changes(&ok, &no_totp).unwrap_err();
        assert!(err.message.contains("not enabled for this user pool"), "{err}");
        let odd = MfaPreferenceRequest {
            software_token: Some(FactorSetting {
                enabled: false,
                preferred: true,
            }),
            ..Default::default()
        };
        assert!(preference_changes(&odd, &pool).is_err());
    }
}
