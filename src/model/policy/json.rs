//! The JSON side of a policy document: reading IAM's lenient shape with
//! errors that name the element, and writing the canonical form.
//!
//! The text is read into a small tree that keeps every object key, so that
//! a key given twice is refused: with last-wins parsing
//! `{"Effect": "Deny", "Effect": "Allow"}` would read as an Allow while a
//! reviewer sees a Deny.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::pattern::Pattern;
use super::{
    Effect, PolicyDocument, PolicyError, PolicyVersion, Statement, MAX_ENTRIES, MAX_POLICY_BYTES,
    MAX_POLICY_INPUT_BYTES, MAX_STATEMENTS,
};

/// A JSON value with object keys kept in order, duplicates included.
enum Json {
    Null,
    Bool,
    Number,
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool => "a boolean",
            Json::Number => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "a list",
            Json::Object(_) => "an object",
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Json, E> {
        Ok(Json::Bool)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Json, E> {
        Ok(Json::Number)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Json, E> {
        Ok(Json::Number)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Json, E> {
        Ok(Json::Number)
    }

    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry::<String, Json>()? {
            entries.push(entry);
        }
        Ok(Json::Object(entries))
    }
}

fn invalid(path: impl Into<String>, reason: impl Into<String>) -> PolicyError {
    PolicyError::Invalid {
        path: path.into(),
        reason: reason.into(),
    }
}

/// Picks the `allowed` keys of an object (result in the order of
/// `allowed`), refusing unsupported IAM keys, unknown keys and duplicates.
/// `prefix` is the object's path plus a dot, or empty at the top level.
fn pick<'a, const N: usize>(
    prefix: &str,
    entries: &'a [(String, Json)],
    allowed: [&str; N],
    unsupported: &[&str],
    hint: &str,
) -> Result<[Option<&'a Json>; N], PolicyError> {
    let mut picked = [None; N];
    for (key, value) in entries {
        if let Some(slot) = allowed.iter().position(|k| k == key) {
            if picked[slot].replace(value).is_some() {
                return Err(invalid(format!("{prefix}{key}"), "given more than once"));
            }
        } else if unsupported.contains(&key.as_str()) {
            return Err(invalid(
                format!("{prefix}{key}"),
                format!("not supported in Tessera role policies; {hint}"),
            ));
        } else {
            return Err(invalid(format!("{prefix}{key}"), format!("unknown key; {hint}")));
        }
    }
    Ok(picked)
}

/// Reads a document (see [`PolicyDocument::from_json`]).
pub(super) fn parse(text: &str) -> Result<PolicyDocument, PolicyError> {
    if text.len() > MAX_POLICY_INPUT_BYTES {
        return Err(PolicyError::InputTooLarge(text.len()));
    }
    let root: Json = serde_json::from_str(text).map_err(|e| PolicyError::Json(e.to_string()))?;
    let Json::Object(entries) = root else {
        return Err(PolicyError::NotAnObject(root.kind()));
    };
    let [version, statement] = pick(
        "",
        &entries,
        ["Version", "Statement"],
        &["Id"],
        "a document has Version and Statement",
    )?;

    let version = match version {
        None => None,
        Some(Json::String(v)) if v == "2012-10-17" => Some(PolicyVersion::V2012_10_17),
        Some(Json::String(v)) if v == "2008-10-17" => Some(PolicyVersion::V2008_10_17),
        Some(other) => {
            let found = match other {
                Json::String(v) => format!("{v:?}"),
                other => other.kind().to_owned(),
            };
            return Err(invalid(
                "Version",
                format!("must be \"2012-10-17\" or \"2008-10-17\", found {found}"),
            ));
        }
    };
    let variables = version == Some(PolicyVersion::V2012_10_17);

    let statements: Vec<(String, &Json)> = match statement {
        None => return Err(invalid("Statement", "missing; a document needs at least one statement")),
        Some(Json::Array(items)) if items.is_empty() => return Err(invalid("Statement", "must not be an empty list")),
        Some(Json::Array(items)) if items.len() > MAX_STATEMENTS => {
            return Err(invalid(
                "Statement",
                format!("has {} statements; at most {MAX_STATEMENTS} are allowed", items.len()),
            ))
        }
        Some(Json::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("Statement[{i}]"), s))
            .collect(),
        Some(one @ Json::Object(_)) => vec![("Statement".to_owned(), one)],
        Some(other) => {
            return Err(invalid(
                "Statement",
                format!("must be an object or a list of objects, found {}", other.kind()),
            ))
        }
    };

