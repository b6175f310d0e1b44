//! Errors of the model runtime. Each says what failed and what the user can do about it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("model '{name}' is not downloaded (expected {path}) — run: {fetch}")]
    ModelMissing {
        name: String,
        path: PathBuf,
        fetch: String,
    },

    #[error(
        "model file {path} is truncated: expected {expected} bytes, found {found} — run: {fetch}"
    )]
    ModelTruncated {
        path: PathBuf,
        expected: u64,
        found: u64,
        fetch: String,
    },

    #[error("model file {path} has the wrong sha256 ({found}, expected {expected}): it is corrupt or not the catalogue's file — delete it and run: {fetch}")]
    HashMismatch {
        path: PathBuf,
        expected: String,
        found: String,
        fetch: String,
    },

    #[error("unknown model '{spec}': give a catalogue name ({known}), a path to a .gguf file, or org/repo:file from a Hugging Face cache")]
    UnknownModel { spec: String, known: String },

    #[error("{repo}:{file} is not in the Hugging Face cache at {cache} — frontdesk never downloads; copy the file there or pass a path")]
    NotInHfCache {
        repo: String,
        file: String,
        cache: PathBuf,
    },

    #[error("{path} is not a GGUF file (it starts with {magic:?}) — frontdesk loads quantized models in GGUF format")]
    NotGguf { path: PathBuf, magic: String },

    #[error("{path} is a damaged GGUF file: {reason} — fetch it again")]
    CorruptGguf { path: PathBuf, reason: String },

    #[error("{path} is truncated: its tensors need {needed} bytes, the file has {found} — fetch it again")]
    TruncatedGguf {
        path: PathBuf,
        needed: u64,
        found: u64,
    },

    #[error("{path} has architecture '{arch}', which frontdesk does not run (supported: qwen2, llama, gemma3)")]
    UnsupportedArchitecture { path: PathBuf, arch: String },

    #[error("{path}: missing metadata '{key}' — the file is not a complete model")]
    MissingMetadata { path: PathBuf, key: String },

    #[error("cannot load the weights of {path}: {reason} — the file is damaged or not a model frontdesk supports")]
    ModelLoad { path: PathBuf, reason: String },

    #[error("{path}: tensor '{tensor}' is stored as {ty}, which frontdesk's own kernels do not run (they run F32, F16, Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q6_K) — use such a quantization, or FRONTDESK_BACKEND=candle")]
    UnsupportedWeightType {
        path: PathBuf,
        tensor: String,
        ty: String,
    },

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("the prompt is empty — give some text to respond to")]
    EmptyPrompt,

    #[error(
        "the prompt is {tokens} tokens but the model's context window is {context} — shorten it"
    )]
    PromptTooLong { tokens: usize, context: usize },

    #[error("{0}")]
    UnsupportedCpu(String),

    #[error("cannot read {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },

    #[error("model catalogue: {0}")]
    Catalog(String),

    #[error("inference failed: {0}")]
    Inference(String),

    #[error("generation ran past its time limit of {seconds} s and was stopped")]
    TimedOut { seconds: f64 },
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

impl RuntimeError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RuntimeError::Io {
            path: path.into(),
            error: source,
        }
    }
}

impl From<candle_core::Error> for RuntimeError {
    fn from(e: candle_core::Error) -> Self {
        RuntimeError::Inference(candle_message(&e))
    }
}

/// candle's error without the backtrace it carries when RUST_BACKTRACE is set: one line.
pub(crate) fn candle_message(e: &candle_core::Error) -> String {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => candle_message(inner),
        other => other
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
    }
}
