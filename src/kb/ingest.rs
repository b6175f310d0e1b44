//! The ingest pipeline: files under the given roots → documents → chunks → vectors → a new
//! published generation of a knowledge base.
//!
//! Incremental and atomic: the next generation starts as a copy of the published one (its
//! `kb.sqlite` copied, its `vectors.usearch` read into memory and saved into the new folder),
//! so the published files are never written to. A document
//! whose path and content hash match the stored one is kept as it is; a changed or new one is
//! chunked and embedded again; one no longer found under the roots is removed. Only a complete
//! generation is published. An ingest that fails or is killed before `publish` leaves the
//! previous generation current; its `.tmp` folder is removed by the next writer.

use rayon::prelude::*;
use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::kb::chunker::{chunk_document, Chunk, ChunkOptions};
use crate::kb::document::Document;
use crate::kb::embedder::{EmbedError, Embedder, BATCH_SIZE, MODEL_NAME};
use crate::kb::error::{KbError, Result, SkipReason, Skipped};
use crate::kb::layout::{ChunkSettings, EmbeddingModel, KbDir, Manifest, FORMAT_VERSION};
use crate::kb::loaders::parse;
use crate::kb::store::{DocumentRecord, Store};
use crate::kb::vectors::VectorIndex;
use crate::kb::walk::{walk, SourceFile, WalkOptions};
use crate::runtime::catalog::{sha256_hex, Catalog};

/// Embedding runs over this many batches of texts between two progress updates.
const EMBED_WINDOW_BATCHES: usize = 4;

/// How to ingest.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Where the embedding model's files are (see `runtime::catalog::models_dir`).
    pub models_dir: PathBuf,
    pub walk: WalkOptions,
    /// Chunk settings; `max_tokens` is lowered to what the embedder reads (its window less
    /// `[CLS]` and `[SEP]`) so no chunk is cut off.
    pub chunk: ChunkOptions,
}

impl IngestOptions {
    pub fn new(models_dir: impl Into<PathBuf>) -> IngestOptions {
        IngestOptions {
            models_dir: models_dir.into(),
            walk: WalkOptions::default(),
            chunk: ChunkOptions::default(),
        }
    }
}

/// The parts of an ingest that take time, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Reading, hashing and parsing files; counted in files.
    Loading,
    /// Embedding the chunks of new and changed documents; counted in chunks.
    Embedding,
    /// Writing documents, chunks and vectors; counted in documents.
    Indexing,
}

/// Told how an ingest advances (a progress bar, a log). Every method has an empty default.
pub trait IngestProgress {
    /// A stage begins with `total` units of work.
    fn start(&self, _stage: Stage, _total: u64) {}
    /// `n` more units of the stage are done.
    fn advance(&self, _stage: Stage, _n: u64) {}
    /// The stage is over.
    fn finish(&self, _stage: Stage) {}
}

/// Progress that goes nowhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl IngestProgress for NoProgress {}

/// What an ingest did.
#[derive(Debug, Clone, Default)]
pub struct IngestReport {
    /// Files the walk found with a known format (before loading) plus those it skipped.
    pub files_seen: usize,
    pub added: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub removed: usize,
    pub chunks_embedded: usize,
    /// Seconds spent embedding.
    pub embed_seconds: f64,
    /// Documents and chunks in the published generation.
    pub documents: u64,
    pub chunks: u64,
    pub skipped: Vec<Skipped>,
    /// The generation published.
    pub generation: u64,
    pub seconds: f64,
}

impl IngestReport {
    /// Chunks embedded per second of embedding (0 when nothing was embedded).
    pub fn chunks_per_second(&self) -> f64 {
        if self.chunks_embedded == 0 {
            0.0
        } else {
            self.chunks_embedded as f64 / self.embed_seconds.max(1e-9)
        }
    }
}

/// The recipe of [`embedding_text`], recorded in the manifest.
pub const EMBEDDING_TEXT: &str = "heading path, newline, chunk text";

/// What the embedder reads for a chunk: where it sits (its heading path, or the page title for
/// text before the first heading) on a line of its own, then its text. A chunk deep in a long
/// page ("…the result is rounded") is then found by what the page and section are about.
fn embedding_text(chunk: &Chunk) -> String {
    let place = if chunk.heading_path.is_empty() {
        chunk.title.clone()
    } else {
        chunk.heading_path.join(" › ")
    };
    format!("{place}\n{}", chunk.text)
}

/// A loaded file with what the store keeps about it.
struct LoadedDoc {
    document: Document,
    record: DocumentRecord,
}

