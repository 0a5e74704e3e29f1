//! One `Action` or `Resource` pattern: parsed once into segments when the
//! policy is written, matched against a request without allocating.
//!
//! Owns the wildcard and variable grammar (`*`, `?`, `${identity.id}`,
//! `${user.sub}`, `${user.username}`, and the escapes `${*}`, `${?}`,
//! `${$}`) and the glob matcher. It must never let a substituted value act
//! as a wildcard: a variable is a literal run of the context's value, so an
//! identity id or username containing `*` cannot widen the pattern.

use super::{PolicyContext, MAX_PATTERN_BYTES};

/// A policy variable, replaced at evaluation by a value of the caller's
/// [`PolicyContext`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Variable {
    /// `${identity.id}`: the identity-pool identity.
    IdentityId,
    /// `${user.sub}`: the user pool `sub`; absent for guests.
    UserSub,
    /// `${user.username}`: the user pool username; absent for guests.
    Username,
}

impl Variable {
    /// The value to substitute, or `None` when the context has none.
    ///
    /// An empty value counts as absent: no real identity id, sub or
    /// username is empty, and substituting "" would turn
    /// `data/${identity.id}*` into `data/*`, every identity's data.
    fn value<'c>(self, ctx: &PolicyContext<'c>) -> Option<&'c str> {
        let value = match self {
            Variable::IdentityId => Some(ctx.identity_id),
            Variable::UserSub => ctx.user_sub,
            Variable::Username => ctx.username,
        };
        value.filter(|v| !v.is_empty())
    }
}

/// A piece of a parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Segment {
    /// Text that must appear as is (escapes already resolved).
    Literal(Box<str>),
    /// `*`: any run of characters, empty included, `/` included.
    /// Consecutive stars are folded into one when parsing.
    Star,
    /// `?`: exactly one character (one Unicode scalar, not one byte).
    One,
    /// A variable: a literal run of the context's value.
    Var(Variable),
}

/// A validated `Action` or `Resource` pattern: the text as written, and its
/// segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    segments: Vec<Segment>,
}

impl Pattern {
    /// Parses `text`. `variables` is whether the document's Version honours
    /// `${...}` (only 2012-10-17 does). The error is the reason alone; the
    /// caller adds the path (`Statement[2].Resource[0]`).
    pub(super) fn parse(text: &str, variables: bool) -> Result<Pattern, String> {
        if text.is_empty() {
            return Err("empty pattern; use * to match anything".into());
        }
        if text.len() > MAX_PATTERN_BYTES {
            return Err(format!(
                "pattern is {} bytes; at most {MAX_PATTERN_BYTES} are allowed",
                text.len()
            ));
        }
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut pos = 0;
        while let Some(c) = text.get(pos..).and_then(|rest| rest.chars().next()) {
            match c {
                '*' => {
                    flush(&mut literal, &mut segments);
                    if segments.last() != Some(&Segment::Star) {
                        segments.push(Segment::Star);
                    }
                    pos += 1;
                }
                '?' => {
                    flush(&mut literal, &mut segments);
                    segments.push(Segment::One);
                    pos += 1;
                }
                '$' if text.get(pos + 1..).is_some_and(|rest| rest.starts_with('{')) => {
                    let body = text.get(pos + 2..).unwrap_or_default();
                    let Some(len) = body.find('}') else {
                        return Err(format!("unterminated ${{ at byte {pos}; a variable ends with }}"));
                    };
                    let name = body.get(..len).unwrap_or_default();
                    if !variables {
                        return Err(format!(
                            "${{{name}}} needs \"Version\": \"2012-10-17\"; under 2008-10-17 (also the default \
                             when Version is absent) IAM reads variables as literal text, which Tessera refuses \
                             rather than silently never match"
                        ));
                    }
                    match name {
                        "*" | "?" | "$" => literal.push_str(name),
                        "identity.id" | "user.sub" | "user.username" => {
                            flush(&mut literal, &mut segments);
                            segments.push(Segment::Var(match name {
                                "identity.id" => Variable::IdentityId,
                                "user.sub" => Variable::UserSub,
                                _ => Variable::Username,
                            }));
                        }
                        _ => {
                            return Err(format!(
                            "unknown variable ${{{name}}}; use ${{identity.id}}, ${{user.sub}} or ${{user.username}}"
                        ))
                        }
                    }
                    pos += 2 + len + 1;
                }
                c => {
                    literal.push(c);
                    pos += c.len_utf8();
                }
            }
        }
        flush(&mut literal, &mut segments);
        Ok(Pattern {
            text: text.to_owned(),
            segments,
        })
    }

