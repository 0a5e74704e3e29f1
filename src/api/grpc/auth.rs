//! `tessera.v1.Auth`: the public user-pool flows. Callers authenticate by
//! app client id (plus `SECRET_HASH`), or by their access token.

use std::collections::BTreeMap;

use tonic::{Request, Response, Status};

use crate::proto::auth_server::Auth;
use crate::proto::*;
use crate::service::flows::devices::DeviceOwner;
use crate::service::flows::signin::AuthAnswer;
use crate::service::flows::signup::{CodeDelivery, SignUp};
use crate::service::flows::AuthService;
use crate::service::ServiceError;

/// The Auth service adapter.
pub struct AuthApi {
    /// The user flows every call is handed to.
    pub auth: AuthService,
}

fn delivery(d: CodeDelivery) -> CodeDeliveryDetailsType {
    CodeDeliveryDetailsType {
        destination: d.destination,
        delivery_medium: d.medium.as_cognito().into(),
        attribute_name: d.attribute,
    }
}

fn attributes(field: &str, v: &[AttributeType]) -> Result<BTreeMap<String, String>, ServiceError> {
    if v.len() > crate::model::user::MAX_ATTRIBUTES {
        return Err(ServiceError::invalid(format!(
            "{field}: at most {} attributes",
            crate::model::user::MAX_ATTRIBUTES
        )));
    }
    let mut out = BTreeMap::new();
    for a in v {
        if out.insert(a.name.clone(), a.value.clone()).is_some() {
            return Err(ServiceError::invalid(format!("{field}: {} appears twice", a.name)));
        }
    }
    Ok(out)
}

/// Splits an answer into Cognito's response fields.
pub(super) fn answer(
    a: AuthAnswer,
) -> (
    String,
    String,
    BTreeMap<String, String>,
    Option<AuthenticationResultType>,
    Vec<String>,
) {
    match a {
        AuthAnswer::Tokens(t) => (
            String::new(),
            String::new(),
            BTreeMap::new(),
            Some(AuthenticationResultType {
                access_token: t.access_token,
                expires_in: t.expires_in as i32,
                token_type: "Bearer".into(),
                refresh_token: t.refresh_token.unwrap_or_default(),
                id_token: t.id_token,
                new_device_metadata: t
                    .new_device
                    .map(|(device_key, device_group_key)| NewDeviceMetadataType {
                        device_key,
                        device_group_key,
                    }),
            }),
            Vec::new(),
        ),
        AuthAnswer::Challenge {
            name,
            session,
            parameters,
            available,
        } => (name, session, parameters, None, available),
    }
}

#[tonic::async_trait]
impl Auth for AuthApi {
    #[tracing::instrument(skip_all, fields(client_id))]
    async fn sign_up(&self, req: Request<SignUpRequest>) -> Result<Response<SignUpResponse>, Status> {
        let origin = super::origin(&req);
        let r = req.into_inner();
        tracing::Span::current().record("client_id", r.client_id.as_str());
        let origin = origin.with_client_metadata(&r.client_metadata)?;
        let res = self
            .auth
            .sign_up(
                SignUp {
                    client_id: r.client_id,
                    secret_hash: r.secret_hash,
                    username: r.username,
                    password: r.password,
                    attributes: attributes("user_attributes", &r.user_attributes)?,
                    validation_data: {
                        let v = attributes("validation_data", &r.validation_data)?;
                        crate::service::flows::check_parameters("validation_data", &v)?;
                        v
                    },
                },
                &origin,
            )
            .await?;
        Ok(Response::new(SignUpResponse {
            user_confirmed: res.user_confirmed,
            code_delivery_details: res.delivery.map(delivery),
            user_sub: res.user_sub,
        }))
    }