/// Ingests the files under `roots` into the knowledge base `kb` and publishes the result as
/// its next generation. See the module documentation.
pub fn ingest(
    kb: &KbDir,
    roots: &[PathBuf],
    options: &IngestOptions,
    progress: &dyn IngestProgress,
) -> Result<IngestReport> {
    let started = Instant::now();
    // A typo in a root fails here, before the knowledge base folder is created.
    let walked = walk(roots, &options.walk)?;
    let mut report = IngestReport {
        files_seen: walked.files.len() + walked.skipped.len(),
        skipped: walked.skipped,
        ..IngestReport::default()
    };

    // The lock comes before the expensive part, so a second ingest fails at once.
    let mut writer = kb.lock()?;
    progress.start(Stage::Loading, walked.files.len() as u64);
    let mut loaded = Vec::with_capacity(walked.files.len());
    for file in &walked.files {
        match load(file, options.walk.max_file_bytes) {
            Ok(doc) => loaded.push(doc),
            Err(reason) => report.skipped.push(Skipped {
                path: file.path.clone(),
                reason,
            }),
        }
        progress.advance(Stage::Loading, 1);
    }
    progress.finish(Stage::Loading);
    if loaded.is_empty() {
        return Err(KbError::NothingToIngest {
            roots: roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            skipped: report.skipped.len(),
        });
    }
    // Two roots can hold the same relative path; the first one wins.
    let mut seen_paths = HashSet::new();
    loaded.retain(|d| seen_paths.insert(d.record.path.clone()));

    let previous = kb.current()?;
    let embedder = Embedder::load(&options.models_dir)?;
    let dimensions = embedder.dimensions();
    let model_sha256 = model_sha256()?;
    let mut chunk_options = options.chunk.clone();
    chunk_options.max_tokens = chunk_options
        .max_tokens
        .min(embedder.max_tokens().saturating_sub(2));

    let pending = writer.begin()?;
    let mut rebuild_all = false;
    let (mut store, mut vectors) = match &previous {
        Some(current) => {
            // Check the published files where they are, so an error names them.
            drop(Store::open_read_only(&current.store_path())?);
            let manifest = current.read_manifest().ok();
            // Chunks cut or embedded another way cannot be mixed with new ones: every document
            // is then done again (as when the manifest cannot be read).
            rebuild_all = manifest.as_ref().is_none_or(|m| {
                m.chunking != ChunkSettings::from(&chunk_options)
                    || m.embedding_model.text != EMBEDDING_TEXT
            });
            if let Some(manifest) = manifest {
                if manifest.dimensions != dimensions {
                    return Err(KbError::VectorDimensions {
                        expected: manifest.dimensions,
                        found: dimensions,
                    });
                }
            }
            // The index is read into memory and saved into the new generation at the end, so
            // loading it from the published file leaves that file as it is (and an error
            // names it).
            let vectors = VectorIndex::load(&current.vectors_path(), dimensions)?;
            copy(&current.store_path(), &pending.store_path())?;
            (Store::open(&pending.store_path())?, vectors)
        }
        None => (
            Store::create(&pending.store_path())?,
            VectorIndex::create(dimensions, 0)?,
        ),
    };

    // Documents no longer under the roots.
    for path in store.document_paths()? {
        if !seen_paths.contains(&path) {
            for id in store.delete_document(&path)? {
                vectors.remove(id)?;
            }
            report.removed += 1;
        }
    }

    // Which documents need embedding, and their chunks.
    let mut changed = Vec::new();
    for doc in loaded {
        match store.document_by_path(&doc.record.path)? {
            Some((_, stored)) if stored.sha256 == doc.record.sha256 && !rebuild_all => {
                report.unchanged += 1
            }
            stored => changed.push((doc, stored.is_some())),
        }
    }
    let counter = embedder.token_counter();
    let work = changed
        .into_par_iter()
        .map(|(doc, existed)| {
            let chunks = chunk_document(&doc.document, &chunk_options, counter)?;
            Ok((doc, chunks, existed))
        })
        .collect::<Result<Vec<_>>>()?;

    // Chunks of all documents embedded together, so small documents still fill batches.
    let owned: Vec<String> = work
        .iter()
        .flat_map(|(_, chunks, _)| chunks.iter().map(embedding_text))
        .collect();
    let texts: Vec<&str> = owned.iter().map(String::as_str).collect();
    progress.start(Stage::Embedding, texts.len() as u64);
    let embed_started = Instant::now();
    let mut all_vectors = Vec::with_capacity(texts.len());
    for window in texts.chunks(BATCH_SIZE * EMBED_WINDOW_BATCHES) {
        all_vectors.extend(embedder.embed_documents(window)?);
        progress.advance(Stage::Embedding, window.len() as u64);
    }
    report.embed_seconds = embed_started.elapsed().as_secs_f64();
    report.chunks_embedded = texts.len();
    drop(texts);
    drop(owned);
    progress.finish(Stage::Embedding);

    let mut all_vectors = all_vectors.into_iter();
    let embedded: Vec<_> = work
        .into_iter()
        .map(|(doc, chunks, existed)| {
            let doc_vectors: Vec<Vec<f32>> = all_vectors.by_ref().take(chunks.len()).collect();
            (doc, chunks, doc_vectors, existed)
        })
        .collect();

    progress.start(Stage::Indexing, embedded.len() as u64);
    for (doc, chunks, doc_vectors, existed) in embedded {
        for id in store.delete_document(&doc.record.path)? {
            vectors.remove(id)?;
        }
        let (_, ids) = store.put_document(&doc.record, &chunks)?;
        for (id, vector) in ids.iter().zip(&doc_vectors) {
            vectors.add(*id, vector)?;
        }
        if existed {
            report.updated += 1;
        } else {
            report.added += 1;
        }
        progress.advance(Stage::Indexing, 1);
    }

    let (documents, chunks) = store.counts()?;
    drop(store);
    vectors.save(&pending.vectors_path())?;
    pending.write_manifest(&Manifest {
        format_version: FORMAT_VERSION,
        embedding_model: EmbeddingModel {
            name: MODEL_NAME.to_string(),
            sha256: model_sha256,
            text: EMBEDDING_TEXT.to_string(),
        },
        dimensions,
        chunking: ChunkSettings::from(&chunk_options),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        documents,
        chunks,
    })?;
    let published = writer.publish(pending)?;
    progress.finish(Stage::Indexing);

    report.documents = documents;
    report.chunks = chunks;
    report.generation = published.number;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Reads one file (bounded by the size limit), hashes its bytes and parses it.
fn load(file: &SourceFile, max_bytes: u64) -> std::result::Result<LoadedDoc, SkipReason> {
    let unreadable = |e: std::io::Error| SkipReason::Unreadable {
        error: e.to_string(),
    };
    let mut handle = std::fs::File::open(&file.path).map_err(unreadable)?;
    let mtime = handle
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let mut bytes = Vec::new();
    handle
        .by_ref()
        .take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > max_bytes {
        return Err(SkipReason::TooLarge {
            size: bytes.len() as u64,
            limit: max_bytes,
        });
    }
    let sha256 = sha256_hex(&bytes);
    let document = parse(file.format, &file.rel_path, &bytes)?;
    let record = DocumentRecord {
        path: store_path(&file.rel_path),
        title: document.title.clone(),
        format: document.format.name().to_string(),
        sha256,
        size: bytes.len() as u64,
        mtime,
    };
    Ok(LoadedDoc { document, record })
}

/// A relative path as the store keeps it: components joined by `/` on every platform.
fn store_path(rel: &Path) -> String {
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| KbError::io(from, e))
}

