//! IAM-style policy documents for identity-pool roles (issue #10).
//!
//! A role carries a [`PolicyDocument`]; credentials issued for the role carry
//! it too, and `Authorize(credentials, action, resource)` evaluates it, as
//! do resource servers offline with this same code. This module owns the
//! pure part: parsing and validating the JSON ([`PolicyDocument::from_json`]),
//! its canonical form ([`PolicyDocument::to_json`]), compiling it once
//! ([`PolicyDocument::compile`]) and answering allow/deny
//! ([`CompiledPolicy::evaluate`]). It does no I/O and must stay
//! deterministic: the state machine stores documents and applies them.
//!
//! The format is IAM's, narrowed:
//!
//! ```json
//! {"Version": "2012-10-17", "Statement": [
//!   {"Sid": "OwnData", "Effect": "Allow", "Action": ["s3:GetObject", "s3:Put*"],
//!    "Resource": "user-data/${identity.id}/*"},
//!   {"Effect": "Deny", "Action": "*", "Resource": "user-data/secret/*"}]}
//! ```
//!
//! * `Statement` is one object or a list; `Action` and `Resource` a string
//!   or a non-empty list; `Effect` exactly `Allow` or `Deny`; `Sid`
//!   optional, `[A-Za-z0-9]*` and unique within the document (a decision
//!   names its statement, so two statements must not share a name).
//! * `*` matches any run (empty, and across `/`), `?` exactly one character
//!   (one Unicode scalar, not one byte). Actions compare ASCII letters
//!   case-insensitively, as IAM; resources compare exactly.
//! * Variables `${identity.id}`, `${user.sub}`, `${user.username}` and the
//!   escapes `${*}`, `${?}`, `${$}` are honoured only under
//!   `"Version": "2012-10-17"`. Under 2008-10-17, which is also what IAM
//!   assumes when Version is absent, IAM reads `${...}` as literal text;
//!   Tessera refuses such a document instead, because a Deny whose
//!   variable silently became literal text would never deny. No document
//!   Tessera accepts means something different in IAM.
//! * A variable whose value is absent (a guest has no `user.sub`) or empty
//!   makes its pattern not match, as IAM. Note what that means for a Deny:
//!   `Deny ... user-data/${user.sub}/*` does not apply to guests.
//! * A substituted value is matched as literal text: an identity id or
//!   username containing `*` or `?` cannot widen a pattern.
//! * `NotAction`, `NotResource`, `Principal`, `NotPrincipal`, `Condition`
//!   and the top-level `Id` are refused as not supported (a role policy is
//!   an identity policy: its principal is whoever holds the credentials);
//!   any other unknown key, and any key given twice, is refused by name.
//! * Explicit Deny wins over any Allow; no matching Allow is an implicit
//!   deny.

mod eval;
mod json;
mod pattern;

use std::str::FromStr;

pub use eval::{CompiledPolicy, DecidingStatement, Decision};
pub use pattern::Pattern;

use super::ValidationError;

/// Longest document, in bytes of its canonical form ([`PolicyDocument::to_json`]:
/// no whitespace). IAM's inline role policy limit is 10,240 characters,
/// not counting whitespace; counting the canonical form does the same for
/// pretty-printed input, and guarantees that a stored document re-parses.
/// It also bounds the total pattern text, hence the worst case of one
/// decision.
pub const MAX_POLICY_BYTES: usize = 10_240;

/// Longest JSON text [`PolicyDocument::from_json`] reads at all, checked
/// before parsing. Room for whitespace around a document of
/// [`MAX_POLICY_BYTES`].
pub const MAX_POLICY_INPUT_BYTES: usize = 64 * 1024;

/// Most statements in one document.
pub const MAX_STATEMENTS: usize = 100;

/// Most entries in one statement's `Action` list, and in its `Resource` list.
pub const MAX_ENTRIES: usize = 100;

/// Longest single `Action` or `Resource` pattern, in bytes.
pub const MAX_PATTERN_BYTES: usize = 2_048;

/// Longest action or resource string that [`CompiledPolicy::evaluate`]
/// considers, in bytes. Longer requests match no statement and are denied
/// implicitly (fail closed): this bounds the matcher's worst case
/// (pattern length × input length) against inputs that come from callers.
pub const MAX_REQUEST_BYTES: usize = 4_096;

/// The policy language version. Only 2012-10-17 honours variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyVersion {
    /// `2012-10-17`: the current language, with policy variables.
    V2012_10_17,
    /// `2008-10-17`: the original language, without variables.
    V2008_10_17,
}

impl PolicyVersion {
    /// The version as written in a document.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyVersion::V2012_10_17 => "2012-10-17",
            PolicyVersion::V2008_10_17 => "2008-10-17",
        }
    }
}

