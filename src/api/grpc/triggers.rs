//! Conversions of a pool's triggers: Cognito's `LambdaConfigType`, with
//! webhook URLs where Cognito has Lambda ARNs.

use crate::model::triggers::{LambdaConfig, PreTokenVersion, TriggerKind};
use crate::proto::{LambdaConfigType, PreTokenGenerationVersionConfigType};
use crate::service::pools::TriggersUpdate;
use crate::service::ServiceError;

/// The URL fields of `LambdaConfigType`, by trigger.
fn fields(c: &LambdaConfigType) -> [(TriggerKind, &str); 10] {
    let pre_token = c
        .pre_token_generation_config
        .as_ref()
        .map(|v| v.lambda_arn.as_str())
        .filter(|u| !u.is_empty())
        .unwrap_or(&c.pre_token_generation);
    [
        (TriggerKind::PreSignUp, &c.pre_sign_up),
        (TriggerKind::PostConfirmation, &c.post_confirmation),
        (TriggerKind::PreAuthentication, &c.pre_authentication),
        (TriggerKind::PostAuthentication, &c.post_authentication),
        (TriggerKind::PreTokenGeneration, pre_token),
        (TriggerKind::CustomMessage, &c.custom_message),
        (TriggerKind::DefineAuthChallenge, &c.define_auth_challenge),
        (TriggerKind::CreateAuthChallenge, &c.create_auth_challenge),
        (
            TriggerKind::VerifyAuthChallengeResponse,
            &c.verify_auth_challenge_response,
        ),
        (TriggerKind::UserMigration, &c.user_migration),
    ]
}

/// What an admin sent, checked field by field.
pub fn triggers_update(c: &LambdaConfigType) -> Result<TriggersUpdate, ServiceError> {
    let mut urls = Vec::new();
    for (kind, url) in fields(c) {
        if !url.is_empty() {
            crate::model::triggers::validate_url(kind, url)?;
            urls.push((kind, url.to_string()));
        }
    }
    let version = c
        .pre_token_generation_config
        .as_ref()
        .map_or("", |v| v.lambda_version.as_str());
    let signing_secret = (!c.signing_secret.is_empty()).then(|| c.signing_secret.clone());
    if let Some(s) = &signing_secret {
        crate::model::triggers::validate_secret(s)?;
    }
    Ok(TriggersUpdate {
        urls,
        pre_token_version: PreTokenVersion::parse(version)?,
        timeout_ms: (c.timeout_ms != 0).then_some(c.timeout_ms),
        signing_secret,
        custom_auth_max_wrong_answers: (c.custom_auth_max_wrong_answers != 0)
            .then_some(c.custom_auth_max_wrong_answers),
    })
}

/// The stored triggers as Cognito shows them; never the secret.
pub fn lambda_config_type(c: &LambdaConfig) -> LambdaConfigType {
    let url = |k| c.url(k).unwrap_or("").to_string();
    LambdaConfigType {
        pre_sign_up: url(TriggerKind::PreSignUp),
        custom_message: url(TriggerKind::CustomMessage),
        post_confirmation: url(TriggerKind::PostConfirmation),
        pre_authentication: url(TriggerKind::PreAuthentication),
        post_authentication: url(TriggerKind::PostAuthentication),
        define_auth_challenge: url(TriggerKind::DefineAuthChallenge),
        create_auth_challenge: url(TriggerKind::CreateAuthChallenge),
        verify_auth_challenge_response: url(TriggerKind::VerifyAuthChallengeResponse),
        pre_token_generation: url(TriggerKind::PreTokenGeneration),
        user_migration: url(TriggerKind::UserMigration),
        pre_token_generation_config: c.url(TriggerKind::PreTokenGeneration).map(|u| {
            PreTokenGenerationVersionConfigType {
                lambda_version: c.pre_token_version.as_cognito().into(),
                lambda_arn: u.to_string(),
            }
        }),
        signing_secret: String::new(),
        timeout_ms: c.timeout_ms,
        signing_secret_set: c.secret.is_some(),
        custom_auth_max_wrong_answers: c.custom_auth_max_wrong_answers,
    }
}