    // Sid -> path of the statement that has it, to refuse duplicates.
    let mut sids: BTreeMap<String, &str> = BTreeMap::new();
    let mut parsed = Vec::with_capacity(statements.len());
    for (path, json) in &statements {
        let statement = parse_statement(path, json, variables)?;
        if let Some(sid) = statement.sid.as_deref().filter(|sid| !sid.is_empty()) {
            if let Some(first) = sids.insert(sid.to_owned(), path) {
                return Err(invalid(
                    format!("{path}.Sid"),
                    format!("{sid:?} is also the Sid of {first}; a Sid must be unique in the document"),
                ));
            }
        }
        parsed.push(statement);
    }

    let document = PolicyDocument {
        version,
        statements: parsed,
    };
    let size = canonical(&document).to_string().len();
    if size > MAX_POLICY_BYTES {
        return Err(PolicyError::TooLarge(size));
    }
    Ok(document)
}

fn parse_statement(path: &str, json: &Json, variables: bool) -> Result<Statement, PolicyError> {
    let Json::Object(entries) = json else {
        return Err(invalid(
            path,
            format!("a statement must be an object, found {}", json.kind()),
        ));
    };
    let [sid, effect, action, resource] = pick(
        &format!("{path}."),
        entries,
        ["Sid", "Effect", "Action", "Resource"],
        &["NotAction", "NotResource", "Principal", "NotPrincipal", "Condition"],
        "a statement has Sid, Effect, Action and Resource",
    )?;
    let sid = match sid {
        None => None,
        Some(Json::String(sid)) if sid.bytes().all(|b| b.is_ascii_alphanumeric()) => Some(sid.clone()),
        Some(Json::String(_)) => {
            return Err(invalid(
                format!("{path}.Sid"),
                "may contain only the letters A-Z and a-z and the digits 0-9",
            ))
        }
        Some(other) => {
            return Err(invalid(
                format!("{path}.Sid"),
                format!("must be a string, found {}", other.kind()),
            ))
        }
    };
    let effect = match effect {
        Some(Json::String(e)) if e == "Allow" => Effect::Allow,
        Some(Json::String(e)) if e == "Deny" => Effect::Deny,
        Some(Json::String(e)) => {
            return Err(invalid(
                format!("{path}.Effect"),
                format!("must be \"Allow\" or \"Deny\" (case-sensitive), found {e:?}"),
            ))
        }
        Some(other) => {
            return Err(invalid(
                format!("{path}.Effect"),
                format!("must be \"Allow\" or \"Deny\", found {}", other.kind()),
            ))
        }
        None => {
            return Err(invalid(
                format!("{path}.Effect"),
                "missing; must be \"Allow\" or \"Deny\"",
            ))
        }
    };
    Ok(Statement {
        sid,
        effect,
        actions: patterns(&format!("{path}.Action"), action, variables)?,
        resources: patterns(&format!("{path}.Resource"), resource, variables)?,
    })
}

/// An `Action` or `Resource`: one string or a non-empty list of strings.
fn patterns(path: &str, json: Option<&Json>, variables: bool) -> Result<Vec<Pattern>, PolicyError> {
    let one = |path: String, json: &Json| match json {
        Json::String(text) => Pattern::parse(text, variables).map_err(|reason| invalid(path, reason)),
        other => Err(invalid(path, format!("must be a string, found {}", other.kind()))),
    };
    match json {
        None => Err(invalid(path, "missing; give a string or a list of strings")),
        Some(text @ Json::String(_)) => Ok(vec![one(path.to_owned(), text)?]),
        Some(Json::Array(items)) if items.is_empty() => Err(invalid(path, "must not be an empty list")),
        Some(Json::Array(items)) if items.len() > MAX_ENTRIES => Err(invalid(
            path,
            format!("has {} entries; at most {MAX_ENTRIES} are allowed", items.len()),
        )),
        Some(Json::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| one(format!("{path}[{i}]"), item))
            .collect(),
        Some(other) => Err(invalid(
            path,
            format!(
                "must be a string or a non-empty list of strings, found {}",
                other.kind()
            ),
        )),
    }
}

