//! Sentence embeddings with all-MiniLM-L6-v2 (catalogue name `minilm-l6`): a 6-layer BERT run
//! through candle-transformers, mean pooling over the attention mask, then L2 normalisation —
//! the pipeline sentence-transformers uses for this model, so vectors are 384 floats of unit
//! length and cosine similarity is a dot product.
//!
//! Two engines compute the same function. The default, [`Precision::Int8`], is frontdesk's own
//! encoder (`kb::minilm`): 8-bit integer products on the project's kernels, one text per
//! thread, about ten times candle's speed on a CPU, vectors within about 0.01 in cosine of the
//! float model. [`Precision::F32`] is candle's `BertModel` in f32, the reference the tests
//! compare against.
//!
//! Documents and queries go through one code path (`embed_documents`; `embed_query` is a batch
//! of one), so a text's vector never depends on what it was embedded with. The f32 engine sorts
//! texts by token count into batches of similar length; padded positions are hidden from
//! attention by the mask and left out of the mean.
//!
//! Texts longer than the model's 256-token window (the length all-MiniLM-L6-v2 was trained
//! with, counting `[CLS]` and `[SEP]`) are truncated, not rejected: bound chunks with
//! [`EmbedderTokens`] so nothing is cut off.
//!
//! An empty (or whitespace-only) text is embedded as what the tokenizer makes of it,
//! `[CLS] [SEP]`: the same vector sentence-transformers gives for `""`, of unit length, never
//! NaN. The norm is clamped before dividing, so even a zero vector could not produce NaN.

use crate::kb::chunker::TokenCounter;
use crate::kb::minilm::{MiniLm, Scratch};
use crate::runtime::catalog::{file_state, Catalog, CatalogModel, Check, FileState};
use crate::runtime::error::{candle_message, RuntimeError};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use tokenizers::{Tokenizer, TruncationParams};

/// The catalogue name of the embedding model.
pub const MODEL_NAME: &str = "minilm-l6";
/// Tokens per text the model sees, `[CLS]` and `[SEP]` included (sentence-transformers'
/// `max_seq_length` for all-MiniLM-L6-v2).
pub const MAX_SEQUENCE_TOKENS: usize = 256;
/// Texts per forward pass of the f32 engine, and per progress update of an ingest. Larger
/// batches gain little on a CPU and pad more.
pub const BATCH_SIZE: usize = 32;

const CONFIG_FILE: &str = "config.json";
const TOKENIZER_FILE: &str = "tokenizer.json";
const WEIGHTS_FILE: &str = "model.safetensors";
/// `torch.nn.functional.normalize`'s floor on the norm.
const NORM_EPSILON: f32 = 1e-12;

/// Why the embedder could not load or run. Each message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// A model file is missing, truncated or fails its hash (the message names
    /// `scripts/fetch-models minilm-l6`), or the catalogue itself is unreadable.
    #[error(transparent)]
    Model(#[from] RuntimeError),

    #[error("the model catalogue has no '{name}' entry with a {file} — this build's models/catalog.toml is incomplete; rebuild from a full checkout")]
    NotInCatalog { name: String, file: String },

    #[error("{path} is not a usable BERT config: {reason} — delete it and run: {fetch}")]
    Config {
        path: PathBuf,
        reason: String,
        fetch: String,
    },

    #[error("cannot load the tokenizer {path}: {reason} — delete it and run: {fetch}")]
    Tokenizer {
        path: PathBuf,
        reason: String,
        fetch: String,
    },

    #[error("cannot load the weights {path}: {reason} — delete it and run: {fetch}")]
    Weights {
        path: PathBuf,
        reason: String,
        fetch: String,
    },

    #[error("tokenizing a text for embedding failed: {0}")]
    Tokenize(String),

    #[error("embedding failed: {0} — this is a bug or a damaged model file; run: scripts/fetch-models minilm-l6")]
    Inference(String),
}

