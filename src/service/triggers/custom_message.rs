//! `CustomMessage`: the pool's own wording of the messages that carry a
//! code or a temporary password, as Cognito's trigger gives it.
//!
//! The trigger never sees a code or a password. It gets Cognito's
//! placeholders (`codeParameter: "{####}"`, and `usernameParameter:
//! "{username}"` for `AdminCreateUser`) and answers templates that must
//! contain them; this node puts the code (and the username) in after the
//! answer, so a receiver that logs its requests leaks nothing that signs
//! anyone in. A template without the code placeholder, or longer than
//! Cognito's limits, fails the flow with `UserLambdaValidationException`,
//! as a refusal does; an empty field keeps the default text.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::events::{self, Caller};
use super::Triggers;
use crate::model::outbox::DeliveryMedium;
use crate::model::triggers::TriggerKind;
use crate::model::user::User;
use crate::service::ServiceError;

/// Cognito's placeholder for the code.
pub const CODE: &str = "{####}";
/// Cognito's placeholder for the username (`AdminCreateUser` only).
pub const USERNAME: &str = "{username}";
/// Longest `emailMessage` (Cognito's limit).
pub const MAX_EMAIL_CHARS: usize = 20_000;
/// Longest `smsMessage` (Cognito's limit).
pub const MAX_SMS_CHARS: usize = 1_600;
/// Longest `emailSubject` (Cognito's limit).
pub const MAX_SUBJECT_CHARS: usize = 140;

/// Why a message is being sent: the `triggerSource` suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageSource {
    /// `SignUp`'s confirmation code.
    SignUp,
    /// `ResendConfirmationCode`.
    ResendCode,
    /// `ForgotPassword` and `AdminResetUserPassword`.
    ForgotPassword,
    /// A code for a changed email or phone number.
    UpdateUserAttribute,
    /// `GetUserAttributeVerificationCode`.
    VerifyUserAttribute,
    /// `AdminCreateUser`'s temporary password.
    AdminCreateUser,
    /// An MFA or passwordless sign-in code.
    Authentication,
}

impl MessageSource {
    fn trigger_source(self) -> &'static str {
        match self {
            MessageSource::SignUp => "CustomMessage_SignUp",
            MessageSource::ResendCode => "CustomMessage_ResendCode",
            MessageSource::ForgotPassword => "CustomMessage_ForgotPassword",
            MessageSource::UpdateUserAttribute => "CustomMessage_UpdateUserAttribute",
            MessageSource::VerifyUserAttribute => "CustomMessage_VerifyUserAttribute",
            MessageSource::AdminCreateUser => "CustomMessage_AdminCreateUser",
            MessageSource::Authentication => "CustomMessage_Authentication",
        }
    }
}

/// The pool's wording of one message, placeholders still in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomText {
    /// The email subject; `None` keeps the default.
    pub subject: Option<String>,
    /// The body, with [`CODE`] (and [`USERNAME`]) to fill in.
    pub body: String,
}

impl CustomText {
    /// The body with the code and the username in place, in one pass, so
    /// that a code or a username that looks like a placeholder is not
    /// expanded again.
    pub fn fill(&self, code: &str, username: &str) -> String {
        let mut out = String::with_capacity(self.body.len() + code.len() + username.len());
        let mut rest = self.body.as_str();
        loop {
            let next = [(CODE, code), (USERNAME, username)]
                .into_iter()
                .filter_map(|(p, v)| rest.find(p).map(|at| (at, p, v)))
                .min_by_key(|(at, _, _)| *at);
            match next {
                Some((at, placeholder, value)) => {
                    out.push_str(&rest[..at]);
                    out.push_str(value);
                    rest = &rest[at + placeholder.len()..];
                }
                None => {
                    out.push_str(rest);
                    return out;
                }
            }
        }
    }
}

