//! The knowledge base's SQLite file, `kb.sqlite`: documents, their chunks, and an FTS5 index
//! over chunk text, document title and heading path for BM25 search.
//!
//! A chunk's id is its `rowid` in `chunks`, which is also its `rowid` in the FTS table and its
//! key in the vector index, so the three stay joined by one number.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::kb::chunker::Chunk;
use crate::kb::error::{KbError, Result};

/// The value of `meta.format` in every knowledge base.
const FORMAT_NAME: &str = "frontdesk-kb";
/// Bumped whenever the schema changes in a way older code cannot read.
pub const SCHEMA_VERSION: u32 = 1;

/// BM25 column weights, in the FTS table's column order: title, headings, text. A match in the
/// title or a heading says more about what a chunk is about than one in its body.
const BM25_WEIGHTS: (f64, f64, f64) = (4.0, 2.5, 1.0);

/// At most this many words of a query reach FTS5; the rest are dropped.
const MAX_QUERY_TERMS: usize = 64;

/// Heading path segments joined for the FTS `headings` column.
const HEADING_SEPARATOR: &str = " › ";

const SCHEMA: &str = "
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE documents (
    id     INTEGER PRIMARY KEY,
    path   TEXT NOT NULL UNIQUE,
    title  TEXT NOT NULL,
    format TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size   INTEGER NOT NULL,
    mtime  INTEGER NOT NULL
);
CREATE TABLE chunks (
    id           INTEGER PRIMARY KEY,
    document_id  INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ordinal      INTEGER NOT NULL,
    section      INTEGER NOT NULL,
    heading_path TEXT NOT NULL,
    anchor       TEXT,
    page         INTEGER,
    byte_start   INTEGER NOT NULL,
    byte_end     INTEGER NOT NULL,
    text         TEXT NOT NULL,
    tokens       INTEGER NOT NULL,
    UNIQUE (document_id, ordinal)
);
CREATE VIRTUAL TABLE chunks_fts USING fts5(
    title, headings, text,
    content = '', contentless_delete = 1,
    tokenize = 'unicode61 remove_diacritics 2'
);
";

/// What the store keeps about a source file; the hash and mtime decide whether a file changed
/// since the last ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentRecord {
    /// Path relative to the ingest root, with `/` separators as given.
    pub path: String,
    pub title: String,
    /// `Format::name()` of the loader that read it.
    pub format: String,
    /// Hex SHA-256 of the file's bytes.
    pub sha256: String,
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub mtime: i64,
}