    /// The pattern as written in the document.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parsed segments, for compiling.
    pub(super) fn segments(&self) -> &[Segment] {
        &self.segments
    }
}

fn flush(literal: &mut String, segments: &mut Vec<Segment>) {
    if !literal.is_empty() {
        segments.push(Segment::Literal(std::mem::take(literal).into_boxed_str()));
    }
}

/// A pattern compiled for matching. The common shapes (`*`, plain text,
/// `prefix*`) skip the general matcher.
#[derive(Debug, Clone)]
pub(super) enum Matcher {
    /// `*`: matches everything.
    Any,
    /// No wildcard and no variable.
    Exact(Box<str>),
    /// Text then one trailing `*`, no variable.
    Prefix(Box<str>),
    /// Anything else.
    Glob(Box<[Segment]>),
}

impl Matcher {
    pub(super) fn new(pattern: &Pattern) -> Matcher {
        match pattern.segments() {
            [Segment::Star] => Matcher::Any,
            [Segment::Literal(text)] => Matcher::Exact(text.clone()),
            [Segment::Literal(text), Segment::Star] => Matcher::Prefix(text.clone()),
            segments => Matcher::Glob(segments.into()),
        }
    }

    /// Whether `input` matches. `fold_case` compares ASCII letters without
    /// regard to case (actions, as IAM); other characters compare exactly.
    #[inline]
    pub(super) fn matches(&self, input: &str, fold_case: bool, ctx: &PolicyContext<'_>) -> bool {
        let input = input.as_bytes();
        match self {
            Matcher::Any => true,
            Matcher::Exact(text) => input.len() == text.len() && same(input, text.as_bytes(), fold_case),
            Matcher::Prefix(text) => input
                .get(..text.len())
                .is_some_and(|head| same(head, text.as_bytes(), fold_case)),
            Matcher::Glob(segments) => glob(segments, input, fold_case, ctx),
        }
    }
}