impl From<candle_core::Error> for EmbedError {
    fn from(e: candle_core::Error) -> Self {
        EmbedError::Inference(candle_message(&e))
    }
}

pub type Result<T, E = EmbedError> = std::result::Result<T, E>;

/// The arithmetic an [`Embedder`] runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// 8-bit integer matrix products on frontdesk's kernels (the default).
    Int8,
    /// candle's BERT in f32: the reference.
    F32,
}

enum Engine {
    Int8(MiniLm),
    F32(BertModel),
}

/// all-MiniLM-L6-v2 loaded for inference on the CPU.
pub struct Embedder {
    engine: Engine,
    /// Truncates to the model window, adds `[CLS]`/`[SEP]`, does not pad (batches pad).
    tokenizer: Tokenizer,
    /// The same vocabulary without truncation, for counting.
    counter: EmbedderTokens,
    dimensions: usize,
    max_tokens: usize,
    pad_id: u32,
    device: Device,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("dimensions", &self.dimensions)
            .field("max_tokens", &self.max_tokens)
            .finish_non_exhaustive()
    }
}

impl Embedder {
    /// Loads `minilm-l6` from `models_dir` (see `runtime::catalog::models_dir`). Every file is
    /// checked against the catalogue's size and sha256 first (a stamp spares re-hashing), so a
    /// missing or corrupt file is reported with the command that fetches it.
    pub fn load(models_dir: &Path) -> Result<Embedder> {
        Embedder::load_with(models_dir, Precision::Int8)
    }

