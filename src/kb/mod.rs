//! The knowledge base. So far its document side: `walk` finds the files, `loaders` turn each
//! into a `Document` of sections, `chunker` cuts sections into chunks for retrieval, and
//! `embedder` turns chunks and questions into vectors.

pub mod chunker;
pub mod document;
pub mod embedder;
pub mod error;
pub mod loaders;
pub mod walk;

pub use chunker::{chunk_document, Chunk, ChunkOptions, TokenCounter, WordEstimate};
pub use document::{Document, Format, Section};
pub use embedder::{EmbedError, Embedder, EmbedderTokens};
pub use error::{KbError, SkipReason, Skipped};
pub use loaders::{load_all, load_file, Loaded};
pub use walk::{walk, SourceFile, WalkOptions, Walked};