/// The catalogue's sha256 of the embedding model's weights, recorded in the manifest.
fn model_sha256() -> Result<String> {
    let catalog = Catalog::builtin().map_err(EmbedError::from)?;
    catalog
        .get(MODEL_NAME)
        .and_then(|m| m.files.iter().find(|f| f.path.ends_with(".safetensors")))
        .map(|f| f.sha256.clone())
        .ok_or_else(|| {
            EmbedError::NotInCatalog {
                name: MODEL_NAME.into(),
                file: "model.safetensors".into(),
            }
            .into()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_paths_use_forward_slashes() {
        assert_eq!(store_path(Path::new("a/b/c.md")), "a/b/c.md");
        assert_eq!(store_path(Path::new("c.md")), "c.md");
    }

    #[test]
    fn nothing_loadable_is_an_error_that_names_the_roots() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("empty.md"), "").unwrap();
        std::fs::write(dir.path().join("bin.txt"), b"a\0b").unwrap();
        let data = tempfile::tempdir().unwrap();
        let kb = KbDir::new(data.path(), "t").unwrap();
        let options = IngestOptions::new(data.path().join("no-models"));
        let err = ingest(&kb, &[dir.path().to_path_buf()], &options, &NoProgress).unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(err, KbError::NothingToIngest { skipped: 2, .. }),
            "{err:?}"
        );
        assert!(
            message.contains(&dir.path().display().to_string()),
            "{message}"
        );
        assert!(kb.current().unwrap().is_none(), "nothing published");
    }

    #[test]
    fn a_missing_root_fails_before_the_kb_is_created() {
        let data = tempfile::tempdir().unwrap();
        let kb = KbDir::new(data.path(), "t").unwrap();
        let options = IngestOptions::new(data.path());
        let err = ingest(&kb, &[data.path().join("nope")], &options, &NoProgress).unwrap_err();
        assert!(matches!(err, KbError::PathNotFound { .. }), "{err:?}");
        assert!(!kb.dir().exists());
    }
}
