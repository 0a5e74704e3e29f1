//! Cognito's `ListUsers` filter: `name = "value"` (exact) or
//! `name ^= "prefix"`. Parsing only; which names may be filtered on is the
//! pool's business (see [`indexed_attribute`]).

use super::pool_settings::PoolSettings;

/// Longest filter accepted (Cognito: 256 characters).
pub const MAX_FILTER_CHARS: usize = 256;

/// Attributes every pool indexes for `ListUsers`, besides custom attributes
/// declared indexed. `status` is Cognito's Enabled/Disabled; `enabled` is
/// the same index spelled as true/false.
pub const STANDARD_INDEXED: &[&str] = &[
    "username",
    "email",
    "phone_number",
    "name",
    "given_name",
    "family_name",
    "preferred_username",
    "sub",
    "cognito:user_status",
    "status",
];

/// How a filter compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    /// `attribute = "value"`: exact match.
    Equals,
    /// `attribute ^= "value"`: starts with.
    Prefix,
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFilter {
    /// The attribute compared, as written in the filter.
    pub attribute: String,
    /// How it is compared.
    pub op: FilterOp,
    /// The value compared against (unquoted).
    pub value: String,
    /// 1-based character position of the attribute name, for errors that
    /// are found after parsing (an attribute that is not indexed).
    pub attribute_position: usize,
}

/// A filter that does not parse: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("filter: {message} at position {position}")]
pub struct FilterError {
    /// 1-based character position.
    pub position: usize,
    /// What is wrong there.
    pub message: String,
}

fn err(position: usize, message: impl Into<String>) -> FilterError {
    FilterError {
        position,
        message: message.into(),
    }
}

/// Parses `input`; an empty (or all-blank) filter is `None`.
pub fn parse_filter(input: &str) -> Result<Option<UserFilter>, FilterError> {
    let chars: Vec<char> = input.chars().collect();
    if chars.len() > MAX_FILTER_CHARS {
        return Err(err(
            MAX_FILTER_CHARS + 1,
            format!("longer than {MAX_FILTER_CHARS} characters"),
        ));
    }
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    skip_ws(&mut i);
    if i == chars.len() {
        return Ok(None);
    }
    let name_start = i;
    while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
        i += 1;
    }
    if i == name_start {
        return Err(err(i + 1, format!("expected an attribute name, found {:?}", chars[i])));
    }
    let attribute: String = chars[name_start..i].iter().collect();
    skip_ws(&mut i);
    let op = match (chars.get(i), chars.get(i + 1)) {
        (Some('='), _) => {
            i += 1;
            FilterOp::Equals
        }
        (Some('^'), Some('=')) => {
            i += 2;
            FilterOp::Prefix
        }
        (Some(c), _) => return Err(err(i + 1, format!("expected = or ^=, found {c:?}"))),
        (None, _) => return Err(err(i + 1, "expected = or ^=, found the end of the filter")),
    };
    skip_ws(&mut i);
    match chars.get(i) {
        Some('"') => i += 1,
        Some(c) => return Err(err(i + 1, format!("expected a double-quoted value, found {c:?}"))),
        None => {
            return Err(err(
                i + 1,
                "expected a double-quoted value, found the end of the filter",
            ))
        }
    }
    let open = i;
    let mut value = String::new();
    loop {
        match chars.get(i) {
            None => return Err(err(open, "unterminated string: the closing \" is missing")),
            Some('"') => {
                i += 1;
                break;
            }
            Some('\\') => match chars.get(i + 1) {
                Some(c @ ('"' | '\\')) => {
                    value.push(*c);
                    i += 2;
                }
                _ => return Err(err(i + 1, "only \\\" and \\\\ may be escaped")),
            },
            Some(c) if c.is_control() => return Err(err(i + 1, "control characters are not allowed")),
            Some(c) => {
                value.push(*c);
                i += 1;
            }
        }
    }
    skip_ws(&mut i);
    if i < chars.len() {
        return Err(err(
            i + 1,
            "unexpected text after the value; a filter has one condition",
        ));
    }
    if op == FilterOp::Prefix && value.is_empty() {
        return Err(err(open, "a ^= prefix must not be empty"));
    }
    Ok(Some(UserFilter {
        attribute,
        op,
        value,
        attribute_position: name_start + 1,
    }))
}

