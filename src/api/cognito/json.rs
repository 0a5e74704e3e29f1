//! Cognito's JSON shapes to and from the gRPC messages, driven by the
//! protobuf descriptors compiled into the binary.
//!
//! The gRPC messages already carry Cognito's shapes under snake_case names,
//! so one walk over a message's descriptor converts any action: no
//! per-action code. The rules:
//!
//! * **Names.** A field's Cognito name is its protobuf `json_name` with
//!   the first letter upper-cased (`user_pool_id` → `UserPoolId`). Where
//!   Cognito spells an acronym (`UserMFASettingList`), the proto sets
//!   `json_name` on the field, so the exception lives beside the field.
//!   Input matches names ignoring case and underscores, so `MFAOptions`
//!   finds `mfa_options` either way.
//! * **Unknown input members are ignored**, as AWS's JSON services do: a
//!   newer SDK sends members (`ClientMetadata`, `AnalyticsMetadata`) that
//!   a model it was built from did not have, and refusing them would
//!   break the app on an SDK upgrade. A member of the wrong type is
//!   refused, naming it.
//! * **Timestamps** are epoch seconds on the wire (AWS's JSON protocol).
//!   Fields named `*_date` and `expiration` are timestamps; most messages
//!   hold them in seconds, the user-pool ones in milliseconds
//!   ([`MILLISECOND_DATES`]).
//! * **Absent values.** Output omits empty strings, zero timestamps and
//!   unset messages (AWS omits absent members, and SDKs read an absent
//!   member as `None`); lists, maps, numbers and booleans are always
//!   written, as Cognito writes `ChallengeParameters: {}`.
//! * **Documents.** A member that holds any JSON (a branding's
//!   `Settings`) is a string field named `*_document`: its input is kept
//!   as JSON text, its output parsed back.

use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, ReflectMessage as _, Value};
use serde_json::{Map, Number, Value as Json};

/// Messages whose `*_date` fields hold Unix milliseconds (the user-pool
/// directory); every other timestamp in the protos is in seconds.
pub const MILLISECOND_DATES: &[&str] = &[
    "tessera.v1.UserPoolType",
    "tessera.v1.UserPoolClientType",
    "tessera.v1.UserType",
    "tessera.v1.AdminGetUserResponse",
    "tessera.v1.GroupType",
    "tessera.v1.AuthEventType",
    "tessera.v1.DeviceType",
    "tessera.v1.SyncDataset",
    "tessera.v1.SyncRecord",
    "tessera.v1.RecordPatch",
    "tessera.v1.DescribeIdentityUsageResponse",
    "tessera.v1.ManagedLoginBrandingType",
    "tessera.v1.UICustomizationType",
];

