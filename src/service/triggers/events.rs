//! Cognito's trigger event shapes, built from our types, and the parts of
//! the answers that Tessera acts on.
//!
//! Every event has Cognito's common fields (`version`, `triggerSource`,
//! `region`, `userPoolId`, `userName`, `callerContext`), a `request` and
//! an empty `response`, so a function written for a Cognito Lambda trigger
//! ports to a webhook by changing only how it is invoked.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::ServiceError;
use crate::auth::claims::ClaimOverrides;
use crate::model::triggers::PreTokenVersion;
use crate::model::user::User;

/// Largest `claimsToAddOrOverride` (serialized) a trigger may return.
pub const MAX_CLAIM_BYTES: usize = 16 * 1024;
/// Most claims, groups or scopes in one list of an answer.
pub const MAX_LIST: usize = 100;

/// What identifies the call: pool, user name and app client.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The user pool.
    pub pool_id: &'a str,
    /// The user name as the event names it.
    pub username: &'a str,
    /// The app client of the call (empty for admin calls without one).
    pub client_id: &'a str,
}

/// An event of `trigger_source` with `request`, in Cognito's envelope.
pub fn event(trigger_source: &str, caller: Caller<'_>, request: Value, version: &str) -> Value {
    // Cognito's pool ids start with their region; ours with the
    // cluster's id prefix, which is what stands in for it.
    let region = caller.pool_id.split_once('_').map_or("", |(r, _)| r);
    json!({
        "version": version,
        "triggerSource": trigger_source,
        "region": region,
        "userPoolId": caller.pool_id,
        "userName": caller.username,
        "callerContext": {
            "awsSdkVersion": concat!("tessera-", env!("CARGO_PKG_VERSION")),
            "clientId": caller.client_id,
        },
        "request": request,
        "response": {},
    })
}

/// A user's attributes as Cognito puts them in events: every attribute,
/// `sub`, the verification flags and `cognito:user_status`.
pub fn user_attributes(user: &User) -> Value {
    let mut m: Map<String, Value> = user
        .attributes
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    m.insert("sub".into(), json!(user.sub));
    m.insert("cognito:user_status".into(), json!(user.status.as_cognito()));
    if user.attributes.contains_key("email") {
        m.insert("email_verified".into(), json!(user.email_verified.to_string()));
    }
    if user.attributes.contains_key("phone_number") {
        m.insert(
            "phone_number_verified".into(),
            json!(user.phone_number_verified.to_string()),
        );
    }
    Value::Object(m)
}

/// A string map as a JSON object.
pub fn string_map(map: &BTreeMap<String, String>) -> Value {
    Value::Object(map.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect())
}

/// `PreSignUp`'s answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PreSignUpAnswer {
    /// `autoConfirmUser`: the user is created `CONFIRMED`, with no code.
    pub auto_confirm_user: bool,
    /// `autoVerifyEmail`: the email is created verified.
    pub auto_verify_email: bool,
    /// `autoVerifyPhone`: the phone number is created verified.
    pub auto_verify_phone: bool,
}

/// Reads `PreSignUp`'s `response`; absent flags are false.
pub fn pre_sign_up_answer(response: &Value) -> Result<PreSignUpAnswer, ServiceError> {
    Ok(PreSignUpAnswer {
        auto_confirm_user: flag(response, "autoConfirmUser", "PreSignUp")?,
        auto_verify_email: flag(response, "autoVerifyEmail", "PreSignUp")?,
        auto_verify_phone: flag(response, "autoVerifyPhone", "PreSignUp")?,
    })
}

fn flag(response: &Value, name: &str, trigger: &str) -> Result<bool, ServiceError> {
    match response.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        // Lambdas written in loosely typed languages send "true".
        Some(Value::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
        Some(_) => Err(invalid_answer(trigger, format!("response.{name} must be a boolean"))),
    }
}

/// The failure of a trigger whose answer Tessera cannot use.
pub fn invalid_answer(trigger: &str, why: impl std::fmt::Display) -> ServiceError {
    ServiceError::new(
        super::ErrorKind::FailedPrecondition,
        "UserLambdaValidationException",
        format!("{trigger} failed with error invalid answer: {why}."),
    )
}

