//! The knowledge base. So far its document side: documents and the reasons files are skipped.

pub mod document;
pub mod error;

pub use document::{Document, Format, Section};
pub use error::{KbError, SkipReason, Skipped};