/// A body member that does not fit its field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The member's path, `AuthParameters.USERNAME` or `UserAttributes[2].Name`.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// The Cognito name of `field`.
pub fn cognito_name(field: &FieldDescriptor) -> String {
    let json = field.json_name();
    let mut chars = json.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// Case- and underscore-blind form of a name, for matching input members.
fn folded(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn is_timestamp(field: &FieldDescriptor) -> bool {
    let name = field.name();
    matches!(field.kind(), Kind::Int64) && (name.ends_with("_date") || name == "expiration")
}

/// A JSON document member (Cognito's `Settings` of a branding): carried
/// in a string field named `*_document`, since protobuf has no type for
/// an arbitrary document. Input of any JSON shape is kept as its text;
/// output is the text parsed back.
fn is_document(field: &FieldDescriptor) -> bool {
    matches!(field.kind(), Kind::String) && field.name().ends_with("_document")
}

fn in_millis(field: &FieldDescriptor) -> bool {
    MILLISECOND_DATES.contains(&field.parent_message().full_name())
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// Reads a JSON object (`body`) as a message of type `desc`.
pub fn from_json(desc: &MessageDescriptor, body: &Json) -> Result<DynamicMessage, FieldError> {
    message_from(desc, body, "")
}

// The walk needs no depth bound of its own: it follows the descriptors,
// none of which is recursive, and never descends into members it ignores;
// serde_json already refused bodies nested deeper than 128 levels.
fn message_from(desc: &MessageDescriptor, v: &Json, path: &str) -> Result<DynamicMessage, FieldError> {
    let Json::Object(members) = v else {
        return Err(type_error(path, "a JSON object", v));
    };
    let mut msg = DynamicMessage::new(desc.clone());
    if members.is_empty() {
        return Ok(msg);
    }
    // A member matches the field's name or its json_name (`Settings` is
    // the json_name of `settings_document`).
    let fields: Vec<(String, FieldDescriptor)> = desc
        .fields()
        .flat_map(|f| [(folded(f.name()), f.clone()), (folded(f.json_name()), f)])
        .collect();
    for (name, value) in members {
        if value.is_null() {
            continue;
        }
        let key = folded(name);
        let Some((_, field)) = fields.iter().find(|(k, _)| *k == key) else {
            tracing::debug!(member = %join(path, name), "ignoring a member Tessera does not implement");
            continue;
        };
        let member_path = join(path, name);
        let converted = field_from(field, value, &member_path)?;
        msg.set_field(field, converted);
    }
    Ok(msg)
}

fn field_from(field: &FieldDescriptor, v: &Json, path: &str) -> Result<Value, FieldError> {
    if field.is_map() {
        let Json::Object(entries) = v else {
            return Err(type_error(path, "a JSON object", v));
        };
        let Kind::Message(entry) = field.kind() else {
            return Err(internal(path));
        };
        let value_field = entry.map_entry_value_field();
        let mut map = Vec::with_capacity(entries.len());
        for (k, item) in entries {
            let item_path = join(path, k);
            map.push((MapKey::String(k.clone()), single_from(&value_field, item, &item_path)?));
        }
        return Ok(Value::Map(map.into_iter().collect()));
    }
    if field.is_list() {
        let Json::Array(items) = v else {
            return Err(type_error(path, "a JSON array", v));
        };
        let mut list = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            list.push(single_from(field, item, &format!("{path}[{i}]"))?);
        }
        return Ok(Value::List(list));
    }
    single_from(field, v, path)
}

fn single_from(field: &FieldDescriptor, v: &Json, path: &str) -> Result<Value, FieldError> {
    if is_timestamp(field) {
        let Some(seconds) = v.as_f64().filter(|s| s.is_finite()) else {
            return Err(type_error(path, "a timestamp in epoch seconds", v));
        };
        let scaled = if in_millis(field) { seconds * 1000.0 } else { seconds };
        // Saturating float-to-int conversion: an absurd date is clamped,
        // not wrapped.
        return Ok(Value::I64(scaled as i64));
    }
    if is_document(field) {
        return Ok(Value::String(v.to_string()));
    }
    let err = |what: &str| type_error(path, what, v);
    Ok(match field.kind() {
        Kind::String => Value::String(v.as_str().ok_or_else(|| err("a string"))?.to_string()),
        Kind::Bool => Value::Bool(v.as_bool().ok_or_else(|| err("a boolean"))?),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(
            v.as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(|| err("a 32-bit integer"))?,
        ),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(v.as_i64().ok_or_else(|| err("an integer"))?),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| err("a non-negative 32-bit integer"))?,
        ),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(v.as_u64().ok_or_else(|| err("a non-negative integer"))?),
        Kind::Double => Value::F64(v.as_f64().ok_or_else(|| err("a number"))?),
        Kind::Float => Value::F32(v.as_f64().ok_or_else(|| err("a number"))? as f32),
        Kind::Bytes => {
            use base64::Engine as _;
            let text = v.as_str().ok_or_else(|| err("a base64 string"))?;
            Value::Bytes(
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|_| err("a base64 string"))?
                    .into(),
            )
        }
        Kind::Enum(e) => match v {
            Json::String(s) => {
                Value::EnumNumber(e.get_value_by_name(s).map(|ev| ev.number()).ok_or_else(|| FieldError {
                    path: path.to_string(),
                    message: format!("'{s}' is not one of the allowed values"),
                })?)
            }
            _ => return Err(err("a string")),
        },
        Kind::Message(desc) => Value::Message(message_from(&desc, v, path)?),
    })
}

fn type_error(path: &str, expected: &str, got: &Json) -> FieldError {
    let got = match got {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    };
    FieldError {
        path: path.to_string(),
        message: format!("expected {expected}, got {got}"),
    }
}

fn internal(path: &str) -> FieldError {
    FieldError {
        path: path.to_string(),
        message: "this member's type is not supported".into(),
    }
}

/// Writes `msg` as Cognito's JSON object.
pub fn to_json(msg: &DynamicMessage) -> Json {
    let mut out = Map::new();
    for field in msg.descriptor().fields() {
        let name = cognito_name(&field);
        if field.is_map() || field.is_list() {
            out.insert(name, value_to_json(&field, &msg.get_field(&field)));
            continue;
        }
        if matches!(field.kind(), Kind::Message(_)) && !msg.has_field(&field) {
            continue;
        }
        let value = msg.get_field(&field);
        match &*value {
            Value::String(s) if s.is_empty() && !msg.has_field(&field) => continue,
            Value::I64(0) if is_timestamp(&field) => continue,
            _ => {}
        }
        if is_document(&field) {
            if let Value::String(text) = &*value {
                out.insert(name, serde_json::from_str(text).unwrap_or(Json::Null));
                continue;
            }
        }
        out.insert(name, single_to_json(&field, &value));
    }
    Json::Object(out)
}

