//! What a signed-in user does to its own profile with an access token:
//! `UpdateUserAttributes`, `VerifyUserAttribute`,
//! `GetUserAttributeVerificationCode`, `DeleteUserAttributes`,
//! `DeleteUser`, and the live permission check `CheckPermission`.
//!
//! A new email or phone number does not replace a verified one until it is
//! verified itself when the pool lists the attribute in
//! `AttributesRequireVerificationBeforeUpdate` (the default for every
//! auto-verified attribute): the old value keeps working for sign-in and
//! recovery (Cognito's "keep original attribute value active when an
//! update is pending"), so a typo or a stolen session cannot redirect
//! recovery. Otherwise the new value replaces the old at once, unverified.
//! Every code is bound to the value it was sent to.

use crate::command::{DeleteUser, DeleteUserAttributes, IssueCode, UpdateUserAttributes, VerifyAttribute};
use std::collections::BTreeMap;

use super::signup::CodeDelivery;
use super::AuthService;
use crate::auth::codes::{code_from_random, CodeRecord};
use crate::auth::rate_limit::LimitKind;
use crate::command::Rejection;
use crate::model::app_client::AppClient;
use crate::model::auth_event::{AuthEvent, AuthEventType};
use crate::model::outbox::{mask_destination, DeliveryMedium, MessageDraft, MessageKind};
use crate::model::pool::UserPool;
use crate::model::pool_settings::SignInAlias;
use crate::model::user::{validate_new_attributes, User, MAX_ATTRIBUTES};
use crate::service::outbox::code_message;
use crate::service::triggers::custom_message::MessageSource;
use crate::service::{submit_audited, Origin, ServiceError};
use crate::store::auth_state::CodePurpose;

pub(super) fn alias_of(name: &str) -> Option<(SignInAlias, DeliveryMedium)> {
    match name {
        "email" => Some((SignInAlias::Email, DeliveryMedium::Email)),
        "phone_number" => Some((SignInAlias::PhoneNumber, DeliveryMedium::Sms)),
        _ => None,
    }
}

/// Why a verification code is sent, and by which app client: what the
/// `CustomMessage` trigger is told.
pub(super) struct CodeReason<'a> {
    pub source: MessageSource,
    pub client_id: &'a str,
    pub origin: &'a Origin,
}

/// A fresh verification code for `alias` sent to `destination`, bound to
/// that value.
#[allow(clippy::too_many_arguments)]
pub(super) async fn verification_code(
    auth: &AuthService,
    pool: &UserPool,
    user: &User,
    alias: SignInAlias,
    medium: DeliveryMedium,
    destination: &str,
    now: i64,
    reason: CodeReason<'_>,
) -> Result<(CodeRecord, MessageDraft, CodeDelivery), ServiceError> {
    let code = code_from_random(crate::clock::random_bytes::<8>());
    let record = CodeRecord::issue(&code, crate::clock::random_bytes::<16>(), now).bound_to(alias, destination);
    let custom = auth
        .triggers
        .custom_message(
            &pool.id,
            reason.source,
            user,
            reason.client_id,
            &reason.origin.client_metadata,
            medium,
        )
        .await?;
    let message = code_message(
        &*crate::service::sealing_key(&auth.sealing)?,
        pool,
        &user.username,
        MessageKind::VerifyAttribute,
        medium,
        destination,
        &code,
        custom.as_ref(),
        auth.deliver,
    );
    let delivery = CodeDelivery {
        destination: mask_destination(medium, destination),
        medium,
        attribute: alias.attribute().into(),
    };
    Ok((record, message, delivery))
}

/// Checks that `client` may change attribute `name` of `pool`'s users.
fn writable(pool: &UserPool, client: &AppClient, name: &str) -> Result<(), ServiceError> {
    if name == "sub" || name.ends_with("_verified") {
        return Err(ServiceError::invalid(format!(
            "user_attributes: {name} cannot be set by the user"
        )));
    }
    let Some(schema) = pool.settings.schema.get(name) else {
        return Err(ServiceError::invalid(format!(
            "user_attributes: {name:?} is not in the pool's schema"
        )));
    };
    if !schema.mutable {
        return Err(ServiceError::invalid(format!(
            "user_attributes: {name} cannot be changed"
        )));
    }
    if !client.may_write(name) {
        return Err(ServiceError::not_authorized(format!(
            "A client attempted to write unauthorized attribute {name}"
        )));
    }
    Ok(())
}

impl AuthService {
    /// The signed-in user, its pool and the app client its token came from.
    async fn signed_in(&self, access_token: &str) -> Result<(UserPool, AppClient, User), ServiceError> {
        let (v, user) = self.authenticate(access_token).await?;
        let pool = crate::service::pools::existing_pool(&self.node, &v.pool_id).await?;
        let client = self
            .node
            .store()
            .app_client(v.str("client_id"))?
            .ok_or_else(|| ServiceError::not_authorized("Invalid Access Token."))?;
        Ok((pool, client, user))
    }