/// A chunk as read back from the store, with its document's path and title.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChunk {
    pub id: i64,
    pub document_id: i64,
    pub path: String,
    pub title: String,
    /// Position of the chunk in its document, from 0.
    pub ordinal: u32,
    pub section: u32,
    pub heading_path: Vec<String>,
    pub anchor: Option<String>,
    pub page: Option<u32>,
    pub byte_start: u64,
    pub byte_end: u64,
    pub text: String,
    pub tokens: u32,
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Creates a new, empty store at `path`; the file must not exist yet.
    pub fn create(path: &Path) -> Result<Store> {
        if path.exists() {
            return Err(KbError::BadLayout {
                path: path.to_path_buf(),
                reason: "already exists; a new store is only created in a new generation".into(),
            });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn =
            Connection::open_with_flags(path, flags).map_err(|e| KbError::sqlite(path, e))?;
        let store = Store {
            conn,
            path: path.to_path_buf(),
        };
        store.pragmas()?;
        let tx = store
            .conn
            .unchecked_transaction()
            .map_err(|e| store.err(e))?;
        tx.execute_batch(SCHEMA).map_err(|e| store.err(e))?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('format', ?1), ('schema_version', ?2)",
            params![FORMAT_NAME, SCHEMA_VERSION.to_string()],
        )
        .map_err(|e| store.err(e))?;
        tx.commit().map_err(|e| store.err(e))?;
        Ok(store)
    }

    /// Opens an existing store for reading and writing. Fails with a typed error when the
    /// file is not SQLite or not a knowledge base of this schema version.
    pub fn open(path: &Path) -> Result<Store> {
        Store::open_with(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
    }

    /// Opens an existing store read-only (a published generation, a search).
    pub fn open_read_only(path: &Path) -> Result<Store> {
        Store::open_with(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
    }

    fn open_with(path: &Path, mode: OpenFlags) -> Result<Store> {
        let meta = std::fs::metadata(path).map_err(|e| KbError::io(path, e))?;
        if meta.len() == 0 {
            return Err(KbError::NotADatabase {
                path: path.to_path_buf(),
                reason: "the file is empty".into(),
            });
        }
        let conn = Connection::open_with_flags(path, mode | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(|e| classify(path, e))?;
        let store = Store {
            conn,
            path: path.to_path_buf(),
        };
        store.check_schema()?;
        store.pragmas()?;
        Ok(store)
    }

    fn pragmas(&self) -> Result<()> {
        self.conn
            .execute_batch("PRAGMA foreign_keys = ON;")
            .map_err(|e| self.err(e))
    }

    /// Reads `meta` and checks format and version. SQLite opens files lazily, so this is where
    /// a text file or random bytes first fail.
    fn check_schema(&self) -> Result<()> {
        let foreign = |reason: String| KbError::ForeignDatabase {
            path: self.path.clone(),
            reason,
        };
        let has_meta: bool = self
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
                [],
                |row| row.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(|e| classify(&self.path, e))?;
        if !has_meta {
            return Err(foreign("it has no meta table".into()));
        }
        let value = |key: &str| -> Result<Option<String>> {
            self.conn
                .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
                    row.get::<_, String>(0)
                })
                .optional()
                .map_err(|_| foreign("its meta table has another shape".into()))
        };
        match value("format")? {
            Some(f) if f == FORMAT_NAME => {}
            Some(f) => return Err(foreign(format!("format is {f:?}, not {FORMAT_NAME:?}"))),
            None => return Err(foreign("meta holds no format".into())),
        }
        let version = value("schema_version")?;
        match version.as_deref().map(str::parse::<u32>) {
            Some(Ok(SCHEMA_VERSION)) => Ok(()),
            Some(Ok(v)) => Err(foreign(format!(
                "schema version {v}, this build reads version {SCHEMA_VERSION}"
            ))),
            _ => Err(foreign("meta holds no valid schema version".into())),
        }
    }

    fn err(&self, error: rusqlite::Error) -> KbError {
        KbError::sqlite(&self.path, error)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stores a document and its chunks in one transaction, replacing any document with the
    /// same path (and its chunks). Returns the document id and the chunk ids in order.
    pub fn put_document(
        &mut self,
        doc: &DocumentRecord,
        chunks: &[Chunk],
    ) -> Result<(i64, Vec<i64>)> {
        let path = self.path.clone();
        let err = |e| KbError::sqlite(&path, e);
        let tx = self.conn.transaction().map_err(err)?;
        delete_document_in(&tx, &doc.path).map_err(err)?;
        tx.execute(
            "INSERT INTO documents (path, title, format, sha256, size, mtime)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                doc.path,
                doc.title,
                doc.format,
                doc.sha256,
                i64::try_from(doc.size).unwrap_or(i64::MAX),
                doc.mtime
            ],
        )
        .map_err(err)?;
        let doc_id = tx.last_insert_rowid();
        let mut ids = Vec::with_capacity(chunks.len());
        {
            let mut insert = tx
                .prepare(
                    "INSERT INTO chunks (document_id, ordinal, section, heading_path, anchor, page,
                                         byte_start, byte_end, text, tokens)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                .map_err(err)?;
            let mut fts = tx
                .prepare(
                    "INSERT INTO chunks_fts (rowid, title, headings, text) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(err)?;
            for (ordinal, chunk) in chunks.iter().enumerate() {
                let headings =
                    serde_json::to_string(&chunk.heading_path).unwrap_or_else(|_| "[]".to_string());
                insert
                    .execute(params![
                        doc_id,
                        ordinal as i64,
                        chunk.section as i64,
                        headings,
                        chunk.anchor,
                        chunk.page,
                        chunk.byte_range.start as i64,
                        chunk.byte_range.end as i64,
                        chunk.text,
                        chunk.tokens as i64,
                    ])
                    .map_err(err)?;
                let id = tx.last_insert_rowid();
                fts.execute(params![
                    id,
                    doc.title,
                    chunk.heading_path.join(HEADING_SEPARATOR),
                    chunk.text
                ])
                .map_err(err)?;
                ids.push(id);
            }
        }
        tx.commit().map_err(err)?;
        Ok((doc_id, ids))
    }

    /// Removes a document and its chunks (from the FTS index too). Returns the ids of the
    /// chunks removed, so the caller can drop their vectors; empty if the path was not stored.
    pub fn delete_document(&mut self, path: &str) -> Result<Vec<i64>> {
        let store_path = self.path.clone();
        let err = |e| KbError::sqlite(&store_path, e);
        let tx = self.conn.transaction().map_err(err)?;
        let ids = delete_document_in(&tx, path).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(ids)
    }

    /// The stored record of the document at `path`, if any.
    pub fn document_by_path(&self, path: &str) -> Result<Option<(i64, DocumentRecord)>> {
        self.conn
            .query_row(
                "SELECT id, path, title, format, sha256, size, mtime FROM documents WHERE path = ?1",
                [path],
                |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        DocumentRecord {
                            path: row.get(1)?,
                            title: row.get(2)?,
                            format: row.get(3)?,
                            sha256: row.get(4)?,
                            size: row.get::<_, i64>(5)?.max(0) as u64,
                            mtime: row.get(6)?,
                        },
                    ))
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Paths of all stored documents, sorted.
    pub fn document_paths(&self) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT path FROM documents ORDER BY path")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    /// Number of documents and chunks stored.
    pub fn counts(&self) -> Result<(u64, u64)> {
        self.conn
            .query_row(
                "SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM chunks)",
                [],
                |row| Ok((row.get::<_, i64>(0)? as u64, row.get::<_, i64>(1)? as u64)),
            )
            .map_err(|e| self.err(e))
    }

    /// The `k` chunks that best match `query` by BM25, best first, with a score where higher
    /// is better (SQLite's `bm25()` negated). Any user text is accepted: words are quoted, so
    /// FTS5 syntax in the query is searched for as text, and a query without words finds
    /// nothing rather than failing.
    pub fn bm25_search(&self, query: &str, k: usize) -> Result<Vec<(i64, f64)>> {
        let Some(fts_query) = fts_query(query) else {
            return Ok(Vec::new());
        };
        if k == 0 {
            return Ok(Vec::new());
        }
        let (wt, wh, wb) = BM25_WEIGHTS;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT rowid, bm25(chunks_fts, ?2, ?3, ?4) AS score FROM chunks_fts
                 WHERE chunks_fts MATCH ?1 ORDER BY score LIMIT ?5",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(
                params![fts_query, wt, wh, wb, i64::try_from(k).unwrap_or(i64::MAX)],
                |row| Ok((row.get::<_, i64>(0)?, -row.get::<_, f64>(1)?)),
            )
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    /// One chunk by id.
    pub fn chunk(&self, id: i64) -> Result<Option<StoredChunk>> {
        Ok(self.chunks(&[id])?.into_iter().next())
    }

    /// Chunks by id, in the order of `ids`; ids not stored are left out.
    pub fn chunks(&self, ids: &[i64]) -> Result<Vec<StoredChunk>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT c.id, c.document_id, d.path, d.title, c.ordinal, c.section, c.heading_path,
                        c.anchor, c.page, c.byte_start, c.byte_end, c.text, c.tokens
                 FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id = ?1",
            )
            .map_err(|e| self.err(e))?;
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            let row = stmt
                .query_row([id], |row| {
                    let headings: String = row.get(6)?;
                    Ok(StoredChunk {
                        id: row.get(0)?,
                        document_id: row.get(1)?,
                        path: row.get(2)?,
                        title: row.get(3)?,
                        ordinal: row.get(4)?,
                        section: row.get(5)?,
                        heading_path: serde_json::from_str(&headings).unwrap_or_default(),
                        anchor: row.get(7)?,
                        page: row.get(8)?,
                        byte_start: row.get::<_, i64>(9)?.max(0) as u64,
                        byte_end: row.get::<_, i64>(10)?.max(0) as u64,
                        text: row.get(11)?,
                        tokens: row.get(12)?,
                    })
                })
                .optional()
                .map_err(|e| self.err(e))?;
            out.extend(row);
        }
        Ok(out)
    }
}