    #[tracing::instrument(skip_all, fields(client_id))]
    async fn confirm_sign_up(
        &self,
        req: Request<ConfirmSignUpRequest>,
    ) -> Result<Response<ConfirmSignUpResponse>, Status> {
        let origin = super::origin(&req);
        let r = req.into_inner();
        tracing::Span::current().record("client_id", r.client_id.as_str());
        self.auth
            .confirm_sign_up(
                &r.client_id,
                &r.secret_hash,
                &r.username,
                &r.confirmation_code,
                r.force_alias_creation,
                &origin,
            )
            .await?;
        Ok(Response::new(ConfirmSignUpResponse {}))
    }

    #[tracing::instrument(skip_all, fields(client_id))]
    async fn resend_confirmation_code(
        &self,
        req: Request<ResendConfirmationCodeRequest>,
    ) -> Result<Response<ResendConfirmationCodeResponse>, Status> {
        let origin = super::origin(&req);
        let r = req.into_inner();
        tracing::Span::current().record("client_id", r.client_id.as_str());
        let d = self
            .auth
            .resend_confirmation_code(&r.client_id, &r.secret_hash, &r.username, &origin)
            .await?;
        Ok(Response::new(ResendConfirmationCodeResponse {
            code_delivery_details: Some(delivery(d)),
        }))
    }

    #[tracing::instrument(skip_all, fields(client_id, auth_flow))]
    async fn initiate_auth(&self, req: Request<InitiateAuthRequest>) -> Result<Response<InitiateAuthResponse>, Status> {
        let origin = super::origin(&req);
        let r = req.into_inner();
        let span = tracing::Span::current();
        span.record("client_id", r.client_id.as_str());
        span.record("auth_flow", r.auth_flow.as_str());
        let origin = origin.with_client_metadata(&r.client_metadata)?;
        let a = self
            .auth
            .initiate_auth(&r.auth_flow, &r.client_id, &r.auth_parameters, &origin)
            .await?;
        let (challenge_name, session, challenge_parameters, authentication_result, available_challenges) = answer(a);
        Ok(Response::new(InitiateAuthResponse {
            challenge_name,
            session,
            challenge_parameters,
            authentication_result,
            available_challenges,
        }))
    }

