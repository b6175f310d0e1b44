//! The knowledge base. So far its document side: `walk` finds the files to ingest.

pub mod document;
pub mod error;
pub mod walk;

pub use document::{Document, Format, Section};
pub use error::{KbError, SkipReason, Skipped};
pub use walk::{walk, SourceFile, WalkOptions, Walked};