/// Deletes the document at `path` with its chunks and their FTS rows; returns the chunk ids.
fn delete_document_in(tx: &rusqlite::Transaction<'_>, path: &str) -> rusqlite::Result<Vec<i64>> {
    let doc_id: Option<i64> = tx
        .query_row("SELECT id FROM documents WHERE path = ?1", [path], |row| {
            row.get(0)
        })
        .optional()?;
    let Some(doc_id) = doc_id else {
        return Ok(Vec::new());
    };
    let ids = {
        let mut stmt = tx.prepare("SELECT id FROM chunks WHERE document_id = ?1 ORDER BY id")?;
        let rows = stmt.query_map([doc_id], |row| row.get::<_, i64>(0))?;
        rows.collect::<rusqlite::Result<Vec<i64>>>()?
    };
    {
        let mut fts = tx.prepare("DELETE FROM chunks_fts WHERE rowid = ?1")?;
        for id in &ids {
            fts.execute([id])?;
        }
    }
    tx.execute("DELETE FROM chunks WHERE document_id = ?1", [doc_id])?;
    tx.execute("DELETE FROM documents WHERE id = ?1", [doc_id])?;
    Ok(ids)
}

/// Turns an open or first-query failure into `NotADatabase` when SQLite says the file is not a
/// database, and into `Sqlite` otherwise.
fn classify(path: &Path, error: rusqlite::Error) -> KbError {
    if let rusqlite::Error::SqliteFailure(e, _) = &error {
        if e.code == rusqlite::ErrorCode::NotADatabase {
            return KbError::NotADatabase {
                path: path.to_path_buf(),
                reason: "SQLite does not recognise the file".into(),
            };
        }
    }
    KbError::sqlite(path, error)
}