/// The `request` of `PreTokenGeneration`: attributes and the user's
/// groups, roles and preferred role as they would go into the tokens.
pub fn pre_token_request(
    user: &User,
    groups: &[String],
    roles: &[String],
    client_metadata: &BTreeMap<String, String>,
    scopes: Option<&str>,
) -> Value {
    let mut request = json!({
        "userAttributes": user_attributes(user),
        "groupConfiguration": {
            "groupsToOverride": groups,
            "iamRolesToOverride": roles,
            "preferredRole": roles.first(),
        },
        "clientMetadata": string_map(client_metadata),
    });
    if let Some(scopes) = scopes {
        request["scopes"] = json!(scopes.split(' ').collect::<Vec<_>>());
    }
    request
}

/// Reads `PreTokenGeneration`'s `response` in the shape of `version`:
/// `claimsOverrideDetails` (V1: id token only) or
/// `claimsAndScopeOverrideDetails` (V2: both tokens and scopes).
pub fn claim_overrides(response: &Value, version: PreTokenVersion) -> Result<ClaimOverrides, ServiceError> {
    let bad = |why: String| invalid_answer("PreTokenGeneration", why);
    let mut out = ClaimOverrides::default();
    let group_details = match version {
        PreTokenVersion::V1 => {
            let Some(d) = object_at(response.get("claimsOverrideDetails"), "claimsOverrideDetails").map_err(bad)?
            else {
                return Ok(out);
            };
            out.id_add = claims_at(d, "claimsToAddOrOverride").map_err(bad)?;
            out.id_suppress = strings_at(d, "claimsToSuppress").map_err(bad)?.unwrap_or_default();
            object_at(d.get("groupOverrideDetails"), "groupOverrideDetails").map_err(bad)?
        }
        PreTokenVersion::V2 => {
            let Some(d) = object_at(
                response.get("claimsAndScopeOverrideDetails"),
                "claimsAndScopeOverrideDetails",
            )
            .map_err(bad)?
            else {
                return Ok(out);
            };
            if let Some(id) = object_at(d.get("idTokenGeneration"), "idTokenGeneration").map_err(bad)? {
                out.id_add = claims_at(id, "claimsToAddOrOverride").map_err(bad)?;
                out.id_suppress = strings_at(id, "claimsToSuppress").map_err(bad)?.unwrap_or_default();
            }
            if let Some(access) = object_at(d.get("accessTokenGeneration"), "accessTokenGeneration").map_err(bad)? {
                out.access_add = claims_at(access, "claimsToAddOrOverride").map_err(bad)?;
                out.access_suppress = strings_at(access, "claimsToSuppress").map_err(bad)?.unwrap_or_default();
                out.scopes_add = strings_at(access, "scopesToAdd").map_err(bad)?.unwrap_or_default();
                out.scopes_suppress = strings_at(access, "scopesToSuppress").map_err(bad)?.unwrap_or_default();
            }
            object_at(d.get("groupOverrideDetails"), "groupOverrideDetails").map_err(bad)?
        }
    };
    if let Some(g) = group_details {
        out.groups = strings_at(g, "groupsToOverride").map_err(bad)?;
        out.roles = strings_at(g, "iamRolesToOverride").map_err(bad)?;
        out.preferred_role = match g.get("preferredRole") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(bad("groupOverrideDetails.preferredRole must be a string".into())),
        };
    }
    for scope in out.scopes_add.iter() {
        if scope.is_empty() || scope.contains(' ') || scope.len() > 256 {
            return Err(bad(format!(
                "scope {scope:?} must be 1 to 256 characters without spaces"
            )));
        }
    }
    out.check().map_err(bad)?;
    Ok(out)
}

fn object_at<'a>(v: Option<&'a Value>, name: &str) -> Result<Option<&'a Map<String, Value>>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(format!("{name} must be an object")),
    }
}

fn claims_at(m: &Map<String, Value>, name: &str) -> Result<Map<String, Value>, String> {
    match m.get(name) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(c)) => {
            if c.len() > MAX_LIST {
                return Err(format!("{name} has more than {MAX_LIST} claims"));
            }
            if serde_json::to_vec(c).map_or(usize::MAX, |b| b.len()) > MAX_CLAIM_BYTES {
                return Err(format!("{name} is larger than {MAX_CLAIM_BYTES} bytes"));
            }
            Ok(c.clone())
        }
        Some(_) => Err(format!("{name} must be an object")),
    }
}