/// What a matching statement does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Grants, unless a Deny also matches.
    Allow,
    /// Refuses, whatever else matches.
    Deny,
}

impl Effect {
    /// The effect as written in a document.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "Allow",
            Effect::Deny => "Deny",
        }
    }
}

/// One validated statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    sid: Option<String>,
    effect: Effect,
    actions: Vec<Pattern>,
    resources: Vec<Pattern>,
}

impl Statement {
    /// The statement's name, if it has one.
    pub fn sid(&self) -> Option<&str> {
        self.sid.as_deref()
    }

    /// Allow or Deny.
    pub fn effect(&self) -> Effect {
        self.effect
    }

    /// The `Action` patterns (at least one).
    pub fn actions(&self) -> &[Pattern] {
        &self.actions
    }

    /// The `Resource` patterns (at least one).
    pub fn resources(&self) -> &[Pattern] {
        &self.resources
    }
}

/// A validated policy document. The fields are private so that every
/// value went through validation: a document read back from the store or
/// from a token is checked again (see the serde impls).
///
/// It serializes as one string, its canonical JSON ([`Self::to_json`]), in
/// every serde format: IAM's own APIs carry policies as JSON strings, the
/// store's non-self-describing encoding (postcard) needs no special case,
/// and a token carries exactly the bytes that will be parsed back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDocument {
    version: Option<PolicyVersion>,
    statements: Vec<Statement>,
}

impl PolicyDocument {
    /// Parses and validates a document as an administrator writes it.
    /// Errors name the offending element, e.g.
    /// `Statement[2].Resource[0]: unknown variable ${user.email}; ...`.
    pub fn from_json(text: &str) -> Result<PolicyDocument, PolicyError> {
        json::parse(text)
    }

    /// The canonical JSON form: no whitespace, keys in alphabetical order,
    /// `Statement`, `Action` and `Resource` always lists, `Version` and
    /// `Sid` only when present. Equal documents give equal bytes, and
    /// [`Self::from_json`] of the result gives an equal document.
    pub fn to_json(&self) -> String {
        json::canonical(self).to_string()
    }

    /// The declared Version, if any.
    pub fn version(&self) -> Option<PolicyVersion> {
        self.version
    }

    /// The statements, in document order (indexes in a [`Decision`] refer
    /// to this order).
    pub fn statements(&self) -> &[Statement] {
        &self.statements
    }

    /// Compiles the document for evaluation. Do it once per document (per
    /// role, or per credentials token), not per decision.
    pub fn compile(&self) -> CompiledPolicy {
        CompiledPolicy::new(self)
    }
}

impl FromStr for PolicyDocument {
    type Err = PolicyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        PolicyDocument::from_json(text)
    }
}

impl serde::Serialize for PolicyDocument {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_json())
    }
}

impl<'de> serde::Deserialize<'de> for PolicyDocument {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        PolicyDocument::from_json(&text).map_err(serde::de::Error::custom)
    }
}

/// Values the variables stand for, from the credentials being checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyContext<'a> {
    /// `${identity.id}`: the identity-pool identity id.
    pub identity_id: &'a str,
    /// `${user.sub}`: the user pool `sub`; `None` for guest identities.
    pub user_sub: Option<&'a str>,
    /// `${user.username}`: the user pool username; `None` for guests.
    pub username: Option<&'a str>,
}

/// Why a policy document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The text is not JSON.
    #[error("policy document is not valid JSON: {0}")]
    Json(String),
    /// The JSON is not an object.
    #[error("policy document must be a JSON object, found {0}")]
    NotAnObject(&'static str),
    /// The text is longer than [`MAX_POLICY_INPUT_BYTES`]; not parsed.
    #[error("policy document text is {0} bytes; at most {MAX_POLICY_INPUT_BYTES} are read")]
    InputTooLarge(usize),
    /// The canonical form is longer than [`MAX_POLICY_BYTES`].
    #[error("policy document is {0} bytes without whitespace; at most {MAX_POLICY_BYTES} are allowed")]
    TooLarge(usize),
    /// An element is wrong.
    #[error("{path}: {reason}")]
    Invalid {
        /// The element, as `Statement[2].Resource[0]`, or a top-level key.
        path: String,
        /// What is wrong and what would be accepted.
        reason: String,
    },
}

