//! A knowledge base on disk: the folder `kb/NAME/` under the data directory.
//!
//! ```text
//! kb/NAME/
//!   CURRENT        "gen-3": the published generation, replaced atomically by rename
//!   gen-3/         kb.sqlite, vectors.usearch, manifest.json
//!   gen-4.tmp/     the next generation while an ingest writes it
//!   lock           held (flock) by the one writer; holds its pid
//! ```
//!
//! A writer builds the next generation in `gen-N.tmp/`, renames it to `gen-N/`, then points
//! `CURRENT` at it (temp file, fsync, rename, fsync of the folder) and removes older
//! generations. A reader resolves `CURRENT` once and uses that folder, so it sees a whole
//! generation or the previous one, never half of one. A `.tmp` folder left by a killed ingest
//! is never named by `CURRENT`, so readers ignore it; the next writer removes it.
//!
//! Limit: old generations are deleted right after the switch. A reader that has opened its
//! files keeps them (POSIX unlink semantics); one that resolved `CURRENT` but had not opened
//! the files yet gets a not-found error and should resolve `CURRENT` again.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::kb::error::{KbError, Result};

pub const CURRENT_FILE: &str = "CURRENT";
pub const LOCK_FILE: &str = "lock";
pub const STORE_FILE: &str = "kb.sqlite";
pub const VECTORS_FILE: &str = "vectors.usearch";
pub const MANIFEST_FILE: &str = "manifest.json";
/// Bumped when the layout or the manifest changes incompatibly.
pub const FORMAT_VERSION: u32 = 1;

const GEN_PREFIX: &str = "gen-";
const TMP_SUFFIX: &str = ".tmp";

/// Refuses names that could leave `kb/` or hide the folder: empty, `.`/`..`, a leading `.`,
/// path separators, control characters, and anything beyond letters, digits, `-`, `_`, `.`.
pub fn validate_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "the name is empty"
    } else if name.starts_with('.') {
        "the name starts with '.' (hidden, or a path like '..')"
    } else if name.len() > 64 {
        "the name is longer than 64 bytes"
    } else if name.contains('/') || name.contains('\\') {
        "the name contains a path separator"
    } else if !name
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        "the name contains characters other than letters, digits, '-', '_' and '.'"
    } else {
        return Ok(());
    };
    Err(KbError::InvalidKbName {
        name: name.to_string(),
        reason: reason.to_string(),
    })
}

/// What a generation was built with, written as `manifest.json` beside the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub embedding_model: EmbeddingModel,
    pub dimensions: usize,
    pub chunking: ChunkSettings,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub documents: u64,
    pub chunks: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddingModel {
    pub name: String,
    pub sha256: String,
    /// What text of a chunk the vectors were made from ([`crate::kb::ingest::EMBEDDING_TEXT`]);
    /// empty in knowledge bases written before it was recorded.
    #[serde(default)]
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkSettings {
    pub max_tokens: usize,
    pub overlap_tokens: usize,
    pub min_tail_tokens: usize,
}

impl From<&crate::kb::chunker::ChunkOptions> for ChunkSettings {
    fn from(o: &crate::kb::chunker::ChunkOptions) -> Self {
        ChunkSettings {
            max_tokens: o.max_tokens,
            overlap_tokens: o.overlap_tokens,
            min_tail_tokens: o.min_tail_tokens,
        }
    }
}

/// One generation's folder (published, or pending while a writer fills it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    pub number: u64,
    pub dir: PathBuf,
}

impl Generation {
    pub fn store_path(&self) -> PathBuf {
        self.dir.join(STORE_FILE)
    }

    pub fn vectors_path(&self) -> PathBuf {
        self.dir.join(VECTORS_FILE)
    }

    pub fn manifest_path(&self) -> PathBuf {
        self.dir.join(MANIFEST_FILE)
    }