fn strings_at(m: &Map<String, Value>, name: &str) -> Result<Option<Vec<String>>, String> {
    match m.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => {
            if items.len() > MAX_LIST {
                return Err(format!("{name} has more than {MAX_LIST} entries"));
            }
            items
                .iter()
                .map(|i| match i {
                    Value::String(s) if s.len() <= 2048 => Ok(s.clone()),
                    _ => Err(format!("{name} must hold strings of at most 2048 bytes")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
        }
        Some(_) => Err(format!("{name} must be an array of strings")),
    }
}

/// `DefineAuthChallenge`'s decision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DefineAnswer {
    /// `challengeName`: the next challenge, when neither flag is set.
    pub challenge_name: Option<String>,
    /// `issueTokens`: the user is signed in.
    pub issue_tokens: bool,
    /// `failAuthentication`: the sign-in fails.
    pub fail_authentication: bool,
}

/// Reads `DefineAuthChallenge`'s `response`.
pub fn define_answer(response: &Value) -> Result<DefineAnswer, ServiceError> {
    const T: &str = "DefineAuthChallenge";
    Ok(DefineAnswer {
        challenge_name: match response.get("challengeName") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(invalid_answer(T, "response.challengeName must be a string")),
        },
        issue_tokens: flag(response, "issueTokens", T)?,
        fail_authentication: flag(response, "failAuthentication", T)?,
    })
}

/// `CreateAuthChallenge`'s challenge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreatedChallenge {
    /// `publicChallengeParameters`: shown to the client.
    pub public: BTreeMap<String, String>,
    /// `privateChallengeParameters`: kept sealed in the session, for
    /// `VerifyAuthChallengeResponse` only.
    pub private: BTreeMap<String, String>,
    /// `challengeMetadata`: recorded in the session history.
    pub metadata: String,
}

/// Reads `CreateAuthChallenge`'s `response`.
pub fn created_challenge(response: &Value) -> Result<CreatedChallenge, ServiceError> {
    const T: &str = "CreateAuthChallenge";
    let map = |name: &str| -> Result<BTreeMap<String, String>, ServiceError> {
        match response.get(name) {
            None | Some(Value::Null) => Ok(BTreeMap::new()),
            Some(Value::Object(m)) => {
                if m.len() > MAX_LIST {
                    return Err(invalid_answer(T, format!("{name} has more than {MAX_LIST} entries")));
                }
                m.iter()
                    .map(|(k, v)| match v {
                        Value::String(s) => Ok((k.clone(), s.clone())),
                        // Numbers and flags travel as their JSON text, as
                        // Cognito's string maps hold them.
                        Value::Number(_) | Value::Bool(_) => Ok((k.clone(), v.to_string())),
                        _ => Err(invalid_answer(T, format!("{name}.{k} must be a string"))),
                    })
                    .collect()
            }
            Some(_) => Err(invalid_answer(T, format!("{name} must be an object of strings"))),
        }
    };
    let metadata = match response.get("challengeMetadata") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) if s.len() <= 2048 => s.clone(),
        Some(_) => {
            return Err(invalid_answer(
                T,
                "challengeMetadata must be a string of at most 2048 bytes",
            ))
        }
    };
    Ok(CreatedChallenge {
        public: map("publicChallengeParameters")?,
        private: map("privateChallengeParameters")?,
        metadata,
    })
}