/// The index name a filter attribute reads in `settings`' pool, or why it
/// cannot be filtered on. A custom attribute may be named with or without
/// its `custom:` prefix.
pub fn indexed_attribute(settings: &PoolSettings, f: &UserFilter) -> Result<String, FilterError> {
    if f.attribute == "enabled" {
        return Ok("status".into());
    }
    if let Some(name) = STANDARD_INDEXED.iter().find(|n| **n == f.attribute) {
        return Ok(name.to_string());
    }
    let custom = if f.attribute.starts_with("custom:") {
        f.attribute.clone()
    } else {
        format!("custom:{}", f.attribute)
    };
    match settings.schema.get(&custom) {
        Some(s) if s.indexed => Ok(custom),
        Some(_) => Err(err(
            f.attribute_position,
            format!("{custom} is not indexed; declare it indexed when creating the pool to filter on it"),
        )),
        None => Err(err(
            f.attribute_position,
            format!(
                "{:?} cannot be filtered on; use one of {} or an indexed custom attribute",
                f.attribute,
                STANDARD_INDEXED.join(", ")
            ),
        )),
    }
}

/// The value a filter compares against the index: `enabled = "true"` is
/// `status = "enabled"`, and matching ignores case.
pub fn index_value(f: &UserFilter) -> String {
    if f.attribute == "enabled" {
        return match fold_case(&f.value).as_str() {
            "true" => "enabled".into(),
            "false" => "disabled".into(),
            other => other.to_string(),
        };
    }
    fold_case(&f.value)
}

/// Lowercases `value` character by character. Not `str::to_lowercase`,
/// which is context-sensitive (a final `Σ` becomes `ς`, elsewhere `σ`): the
/// prefix "ΟΔΥΣ" would then not be a prefix of "ΟΔΥΣΣΕΥΣ" in the index, and
/// `^=` would miss the user (found by the `user_filter` fuzz target; the
/// input is kept in `fuzz/regressions/user_filter/`). Index keys use the same
/// folding (`store::directory::index_stem`).
pub fn fold_case(value: &str) -> String {
    value.chars().flat_map(char::to_lowercase).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms() {
        let f = parse_filter(r#"email ^= "ann""#).unwrap().unwrap();
        assert_eq!(
            (f.attribute.as_str(), f.op, f.value.as_str()),
            ("email", FilterOp::Prefix, "ann")
        );
        let f = parse_filter(r#"  cognito:user_status="CONFIRMED"  "#).unwrap().unwrap();
        assert_eq!(f.op, FilterOp::Equals);
        assert_eq!(f.attribute_position, 3);
        let f = parse_filter(r#"name = "say \"hi\" \\""#).unwrap().unwrap();
        assert_eq!(f.value, r#"say "hi" \"#);
        assert_eq!(parse_filter("   ").unwrap(), None);
    }

    #[test]
    fn errors_name_the_position() {
        let cases = [
            (r#"email ^= "ann"#, 10, "unterminated"),
            (r#"email ~= "a""#, 7, "expected = or ^="),
            (r#"email = ann"#, 9, "double-quoted"),
            (r#"= "a""#, 1, "attribute name"),
            (r#"email = "a" and"#, 13, "unexpected text"),
            (r#"email ^= """#, 10, "must not be empty"),
            ("email", 6, "end of the filter"),
        ];
        for (input, pos, text) in cases {
            let e = parse_filter(input).unwrap_err();
            assert_eq!(e.position, pos, "{input}: {e}");
            assert!(e.to_string().contains(text), "{input}: {e}");
            assert!(e.to_string().contains(&format!("position {pos}")));
        }
        assert!(parse_filter(&format!("name = \"{}\"", "a".repeat(300))).is_err());
    }

    #[test]
    fn case_folding_keeps_prefixes_prefixes() {
        let f = parse_filter(r#"name ^= "ΟΔΥΣ""#).unwrap().unwrap();
        assert!(fold_case("ΟΔΥΣΣΕΥΣ").starts_with(&index_value(&f)));
        assert_eq!(fold_case("ÄB"), "äb");
    }

    #[test]
    fn only_indexed_attributes_filter() {
        let mut settings = PoolSettings::default();
        let f = |s: &str| parse_filter(s).unwrap().unwrap();
        assert_eq!(
            indexed_attribute(&settings, &f(r#"enabled = "true""#)).unwrap(),
            "status"
        );
        assert_eq!(index_value(&f(r#"enabled = "true""#)), "enabled");
        assert!(indexed_attribute(&settings, &f(r#"locale = "x""#)).is_err());
        let mut tier = settings.schema["name"].clone();
        tier.indexed = false;
        settings.schema.insert("custom:tier".into(), tier.clone());
        let e = indexed_attribute(&settings, &f(r#"tier = "gold""#)).unwrap_err();
        assert!(e.message.contains("not indexed"), "{e}");
        tier.indexed = true;
        settings.schema.insert("custom:tier".into(), tier);
        assert_eq!(
            indexed_attribute(&settings, &f(r#"tier = "gold""#)).unwrap(),
            "custom:tier"
        );
    }
}
