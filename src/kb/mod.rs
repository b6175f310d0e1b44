//! The knowledge base. Its document side: `walk` finds the files, `loaders` turn each into a
//! `Document` of sections, `chunker` cuts sections into chunks for retrieval, `embedder` turns
//! chunks and questions into vectors. Its storage: `store` (SQLite with FTS5), `vectors`
//! (usearch) and `layout` (the folder, generations, lock). `ingest` runs the pipeline into a new
//! generation. Reading: `search` (BM25, vector, hybrid).

pub mod chunker;
pub mod document;
pub mod embedder;
pub mod error;
pub mod ingest;
pub mod layout;
pub mod loaders;
pub mod minilm;
pub mod search;
pub mod store;
pub mod vectors;
pub mod walk;

pub use chunker::{chunk_document, Chunk, ChunkOptions, TokenCounter, WordEstimate};
pub use document::{Document, Format, Section};
pub use embedder::{EmbedError, Embedder, EmbedderTokens};
pub use error::{KbError, SkipReason, Skipped};
pub use ingest::{ingest, IngestOptions, IngestProgress, IngestReport, NoProgress, Stage};
pub use layout::{validate_name, Generation, KbDir, KbWriter, Manifest};
pub use loaders::{load_all, load_file, Loaded};
pub use search::{Hit, Mode, Searcher};
pub use store::{DocumentRecord, Store, StoredChunk};
pub use vectors::VectorIndex;
pub use walk::{walk, SourceFile, WalkOptions, Walked};