fn value_to_json(field: &FieldDescriptor, v: &Value) -> Json {
    match v {
        Value::List(items) => Json::Array(items.iter().map(|i| single_to_json(field, i)).collect()),
        Value::Map(entries) => {
            let value_field = match field.kind() {
                Kind::Message(entry) => entry.map_entry_value_field(),
                _ => return Json::Object(Map::new()),
            };
            // A BTreeMap-backed serde_json Map sorts the keys, so the
            // output does not depend on the hash map's order.
            let mut obj = Map::new();
            for (k, item) in entries {
                let key = match k {
                    MapKey::String(s) => s.clone(),
                    MapKey::Bool(b) => b.to_string(),
                    MapKey::I32(n) => n.to_string(),
                    MapKey::I64(n) => n.to_string(),
                    MapKey::U32(n) => n.to_string(),
                    MapKey::U64(n) => n.to_string(),
                };
                obj.insert(key, single_to_json(&value_field, item));
            }
            Json::Object(obj)
        }
        other => single_to_json(field, other),
    }
}

fn single_to_json(field: &FieldDescriptor, v: &Value) -> Json {
    match v {
        Value::I64(n) if is_timestamp(field) => {
            let seconds = if in_millis(field) {
                *n as f64 / 1000.0
            } else {
                *n as f64
            };
            Number::from_f64(seconds).map(Json::Number).unwrap_or(Json::Null)
        }
        Value::Bool(b) => Json::Bool(*b),
        Value::I32(n) => Json::from(*n),
        Value::I64(n) => Json::from(*n),
        Value::U32(n) => Json::from(*n),
        Value::U64(n) => Json::from(*n),
        Value::F32(n) => Number::from_f64(f64::from(*n)).map(Json::Number).unwrap_or(Json::Null),
        Value::F64(n) => Number::from_f64(*n).map(Json::Number).unwrap_or(Json::Null),
        Value::String(s) => Json::String(s.clone()),
        Value::Bytes(b) => {
            use base64::Engine as _;
            Json::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        Value::EnumNumber(n) => match field.kind() {
            Kind::Enum(e) => e
                .get_value(*n)
                .map(|ev| Json::String(ev.name().to_string()))
                .unwrap_or_else(|| Json::from(*n)),
            _ => Json::from(*n),
        },
        Value::Message(m) => to_json(m),
        Value::List(_) | Value::Map(_) => value_to_json(field, v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pool() -> prost_reflect::DescriptorPool {
        prost_reflect::DescriptorPool::decode(crate::proto::FILE_DESCRIPTOR_SET).unwrap()
    }

    fn desc(name: &str) -> MessageDescriptor {
        pool().get_message_by_name(name).unwrap()
    }

    #[test]
    fn millisecond_messages_exist_and_hold_dates() {
        let pool = pool();
        for name in MILLISECOND_DATES {
            let d = pool
                .get_message_by_name(name)
                .unwrap_or_else(|| panic!("{name} is not a message"));
            assert!(d.fields().any(|f| is_timestamp(&f)), "{name} has no *_date field");
        }
    }

    #[test]
    fn initiate_auth_round_trips_with_cognito_names() {
        let d = desc("tessera.v1.InitiateAuthRequest");
        let body = json!({
            "AuthFlow": "USER_PASSWORD_AUTH",
            "ClientId": "abc",
            "AuthParameters": {"USERNAME": "ann", "PASSWORD": "pw"},
            "AnalyticsMetadata": {"AnalyticsEndpointId": "ignored"},
        });
        let msg = from_json(&d, &body).unwrap();
        let out = to_json(&msg);
        assert_eq!(out["AuthFlow"], "USER_PASSWORD_AUTH");
        assert_eq!(out["ClientId"], "abc");
        assert_eq!(out["AuthParameters"]["PASSWORD"], "pw");
        assert!(out.get("AnalyticsMetadata").is_none());
    }

    #[test]
    fn wrong_types_name_the_member() {
        let d = desc("tessera.v1.SignUpRequest");
        let e = from_json(&d, &json!({"ClientId": 5})).unwrap_err();
        assert_eq!(e.path, "ClientId");
        assert!(e.message.contains("expected a string"), "{e}");
        let e = from_json(&d, &json!({"UserAttributes": [{"Name": "email", "Value": ["x"]}]})).unwrap_err();
        assert_eq!(e.path, "UserAttributes[0].Value");
        let e = from_json(&d, &json!([1, 2])).unwrap_err();
        assert!(e.message.contains("expected a JSON object"), "{e}");
    }

    #[test]
    fn user_pool_dates_are_seconds_on_the_wire() {
        let d = desc("tessera.v1.UserType");
        let mut msg = DynamicMessage::new(d.clone());
        msg.set_field_by_name("user_create_date", Value::I64(1_700_000_000_123));
        msg.set_field_by_name("username", Value::String("ann".into()));
        let out = to_json(&msg);
        assert_eq!(out["UserCreateDate"].as_f64(), Some(1_700_000_000.123));
        assert!(
            out.get("UserLastModifiedDate").is_none(),
            "zero dates are omitted: {out}"
        );
        let back = from_json(&d, &out).unwrap();
        assert_eq!(
            back.get_field_by_name("user_create_date").unwrap().as_i64(),
            Some(1_700_000_000_123)
        );
    }
}