    #[tracing::instrument(skip_all, fields(client_id))]
    async fn respond_to_auth_challenge(
        &self,
        req: Request<RespondToAuthChallengeRequest>,
    ) -> Result<Response<RespondToAuthChallengeResponse>, Status> {
        let origin = super::origin(&req);
        let r = req.into_inner();
        tracing::Span::current().record("client_id", r.client_id.as_str());
        let a = self
            .auth
            .respond_to_auth_challenge(
                &r.client_id,
                &r.challenge_name,
                &r.session,
                &r.challenge_responses,
                &origin,
            )
            .await?;
        let (challenge_name, session, challenge_parameters, authentication_result, available_challenges) = answer(a);
        Ok(Response::new(RespondToAuthChallengeResponse {
            challenge_name,
            session,
            challenge_parameters,
            authentication_result,
            available_challenges,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_user(&self, req: Request<GetUserRequest>) -> Result<Response<GetUserResponse>, Status> {
        let r = req.into_inner();
        let (username, attrs, mfa) = self.auth.get_user(&r.access_token).await?;
        Ok(Response::new(GetUserResponse {
            username,
            user_attributes: attrs
                .into_iter()
                .map(|(name, value)| AttributeType { name, value })
                .collect(),
            preferred_mfa_setting: mfa.preferred.unwrap_or_default(),
            user_mfa_setting_list: mfa.setting_list,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn global_sign_out(
        &self,
        req: Request<GlobalSignOutRequest>,
    ) -> Result<Response<GlobalSignOutResponse>, Status> {
        let r = req.into_inner();
        self.auth.global_sign_out(&r.access_token).await?;
        Ok(Response::new(GlobalSignOutResponse {}))
    }

    #[tracing::instrument(skip_all, fields(client_id))]
    async fn revoke_token(&self, req: Request<RevokeTokenRequest>) -> Result<Response<RevokeTokenResponse>, Status> {
        let r = req.into_inner();
        tracing::Span::current().record("client_id", r.client_id.as_str());
        self.auth.revoke_token(&r.token, &r.client_id, &r.client_secret).await?;
        Ok(Response::new(RevokeTokenResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn forgot_password(
        &self,
        req: Request<ForgotPasswordRequest>,
    ) -> Result<Response<ForgotPasswordResponse>, Status> {
        let origin = super::origin(&req);
        let r = req.into_inner();
        let origin = origin.with_client_metadata(&r.client_metadata)?;
        let d = self
            .auth
            .forgot_password(&r.client_id, &r.secret_hash, &r.username, &origin)
            .await?;
        Ok(Response::new(ForgotPasswordResponse {
            code_delivery_details: Some(delivery(d)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn confirm_forgot_password(
        &self,
        req: Request<ConfirmForgotPasswordRequest>,
    ) -> Result<Response<ConfirmForgotPasswordResponse>, Status> {
        let origin = super::origin(&req);
        let r = req.into_inner();
        let origin = origin.with_client_metadata(&r.client_metadata)?;
        self.auth
            .confirm_forgot_password(
                &r.client_id,
                &r.secret_hash,
                &r.username,
                &r.confirmation_code,
                &r.password,
                &origin,
            )
            .await?;
        Ok(Response::new(ConfirmForgotPasswordResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn change_password(
        &self,
        req: Request<ChangePasswordRequest>,
    ) -> Result<Response<ChangePasswordResponse>, Status> {
        let origin = super::origin(&req);
        let r = req.into_inner();
        self.auth
            .change_password(&r.access_token, &r.previous_password, &r.proposed_password, &origin)
            .await?;
        Ok(Response::new(ChangePasswordResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn update_user_attributes(
        &self,
        req: Request<UpdateUserAttributesRequest>,
    ) -> Result<Response<UpdateUserAttributesResponse>, Status> {
        let origin = super::origin(&req);
        let r = req.into_inner();
        let origin = origin.with_client_metadata(&r.client_metadata)?;
        let attrs = attributes("user_attributes", &r.user_attributes)?;
        let sent = self
            .auth
            .update_user_attributes(&r.access_token, attrs, &origin)
            .await?;
        Ok(Response::new(UpdateUserAttributesResponse {
            code_delivery_details_list: sent.into_iter().map(delivery).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn verify_user_attribute(
        &self,
        req: Request<VerifyUserAttributeRequest>,
    ) -> Result<Response<VerifyUserAttributeResponse>, Status> {
        let origin = super::origin(&req);
        let r = req.into_inner();
        self.auth
            .verify_user_attribute(&r.access_token, &r.attribute_name, &r.code, &origin)
            .await?;
        Ok(Response::new(VerifyUserAttributeResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn get_user_attribute_verification_code(
        &self,
        req: Request<GetUserAttributeVerificationCodeRequest>,
    ) -> Result<Response<GetUserAttributeVerificationCodeResponse>, Status> {
        let origin = super::origin(&req);
        let r = req.into_inner();
        let origin = origin.with_client_metadata(&r.client_metadata)?;
        let d = self
            .auth
            .get_user_attribute_verification_code(&r.access_token, &r.attribute_name, &origin)
            .await?;
        Ok(Response::new(GetUserAttributeVerificationCodeResponse {
            code_delivery_details: Some(delivery(d)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_user(&self, req: Request<DeleteUserRequest>) -> Result<Response<DeleteUserResponse>, Status> {
        let origin = super::origin(&req);
        let r = req.into_inner();
        self.auth.delete_user(&r.access_token, &origin).await?;
        Ok(Response::new(DeleteUserResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_user_attributes(
        &self,
        req: Request<DeleteUserAttributesRequest>,
    ) -> Result<Response<DeleteUserAttributesResponse>, Status> {
        let origin = super::origin(&req);
        let r = req.into_inner();
        self.auth
            .delete_user_attributes(&r.access_token, r.user_attribute_names, &origin)
            .await?;
        Ok(Response::new(DeleteUserAttributesResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn check_permission(
        &self,
        req: Request<CheckPermissionRequest>,
    ) -> Result<Response<CheckPermissionResponse>, Status> {
        let r = req.into_inner();
        let granted_by = self
            .auth
            .check_permission(&r.access_token, &r.permission, r.consistent_read)
            .await?;
        Ok(Response::new(CheckPermissionResponse {
            allowed: !granted_by.is_empty(),
            granted_by,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn associate_software_token(
        &self,
        req: Request<AssociateSoftwareTokenRequest>,
    ) -> Result<Response<AssociateSoftwareTokenResponse>, Status> {
        let origin = super::origin(&req);
        let r = req.into_inner();
        let a = self
            .auth
            .associate_software_token(&r.access_token, &r.session, &origin)
            .await?;
        Ok(Response::new(AssociateSoftwareTokenResponse {
            secret_code: a.secret_code,
            session: a.session.unwrap_or_default(),
            secret_uri: a.secret_uri,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn verify_software_token(
        &self,
        req: Request<VerifySoftwareTokenRequest>,
    ) -> Result<Response<VerifySoftwareTokenResponse>, Status> {
        let origin = super::origin(&req);
        let r = req.into_inner();
        let (status, session) = self
            .auth
            .verify_software_token(
                &r.access_token,
                &r.session,
                &r.user_code,
                &r.friendly_device_name,
                &origin,
            )
            .await?;
        Ok(Response::new(VerifySoftwareTokenResponse {
            status: status.into(),
            session: session.unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn set_user_mfa_preference(
        &self,
        req: Request<SetUserMfaPreferenceRequest>,
    ) -> Result<Response<SetUserMfaPreferenceResponse>, Status> {
        let origin = super::origin(&req);
        let r = req.into_inner();
        let prefs = mfa_preferences(
            r.sms_mfa_settings.map(|s| (s.enabled, s.preferred_mfa)),
            r.software_token_mfa_settings.map(|s| (s.enabled, s.preferred_mfa)),
            r.email_mfa_settings.map(|s| (s.enabled, s.preferred_mfa)),
        );
        self.auth
            .set_user_mfa_preference(&r.access_token, &prefs, &origin)
            .await?;
        Ok(Response::new(SetUserMfaPreferenceResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn generate_recovery_codes(
        &self,
        req: Request<GenerateRecoveryCodesRequest>,
    ) -> Result<Response<GenerateRecoveryCodesResponse>, Status> {
        let origin = super::origin(&req);
        let r = req.into_inner();
        let recovery_codes = self.auth.generate_recovery_codes(&r.access_token, &origin).await?;
        Ok(Response::new(GenerateRecoveryCodesResponse { recovery_codes }))
    }

    #[tracing::instrument(skip_all)]
    async fn confirm_device(
        &self,
        req: Request<ConfirmDeviceRequest>,
    ) -> Result<Response<ConfirmDeviceResponse>, Status> {
        let origin = super::origin(&req);
        let r = req.into_inner();
        let config = r.device_secret_verifier_config.unwrap_or_default();
        let user_confirmation_necessary = self
            .auth
            .confirm_device(
                &r.access_token,
                &r.device_key,
                &config.password_verifier,
                &config.salt,
                &r.device_name,
                &origin,
            )
            .await?;
        Ok(Response::new(ConfirmDeviceResponse {
            user_confirmation_necessary,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_device(&self, req: Request<GetDeviceRequest>) -> Result<Response<GetDeviceResponse>, Status> {
        let r = req.into_inner();
        let d = self
            .auth
            .get_device(DeviceOwner::Token(&r.access_token), &r.device_key)
            .await?;
        Ok(Response::new(GetDeviceResponse {
            device: Some(super::devices::device_type(d)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_devices(&self, req: Request<ListDevicesRequest>) -> Result<Response<ListDevicesResponse>, Status> {
        let r = req.into_inner();
        let (devices, pagination_token) = self
            .auth
            .list_devices(DeviceOwner::Token(&r.access_token), r.limit, &r.pagination_token)
            .await?;
        Ok(Response::new(ListDevicesResponse {
            devices: devices.into_iter().map(super::devices::device_type).collect(),
            pagination_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_device_status(
        &self,
        req: Request<UpdateDeviceStatusRequest>,
    ) -> Result<Response<UpdateDeviceStatusResponse>, Status> {
        let r = req.into_inner();
        self.auth
            .update_device_status(
                DeviceOwner::Token(&r.access_token),
                &r.device_key,
                &r.device_remembered_status,
            )
            .await?;
        Ok(Response::new(UpdateDeviceStatusResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn forget_device(&self, req: Request<ForgetDeviceRequest>) -> Result<Response<ForgetDeviceResponse>, Status> {
        let r = req.into_inner();
        self.auth
            .forget_device(DeviceOwner::Token(&r.access_token), &r.device_key)
            .await?;
        Ok(Response::new(ForgetDeviceResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn start_web_authn_registration(
        &self,
        req: Request<StartWebAuthnRegistrationRequest>,
    ) -> Result<Response<StartWebAuthnRegistrationResponse>, Status> {
        let origin = super::origin(&req);
        let r = req.into_inner();
        let options = self.auth.start_web_authn_registration(&r.access_token, &origin).await?;
        Ok(Response::new(StartWebAuthnRegistrationResponse {
            credential_creation_options_document: options,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn complete_web_authn_registration(
        &self,
        req: Request<CompleteWebAuthnRegistrationRequest>,
    ) -> Result<Response<CompleteWebAuthnRegistrationResponse>, Status> {
        let origin = super::origin(&req);
        let r = req.into_inner();
        self.auth
            .complete_web_authn_registration(
                &r.access_token,
                &r.credential_document,
                &r.friendly_credential_name,
                &origin,
            )
            .await?;
        Ok(Response::new(CompleteWebAuthnRegistrationResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn list_web_authn_credentials(
        &self,
        req: Request<ListWebAuthnCredentialsRequest>,
    ) -> Result<Response<ListWebAuthnCredentialsResponse>, Status> {
        let r = req.into_inner();
        let (creds, next_token) = self
            .auth
            .list_web_authn_credentials(&r.access_token, &r.next_token, r.max_results)
            .await?;
        Ok(Response::new(ListWebAuthnCredentialsResponse {
            credentials: creds
                .into_iter()
                .map(|c| WebAuthnCredentialDescription {
                    credential_id: c.credential_id,
                    friendly_credential_name: c.name,
                    relying_party_id: c.relying_party_id,
                    authenticator_attachment: c.authenticator_attachment,
                    authenticator_transports: c.transports,
                    created_at: c.created_at,
                    last_used_at: c.last_used_at,
                    aaguid: c.aaguid,
                    sign_count: c.sign_count,
                    backup_eligible: c.backup_eligible,
                    backup_state: c.backup_state,
                    attestation_format: c.attestation_format,
                })
                .collect(),
            next_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_web_authn_credential(
        &self,
        req: Request<DeleteWebAuthnCredentialRequest>,
    ) -> Result<Response<DeleteWebAuthnCredentialResponse>, Status> {
        let origin = super::origin(&req);
        let r = req.into_inner();
        self.auth
            .delete_web_authn_credential(&r.access_token, &r.credential_id, &origin)
            .await?;
        Ok(Response::new(DeleteWebAuthnCredentialResponse {}))
    }
}

/// The per-factor `(enabled, preferred_mfa)` settings of a
/// `SetUserMFAPreference` or `AdminSetUserMFAPreference` request.
pub(super) fn mfa_preferences(
    sms: Option<(bool, bool)>,
    software_token: Option<(bool, bool)>,
    email: Option<(bool, bool)>,
) -> crate::service::mfa::MfaPreferenceRequest {
    use crate::service::mfa::FactorSetting;
    let setting = |s: Option<(bool, bool)>| s.map(|(enabled, preferred)| FactorSetting { enabled, preferred });
    crate::service::mfa::MfaPreferenceRequest {
        sms: setting(sms),
        software_token: setting(software_token),
        email: setting(email),
    }
}