    /// `UpdateUserAttributes`. Returns where verification codes went.
    pub async fn update_user_attributes(
        &self,
        access_token: &str,
        attributes: BTreeMap<String, String>,
        origin: &Origin,
    ) -> Result<Vec<CodeDelivery>, ServiceError> {
        if attributes.is_empty() || attributes.len() > MAX_ATTRIBUTES {
            return Err(ServiceError::invalid(format!(
                "user_attributes: 1 to {MAX_ATTRIBUTES} attributes"
            )));
        }
        let (pool, client, user) = self.signed_in(access_token).await?;
        for name in attributes.keys() {
            writable(&pool, &client, name)?;
        }
        let mut merged = user.attributes.clone();
        merged.extend(attributes.clone());
        validate_new_attributes(&pool.settings, &merged)?;
        let now = crate::clock::now_millis();
        let mut direct = BTreeMap::new();
        let mut pending = BTreeMap::new();
        // One code per changed email or phone number the pool verifies,
        // each bound to its new value.
        let mut codes = Vec::new();
        let mut deliveries = Vec::new();
        for (name, value) in attributes {
            let Some((alias, medium)) = alias_of(&name) else {
                direct.insert(name, value);
                continue;
            };
            if user.attributes.get(&name) == Some(&value) {
                direct.insert(name, value);
                continue;
            }
            if pool.settings.auto_verified_attributes.contains(&alias) {
                let reason = CodeReason {
                    source: MessageSource::UpdateUserAttribute,
                    client_id: &client.client_id,
                    origin,
                };
                let (record, m, d) = verification_code(self, &pool, &user, alias, medium, &value, now, reason).await?;
                codes.push((CodePurpose::verify(alias), record, m));
                deliveries.push(d);
            }
            if user.is_verified(alias) && pool.settings.keeps_original_until_verified(alias) {
                pending.insert(name, value);
            } else {
                direct.insert(name, value);
            }
        }
        // The first code rides with the change; a second (email and phone
        // changed together) follows as its own command, since a command
        // enqueues at most one message. Apply refuses it if the value it
        // is bound to changed in between.
        let mut codes = codes.into_iter();
        let (code, message) = match codes.next() {
            Some((purpose, record, m)) => (Some((purpose, record)), Some(m)),
            None => (None, None),
        };
        let cmd = UpdateUserAttributes {
            pool_id: pool.id.clone(),
            sub: user.sub.clone(),
            attributes: direct,
            email_verified: None,
            phone_number_verified: None,
            pending,
            code,
            message,
            now,
        };
        let event = AuthEvent::draft(&pool.id, AuthEventType::AttributeChange, now)
            .user(&user.username, &user.sub)
            .origin(&client.client_id, &origin.ip)
            .detail("UpdateUserAttributes");
        submit_audited(&self.node, cmd, event).await?;
        for (purpose, record, m) in codes {
            let cmd = IssueCode {
                pool_id: pool.id.clone(),
                sub: user.sub.clone(),
                purpose,
                record,
                message: Some(m),
                now,
            };
            let event = AuthEvent::draft(&pool.id, AuthEventType::ResendCode, now)
                .user(&user.username, &user.sub)
                .origin(&client.client_id, &origin.ip)
                .detail("UpdateUserAttributes: second verification code");
            submit_audited(&self.node, cmd, event).await?;
        }
        Ok(deliveries)
    }

    /// `GetUserAttributeVerificationCode`: (re)sends a code for the pending
    /// value of `email` or `phone_number`, or for the current one.
    pub async fn get_user_attribute_verification_code(
        &self,
        access_token: &str,
        attribute_name: &str,
        origin: &Origin,
    ) -> Result<CodeDelivery, ServiceError> {
        let Some((alias, medium)) = alias_of(attribute_name) else {
            return Err(ServiceError::invalid(format!(
                "attribute_name: {attribute_name:?} cannot be verified; use email or phone_number"
            )));
        };
        self.limit(origin, LimitKind::CodeSend)?;
        let (pool, client, user) = self.signed_in(access_token).await?;
        let Some(destination) = user
            .pending_attributes
            .get(attribute_name)
            .or_else(|| user.attributes.get(attribute_name))
            .cloned()
        else {
            return Err(ServiceError::invalid(format!(
                "the user has no {attribute_name} to verify"
            )));
        };
        let now = crate::clock::now_millis();
        let reason = CodeReason {
            source: MessageSource::VerifyUserAttribute,
            client_id: &client.client_id,
            origin,
        };
        let (record, message, delivery) =
            verification_code(self, &pool, &user, alias, medium, &destination, now, reason).await?;
        let cmd = IssueCode {
            pool_id: pool.id.clone(),
            sub: user.sub.clone(),
            purpose: CodePurpose::verify(alias),
            record,
            message: Some(message),
            now,
        };
        let event = AuthEvent::draft(&pool.id, AuthEventType::ResendCode, now)
            .user(&user.username, &user.sub)
            .origin(&client.client_id, &origin.ip)
            .detail(format!("verification code for {attribute_name}"));
        submit_audited(&self.node, cmd, event).await?;
        Ok(delivery)
    }

