//! The model catalogue (`models/catalog.toml`), where model files live, and turning what a
//! user wrote after `--model` into a verified file on disk.
//!
//! The catalogue is compiled into the binary, so `frontdesk` knows every model's hash wherever
//! it runs. Hashing a 0.5 GB file takes about a second, so a successful check is remembered in
//! a stamp file beside the model, keyed by size and modification time.

use super::error::{Result, RuntimeError};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

const CATALOG_TOML: &str = include_str!("../../models/catalog.toml");

#[derive(Debug, Clone, Deserialize)]
pub struct Catalog {
    #[serde(rename = "model")]
    pub models: Vec<CatalogModel>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CatalogModel {
    pub name: String,
    pub architecture: String,
    pub role: String,
    pub license: String,
    pub description: String,
    #[serde(default)]
    pub default: bool,
    #[serde(rename = "file")]
    pub files: Vec<CatalogFile>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CatalogFile {
    /// Relative to the models directory.
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub registry: String,
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Part {
    pub package: String,
    pub version: String,
    pub member: String,
}

/// What is on disk for one catalogue file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState {
    Missing,
    /// Size matches; the hash was not computed (cheap check).
    Present,
    Verified,
    WrongSize {
        found: u64,
    },
    HashMismatch {
        found: String,
    },
}

impl std::fmt::Display for FileState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileState::Missing => f.write_str("missing"),
            FileState::Present => f.write_str("present (not verified)"),
            FileState::Verified => f.write_str("verified"),
            FileState::WrongSize { found } => write!(f, "wrong size ({found} bytes)"),
            FileState::HashMismatch { .. } => f.write_str("hash mismatch"),
        }
    }
}

impl Catalog {
    /// The catalogue compiled into this binary.
    pub fn builtin() -> Result<Self> {
        toml::from_str(CATALOG_TOML).map_err(|e| RuntimeError::Catalog(e.to_string()))
    }

    pub fn get(&self, name: &str) -> Option<&CatalogModel> {
        self.models.iter().find(|m| m.name == name)
    }

    pub fn default_model(&self) -> Option<&CatalogModel> {
        self.models.iter().find(|m| m.default)
    }

    fn names(&self) -> String {
        self.models
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl CatalogModel {
    /// The GGUF file of a language model (the first file whose path ends in `.gguf`).
    pub fn gguf_file(&self) -> Option<&CatalogFile> {
        self.files.iter().find(|f| f.path.ends_with(".gguf"))
    }

    pub fn fetch_command(&self) -> String {
        format!("scripts/fetch-models {}", self.name)
    }
}

/// Where model files are looked for: `--models-dir`, then `FRONTDESK_MODELS`, then `models/`
/// of the checkout this binary runs in, then the platform's data directory.
pub fn models_dir(explicit: Option<&Path>) -> PathBuf {
    if let Some(dir) = explicit {
        return dir.to_path_buf();
    }
    if let Some(dir) = std::env::var_os("FRONTDESK_MODELS") {
        return PathBuf::from(dir);
    }
    let cwd_models = PathBuf::from("models");
    if cwd_models.join("catalog.toml").is_file() {
        return cwd_models;
    }
    let build_checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    if build_checkout.join("catalog.toml").is_file() {
        return build_checkout;
    }
    data_dir().join("models")
}

/// `FRONTDESK_HOME`, else `$XDG_DATA_HOME/frontdesk`, else `~/.local/share/frontdesk`.
pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FRONTDESK_HOME") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(dir).join("frontdesk");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/frontdesk")
}

/// SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = fs::File::open(path).map_err(|e| RuntimeError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| RuntimeError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// SHA-256 of bytes in memory, as lowercase hex (the catalogue's and the knowledge base's form).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn stamp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".verified");
    path.with_file_name(name)
}

fn stamp_key(meta: &fs::Metadata) -> String {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{} {}", meta.len(), mtime)
}

/// How thoroughly to check a catalogue file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Size only.
    Size,
    /// The hash, trusting a stamp left by an earlier check of the unchanged file.
    Hash,
    /// The hash, computed now whatever the stamp says.
    Rehash,
}

/// The state of a catalogue file on disk.
pub fn file_state(dir: &Path, file: &CatalogFile, check: Check) -> Result<FileState> {
    let path = dir.join(&file.path);
    let meta = match fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileState::Missing),
        Err(e) => return Err(RuntimeError::io(&path, e)),
    };
    if meta.len() != file.size {
        return Ok(FileState::WrongSize { found: meta.len() });
    }
    if check == Check::Size {
        return Ok(FileState::Present);
    }
    let key = stamp_key(&meta);
    let stamp = stamp_path(&path);
    if check == Check::Hash {
        if let Ok(text) = fs::read_to_string(&stamp) {
            if text.trim() == format!("{key} {}", file.sha256) {
                return Ok(FileState::Verified);
            }
        }
    }
    let found = sha256_file(&path)?;
    if found != file.sha256 {
        let _ = fs::remove_file(&stamp);
        return Ok(FileState::HashMismatch { found });
    }
    // A stamp that cannot be written only costs a re-hash next time.
    let _ = fs::write(&stamp, format!("{key} {}\n", file.sha256));
    Ok(FileState::Verified)
}

/// A model file ready to open, with what is known of its provenance.
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    pub path: PathBuf,
    /// The catalogue name, when the file came from the catalogue.
    pub name: String,
    /// Known without hashing for catalogue files (verified against the catalogue).
    pub sha256: Option<String>,
}