impl From<PolicyError> for ValidationError {
    fn from(error: PolicyError) -> Self {
        ValidationError::new("PolicyDocument", error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{"Version": "2012-10-17", "Statement": [
      {"Sid": "OwnData", "Effect": "Allow", "Action": ["s3:GetObject", "s3:Put*"], "Resource": "user-data/${identity.id}/*"},
      {"Effect": "Deny", "Action": "*", "Resource": "user-data/secret/*"}]}"#;

    const ALICE: PolicyContext<'static> = PolicyContext {
        identity_id: "alice",
        user_sub: Some("sub-a"),
        username: Some("alice"),
    };

    fn policy(text: &str) -> CompiledPolicy {
        PolicyDocument::from_json(text).unwrap().compile()
    }

    #[test]
    fn example_from_the_issue() {
        let p = policy(EXAMPLE);
        let d = p.evaluate("s3:GetObject", "user-data/alice/photo.jpg", &ALICE);
        assert!(d.allowed);
        assert_eq!(
            d.statement,
            Some(DecidingStatement {
                index: 0,
                sid: Some("OwnData")
            })
        );
        let d = p.evaluate("s3:PutObject", "user-data/bob/photo.jpg", &ALICE);
        assert_eq!((d.allowed, d.statement), (false, None), "implicit deny");
        let d = p.evaluate("s3:DeleteObject", "user-data/alice/photo.jpg", &ALICE);
        assert_eq!((d.allowed, d.statement), (false, None));
    }

    #[test]
    fn explicit_deny_wins_whatever_the_order() {
        let allow = r#"{"Sid":"All","Effect":"Allow","Action":"*","Resource":"*"}"#;
        let deny = r#"{"Sid":"NoSecrets","Effect":"Deny","Action":"s3:Get*","Resource":"secret/*"}"#;
        for (doc, deny_index) in [
            (format!(r#"{{"Statement":[{allow},{deny}]}}"#), 1),
            (format!(r#"{{"Statement":[{deny},{allow}]}}"#), 0),
        ] {
            let p = policy(&doc);
            let d = p.evaluate("s3:GetObject", "secret/key", &ALICE);
            assert!(!d.allowed);
            assert_eq!(
                d.statement,
                Some(DecidingStatement {
                    index: deny_index,
                    sid: Some("NoSecrets")
                })
            );
            let d = p.evaluate("s3:PutObject", "secret/key", &ALICE);
            assert!(d.allowed);
            assert_eq!(d.statement.map(|s| s.index), Some(1 - deny_index));
        }
    }

    #[test]
    fn first_matching_statement_in_document_order_is_reported() {
        let p = policy(
            r#"{"Statement":[
            {"Sid":"A","Effect":"Allow","Action":"x:a","Resource":"r"},
            {"Sid":"B","Effect":"Allow","Action":"x:*","Resource":"*"},
            {"Effect":"Deny","Action":"x:d","Resource":"*"},
            {"Sid":"D2","Effect":"Deny","Action":"x:*","Resource":"r2"}]}"#,
        );
        let d = p.evaluate("x:a", "r", &ALICE);
        assert_eq!(d.statement.map(|s| (s.index, s.sid)), Some((0, Some("A"))));
        let d = p.evaluate("x:b", "r", &ALICE);
        assert_eq!(d.statement.map(|s| (s.index, s.sid)), Some((1, Some("B"))));
        let d = p.evaluate("x:d", "r2", &ALICE);
        assert!(!d.allowed);
        assert_eq!(d.statement.map(|s| (s.index, s.sid)), Some((2, None)));
    }

    #[test]
    fn action_case_insensitive_resource_case_sensitive() {
        let p = policy(r#"{"Statement":{"Effect":"Allow","Action":"S3:getobject","Resource":"Docs/*"}}"#);
        assert!(p.evaluate("s3:GetObject", "Docs/a", &ALICE).allowed);
        assert!(p.evaluate("S3:GETOBJECT", "Docs/a", &ALICE).allowed);
        assert!(!p.evaluate("s3:GetObject", "docs/a", &ALICE).allowed);
    }

    #[test]
    fn identity_variable_confines_each_identity_to_its_prefix() {
        let p = policy(EXAMPLE);
        let bob = PolicyContext {
            identity_id: "bob",
            ..ALICE
        };
        assert!(p.evaluate("s3:GetObject", "user-data/bob/x", &bob).allowed);
        assert!(!p.evaluate("s3:GetObject", "user-data/alice/x", &bob).allowed);
        assert!(!p.evaluate("s3:GetObject", "user-data/alice/x", &bob).allowed);
        // A lookalike id is not a prefix match.
        let al = PolicyContext {
            identity_id: "al",
            ..ALICE
        };
        assert!(!p.evaluate("s3:GetObject", "user-data/alice/x", &al).allowed);
    }

    #[test]
    fn wildcard_values_are_literal() {
        let p = policy(EXAMPLE);
        for id in ["*", "?", "a*", "*/..", "${*}"] {
            let ctx = PolicyContext {
                identity_id: id,
                ..ALICE
            };
            assert!(!p.evaluate("s3:GetObject", "user-data/alice/x", &ctx).allowed, "{id}");
            assert!(p.evaluate("s3:GetObject", &format!("user-data/{id}/x"), &ctx).allowed);
        }
    }

    #[test]
    fn guest_without_sub_does_not_match_sub_statements() {
        let p = policy(
            r#"{"Version":"2012-10-17","Statement":[
            {"Sid":"Mine","Effect":"Allow","Action":"app:*","Resource":"users/${user.sub}/*"},
            {"Sid":"Public","Effect":"Allow","Action":"app:Read","Resource":"public/*"}]}"#,
        );
        let guest = PolicyContext {
            identity_id: "guest-1",
            user_sub: None,
            username: None,
        };
        assert!(!p.evaluate("app:Read", "users//x", &guest).allowed);
        assert!(!p.evaluate("app:Read", "users/sub-a/x", &guest).allowed);
        assert!(p.evaluate("app:Read", "public/x", &guest).allowed);
        assert!(p.evaluate("app:Write", "users/sub-a/x", &ALICE).allowed);
    }

    #[test]
    fn escapes_are_literal_characters() {
        let p = policy(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"a:b","Resource":"f/${*}/${?}/${$}*"}}"#,
        );
        assert!(p.evaluate("a:b", "f/*/?/$", &ALICE).allowed);
        assert!(p.evaluate("a:b", "f/*/?/${x}", &ALICE).allowed);
        assert!(!p.evaluate("a:b", "f/x/?/$", &ALICE).allowed);
        assert!(!p.evaluate("a:b", "f/*/x/$", &ALICE).allowed);
    }

