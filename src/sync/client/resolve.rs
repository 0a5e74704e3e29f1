//! Conflict resolution: what a device does when the server refuses one of
//! its writes because another device changed a record first.
//!
//! The server decides conflicts (a patch whose `sync_count` is behind the
//! stored record's), writes nothing, and sends back the current records.
//! The client then asks its [`Resolver`] what to write instead. The default,
//! [`LastWriterWins`], is Cognito Sync's: the device's values are written
//! again over the server's sync counts, so the write that reaches the
//! server last stands. An application that must not lose the other
//! device's value uses [`ServerWins`] or its own resolver.
//!
//! A resolver runs on the client's background task, with no lock held: it
//! may read the client, but must return promptly (it holds up the
//! session's other frames while it runs).

use crate::model::sync::Record;

/// A local write's id: the order in which the device queued it.
pub type WriteId = u64;

/// One change a device asks for: `value: None` removes the record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Patch {
    /// The record's key.
    pub key: String,
    /// The new value, or `None` to remove the record.
    pub value: Option<String>,
}

impl Patch {
    /// Sets `key` to `value`.
    pub fn replace(key: impl Into<String>, value: impl Into<String>) -> Self {
        Patch {
            key: key.into(),
            value: Some(value.into()),
        }
    }

    /// Removes `key`.
    pub fn remove(key: impl Into<String>) -> Self {
        Patch {
            key: key.into(),
            value: None,
        }
    }
}

/// A write the server refused because records moved on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The local write.
    pub write_id: WriteId,
    /// Its dataset.
    pub dataset: String,
    /// The write's patches, as the device sent them.
    pub local: Vec<Patch>,
    /// The current records (with their values and sync counts) of the keys
    /// that conflicted; keys of the write not named here did not conflict.
    pub remote: Vec<Record>,
    /// The dataset's sync count now.
    pub dataset_sync_count: u64,
    /// How many times this write has already been resolved (0 the first
    /// time); a write still in conflict after
    /// [`MAX_RESOLUTIONS`](super::MAX_RESOLUTIONS) rounds fails.
    pub attempt: u32,
}

impl Conflict {
    /// The remote record of `key`, if that key conflicted.
    pub fn remote(&self, key: &str) -> Option<&Record> {
        self.remote.iter().find(|r| r.key == key)
    }
}

/// What to do with a conflicting write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Last writer wins: write every local patch again, over the server's
    /// sync counts.
    KeepLocal,
    /// The server's values stand for the conflicting keys: those patches
    /// are dropped, the write's other patches are sent again (if none is
    /// left, the write ends as [`WriteOutcome::Discarded`](super::WriteOutcome)).
    KeepRemote,
    /// Write these patches instead (for example a merge of both values),
    /// over the server's sync counts; an empty list drops the write.
    Replace(Vec<Patch>),
}

impl Resolution {
    /// A short name, for events and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Resolution::KeepLocal => "keep-local",
            Resolution::KeepRemote => "keep-remote",
            Resolution::Replace(_) => "replace",
        }
    }
}

/// Decides conflicts for a client.
///
/// Called once per refused write, on the client's background task. What it
/// returns is applied at once and sent; the application is told through
/// [`Event::Conflict`](super::Event) either way.
pub trait Resolver: Send + Sync + 'static {
    /// How to resolve `conflict`.
    fn resolve(&self, conflict: &Conflict) -> Resolution;
}

/// Cognito's default: the device's own values are written again, so the
/// last writer wins.
#[derive(Debug, Clone, Copy, Default)]
pub struct LastWriterWins;

impl Resolver for LastWriterWins {
    fn resolve(&self, _conflict: &Conflict) -> Resolution {
        Resolution::KeepLocal
    }
}

/// The server's value stands: the device gives up its conflicting patches.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerWins;

impl Resolver for ServerWins {
    fn resolve(&self, _conflict: &Conflict) -> Resolution {
        Resolution::KeepRemote
    }
}

/// Any `Fn(&Conflict) -> Resolution` is a resolver.
impl<F> Resolver for F
where
    F: Fn(&Conflict) -> Resolution + Send + Sync + 'static,
{
    fn resolve(&self, conflict: &Conflict) -> Resolution {
        self(conflict)
    }
}