impl Triggers {
    /// Asks the pool's `CustomMessage` trigger for the wording of a message
    /// to `user` by `medium`; `Ok(None)` when the pool has no such trigger
    /// or the answer leaves this medium's text empty.
    pub async fn custom_message(
        &self,
        pool_id: &str,
        source: MessageSource,
        user: &User,
        client_id: &str,
        client_metadata: &BTreeMap<String, String>,
        medium: DeliveryMedium,
    ) -> Result<Option<CustomText>, ServiceError> {
        let Some(config) = self.configured(pool_id, TriggerKind::CustomMessage)? else {
            return Ok(None);
        };
        let with_username = source == MessageSource::AdminCreateUser;
        let request = json!({
            "userAttributes": events::user_attributes(user),
            "codeParameter": CODE,
            "linkParameter": "{##Click Here##}",
            "usernameParameter": if with_username { Value::from(USERNAME) } else { Value::Null },
            "clientMetadata": events::string_map(client_metadata),
        });
        let caller = Caller {
            pool_id,
            username: &user.username,
            client_id,
        };
        let mut event = events::event(source.trigger_source(), caller, request, "1");
        event["response"] = json!({ "smsMessage": null, "emailMessage": null, "emailSubject": null });
        let answer = self
            .call_with(pool_id, &config, TriggerKind::CustomMessage, &event)
            .await?;
        parse_answer(&answer, medium, with_username)
    }
}

/// Checks a `CustomMessage` answer (the event's `response` object).
pub fn parse_answer(
    answer: &Value,
    medium: DeliveryMedium,
    with_username: bool,
) -> Result<Option<CustomText>, ServiceError> {
    let text = |field: &str| -> Result<Option<String>, ServiceError> {
        match answer.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(events::invalid_answer(
                "CustomMessage",
                format!("{field} is not a string"),
            )),
        }
    };
    let (field, max) = match medium {
        DeliveryMedium::Email => ("emailMessage", MAX_EMAIL_CHARS),
        DeliveryMedium::Sms => ("smsMessage", MAX_SMS_CHARS),
    };
    let Some(body) = text(field)? else {
        return Ok(None);
    };
    if body.chars().count() > max {
        return Err(events::invalid_answer(
            "CustomMessage",
            format!("{field} is longer than {max} characters"),
        ));
    }
    if !body.contains(CODE) {
        return Err(events::invalid_answer(
            "CustomMessage",
            format!("{field} must contain the code parameter {CODE}"),
        ));
    }
    if with_username && !body.contains(USERNAME) {
        return Err(events::invalid_answer(
            "CustomMessage",
            format!("{field} must contain the username parameter {USERNAME}"),
        ));
    }
    let subject = match medium {
        DeliveryMedium::Email => text("emailSubject")?,
        DeliveryMedium::Sms => None,
    };
    if subject
        .as_ref()
        .is_some_and(|s| s.chars().count() > MAX_SUBJECT_CHARS || s.chars().any(char::is_control))
    {
        return Err(events::invalid_answer(
            "CustomMessage",
            format!("emailSubject must be one line of at most {MAX_SUBJECT_CHARS} characters"),
        ));
    }
    Ok(Some(CustomText { subject, body }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_must_keep_the_placeholders_and_the_limits() {
        let ok = json!({"emailMessage": "Hi {username}, your code: {####}", "emailSubject": "Welcome"});
        let t = parse_answer(&ok, DeliveryMedium::Email, true).unwrap().unwrap();
        assert_eq!(t.subject.as_deref(), Some("Welcome"));
        assert_eq!(t.fill("123456", "ann"), "Hi ann, your code: 123456");
        // A username or code that looks like a placeholder is not expanded again.
        assert_eq!(t.fill("123456", "{####}"), "Hi {####}, your code: 123456");
        assert_eq!(t.fill("x{username}", "ann"), "Hi ann, your code: x{username}");
        // The SMS text is another field; empty keeps the default.
        assert_eq!(parse_answer(&ok, DeliveryMedium::Sms, false).unwrap(), None);
        assert_eq!(
            parse_answer(&json!({"emailMessage": ""}), DeliveryMedium::Email, false).unwrap(),
            None
        );
        for bad in [
            json!({"emailMessage": "no code here"}),
            json!({"emailMessage": 7}),
            json!({"emailMessage": format!("{CODE}{}", "x".repeat(MAX_EMAIL_CHARS))}),
            json!({"emailMessage": CODE, "emailSubject": "two\nlines"}),
        ] {
            assert!(parse_answer(&bad, DeliveryMedium::Email, false).is_err(), "{bad}");
        }
        assert!(parse_answer(&json!({"smsMessage": "code {####}"}), DeliveryMedium::Sms, true).is_err());
    }
}
