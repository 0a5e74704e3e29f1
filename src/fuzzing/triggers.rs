//! What a pool's trigger answers: the body of a webhook's response, which
//! the operator's code (or whoever answers at its URL) writes.

use serde_json::{json, Value};

use super::Seeds;
use crate::auth::claims::is_protected;
use crate::model::triggers::PreTokenVersion;
use crate::service::triggers::events;

/// The first byte picks the parser, the rest is the response body:
/// the envelope (`parse_answer`), then the `response` it yields read as
/// each trigger's answer. A PreTokenGeneration answer that parses must
/// leave every protected claim as it was.
pub fn trigger_answer(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let Ok(response) = crate::service::triggers::parse_answer(body) else {
        return;
    };
    match which % 6 {
        0 | 1 => {
            let version = if which % 6 == 0 {
                PreTokenVersion::V1
            } else {
                PreTokenVersion::V2
            };
            if let Ok(o) = events::claim_overrides(&response, version) {
                let mut id = base_claims();
                let mut access = base_claims();
                let before = id.clone();
                if o.apply(&mut id, &mut access).is_ok() {
                    for (name, value) in &before {
                        if is_protected(name) && name != "scope" {
                            assert_eq!(id.get(name), Some(value), "PreTokenGeneration changed {name}");
                            assert_eq!(access.get(name), Some(value), "PreTokenGeneration changed {name}");
                        }
                    }
                }
            }
        }
        2 => {
            let _ = events::pre_sign_up_answer(&response);
        }
        3 => {
            let _ = events::define_answer(&response);
        }
        4 => {
            if let Ok(c) = events::created_challenge(&response) {
                assert!(c.public.len() <= events::MAX_LIST && c.private.len() <= events::MAX_LIST);
            }
        }
        _ => {
            let _ = events::answer_correct(&response);
        }
    }
}

fn base_claims() -> crate::auth::jwt::Claims {
    let v = json!({
        "sub": "s", "iss": "i", "aud": "a", "exp": 1, "iat": 1, "jti": "j", "token_use": "id",
        "origin_jti": "o", "auth_time": 1, "client_id": "c", "username": "u", "cognito:username": "u",
        "scope": "aws.cognito.signin.user.admin", "email": "e@example.com",
    });
    match v {
        Value::Object(m) => m,
        _ => Default::default(),
    }
}

pub(super) fn trigger_seeds(out: &mut Seeds) {
    let answers = [
        (
            0u8,
            json!({"triggerSource": "TokenGeneration_Authentication", "request": {}, "response": {"claimsOverrideDetails": {"claimsToAddOrOverride": {"tier": "gold"}, "claimsToSuppress": ["email"], "groupOverrideDetails": {"groupsToOverride": ["vip"]}}}}),
        ),
        (
            1,
            json!({"claimsAndScopeOverrideDetails": {"idTokenGeneration": {"claimsToAddOrOverride": {"n": 1}}, "accessTokenGeneration": {"scopesToAdd": ["orders:read"], "scopesToSuppress": ["x"]}}}),
        ),
        (2, json!({"autoConfirmUser": true, "autoVerifyEmail": "true"})),
        (
            3,
            json!({"challengeName": "CUSTOM_CHALLENGE", "issueTokens": false, "failAuthentication": false}),
        ),
        (
            4,
            json!({"publicChallengeParameters": {"q": "2+2"}, "privateChallengeParameters": {"a": "4"}, "challengeMetadata": "m"}),
        ),
        (5, json!({"answerCorrect": true})),
    ];
    for (which, body) in answers {
        let mut bytes = vec![which];
        bytes.extend_from_slice(body.to_string().as_bytes());
        out.push(("trigger_answer", bytes));
    }
}