    #[test]
    fn overlong_requests_are_denied() {
        let p = policy(r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#);
        let long = "r".repeat(MAX_REQUEST_BYTES + 1);
        assert!(p.evaluate("a:b", &long[1..], &ALICE).allowed);
        let d = p.evaluate("a:b", &long, &ALICE);
        assert_eq!((d.allowed, d.statement), (false, None));
        assert!(!p.evaluate(&long, "r", &ALICE).allowed);
    }

    #[test]
    fn round_trip_through_canonical_json() {
        for text in [
            EXAMPLE,
            r#"{"Statement":{"Effect":"Deny","Action":"a:*","Resource":["x","y?"]}}"#,
            r#"{"Version":"2008-10-17","Statement":[{"Sid":"","Effect":"Allow","Action":"a:b","Resource":"$x"}]}"#,
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"a:b","Resource":"q\"\\\u00e9\n${$}"}]}"#,
        ] {
            let doc = PolicyDocument::from_json(text).unwrap();
            let json = doc.to_json();
            let again = PolicyDocument::from_json(&json).unwrap();
            assert_eq!(again, doc, "{json}");
            assert_eq!(again.to_json(), json, "canonical form is stable");
        }
        let doc = PolicyDocument::from_json(EXAMPLE).unwrap();
        assert_eq!(
            doc.to_json(),
            concat!(
                r#"{"Statement":[{"Action":["s3:GetObject","s3:Put*"],"Effect":"Allow","#,
                r#""Resource":["user-data/${identity.id}/*"],"Sid":"OwnData"},"#,
                r#"{"Action":["*"],"Effect":"Deny","Resource":["user-data/secret/*"]}],"Version":"2012-10-17"}"#
            )
        );
        // Single-object and list forms are the same document.
        let one = PolicyDocument::from_json(r#"{"Statement":{"Effect":"Allow","Action":"a:b","Resource":"r"}}"#);
        let list = PolicyDocument::from_json(r#"{"Statement":[{"Effect":"Allow","Action":["a:b"],"Resource":["r"]}]}"#);
        assert_eq!(one.unwrap(), list.unwrap());
    }

    #[test]
    fn serde_carries_the_canonical_string_and_revalidates() {
        let doc = PolicyDocument::from_json(EXAMPLE).unwrap();
        let json = serde_json::to_string(&doc).unwrap();
        assert_eq!(json, serde_json::to_string(&doc.to_json()).unwrap());
        assert_eq!(serde_json::from_str::<PolicyDocument>(&json).unwrap(), doc);
        let bytes = postcard::to_allocvec(&doc).unwrap();
        assert_eq!(postcard::from_bytes::<PolicyDocument>(&bytes).unwrap(), doc);
        let forged = serde_json::to_string(r#"{"Statement":{"Effect":"allow","Action":"*","Resource":"*"}}"#).unwrap();
        assert!(serde_json::from_str::<PolicyDocument>(&forged).is_err());
    }

    #[test]
    fn converts_to_validation_error() {
        let err =
            PolicyDocument::from_json(r#"{"Statement":{"Effect":"Allow","Action":[],"Resource":"r"}}"#).unwrap_err();
        let v: ValidationError = err.into();
        assert_eq!(v.field, "PolicyDocument");
        assert_eq!(
            v.to_string(),
            "PolicyDocument: Statement.Action: must not be an empty list"
        );
    }
}
