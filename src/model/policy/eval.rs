//! The compiled form of a document and its evaluation: the hot path of
//! `Authorize` and of resource servers checking credentials offline.
//!
//! Evaluation allocates nothing and reads no clock; its cost is bounded by
//! the document's size limits and [`MAX_REQUEST_BYTES`].

use super::pattern::{Matcher, Pattern};
use super::{Effect, PolicyContext, PolicyDocument, Statement, MAX_REQUEST_BYTES};

/// A policy document compiled for evaluation: Deny statements apart from
/// Allow statements (a Deny found first ends the search), and every
/// pattern turned into a [`Matcher`]. Built once with
/// [`PolicyDocument::compile`]; immutable, so it can be shared between
/// threads.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    /// Deny statements, in document order.
    denies: Vec<CompiledStatement>,
    /// Allow statements, in document order.
    allows: Vec<CompiledStatement>,
}

#[derive(Debug, Clone)]
struct CompiledStatement {
    index: usize,
    sid: Option<Box<str>>,
    actions: Box<[Matcher]>,
    resources: Box<[Matcher]>,
}

impl CompiledStatement {
    fn new(index: usize, statement: &Statement) -> CompiledStatement {
        CompiledStatement {
            index,
            sid: statement.sid.as_deref().map(Into::into),
            actions: matchers(&statement.actions),
            resources: matchers(&statement.resources),
        }
    }

    #[inline]
    fn matches(&self, action: &str, resource: &str, ctx: &PolicyContext<'_>) -> bool {
        self.actions.iter().any(|m| m.matches(action, true, ctx))
            && self.resources.iter().any(|m| m.matches(resource, false, ctx))
    }

    fn decided(&self) -> Option<DecidingStatement<'_>> {
        Some(DecidingStatement {
            index: self.index,
            sid: self.sid.as_deref(),
        })
    }
}

/// A list with a `*` in it is just `*`.
fn matchers(patterns: &[Pattern]) -> Box<[Matcher]> {
    let all: Vec<Matcher> = patterns.iter().map(Matcher::new).collect();
    if all.iter().any(|m| matches!(m, Matcher::Any)) {
        Box::new([Matcher::Any])
    } else {
        all.into_boxed_slice()
    }
}

impl CompiledPolicy {
    pub(super) fn new(document: &PolicyDocument) -> CompiledPolicy {
        let mut denies = Vec::new();
        let mut allows = Vec::new();
        for (index, statement) in document.statements.iter().enumerate() {
            let compiled = CompiledStatement::new(index, statement);
            match statement.effect {
                Effect::Deny => denies.push(compiled),
                Effect::Allow => allows.push(compiled),
            }
        }
        CompiledPolicy { denies, allows }
    }

    /// Decides whether `action` on `resource` is allowed for the identity
    /// described by `ctx`.
    ///
    /// A statement matches when one of its actions matches `action` (ASCII
    /// case-insensitive) and one of its resources matches `resource`
    /// (exact case). Any matching Deny decides, and the first one in
    /// document order is reported; otherwise the first matching Allow
    /// decides; otherwise the request is denied implicitly, with no
    /// statement. An `action` or `resource` longer than
    /// [`MAX_REQUEST_BYTES`] matches nothing, so it is denied implicitly.
    pub fn evaluate<'p>(&'p self, action: &str, resource: &str, ctx: &PolicyContext<'_>) -> Decision<'p> {
        if action.len() > MAX_REQUEST_BYTES || resource.len() > MAX_REQUEST_BYTES {
            return Decision::IMPLICIT_DENY;
        }
        if let Some(deny) = self.denies.iter().find(|s| s.matches(action, resource, ctx)) {
            return Decision {
                allowed: false,
                statement: deny.decided(),
            };
        }
        match self.allows.iter().find(|s| s.matches(action, resource, ctx)) {
            Some(allow) => Decision {
                allowed: true,
                statement: allow.decided(),
            },
            None => Decision::IMPLICIT_DENY,
        }
    }
}

/// The answer to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'p> {
    /// Whether the request is allowed.
    pub allowed: bool,
    /// The statement that decided: a matching Deny when denied explicitly,
    /// a matching Allow when allowed, `None` when denied implicitly (no
    /// Allow matched).
    pub statement: Option<DecidingStatement<'p>>,
}

impl Decision<'_> {
    /// No statement matched.
    pub const IMPLICIT_DENY: Decision<'static> = Decision {
        allowed: false,
        statement: None,
    };
}

/// Which statement decided. Borrows from the [`CompiledPolicy`], so a
/// decision costs no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecidingStatement<'p> {
    /// Position in the document's `Statement` list, from 0.
    pub index: usize,
    /// The statement's `Sid`, if it has one.
    pub sid: Option<&'p str>,
}