/// Reads `VerifyAuthChallengeResponse`'s `answerCorrect` (absent: wrong).
pub fn answer_correct(response: &Value) -> Result<bool, ServiceError> {
    flag(response, "answerCorrect", "VerifyAuthChallengeResponse")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_overrides_the_id_token_and_groups() {
        let r = json!({"claimsOverrideDetails": {
            "claimsToAddOrOverride": {"tier": "gold", "family_name": "Smith"},
            "claimsToSuppress": ["email"],
            "groupOverrideDetails": {"groupsToOverride": ["vip"], "preferredRole": "arn:x"}
        }});
        let o = claim_overrides(&r, PreTokenVersion::V1).unwrap();
        assert_eq!(o.id_add["tier"], "gold");
        assert_eq!(o.id_suppress, vec!["email".to_string()]);
        assert_eq!(o.groups, Some(vec!["vip".to_string()]));
        assert_eq!(o.roles, None);
        assert_eq!(o.preferred_role.as_deref(), Some("arn:x"));
        assert!(o.access_add.is_empty(), "V1 leaves the access token alone");
    }

    #[test]
    fn v2_reaches_the_access_token_and_scopes() {
        let r = json!({"claimsAndScopeOverrideDetails": {
            "idTokenGeneration": {"claimsToAddOrOverride": {"n": 1}},
            "accessTokenGeneration": {"claimsToAddOrOverride": {"tenant": "t1"}, "scopesToAdd": ["orders:read"], "scopesToSuppress": ["aws.cognito.signin.user.admin"]}
        }});
        let o = claim_overrides(&r, PreTokenVersion::V2).unwrap();
        assert_eq!(o.id_add["n"], 1);
        assert_eq!(o.access_add["tenant"], "t1");
        assert_eq!(o.scopes_add, vec!["orders:read".to_string()]);
        assert_eq!(o.scopes_suppress.len(), 1);
        // The V1 shape under a V2 trigger changes nothing.
        let v1 = json!({"claimsOverrideDetails": {"claimsToAddOrOverride": {"x": "y"}}});
        assert!(claim_overrides(&v1, PreTokenVersion::V2).unwrap().is_empty());
    }

    #[test]
    fn protected_claims_and_bad_shapes_are_refused() {
        for claim in [
            "sub",
            "iss",
            "exp",
            "token_use",
            "cognito:groups",
            "origin_jti",
            "auth_time",
        ] {
            let r = json!({"claimsOverrideDetails": {"claimsToAddOrOverride": {claim: "x"}}});
            let e = claim_overrides(&r, PreTokenVersion::V1).unwrap_err();
            assert_eq!(e.exception, "UserLambdaValidationException");
            assert!(e.message.contains(claim), "{e}");
            let r = json!({"claimsOverrideDetails": {"claimsToSuppress": [claim]}});
            assert!(claim_overrides(&r, PreTokenVersion::V1).is_err(), "suppressing {claim}");
        }
        for r in [
            json!({"claimsOverrideDetails": 7}),
            json!({"claimsOverrideDetails": {"claimsToSuppress": "email"}}),
            json!({"claimsOverrideDetails": {"claimsToAddOrOverride": {"big": "x".repeat(MAX_CLAIM_BYTES)}}}),
        ] {
            assert!(claim_overrides(&r, PreTokenVersion::V1).is_err(), "{r}");
        }
    }

    #[test]
    fn custom_auth_answers() {
        let d = define_answer(&json!({"challengeName": "CUSTOM_CHALLENGE", "issueTokens": false})).unwrap();
        assert_eq!(d.challenge_name.as_deref(), Some("CUSTOM_CHALLENGE"));
        assert!(!d.issue_tokens && !d.fail_authentication);
        assert!(define_answer(&json!({"issueTokens": true})).unwrap().issue_tokens);
        assert!(define_answer(&json!({"challengeName": 3})).is_err());
        let c = created_challenge(&json!({
            "publicChallengeParameters": {"question": "2+2?", "n": 4},
            "privateChallengeParameters": {"answer": "4"},
            "challengeMetadata": "round-1"
        }))
        .unwrap();
        assert_eq!(c.public["n"], "4");
        assert_eq!(c.private["answer"], "4");
        assert_eq!(c.metadata, "round-1");
        assert!(created_challenge(&json!({"privateChallengeParameters": {"a": [1]}})).is_err());
        assert!(answer_correct(&json!({"answerCorrect": true})).unwrap());
        assert!(!answer_correct(&json!({})).unwrap());
    }

    #[test]
    fn pre_sign_up_flags() {
        let a = pre_sign_up_answer(&json!({"autoConfirmUser": true, "autoVerifyEmail": "true"})).unwrap();
        assert!(a.auto_confirm_user && a.auto_verify_email && !a.auto_verify_phone);
        assert_eq!(pre_sign_up_answer(&json!({})).unwrap(), PreSignUpAnswer::default());
        assert!(pre_sign_up_answer(&json!({"autoConfirmUser": 1})).is_err());
    }
}