    /// `VerifyUserAttribute`: a pending value takes over (with its alias),
    /// or the current value becomes verified.
    pub async fn verify_user_attribute(
        &self,
        access_token: &str,
        attribute_name: &str,
        code: &str,
        origin: &Origin,
    ) -> Result<(), ServiceError> {
        let Some((alias, _)) = alias_of(attribute_name) else {
            return Err(ServiceError::invalid(format!(
                "attribute_name: {attribute_name:?} cannot be verified; use email or phone_number"
            )));
        };
        if code.is_empty() || code.len() > 2048 || code.chars().any(char::is_whitespace) {
            return Err(ServiceError::invalid("code: must be the code that was sent"));
        }
        self.limit(origin, LimitKind::CodeCheck)?;
        let (pool, client, user) = self.signed_in(access_token).await?;
        let purpose = CodePurpose::verify(alias);
        let Some((_, guess_hash)) = self.pending_code(&pool.id, &user.sub, purpose, code, false).await? else {
            return Err(Rejection::NoCode.into());
        };
        let now = crate::clock::now_millis();
        let cmd = VerifyAttribute {
            pool_id: pool.id.clone(),
            sub: user.sub.clone(),
            alias,
            guess_hash,
            now,
        };
        let event = AuthEvent::draft(&pool.id, AuthEventType::AttributeChange, now)
            .user(&user.username, &user.sub)
            .origin(&client.client_id, &origin.ip)
            .detail(format!("VerifyUserAttribute {attribute_name}"));
        submit_audited(&self.node, cmd, event).await.map(|_| ())
    }

    /// `DeleteUserAttributes`: removes optional attributes.
    pub async fn delete_user_attributes(
        &self,
        access_token: &str,
        names: Vec<String>,
        origin: &Origin,
    ) -> Result<(), ServiceError> {
        if names.is_empty() || names.len() > MAX_ATTRIBUTES {
            return Err(ServiceError::invalid(format!(
                "user_attribute_names: 1 to {MAX_ATTRIBUTES} names"
            )));
        }
        let (pool, client, user) = self.signed_in(access_token).await?;
        check_deletable(&pool, Some(&client), &names)?;
        let now = crate::clock::now_millis();
        let cmd = DeleteUserAttributes {
            pool_id: pool.id.clone(),
            sub: user.sub.clone(),
            names,
            now,
        };
        let event = AuthEvent::draft(&pool.id, AuthEventType::AttributeChange, now)
            .user(&user.username, &user.sub)
            .origin(&client.client_id, &origin.ip)
            .detail("DeleteUserAttributes");
        submit_audited(&self.node, cmd, event).await.map(|_| ())
    }

    /// `DeleteUser`: the user deletes itself; its username is free at once.
    pub async fn delete_user(&self, access_token: &str, origin: &Origin) -> Result<(), ServiceError> {
        let (pool, client, user) = self.signed_in(access_token).await?;
        let now = crate::clock::now_millis();
        let cmd = DeleteUser {
            pool_id: pool.id.clone(),
            sub: user.sub.clone(),
        };
        let event = AuthEvent::draft(&pool.id, AuthEventType::DeleteUser, now)
            .user(&user.username, &user.sub)
            .origin(&client.client_id, &origin.ip)
            .detail("DeleteUser (self)");
        submit_audited(&self.node, cmd, event).await.map(|_| ())
    }

    /// `CheckPermission`: the groups of the token's user that grant
    /// `permission` now (empty: denied). Live membership, not the token's
    /// snapshot, so a removal takes effect before the token expires.
    pub async fn check_permission(
        &self,
        access_token: &str,
        permission: &str,
        consistent: bool,
    ) -> Result<Vec<String>, ServiceError> {
        crate::model::group::validate_permission(permission).map_err(|e| ServiceError::invalid(e.to_string()))?;
        if consistent {
            self.node.read_barrier().await?;
        }
        let (_, user) = self.authenticate(access_token).await?;
        Ok(self
            .node
            .store()
            .groups_of(&user.pool_id, &user.sub)?
            .into_iter()
            .filter(|g| {
                g.permissions
                    .iter()
                    .any(|held| crate::model::group::grants(held, permission))
            })
            .map(|g| g.name)
            .collect())
    }
}

/// Checks that every name may be deleted: known, mutable, not required,
/// not `sub`, and writable by `client` when a client asks.
pub fn check_deletable(pool: &UserPool, client: Option<&AppClient>, names: &[String]) -> Result<(), ServiceError> {
    for name in names {
        if name == "sub" || name.ends_with("_verified") {
            return Err(ServiceError::invalid(format!(
                "user_attribute_names: {name} cannot be deleted"
            )));
        }
        let Some(schema) = pool.settings.schema.get(name) else {
            return Err(ServiceError::invalid(format!(
                "user_attribute_names: {name:?} is not in the pool's schema"
            )));
        };
        if schema.required || !schema.mutable {
            return Err(ServiceError::invalid(format!(
                "user_attribute_names: {name} is required or immutable and cannot be deleted"
            )));
        }
        if client.is_some_and(|c| !c.may_write(name)) {
            return Err(ServiceError::not_authorized(format!(
                "A client attempted to write unauthorized attribute {name}"
            )));
        }
    }
    Ok(())
}