    /// `load` with a chosen engine.
    pub fn load_with(models_dir: &Path, precision: Precision) -> Result<Embedder> {
        let catalog = Catalog::builtin()?;
        let entry = catalog
            .get(MODEL_NAME)
            .ok_or_else(|| EmbedError::NotInCatalog {
                name: MODEL_NAME.into(),
                file: "model entry".into(),
            })?;
        let fetch = entry.fetch_command();
        let config_path = verified_file(models_dir, entry, CONFIG_FILE)?;
        let tokenizer_path = verified_file(models_dir, entry, TOKENIZER_FILE)?;
        let weights_path = verified_file(models_dir, entry, WEIGHTS_FILE)?;

        let config_text =
            std::fs::read_to_string(&config_path).map_err(|e| RuntimeError::io(&config_path, e))?;
        let config: Config =
            serde_json::from_str(&config_text).map_err(|e| EmbedError::Config {
                path: config_path.clone(),
                reason: e.to_string(),
                fetch: fetch.clone(),
            })?;
        let dimensions = hidden_size(&config_text).map_err(|reason| EmbedError::Config {
            path: config_path.clone(),
            reason,
            fetch: fetch.clone(),
        })?;
        let max_tokens =
            MAX_SEQUENCE_TOKENS.min(max_positions(&config_text).map_err(|reason| {
                EmbedError::Config {
                    path: config_path.clone(),
                    reason,
                    fetch: fetch.clone(),
                }
            })?);

        let tokenizer_error = |reason: String| EmbedError::Tokenizer {
            path: tokenizer_path.clone(),
            reason,
            fetch: fetch.clone(),
        };
        let mut tokenizer =
            Tokenizer::from_file(&tokenizer_path).map_err(|e| tokenizer_error(e.to_string()))?;
        // The file pads every text to 128 and truncates there; we pad per batch instead and
        // allow the model's full window.
        tokenizer.with_padding(None);
        let mut counting = tokenizer.clone();
        counting
            .with_truncation(None)
            .map_err(|e| tokenizer_error(e.to_string()))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..TruncationParams::default()
            }))
            .map_err(|e| tokenizer_error(e.to_string()))?;
        let pad_id = tokenizer.token_to_id("[PAD]").unwrap_or(0);

        let device = Device::Cpu;
        // SAFETY: the file was just checked against its catalogue hash and frontdesk never
        // writes to model files; as with every memory-mapped model, another process changing
        // the file while it is mapped is outside what we can guard against.
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(
                std::slice::from_ref(&weights_path),
                DType::F32,
                &device,
            )
        }
        .map_err(|e| EmbedError::Weights {
            path: weights_path.clone(),
            reason: candle_message(&e),
            fetch: fetch.clone(),
        })?;
        let weights_error = |e: candle_core::Error| EmbedError::Weights {
            path: weights_path.clone(),
            reason: candle_message(&e),
            fetch: fetch.clone(),
        };
        let engine = match precision {
            Precision::Int8 => Engine::Int8(MiniLm::load(&vb, &config).map_err(weights_error)?),
            Precision::F32 => Engine::F32(BertModel::load(vb, &config).map_err(weights_error)?),
        };

        Ok(Embedder {
            engine,
            tokenizer,
            counter: EmbedderTokens {
                tokenizer: counting,
            },
            dimensions,
            max_tokens,
            pad_id,
            device,
        })
    }

    /// Length of every vector (384 for all-MiniLM-L6-v2).
    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// Tokens the model reads per text, `[CLS]` and `[SEP]` included; the rest is cut off.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// A token counter with this model's vocabulary, for `chunk_document`.
    pub fn token_counter(&self) -> &EmbedderTokens {
        &self.counter
    }

    /// Which engine runs.
    pub fn precision(&self) -> Precision {
        match self.engine {
            Engine::Int8(_) => Precision::Int8,
            Engine::F32(_) => Precision::F32,
        }
    }

    /// One unit-length vector per text, in the order given.
    ///
    /// The integer engine runs one text per rayon thread. The f32 engine runs batches one
    /// after another: candle's CPU matrix multiplications already use every core, and running
    /// batches side by side would only oversubscribe them.
    pub fn embed_documents(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let encodings = texts
            .par_iter()
            .map(|t| {
                self.tokenizer
                    .encode_fast(*t, true)
                    .map(|e| e.get_ids().to_vec())
                    .map_err(|e| EmbedError::Tokenize(e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let model = match &self.engine {
            Engine::Int8(encoder) => {
                return Ok(encodings
                    .par_iter()
                    .map_init(Scratch::default, |scratch, ids| encoder.embed(ids, scratch))
                    .collect());
            }
            Engine::F32(model) => model,
        };
        let lengths: Vec<usize> = encodings.iter().map(Vec::len).collect();
        let mut out = vec![Vec::new(); texts.len()];
        for batch in plan_batches(&lengths, BATCH_SIZE) {
            let ids: Vec<&[u32]> = batch.iter().map(|&i| encodings[i].as_slice()).collect();
            let vectors = self.embed_batch(model, &ids)?;
            for (&i, v) in batch.iter().zip(vectors) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// The vector of one query: `embed_documents` of a batch of one.
    pub fn embed_query(&self, text: &str) -> Result<Vec<f32>> {
        self.embed_documents(&[text])?
            .pop()
            .ok_or_else(|| EmbedError::Inference("no vector for the query".into()))
    }

    /// Runs token id sequences (at least one token each) padded to the longest of them.
    fn embed_batch(&self, model: &BertModel, sequences: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let rows = sequences.len();
        let width = sequences.iter().map(|s| s.len()).max().unwrap_or(0);
        if rows == 0 || width == 0 {
            return Ok(vec![vec![0.0; self.dimensions]; rows]);
        }
        let mut ids = Vec::with_capacity(rows * width);
        let mut mask = Vec::with_capacity(rows * width);
        for seq in sequences {
            ids.extend_from_slice(seq);
            ids.extend(std::iter::repeat_n(self.pad_id, width - seq.len()));
            mask.extend(std::iter::repeat_n(1u32, seq.len()));
            mask.extend(std::iter::repeat_n(0u32, width - seq.len()));
        }
        let ids = Tensor::from_vec(ids, (rows, width), &self.device)?;
        let mask = Tensor::from_vec(mask, (rows, width), &self.device)?;
        let token_types = ids.zeros_like()?;
        let hidden = model.forward(&ids, &token_types, Some(&mask))?;
        let pooled = mean_pool(&hidden, &mask)?;
        Ok(l2_normalize(&pooled)?.to_vec2::<f32>()?)
    }
}

/// Mean of `hidden` (batch, tokens, dim) over the tokens whose `mask` (batch, tokens) is 1.
fn mean_pool(hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let mask = mask.to_dtype(hidden.dtype())?.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
    // sentence-transformers clamps the count at 1e-9: a row with no tokens stays zero.
    let counts = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?;
    summed.broadcast_div(&counts)
}

/// Each row divided by its L2 norm, the norm floored at `NORM_EPSILON` (a zero row stays zero).
fn l2_normalize(x: &Tensor) -> candle_core::Result<Tensor> {
    let norms = x
        .sqr()?
        .sum_keepdim(1)?
        .sqrt()?
        .clamp(NORM_EPSILON, f32::MAX)?;
    x.broadcast_div(&norms)
}

/// Indices grouped into batches of at most `size` texts of similar length: longest first, so
/// the first batch shows at once whether the largest one fits in memory.
fn plan_batches(lengths: &[usize], size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    order.chunks(size.max(1)).map(<[usize]>::to_vec).collect()
}

/// The catalogue file of `entry` whose path ends in `/name`, verified on disk.
fn verified_file(dir: &Path, entry: &CatalogModel, name: &str) -> Result<PathBuf> {
    let file = entry
        .files
        .iter()
        .find(|f| Path::new(&f.path).file_name() == Some(std::ffi::OsStr::new(name)))
        .ok_or_else(|| EmbedError::NotInCatalog {
            name: entry.name.clone(),
            file: name.into(),
        })?;
    let path = dir.join(&file.path);
    let fetch = entry.fetch_command();
    match file_state(dir, file, Check::Hash)? {
        FileState::Verified | FileState::Present => Ok(path),
        FileState::Missing => Err(RuntimeError::ModelMissing {
            name: entry.name.clone(),
            path,
            fetch,
        }
        .into()),
        FileState::WrongSize { found } => Err(RuntimeError::ModelTruncated {
            path,
            expected: file.size,
            found,
            fetch,
        }
        .into()),
        FileState::HashMismatch { found } => Err(RuntimeError::HashMismatch {
            path,
            expected: file.sha256.clone(),
            found,
            fetch,
        }
        .into()),
    }
}

fn config_number(config_text: &str, key: &str) -> std::result::Result<usize, String> {
    let value: serde_json::Value = serde_json::from_str(config_text).map_err(|e| e.to_string())?;
    value
        .get(key)
        .and_then(serde_json::Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("'{key}' is missing or not a positive integer"))
}

fn hidden_size(config_text: &str) -> std::result::Result<usize, String> {
    config_number(config_text, "hidden_size")
}

fn max_positions(config_text: &str) -> std::result::Result<usize, String> {
    config_number(config_text, "max_position_embeddings")
}

/// Counts tokens with the embedding model's own WordPiece vocabulary, without `[CLS]`/`[SEP]`
/// and without truncation, so a chunk bounded by it fits the model window when the bound is
/// at most `Embedder::max_tokens() - 2`.
#[derive(Clone)]
pub struct EmbedderTokens {
    tokenizer: Tokenizer,
}

impl std::fmt::Debug for EmbedderTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbedderTokens").finish_non_exhaustive()
    }
}

impl TokenCounter for EmbedderTokens {
    fn count(&self, text: &str) -> usize {
        match self.tokenizer.encode_fast(text, false) {
            Ok(encoding) => encoding.len(),
            // WordPiece over a BERT normaliser has no failing input we know of; should one
            // appear, fall back to the word estimate rather than stop an ingest.
            Err(_) => crate::kb::chunker::WordEstimate.count(text),
        }
    }

    fn word_counts(&self, text: &str, words: &[std::ops::Range<usize>]) -> Option<Vec<usize>> {
        // BERT's pre-tokenizer splits at whitespace, so no token spans two words and a run of
        // words has the sum of their counts. Each token goes to the word holding its start.
        let encoding = self.tokenizer.encode(text, false).ok()?;
        let mut counts = vec![0usize; words.len()];
        let mut word = 0;
        for &(start, _) in encoding.get_offsets() {
            while word < words.len() && words[word].end <= start {
                word += 1;
            }
            if word == words.len() || start < words[word].start {
                // A token outside every word: the assumption does not hold for this text.
                return None;
            }
            counts[word] += 1;
        }
        Some(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6)
    }

    #[test]
    fn mean_pool_ignores_masked_positions() {
        // Two rows of three tokens, dim 2; row 0 has its last token masked out and that token
        // holds a huge value that must not reach the mean.
        let hidden = Tensor::new(
            &[
                [[1.0f32, 2.0], [3.0, 4.0], [1000.0, -1000.0]],
                [[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]],
            ],
            &Device::Cpu,
        )
        .unwrap();
        let mask = Tensor::new(&[[1u32, 1, 0], [1, 1, 1]], &Device::Cpu).unwrap();
        let pooled = mean_pool(&hidden, &mask).unwrap().to_vec2::<f32>().unwrap();
        assert!(close(&pooled[0], &[2.0, 3.0]), "{pooled:?}");
        assert!(close(&pooled[1], &[2.0, 2.0]), "{pooled:?}");
    }

    #[test]
    fn mean_pool_of_a_fully_masked_row_is_zero_not_nan() {
        let hidden = Tensor::new(&[[[5.0f32, 6.0]]], &Device::Cpu).unwrap();
        let mask = Tensor::new(&[[0u32]], &Device::Cpu).unwrap();
        let pooled = mean_pool(&hidden, &mask).unwrap().to_vec2::<f32>().unwrap();
        assert!(close(&pooled[0], &[0.0, 0.0]), "{pooled:?}");
    }

    #[test]
    fn l2_normalize_gives_unit_rows_and_keeps_zero_rows_finite() {
        let x = Tensor::new(&[[3.0f32, 4.0], [0.0, 0.0]], &Device::Cpu).unwrap();
        let n = l2_normalize(&x).unwrap().to_vec2::<f32>().unwrap();
        assert!(close(&n[0], &[0.6, 0.8]), "{n:?}");
        assert!(close(&n[1], &[0.0, 0.0]), "{n:?}");
    }

    #[test]
    fn batches_group_similar_lengths_and_cover_every_index_once() {
        let lengths = [5, 100, 7, 99, 6, 98, 1];
        let batches = plan_batches(&lengths, 3);
        assert_eq!(batches, vec![vec![1, 3, 5], vec![2, 4, 0], vec![6]]);
        let mut all: Vec<usize> = batches.concat();
        all.sort_unstable();
        assert_eq!(all, (0..lengths.len()).collect::<Vec<_>>());
        assert!(plan_batches(&[], 32).is_empty());
    }

    #[test]
    fn config_numbers_are_checked() {
        let text = r#"{"hidden_size": 384, "max_position_embeddings": 0}"#;
        assert_eq!(hidden_size(text), Ok(384));
        assert!(max_positions(text)
            .unwrap_err()
            .contains("max_position_embeddings"));
        assert!(hidden_size("{").is_err());
    }

    #[test]
    fn missing_model_names_the_fetch_command() {
        let dir = tempfile::tempdir().unwrap();
        let err = Embedder::load(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("scripts/fetch-models minilm-l6"),
            "{err}"
        );
    }
}
