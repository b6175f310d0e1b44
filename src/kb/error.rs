//! Errors of the knowledge base and the reasons a file is skipped during ingest.
//!
//! A `KbError` stops the operation (a path that does not exist, bad settings). A `SkipReason`
//! does not: one unusable file should not stop a folder of good ones, so it is reported beside
//! the documents that did load.

use std::fmt;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum KbError {
    #[error("{path} does not exist — check the path given to ingest")]
    PathNotFound { path: PathBuf },

    #[error("cannot read {path}: {error} — check that it exists and that you may read it")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },

    #[error("invalid chunking settings: {reason}")]
    InvalidChunking { reason: String },

    /// The file is not an SQLite database at all (empty, text, another binary).
    #[error(
        "{path} is not a knowledge-base database ({reason}) — re-ingest into a new --kb name, \
         or delete the knowledge-base folder and ingest again"
    )]
    NotADatabase { path: PathBuf, reason: String },

    /// An SQLite database, but not one of ours, or of a format version this build cannot read.
    #[error(
        "{path} is an SQLite database but not a frontdesk knowledge base ({reason}) — \
         re-ingest into a new --kb name, or delete the knowledge-base folder and ingest again"
    )]
    ForeignDatabase { path: PathBuf, reason: String },

    /// Any other SQLite failure while reading or writing the store.
    #[error(
        "knowledge-base database {path}: {error} — check the disk and permissions, or re-ingest"
    )]
    Sqlite {
        path: PathBuf,
        error: rusqlite::Error,
    },

    #[error(
        "vector has {found} dimensions, the index holds {expected} — the embedding model does \
         not match this knowledge base; re-ingest with the model it was built with, or into a new --kb name"
    )]
    VectorDimensions { expected: usize, found: usize },

    /// The vector index refused an operation or its file could not be read.
    #[error("vector index {path}: {reason} — re-ingest into a new --kb name, or delete the knowledge-base folder")]
    VectorIndex { path: PathBuf, reason: String },

    #[error(
        "invalid knowledge-base name {name:?}: {reason} — use letters, digits, '-', '_' or '.'"
    )]
    InvalidKbName { name: String, reason: String },

    #[error(
        "knowledge base {name:?} does not exist in {dir} — run: frontdesk ingest --kb {name} FOLDER"
    )]
    KbNotFound { name: String, dir: PathBuf },

    /// The generation was embedded with another model (or dimension) than the one loaded.
    #[error(
        "knowledge base {name:?} was built with the embedding model {found}, this build \
         searches with {expected} — re-ingest it: frontdesk ingest --kb {name} FOLDER"
    )]
    EmbeddingMismatch {
        name: String,
        expected: String,
        found: String,
    },

    #[error("the search query is empty — give a question or some keywords")]
    EmptyQuery,

    #[error(
        "another ingest is running on kb {name} ({holder}) — wait for it to finish, or stop it"
    )]
    KbLocked { name: String, holder: String },

    #[error(
        "{path}: {reason} — re-ingest into a new --kb name, or delete the knowledge-base folder"
    )]
    BadLayout { path: PathBuf, reason: String },

    /// An ingest found no file it could load; nothing was published.
    #[error(
        "no documents to ingest in {roots} ({skipped} files skipped) — give a folder with \
         Markdown, HTML, text, PDF or XML documents (--verbose lists why each file was skipped)"
    )]
    NothingToIngest { roots: String, skipped: usize },

    /// The embedding model could not be loaded or run.
    #[error(transparent)]
    Embed(#[from] crate::kb::embedder::EmbedError),
}

pub type Result<T, E = KbError> = std::result::Result<T, E>;

impl KbError {
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        KbError::Io {
            path: path.into(),
            error,
        }
    }

    pub(crate) fn sqlite(path: impl Into<PathBuf>, error: rusqlite::Error) -> Self {
        KbError::Sqlite {
            path: path.into(),
            error,
        }
    }
}

/// Why a file was not turned into a document. `Display` is one line for an ingest report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// Name starts with `.` (a hidden file, or a hidden folder that was not entered).
    Hidden,
    /// No loader for this extension (`None`: the file has no extension).
    UnsupportedFormat { extension: Option<String> },
    /// 0 bytes.
    Empty,
    /// Larger than the size limit.
    TooLarge { size: u64, limit: u64 },
    /// NUL bytes in the first 8 KiB of a text format.
    Binary,
    /// A named pipe, socket or device: reading it could block or never end.
    NotRegularFile,
    /// The file (or a link on the way to it) could not be read.
    Unreadable { error: String },
    /// A symbolic link pointing back to one of its own parent folders.
    SymlinkLoop { ancestor: PathBuf },
    /// The same file was already reached through another path (a link or a second root).
    Duplicate { of: PathBuf },
    /// A text format with too many bytes that are not UTF-8.
    NotUtf8 {
        invalid_bytes: usize,
        total_bytes: usize,
    },
    /// The parser for the format rejected the file.
    Malformed {
        format: &'static str,
        reason: String,
    },
    /// A PDF whose pages carry no extractable text (scanned images, for instance).
    NoTextLayer,
    /// The file parsed but held no text.
    NoText,
    /// An HTML page that is nearly all links, with almost no text of its own: a table of
    /// contents, an index or a site map.
    Navigation,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Hidden => write!(f, "hidden (name starts with '.')"),
            SkipReason::UnsupportedFormat {
                extension: Some(ext),
            } => write!(f, "unsupported format '.{ext}'"),
            SkipReason::UnsupportedFormat { extension: None } => {
                write!(f, "unsupported format (no extension)")
            }
            SkipReason::Empty => write!(f, "empty file"),
            SkipReason::TooLarge { size, limit } => {
                write!(f, "too large ({size} bytes, limit {limit})")
            }
            SkipReason::Binary => write!(f, "binary content (NUL bytes) in a text format"),
            SkipReason::NotRegularFile => write!(f, "not a regular file (pipe, socket or device)"),
            SkipReason::Unreadable { error } => write!(f, "unreadable: {error}"),
            SkipReason::SymlinkLoop { ancestor } => {
                write!(f, "symbolic link loop back to {}", ancestor.display())
            }
            SkipReason::Duplicate { of } => write!(f, "same file as {}", of.display()),
            SkipReason::NotUtf8 {
                invalid_bytes,
                total_bytes,
            } => write!(
                f,
                "not UTF-8 text ({invalid_bytes} of {total_bytes} bytes invalid) — convert it to UTF-8"
            ),
            SkipReason::Malformed { format, reason } => write!(f, "not valid {format}: {reason}"),
            SkipReason::NoTextLayer => {
                write!(f, "PDF has no text layer (scanned?) — run OCR on it first")
            }
            SkipReason::NoText => write!(f, "no text in the file"),
            SkipReason::Navigation => write!(
                f,
                "a navigation page (nearly all links: a table of contents or an index)"
            ),
        }
    }
}

/// A file that was left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: SkipReason,
}
