//! The chaos harness behind `tessera chaos` (being written).

pub mod history;