    pub fn read_manifest(&self) -> Result<Manifest> {
        let path = self.manifest_path();
        let text = fs::read_to_string(&path).map_err(|e| KbError::io(&path, e))?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| KbError::BadLayout {
            path: path.clone(),
            reason: format!("not a valid manifest ({e})"),
        })?;
        if manifest.format_version != FORMAT_VERSION {
            return Err(KbError::BadLayout {
                path,
                reason: format!(
                    "format version {}, this build reads version {FORMAT_VERSION}",
                    manifest.format_version
                ),
            });
        }
        Ok(manifest)
    }

    pub fn write_manifest(&self, manifest: &Manifest) -> Result<()> {
        let path = self.manifest_path();
        let text = serde_json::to_string_pretty(manifest).map_err(|e| KbError::BadLayout {
            path: path.clone(),
            reason: format!("cannot encode the manifest ({e})"),
        })?;
        write_synced(&path, text.as_bytes())
    }
}

/// The folder of one knowledge base, `DATA/kb/NAME`.
#[derive(Debug, Clone)]
pub struct KbDir {
    name: String,
    dir: PathBuf,
}

impl KbDir {
    /// The knowledge base `name` under `data_dir` (see `runtime::catalog::data_dir`). Nothing
    /// is created yet.
    pub fn new(data_dir: &Path, name: &str) -> Result<KbDir> {
        validate_name(name)?;
        Ok(KbDir {
            name: name.to_string(),
            dir: data_dir.join("kb").join(name),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The published generation, read from `CURRENT` once; `None` before the first publish.
    pub fn current(&self) -> Result<Option<Generation>> {
        let path = self.dir.join(CURRENT_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(KbError::io(&path, e)),
        };
        let bad = |reason: String| KbError::BadLayout {
            path: path.clone(),
            reason,
        };
        let name = text.trim();
        let number = parse_generation(name)
            .ok_or_else(|| bad(format!("names {name:?}, not a generation folder")))?;
        let dir = self.dir.join(name);
        if !dir.is_dir() {
            return Err(bad(format!("names {name}, which does not exist")));
        }
        Ok(Some(Generation { number, dir }))
    }

    /// The published generation, or `KbNotFound` when nothing was ever published.
    pub fn open_current(&self) -> Result<Generation> {
        self.current()?.ok_or_else(|| KbError::KbNotFound {
            name: self.name.clone(),
            dir: self.dir.parent().map(Path::to_path_buf).unwrap_or_default(),
        })
    }

    /// Takes the writer's lock (creating the folder). A second writer, in this process or
    /// another, gets `KbLocked` with the holder's pid. The lock is released when the
    /// `KbWriter` is dropped or its process ends.
    pub fn lock(&self) -> Result<KbWriter> {
        fs::create_dir_all(&self.dir).map_err(|e| KbError::io(&self.dir, e))?;
        let path = self.dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| KbError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim().parse::<u32>() {
                    Ok(pid) => format!("pid {pid}"),
                    Err(_) => "pid unknown".to_string(),
                };
                return Err(KbError::KbLocked {
                    name: self.name.clone(),
                    holder,
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(KbError::io(&path, e)),
        }
        let pid = std::process::id().to_string();
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(pid.as_bytes()))
            .and_then(|()| file.flush())
            .map_err(|e| KbError::io(&path, e))?;
        Ok(KbWriter {
            kb: self.clone(),
            _lock: file,
        })
    }
}

/// The one writer of a knowledge base, holding its lock.
#[derive(Debug)]
pub struct KbWriter {
    kb: KbDir,
    _lock: File,
}

impl KbWriter {
    pub fn kb(&self) -> &KbDir {
        &self.kb
    }

    /// Starts the next generation: removes `.tmp` folders left by killed writers and creates
    /// an empty `gen-N.tmp/`, N one above any generation present.
    pub fn begin(&mut self) -> Result<Generation> {
        let dir = &self.kb.dir;
        let mut highest = 0;
        for entry in fs::read_dir(dir).map_err(|e| KbError::io(dir, e))? {
            let entry = entry.map_err(|e| KbError::io(dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(base) = name.strip_suffix(TMP_SUFFIX) {
                if parse_generation(base).is_some() {
                    let path = entry.path();
                    fs::remove_dir_all(&path).map_err(|e| KbError::io(&path, e))?;
                }
            } else if let Some(n) = parse_generation(name) {
                highest = highest.max(n);
            }
        }
        let number = highest + 1;
        let tmp = dir.join(format!("{GEN_PREFIX}{number}{TMP_SUFFIX}"));
        fs::create_dir(&tmp).map_err(|e| KbError::io(&tmp, e))?;
        Ok(Generation { number, dir: tmp })
    }

    /// Publishes a generation made by `begin`: syncs its files, renames it to `gen-N/`,
    /// points `CURRENT` at it atomically, then removes the generations before it.
    pub fn publish(&mut self, pending: Generation) -> Result<Generation> {
        let kb_dir = self.kb.dir.clone();
        let final_name = format!("{GEN_PREFIX}{}", pending.number);
        let expected = kb_dir.join(format!("{final_name}{TMP_SUFFIX}"));
        if pending.dir != expected {
            return Err(KbError::BadLayout {
                path: pending.dir,
                reason: "not a pending generation of this knowledge base".into(),
            });
        }
        for entry in fs::read_dir(&pending.dir).map_err(|e| KbError::io(&pending.dir, e))? {
            let path = entry.map_err(|e| KbError::io(&pending.dir, e))?.path();
            if path.is_file() {
                sync_file(&path)?;
            }
        }
        sync_dir(&pending.dir)?;
        let published = kb_dir.join(&final_name);
        fs::rename(&pending.dir, &published).map_err(|e| KbError::io(&published, e))?;
        sync_dir(&kb_dir)?;

        let current = kb_dir.join(CURRENT_FILE);
        let current_tmp = kb_dir.join(format!("{CURRENT_FILE}{TMP_SUFFIX}"));
        write_synced(&current_tmp, format!("{final_name}\n").as_bytes())?;
        fs::rename(&current_tmp, &current).map_err(|e| KbError::io(&current, e))?;
        sync_dir(&kb_dir)?;

        for entry in fs::read_dir(&kb_dir).map_err(|e| KbError::io(&kb_dir, e))? {
            let entry = entry.map_err(|e| KbError::io(&kb_dir, e))?;
            let name = entry.file_name();
            if let Some(n) = name.to_str().and_then(parse_generation) {
                if n != pending.number {
                    let path = entry.path();
                    // A failure here leaves a stale folder, not a broken knowledge base.
                    if let Err(e) = fs::remove_dir_all(&path) {
                        tracing::warn!("cannot remove old generation {}: {e}", path.display());
                    }
                }
            }
        }
        Ok(Generation {
            number: pending.number,
            dir: published,
        })
    }
}

/// `gen-N` → N (N ≥ 1, digits only).
fn parse_generation(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(GEN_PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&n| n > 0)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = File::create(path).map_err(|e| KbError::io(path, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| KbError::io(path, e))
}

fn sync_file(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| KbError::io(path, e))
}

fn sync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| KbError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            embedding_model: EmbeddingModel {
                name: "all-minilm-l6-v2".into(),
                sha256: "ab".repeat(32),
                text: String::new(),
            },
            dimensions: 384,
            chunking: ChunkSettings::from(&crate::kb::chunker::ChunkOptions::default()),
            created: 1_700_000_000,
            documents: 2,
            chunks: 5,
        }
    }

    fn write_generation(writer: &mut KbWriter, marker: &str) -> Generation {
        let pending = writer.begin().unwrap();
        fs::write(pending.store_path(), marker).unwrap();
        pending.write_manifest(&manifest()).unwrap();
        writer.publish(pending).unwrap()
    }

    #[test]
    fn publish_switches_current_and_removes_the_old_generation() {
        let data = tempfile::tempdir().unwrap();
        let kb = KbDir::new(data.path(), "support").unwrap();
        assert_eq!(kb.current().unwrap(), None);
        assert!(matches!(kb.open_current(), Err(KbError::KbNotFound { .. })));

        let mut writer = kb.lock().unwrap();
        let first = write_generation(&mut writer, "one");
        assert_eq!(kb.current().unwrap().as_ref(), Some(&first));
        assert_eq!(first.dir, data.path().join("kb/support/gen-1"));

        // A reader that resolved CURRENT before the next publish keeps a whole generation.
        let reader = kb.open_current().unwrap();
        let pending = writer.begin().unwrap();
        fs::write(pending.store_path(), "two").unwrap();
        assert_eq!(
            kb.open_current().unwrap(),
            first,
            "unpublished work is invisible"
        );
        assert_eq!(fs::read_to_string(reader.store_path()).unwrap(), "one");
        let second = writer.publish(pending).unwrap();

        let now = kb.open_current().unwrap();
        assert_eq!(now, second);
        assert_eq!(now.number, 2);
        assert_eq!(fs::read_to_string(now.store_path()).unwrap(), "two");
        assert!(!first.dir.exists(), "old generation removed");
        assert!(!kb.dir().join("CURRENT.tmp").exists());
        assert_eq!(
            fs::read_to_string(kb.dir().join(CURRENT_FILE)).unwrap(),
            "gen-2\n"
        );
    }

    #[test]
    fn abandoned_tmp_generation_is_ignored_then_cleaned() {
        let data = tempfile::tempdir().unwrap();
        let kb = KbDir::new(data.path(), "docs").unwrap();
        {
            let mut writer = kb.lock().unwrap();
            write_generation(&mut writer, "good");
            // A killed ingest: the pending folder stays, the lock goes with the process.
            let abandoned = writer.begin().unwrap();
            fs::write(abandoned.store_path(), "half").unwrap();
        }
        let abandoned = kb.dir().join("gen-2.tmp");
        assert!(abandoned.exists());
        let seen = kb.open_current().unwrap();
        assert_eq!(seen.number, 1);
        assert_eq!(fs::read_to_string(seen.store_path()).unwrap(), "good");

        let mut writer = kb.lock().unwrap();
        let next = writer.begin().unwrap();
        assert!(!abandoned.exists() || next.dir == abandoned);
        assert_eq!(fs::read_dir(&next.dir).unwrap().count(), 0, "starts empty");
        let published = writer.publish(next).unwrap();
        assert_eq!(kb.open_current().unwrap(), published);
        let names: Vec<String> = fs::read_dir(kb.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("gen-"))
            .collect();
        assert_eq!(names, vec!["gen-2".to_string()]);
    }

    #[test]
    fn second_writer_is_refused_with_the_holder() {
        let data = tempfile::tempdir().unwrap();
        let kb = KbDir::new(data.path(), "main").unwrap();
        let writer = kb.lock().unwrap();
        let err = kb.lock().unwrap_err();
        assert!(matches!(err, KbError::KbLocked { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains("another ingest is running on kb main")
                && message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        drop(writer);
        kb.lock().expect("free again once the first writer is gone");
    }

    #[test]
    fn bad_names_are_refused() {
        let data = tempfile::tempdir().unwrap();
        for name in [
            "", ".", "..", ".hidden", "a/b", "../x", "a\\b", "a b", "x\n", "a\0b",
        ] {
            let err = KbDir::new(data.path(), name).unwrap_err();
            assert!(
                matches!(err, KbError::InvalidKbName { .. }),
                "{name:?}: {err:?}"
            );
        }
        for name in ["support", "docs-v2", "team_a.2024", "Ärzte"] {
            KbDir::new(data.path(), name).unwrap();
        }
    }

    #[test]
    fn manifest_round_trip_and_bad_current() {
        let data = tempfile::tempdir().unwrap();
        let kb = KbDir::new(data.path(), "m").unwrap();
        let mut writer = kb.lock().unwrap();
        let generation = write_generation(&mut writer, "x");
        assert_eq!(generation.read_manifest().unwrap(), manifest());

        fs::write(generation.manifest_path(), "{").unwrap();
        assert!(matches!(
            generation.read_manifest(),
            Err(KbError::BadLayout { .. })
        ));
        fs::write(kb.dir().join(CURRENT_FILE), "../../etc\n").unwrap();
        assert!(matches!(kb.current(), Err(KbError::BadLayout { .. })));
        fs::write(kb.dir().join(CURRENT_FILE), "gen-9\n").unwrap();
        assert!(matches!(kb.current(), Err(KbError::BadLayout { .. })));
    }
}