impl ResolvedModel {
    /// The file's sha256, computed now if it is not yet known.
    pub fn sha256(&mut self) -> Result<String> {
        if let Some(h) = &self.sha256 {
            return Ok(h.clone());
        }
        let h = sha256_file(&self.path)?;
        self.sha256 = Some(h.clone());
        Ok(h)
    }
}

/// Turns `--model` into a file: a catalogue name (verified), a path, or `org/repo:file`
/// looked up offline in the Hugging Face cache.
pub fn resolve_model(spec: &str, dir: &Path) -> Result<ResolvedModel> {
    let catalog = Catalog::builtin()?;
    if let Some(model) = catalog.get(spec) {
        return resolve_catalog_model(model, dir);
    }
    let as_path = Path::new(spec);
    if !as_path.exists() {
        if let Some((repo, file)) = spec.split_once(':') {
            if repo.contains('/') && !file.is_empty() {
                return resolve_hf_cache(repo, file);
            }
        }
    }
    if as_path.exists() || spec.ends_with(".gguf") {
        if !as_path.is_file() {
            return Err(RuntimeError::io(
                as_path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            ));
        }
        let name = as_path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Ok(ResolvedModel {
            path: as_path.to_path_buf(),
            name,
            sha256: None,
        });
    }
    Err(RuntimeError::UnknownModel {
        spec: spec.to_string(),
        known: catalog.names(),
    })
}

fn resolve_catalog_model(model: &CatalogModel, dir: &Path) -> Result<ResolvedModel> {
    let file = model.gguf_file().ok_or_else(|| {
        RuntimeError::Catalog(format!(
            "'{}' is not a language model (it has no .gguf file)",
            model.name
        ))
    })?;
    let path = dir.join(&file.path);
    let fetch = model.fetch_command();
    match file_state(dir, file, Check::Hash)? {
        FileState::Verified => Ok(ResolvedModel {
            path,
            name: model.name.clone(),
            sha256: Some(file.sha256.clone()),
        }),
        FileState::Missing => Err(RuntimeError::ModelMissing {
            name: model.name.clone(),
            path,
            fetch,
        }),
        FileState::WrongSize { found } => Err(RuntimeError::ModelTruncated {
            path,
            expected: file.size,
            found,
            fetch,
        }),
        FileState::HashMismatch { found } => Err(RuntimeError::HashMismatch {
            path,
            expected: file.sha256.clone(),
            found,
            fetch,
        }),
        FileState::Present => unreachable!("a full check never stops at the size"),
    }
}

fn resolve_hf_cache(repo: &str, file: &str) -> Result<ResolvedModel> {
    let cache = hf_hub::Cache::from_env();
    match cache.model(repo.to_string()).get(file) {
        Some(path) => Ok(ResolvedModel {
            path,
            name: format!("{repo}:{file}"),
            sha256: None,
        }),
        None => Err(RuntimeError::NotInHfCache {
            repo: repo.to_string(),
            file: file.to_string(),
            cache: cache.path().clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_parses_and_has_one_default() {
        let c = Catalog::builtin().unwrap();
        assert_eq!(c.models.iter().filter(|m| m.default).count(), 1);
        assert_eq!(c.default_model().unwrap().name, "qwen2.5-coder-0.5b");
        for m in &c.models {
            for f in &m.files {
                assert_eq!(f.sha256.len(), 64, "{}", m.name);
                assert!(!f.parts.is_empty(), "{}", m.name);
            }
        }
    }

    #[test]
    fn stamp_is_invalidated_by_a_changed_file() {
        let dir = tempfile::tempdir().unwrap();
        let content = b"hello world";
        fs::write(dir.path().join("m.gguf"), content).unwrap();
        let file = CatalogFile {
            path: "m.gguf".into(),
            size: content.len() as u64,
            sha256: "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9".into(),
            registry: "pypi".into(),
            parts: vec![],
        };
        assert_eq!(
            file_state(dir.path(), &file, Check::Hash).unwrap(),
            FileState::Verified
        );
        assert!(stamp_path(&dir.path().join("m.gguf")).exists());
        // Same size, other bytes, later mtime: the stamp must not vouch for it.
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(dir.path().join("m.gguf"), b"hello wOrld").unwrap();
        assert!(matches!(
            file_state(dir.path(), &file, Check::Hash).unwrap(),
            FileState::HashMismatch { .. }
        ));
        fs::remove_file(dir.path().join("m.gguf")).unwrap();
        assert_eq!(
            file_state(dir.path(), &file, Check::Size).unwrap(),
            FileState::Missing
        );
    }

    #[test]
    fn sha256_hex_is_lowercase_hex_of_the_digest() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(hex(&[0x00, 0x0f, 0xab]), "000fab");
    }

    #[test]
    fn unknown_spec_lists_catalogue_names() {
        let err = resolve_model("no-such-model", Path::new("/nonexistent")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("smollm2-135m") && msg.contains("qwen2.5-coder-0.5b"),
            "{msg}"
        );
    }

    #[test]
    fn missing_catalogue_model_names_the_fetch_command() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve_model("smollm2-135m", dir.path()).unwrap_err();
        assert!(
            err.to_string()
                .contains("scripts/fetch-models smollm2-135m"),
            "{err}"
        );
    }
}