/// The canonical form as a JSON value. Keys are inserted in alphabetical
/// order, so the text is the same whether or not serde_json's map keeps
/// insertion order (a feature another crate in the build may turn on).
pub(super) fn canonical(document: &PolicyDocument) -> Value {
    let list = |patterns: &[Pattern]| Value::Array(patterns.iter().map(|p| Value::from(p.as_str())).collect());
    let statements = document
        .statements
        .iter()
        .map(|s| {
            let mut object = Map::new();
            object.insert("Action".into(), list(&s.actions));
            object.insert("Effect".into(), s.effect.as_str().into());
            object.insert("Resource".into(), list(&s.resources));
            if let Some(sid) = &s.sid {
                object.insert("Sid".into(), sid.as_str().into());
            }
            Value::Object(object)
        })
        .collect();
    let mut root = Map::new();
    root.insert("Statement".into(), Value::Array(statements));
    if let Some(version) = document.version {
        root.insert("Version".into(), version.as_str().into());
    }
    Value::Object(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        PolicyDocument::from_json(text).unwrap_err().to_string()
    }

    fn statement(body: &str) -> String {
        format!(r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"a:b","Resource":"r"}},{body}]}}"#)
    }

    #[test]
    fn malformed_documents_are_refused_by_name() {
        assert!(error("{").starts_with("policy document is not valid JSON: EOF while parsing"));
        assert!(error("").starts_with("policy document is not valid JSON"));
        assert!(error(r#"{"Statement":[]} x"#).starts_with("policy document is not valid JSON: trailing characters"));
        assert_eq!(error("[]"), "policy document must be a JSON object, found a list");
        assert_eq!(
            error(&statement(r#"{"Action":"a:b","Resource":"r"}"#)),
            r#"Statement[1].Effect: missing; must be "Allow" or "Deny""#
        );
        assert_eq!(
            error(&statement(r#"{"Effect":"allow","Action":"a:b","Resource":"r"}"#)),
            r#"Statement[1].Effect: must be "Allow" or "Deny" (case-sensitive), found "allow""#
        );
        assert_eq!(
            error(&statement(r#"{"Effect":"Allow","Action":[],"Resource":"r"}"#)),
            "Statement[1].Action: must not be an empty list"
        );
        assert_eq!(
            error(&statement(r#"{"Effect":"Allow","Action":"a:b"}"#)),
            "Statement[1].Resource: missing; give a string or a list of strings"
        );
        assert_eq!(
            error(&statement(r#"{"Effect":"Allow","Action":["a:b",3],"Resource":"r"}"#)),
            "Statement[1].Action[1]: must be a string, found a number"
        );
        assert_eq!(
            error(&statement(r#"{"Effect":"Allow","Actions":"a:b","Resource":"r"}"#)),
            "Statement[1].Actions: unknown key; a statement has Sid, Effect, Action and Resource"
        );
        assert_eq!(
            error(r#"{"Statement":{"Effect":"Allow","Action":"a:b","Resource":"r"},"statement":1}"#),
            "statement: unknown key; a document has Version and Statement"
        );
        assert_eq!(
            error(&statement(
                r#"{"Effect":"Allow","Action":"a:b","Resource":["r","x/${identity.id}","${user.email}"]}"#
            )),
            "Statement[1].Resource[2]: unknown variable ${user.email}; use ${identity.id}, ${user.sub} or ${user.username}"
        );
        assert_eq!(
            error(&statement(
                r#"{"Effect":"Allow","Action":"a:b","Resource":"x/${identity.id"}"#
            )),
            "Statement[1].Resource: unterminated ${ at byte 2; a variable ends with }"
        );
        assert_eq!(
            error(&statement(
                r#"{"Effect":"Deny","Effect":"Allow","Action":"a:b","Resource":"r"}"#
            )),
            "Statement[1].Effect: given more than once"
        );
        assert_eq!(
            error(r#"{"Version":"2012-10-18","Statement":[]}"#),
            r#"Version: must be "2012-10-17" or "2008-10-17", found "2012-10-18""#
        );
        assert_eq!(
            error(r#"{"Version":"2012-10-17"}"#),
            "Statement: missing; a document needs at least one statement"
        );
        assert_eq!(
            error(r#"{"Statement":"x"}"#),
            "Statement: must be an object or a list of objects, found a string"
        );
        assert_eq!(
            error(&statement(
                r#"{"Sid":"no-dash","Effect":"Allow","Action":"a:b","Resource":"r"}"#
            )),
            "Statement[1].Sid: may contain only the letters A-Z and a-z and the digits 0-9"
        );
    }

    #[test]
    fn unsupported_iam_keys_say_so() {
        for key in ["NotAction", "NotResource", "Principal", "NotPrincipal", "Condition"] {
            let e = error(&statement(&format!(
                r#"{{"Effect":"Allow","Action":"a:b","Resource":"r","{key}":{{}}}}"#
            )));
            assert!(
                e.starts_with(&format!("Statement[1].{key}: not supported in Tessera role policies")),
                "{e}"
            );
        }
        assert!(error(r#"{"Id":"x","Statement":[]}"#).starts_with("Id: not supported"));
    }

    #[test]
    fn variables_need_version_2012() {
        let body = r#"{"Effect":"Allow","Action":"a:b","Resource":"d/${identity.id}/*"}"#;
        for version in [r#""Version":"2008-10-17","#, ""] {
            let e = error(&format!(r#"{{{version}"Statement":{body}}}"#));
            assert!(
                e.starts_with(r#"Statement.Resource: ${identity.id} needs "Version": "2012-10-17""#),
                "{e}"
            );
        }
        assert!(PolicyDocument::from_json(&format!(r#"{{"Version":"2012-10-17","Statement":{body}}}"#)).is_ok());
    }

    #[test]
    fn duplicate_sids_are_refused() {
        assert_eq!(
            error(
                r#"{"Statement":[{"Sid":"S","Effect":"Allow","Action":"a:b","Resource":"r"},
                {"Sid":"S","Effect":"Deny","Action":"a:b","Resource":"r"}]}"#
            ),
            r#"Statement[1].Sid: "S" is also the Sid of Statement[0]; a Sid must be unique in the document"#
        );
        // Empty Sids name nothing and may repeat.
        assert!(PolicyDocument::from_json(
            r#"{"Statement":[{"Sid":"","Effect":"Allow","Action":"a:b","Resource":"r"},
            {"Sid":"","Effect":"Deny","Action":"a:b","Resource":"r"}]}"#
        )
        .is_ok());
    }

    #[test]
    fn limits() {
        let one = r#"{"Effect":"Allow","Action":"a:b","Resource":"r"}"#;
        let many = |n: usize| format!(r#"{{"Statement":[{}]}}"#, vec![one; n].join(","));
        assert!(PolicyDocument::from_json(&many(MAX_STATEMENTS)).is_ok());
        assert_eq!(
            error(&many(MAX_STATEMENTS + 1)),
            "Statement: has 101 statements; at most 100 are allowed"
        );

        let actions = |n: usize| {
            let list: Vec<String> = (0..n).map(|i| format!("\"a:{i}\"")).collect();
            format!(
                r#"{{"Statement":{{"Effect":"Allow","Action":[{}],"Resource":"r"}}}}"#,
                list.join(",")
            )
        };
        assert!(PolicyDocument::from_json(&actions(MAX_ENTRIES)).is_ok());
        assert_eq!(
            error(&actions(MAX_ENTRIES + 1)),
            "Statement.Action: has 101 entries; at most 100 are allowed"
        );

        let long = format!(
            r#"{{"Statement":{{"Effect":"Allow","Action":"a:b","Resource":"{}"}}}}"#,
            "r".repeat(2049)
        );
        assert_eq!(
            error(&long),
            "Statement.Resource: pattern is 2049 bytes; at most 2048 are allowed"
        );

        // Size counts the canonical form, not whitespace.
        let resources = |n: usize, len: usize| {
            let list: Vec<String> = (0..n).map(|i| format!("\"{i:02}{}\"", "r".repeat(len - 2))).collect();
            format!(
                r#"{{"Statement":{{"Effect":"Allow","Action":"a:b","Resource":[{}]}}}}"#,
                list.join(&format!(",\n{}", " ".repeat(40)))
            )
        };
        let fits = resources(10, 1000);
        let doc = PolicyDocument::from_json(&fits).unwrap();
        assert!(fits.len() > MAX_POLICY_BYTES, "pretty input is larger than the limit");
        assert!(doc.to_json().len() <= MAX_POLICY_BYTES);
        let too_big = resources(11, 1000);
        let e = PolicyDocument::from_json(&too_big).unwrap_err();
        assert!(matches!(e, PolicyError::TooLarge(n) if n > MAX_POLICY_BYTES), "{e}");
        assert!(e.to_string().ends_with("at most 10240 are allowed"));

        let huge = format!("{}{}", " ".repeat(MAX_POLICY_INPUT_BYTES), one);
        assert_eq!(
            PolicyDocument::from_json(&huge).unwrap_err(),
            PolicyError::InputTooLarge(huge.len())
        );
    }
}