#[inline]
fn same(a: &[u8], b: &[u8], fold_case: bool) -> bool {
    if fold_case {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

/// Whether `text` occurs in `input` at byte `at`.
#[inline]
fn literal_at(input: &[u8], at: usize, text: &[u8], fold_case: bool) -> bool {
    input
        .get(at..at + text.len())
        .is_some_and(|window| same(window, text, fold_case))
}

/// Length of the UTF-8 character that starts with `lead`. `input` comes
/// from a `&str` and positions only ever land on character boundaries, so
/// `lead` is always a leading byte.
#[inline]
fn char_len(lead: u8) -> usize {
    match lead {
        0x00..=0x7f => 1,
        0xf0..=0xff => 4,
        0xe0..=0xef => 3,
        _ => 2,
    }
}

/// The wildcard matcher: greedy left to right, and on a mismatch only the
/// most recent `*` takes one more character. Earlier stars never need to
/// be revisited (whatever a later star can absorb it absorbs), so the cost
/// is O(pattern × input) at worst with no recursion and no allocation.
fn glob(segments: &[Segment], input: &[u8], fold_case: bool, ctx: &PolicyContext<'_>) -> bool {
    let mut seg = 0;
    let mut at = 0;
    // (segment after the last star, input position that star has absorbed up to)
    let mut star: Option<(usize, usize)> = None;
    loop {
        let advanced = match segments.get(seg) {
            Some(Segment::Star) => {
                if seg + 1 == segments.len() {
                    return true;
                }
                seg += 1;
                star = Some((seg, at));
                continue;
            }
            Some(Segment::One) => match input.get(at) {
                Some(&lead) => {
                    at += char_len(lead);
                    seg += 1;
                    true
                }
                None => false,
            },
            Some(Segment::Literal(text)) => {
                let ok = literal_at(input, at, text.as_bytes(), fold_case);
                if ok {
                    at += text.len();
                    seg += 1;
                }
                ok
            }
            Some(Segment::Var(var)) => {
                // An absent value makes the whole pattern not match (as IAM).
                let Some(value) = var.value(ctx) else {
                    return false;
                };
                let ok = literal_at(input, at, value.as_bytes(), fold_case);
                if ok {
                    at += value.len();
                    seg += 1;
                }
                ok
            }
            None => at == input.len(),
        };
        if advanced {
            if seg == segments.len() && at == input.len() {
                return true;
            }
            continue;
        }
        match star {
            Some((after, absorbed)) if absorbed < input.len() => {
                let next = absorbed + input.get(absorbed).map_or(1, |&lead| char_len(lead));
                star = Some((after, next));
                seg = after;
                at = next;
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CTX: PolicyContext<'static> = PolicyContext {
        identity_id: "eu-west-1:abc",
        user_sub: Some("sub-1"),
        username: None,
    };

    fn m(pattern: &str, input: &str) -> bool {
        let p = Pattern::parse(pattern, true).unwrap();
        Matcher::new(&p).matches(input, false, &CTX)
    }

    fn m_ci(pattern: &str, input: &str) -> bool {
        let p = Pattern::parse(pattern, true).unwrap();
        Matcher::new(&p).matches(input, true, &CTX)
    }

    #[test]
    fn star_edge_cases() {
        assert!(m("*", ""));
        assert!(m("*", "anything/at/all"));
        assert!(m("a*", "a"));
        assert!(m("a*", "a/b/c"));
        assert!(!m("a*", "ba"));
        assert!(m("*a", "a"));
        assert!(m("a*b*c", "abc"));
        assert!(m("a*b*c", "axxbyyc"));
        assert!(m("a*b*c", "abcbc"), "backtracking past an early b and c");
        assert!(m("a*b*c", "abbbcbc"));
        assert!(!m("a*b*c", "abcb"));
        assert!(!m("a*b*c", "acb"));
        assert!(m("a**b", "ab"));
        assert!(m("a***b", "a/x/b"));
        assert!(m("**", ""));
        assert_eq!(Pattern::parse("a**b", true).unwrap().segments().len(), 3);
        assert!(m("*/*", "/"));
        assert!(!m("*/*", "ab"));
    }

    #[test]
    fn question_mark_is_one_character() {
        assert!(!m("?", ""));
        assert!(m("?", "a"));
        assert!(!m("?", "ab"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("?", "é"), "é is two bytes but one character");
        assert!(m("?", "€"), "three bytes");
        assert!(m("?", "𝄞"), "four bytes");
        assert!(!m("??", "é"));
        assert!(m("x?y", "xéy"));
        assert!(m("*?", "é"));
        assert!(m("*é", "aé"));
        assert!(!m("a?", "a"));
        assert!(m("?*?", "ab"));
        assert!(!m("?*?", "é"));
    }

    #[test]
    fn case_folding_is_only_for_actions_and_only_ascii() {
        assert!(m_ci("s3:GetObject", "S3:GETOBJECT"));
        assert!(m_ci("s3:get*", "S3:GetObject"));
        assert!(m_ci("s3:*OBJECT", "s3:getobject"));
        assert!(!m("Data/*", "data/x"));
        assert!(m("Data/*", "Data/x"));
        assert!(!m_ci("é", "É"), "non-ASCII compares exactly");
    }

    #[test]
    fn variables_are_literal_runs() {
        assert!(m("data/${identity.id}/*", "data/eu-west-1:abc/x"));
        assert!(!m("data/${identity.id}/*", "data/eu-west-1:abd/x"));
        assert!(!m("u/${user.username}", "u/"), "absent value: no match");
        assert!(!m("*${user.username}*", "anything"));
        assert!(m("${*}${?}${$}", "*?$"));
        assert!(!m("${*}", "x"));
        assert!(m("a$b", "a$b"), "a $ not followed by {{ is literal");
        assert!(m("a$", "a$"));
    }

    #[test]
    fn values_with_wildcards_do_not_widen() {
        let ctx = PolicyContext {
            identity_id: "*",
            user_sub: Some("?"),
            username: Some("a*"),
        };
        let check = |pattern: &str, input: &str| {
            let p = Pattern::parse(pattern, true).unwrap();
            Matcher::new(&p).matches(input, false, &ctx)
        };
        assert!(check("data/${identity.id}/*", "data/*/x"));
        assert!(!check("data/${identity.id}/*", "data/other/x"));
        assert!(check("s/${user.sub}", "s/?"));
        assert!(!check("s/${user.sub}", "s/x"));
        assert!(!check("u/${user.username}", "u/abc"));
        assert!(check("u/${user.username}", "u/a*"));
    }

    #[test]
    fn empty_value_is_absent() {
        let ctx = PolicyContext {
            identity_id: "",
            user_sub: Some(""),
            username: None,
        };
        let p = Pattern::parse("data/${identity.id}*", true).unwrap();
        assert!(!Matcher::new(&p).matches("data/someone-else", false, &ctx));
    }

    #[test]
    fn parse_errors_name_the_problem() {
        assert_eq!(
            Pattern::parse("x/${user.email}", true).unwrap_err(),
            "unknown variable ${user.email}; use ${identity.id}, ${user.sub} or ${user.username}"
        );
        assert!(Pattern::parse("x/${identity.id", true)
            .unwrap_err()
            .starts_with("unterminated ${ at byte 2"));
        assert!(Pattern::parse("x/${identity.id}", false)
            .unwrap_err()
            .contains("needs \"Version\": \"2012-10-17\""));
        assert!(Pattern::parse("", true).unwrap_err().contains("empty pattern"));
        let long = "a".repeat(MAX_PATTERN_BYTES + 1);
        assert!(Pattern::parse(&long, true).unwrap_err().contains("at most 2048"));
        assert!(Pattern::parse(&long[1..], true).is_ok());
        assert!(Pattern::parse("${}", true)
            .unwrap_err()
            .contains("unknown variable ${}"));
        // Under 2008 a lone $ and the wildcards still work.
        assert!(Pattern::parse("a$b*?", false).is_ok());
    }

    /// The reference: a naive recursive matcher over characters.
    fn reference(pattern: &[char], input: &[char], fold: bool) -> bool {
        match pattern.split_first() {
            None => input.is_empty(),
            Some(('*', rest)) => (0..=input.len()).any(|skip| reference(rest, &input[skip..], fold)),
            Some(('?', rest)) => !input.is_empty() && reference(rest, &input[1..], fold),
            Some((c, rest)) => match input.split_first() {
                Some((d, tail)) => {
                    (if fold { c.eq_ignore_ascii_case(d) } else { c == d }) && reference(rest, tail, fold)
                }
                None => false,
            },
        }
    }

    proptest! {
        #[test]
        fn glob_agrees_with_reference(
            pattern in "[aAb/é€*?]{0,10}",
            input in "[aAb/é€]{0,12}",
            fold in any::<bool>(),
        ) {
            let pc: Vec<char> = pattern.chars().collect();
            let ic: Vec<char> = input.chars().collect();
            let expected = reference(&pc, &ic, fold);
            if pattern.is_empty() {
                // Refused when written; check the matcher alone.
                prop_assert_eq!(glob(&[], input.as_bytes(), fold, &CTX), expected);
            } else {
                let p = Pattern::parse(&pattern, true).unwrap();
                prop_assert_eq!(Matcher::new(&p).matches(&input, fold, &CTX), expected);
                // The general matcher too, whatever fast path the pattern took.
                prop_assert_eq!(glob(p.segments(), input.as_bytes(), fold, &CTX), expected);
            }
        }

        #[test]
        fn variable_matches_like_its_escaped_value(
            value in "[ab*?é]{1,4}",
            prefix in "[ab*]{0,3}",
            input in "[ab*?é]{0,8}",
        ) {
            // ${identity.id} with value v behaves exactly like v written with
            // every * and ? escaped.
            let escaped: String = value
                .chars()
                .map(|c| match c { '*' => "${*}".to_string(), '?' => "${?}".to_string(), c => c.to_string() })
                .collect();
            let ctx = PolicyContext { identity_id: &value, user_sub: None, username: None };
            let with_var = Pattern::parse(&format!("{prefix}${{identity.id}}"), true).unwrap();
            let with_text = Pattern::parse(&format!("{prefix}{escaped}"), true).unwrap();
            prop_assert_eq!(
                Matcher::new(&with_var).matches(&input, false, &ctx),
                Matcher::new(&with_text).matches(&input, false, &ctx)
            );
        }
    }
}