/// Whether a query word (any case, surrounding punctuation ignored) is a stop word.
fn is_stop_word(word: &str) -> bool {
    let bare = word
        .trim_matches(|c: char| !c.is_alphanumeric())
        .to_lowercase();
    crate::kb::search::STOP_WORDS.contains(&bare.as_str())
}

/// The user's text as an FTS5 query: each whitespace-separated word that holds a letter or
/// digit becomes a quoted string (inner quotes doubled), and the words are joined with `OR`
/// so BM25 ranks chunks by how many and how rare the words they hold are. `None` when no word
/// is left. Quoting makes `AND`, `NEAR(`, `*`, `^` and column filters plain text.
fn fts_query(query: &str) -> Option<String> {
    let words: Vec<&str> = query
        .split_whitespace()
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .collect();
    // Question words ("how do I", "what is the") match every FAQ-style heading and bury the
    // words that carry the question; they count only when nothing else is left.
    let content: Vec<&str> = words.iter().copied().filter(|w| !is_stop_word(w)).collect();
    let words = if content.is_empty() { words } else { content };
    let terms: Vec<String> = words
        .into_iter()
        .take(MAX_QUERY_TERMS)
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect();
    if terms.is_empty() {
        None
    } else {
        Some(terms.join(" OR "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(path: &str, title: &str) -> DocumentRecord {
        DocumentRecord {
            path: path.into(),
            title: title.into(),
            format: "markdown".into(),
            sha256: format!("{:064x}", path.len()),
            size: 1234,
            mtime: 1_700_000_000,
        }
    }

    fn chunk(path: &str, title: &str, headings: &[&str], text: &str) -> Chunk {
        Chunk {
            path: PathBuf::from(path),
            title: title.into(),
            heading_path: headings.iter().map(|h| h.to_string()).collect(),
            anchor: Some("anchor".into()),
            page: None,
            section: 0,
            byte_range: 0..text.len(),
            text: text.into(),
            tokens: text.split_whitespace().count(),
        }
    }

    fn new_store(dir: &tempfile::TempDir) -> Store {
        Store::create(&dir.path().join("kb.sqlite")).unwrap()
    }

    #[test]
    fn schema_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kb.sqlite");
        let ids = {
            let mut store = Store::create(&path).unwrap();
            let mut c = chunk("a.md", "Guide", &["Setup", "Linux"], "install the package");
            c.page = Some(3);
            c.section = 2;
            c.byte_range = 10..29;
            let (_, ids) = store
                .put_document(
                    &record("a.md", "Guide"),
                    &[c, chunk("a.md", "Guide", &[], "second")],
                )
                .unwrap();
            ids
        };
        let store = Store::open_read_only(&path).unwrap();
        let (_, doc) = store.document_by_path("a.md").unwrap().unwrap();
        assert_eq!(doc, record("a.md", "Guide"));
        assert_eq!(store.document_by_path("b.md").unwrap(), None);
        let got = store.chunks(&[ids[1], 999, ids[0]]).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].text, "second");
        let first = &got[1];
        assert_eq!(first.heading_path, vec!["Setup", "Linux"]);
        assert_eq!(first.page, Some(3));
        assert_eq!(first.section, 2);
        assert_eq!((first.byte_start, first.byte_end), (10, 29));
        assert_eq!(first.anchor.as_deref(), Some("anchor"));
        assert_eq!(first.path, "a.md");
        assert_eq!(first.title, "Guide");
        assert_eq!(first.ordinal, 0);
        assert_eq!(store.counts().unwrap(), (1, 2));
    }

    #[test]
    fn bm25_ranks_matching_chunk_first_and_title_above_body() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = new_store(&dir);
        let (_, body) = store
            .put_document(
                &record("notes.md", "Release notes"),
                &[
                    chunk(
                        "notes.md",
                        "Release notes",
                        &[],
                        "the weather was fine today",
                    ),
                    chunk(
                        "notes.md",
                        "Release notes",
                        &[],
                        "how to reset a password by email",
                    ),
                    chunk(
                        "notes.md",
                        "Release notes",
                        &[],
                        "printer drivers and paper sizes",
                    ),
                ],
            )
            .unwrap();
        let hits = store.bm25_search("reset password", 10).unwrap();
        assert_eq!(hits.first().map(|h| h.0), Some(body[1]));
        assert_eq!(hits.len(), 1);

        // Same body text once; "vpn" in one document's title, in the other's body only.
        let (_, titled) = store
            .put_document(
                &record("vpn.md", "VPN"),
                &[chunk(
                    "vpn.md",
                    "VPN",
                    &[],
                    "connect from home to the office network",
                )],
            )
            .unwrap();
        let (_, in_body) = store
            .put_document(
                &record("misc.md", "Miscellaneous"),
                &[chunk(
                    "misc.md",
                    "Miscellaneous",
                    &[],
                    "connect the vpn from home to the office",
                )],
            )
            .unwrap();
        let hits = store.bm25_search("vpn", 10).unwrap();
        let order: Vec<i64> = hits.iter().map(|h| h.0).collect();
        assert_eq!(order, vec![titled[0], in_body[0]]);
        assert!(hits[0].1 > hits[1].1, "scores: {hits:?}");
    }

    #[test]
    fn heading_match_ranks_above_body_match() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = new_store(&dir);
        let (_, ids) = store
            .put_document(
                &record("a.md", "Manual"),
                &[
                    chunk(
                        "a.md",
                        "Manual",
                        &["Intro"],
                        "a few words about backups and more",
                    ),
                    chunk(
                        "a.md",
                        "Manual",
                        &["Backups"],
                        "a few words about the schedule now",
                    ),
                ],
            )
            .unwrap();
        let hits = store.bm25_search("backups", 10).unwrap();
        assert_eq!(
            hits.iter().map(|h| h.0).collect::<Vec<_>>(),
            vec![ids[1], ids[0]]
        );
    }

    #[test]
    fn hostile_queries_never_fail() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = new_store(&dir);
        store
            .put_document(
                &record("a.md", "AND OR NOT"),
                &[chunk(
                    "a.md",
                    "AND OR NOT",
                    &[],
                    "near the end of the file, with title: and *stars*",
                )],
            )
            .unwrap();
        for q in [
            "",
            "   ",
            "\"",
            "\"\"",
            "*",
            "AND",
            "OR",
            "NOT",
            "NEAR(",
            "NEAR(a b",
            "a AND",
            "(",
            ")",
            "^",
            "-",
            "+",
            ":",
            "title:",
            "title:foo",
            "{title text}: x",
            "a\"b",
            "\"unterminated",
            "x*",
            "*x",
            "NEAR(\"a\" \"b\", 2)",
            "';DROP TABLE chunks;--",
            "\0",
            "💥",
            "a OR OR b",
        ] {
            let result = store.bm25_search(q, 5);
            assert!(result.is_ok(), "query {q:?}: {result:?}");
        }
        assert!(store.bm25_search("*", 5).unwrap().is_empty());
        assert!(store.bm25_search("\"", 5).unwrap().is_empty());
        assert!(
            store.bm25_search("NEAR(", 5).unwrap().len() == 1,
            "NEAR is a word here"
        );
        assert_eq!(store.bm25_search("title: stars", 5).unwrap().len(), 1);
        assert_eq!(store.counts().unwrap(), (1, 1));
    }

    #[test]
    fn deleting_a_document_removes_its_chunks_from_fts() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = new_store(&dir);
        let (_, ids) = store
            .put_document(
                &record("a.md", "A"),
                &[chunk("a.md", "A", &[], "unique zebra text")],
            )
            .unwrap();
        store
            .put_document(
                &record("b.md", "B"),
                &[chunk("b.md", "B", &[], "other giraffe text")],
            )
            .unwrap();
        assert_eq!(store.bm25_search("zebra", 5).unwrap().len(), 1);
        assert_eq!(store.delete_document("a.md").unwrap(), ids);
        assert!(store.bm25_search("zebra", 5).unwrap().is_empty());
        assert!(store.chunk(ids[0]).unwrap().is_none());
        assert_eq!(store.document_by_path("a.md").unwrap(), None);
        assert_eq!(store.bm25_search("text", 5).unwrap().len(), 1);
        assert_eq!(store.delete_document("a.md").unwrap(), Vec::<i64>::new());
        assert_eq!(store.counts().unwrap(), (1, 1));
    }

    #[test]
    fn replacing_a_document_replaces_its_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = new_store(&dir);
        store
            .put_document(
                &record("a.md", "A"),
                &[chunk("a.md", "A", &[], "old walrus")],
            )
            .unwrap();
        let mut newer = record("a.md", "A");
        newer.sha256 = "ff".repeat(32);
        store
            .put_document(&newer, &[chunk("a.md", "A", &[], "new penguin")])
            .unwrap();
        assert!(store.bm25_search("walrus", 5).unwrap().is_empty());
        assert_eq!(store.bm25_search("penguin", 5).unwrap().len(), 1);
        assert_eq!(
            store.document_by_path("a.md").unwrap().unwrap().1.sha256,
            newer.sha256
        );
        assert_eq!(store.counts().unwrap(), (1, 1));
    }

    #[test]
    fn empty_file_is_not_a_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kb.sqlite");
        std::fs::write(&path, b"").unwrap();
        let err = Store::open(&path).unwrap_err();
        assert!(matches!(err, KbError::NotADatabase { .. }), "{err:?}");
        assert!(
            err.to_string().contains("re-ingest into a new --kb name"),
            "{err}"
        );
    }

    #[test]
    fn text_file_is_not_a_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kb.sqlite");
        std::fs::write(
            &path,
            "hello, this is a text file and not SQLite\n".repeat(200),
        )
        .unwrap();
        for open in [Store::open, Store::open_read_only] {
            let err = open(&path).unwrap_err();
            assert!(matches!(err, KbError::NotADatabase { .. }), "{err:?}");
        }
    }

    #[test]
    fn foreign_sqlite_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kb.sqlite");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT);")
                .unwrap();
        }
        let err = Store::open(&path).unwrap_err();
        assert!(matches!(err, KbError::ForeignDatabase { .. }), "{err:?}");
        assert!(
            err.to_string().contains("delete the knowledge-base folder"),
            "{err}"
        );

        // A meta table of another shape, and one of ours with a future version.
        let other = dir.path().join("other.sqlite");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE meta (a INTEGER, b INTEGER);")
            .unwrap();
        let err = Store::open(&other).unwrap_err();
        assert!(matches!(err, KbError::ForeignDatabase { .. }), "{err:?}");

        let future = dir.path().join("future.sqlite");
        drop(Store::create(&future).unwrap());
        Connection::open(&future)
            .unwrap()
            .execute(
                "UPDATE meta SET value = '999' WHERE key = 'schema_version'",
                [],
            )
            .unwrap();
        let err = Store::open(&future).unwrap_err();
        assert!(err.to_string().contains("schema version 999"), "{err}");
    }

    #[test]
    fn fts_query_quotes_words() {
        assert_eq!(
            fts_query("reset  password").as_deref(),
            Some("\"reset\" OR \"password\"")
        );
        assert_eq!(
            fts_query("say \"hi\"").as_deref(),
            Some("\"say\" OR \"\"\"hi\"\"\"")
        );
        assert_eq!(fts_query("* \" ( ) ^ -"), None);
    }

    #[test]
    fn fts_query_drops_question_words_unless_nothing_else_is_left() {
        assert_eq!(
            fts_query("How do I reset my Password?").as_deref(),
            Some("\"reset\" OR \"Password?\"")
        );
        assert_eq!(
            fts_query("What is it?").as_deref(),
            Some("\"What\" OR \"is\" OR \"it?\"")
        );
    }
}
