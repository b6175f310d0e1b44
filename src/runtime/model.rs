//! One type over the model architectures frontdesk runs: load from GGUF, forward with a KV
//! cache. Qwen2 and Llama run on frontdesk's own transformer by default, with candle's model
//! code kept as the reference; Gemma 3 runs on candle.

use super::error::{candle_message, Result, RuntimeError};
use super::gguf::{Architecture, GgufFile};
use super::transformer::{BatchItem, KvCache, Transformer};
use candle_core::{DType, Device, Tensor};
use candle_transformers::models::{quantized_gemma3, quantized_llama, quantized_qwen2};

/// Which code runs the forward pass of a Qwen2 or Llama model (Gemma 3 is always candle).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// frontdesk's own transformer on the `frontdesk-kernels` products (CPU).
    #[default]
    Own,
    /// candle's `quantized_qwen2` / `quantized_llama`: the reference.
    Candle,
}

impl Backend {
    /// `own` or `candle`.
    pub fn from_name(name: &str) -> Option<Backend> {
        match name.trim().to_ascii_lowercase().as_str() {
            "own" => Some(Backend::Own),
            "candle" => Some(Backend::Candle),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Own => "own",
            Backend::Candle => "candle",
        }
    }
}

enum Weights {
    Own(Box<Transformer>),
    Qwen2(quantized_qwen2::ModelWeights),
    Llama(quantized_llama::ModelWeights),
    Gemma3(quantized_gemma3::ModelWeights),
}

/// A loaded language model. Its KV cache holds the positions fed so far; feeding position 0
/// starts a new sequence.
pub struct Model {
    weights: Weights,
    pub architecture: Architecture,
    /// The longest sequence (prompt + generated) this model can hold.
    pub context_length: usize,
    pub vocab_size: usize,
    /// Whether a batch of several tokens may follow cached positions. candle's Gemma 3 builds
    /// a wrongly typed mask in that case, so its prompts go in one batch from position 0.
    pub can_extend_batch: bool,
    device: Device,
}

impl Model {
    /// Loads the weights on the default backend; consumes the opened file.
    pub fn load(gguf: GgufFile, device: &Device) -> Result<Self> {
        Self::load_with(gguf, device, Backend::default())
    }

    /// Loads the weights on `backend` (for Qwen2 and Llama; Gemma 3 always runs on candle).
    pub fn load_with(gguf: GgufFile, device: &Device, backend: Backend) -> Result<Self> {
        let architecture = gguf.architecture;
        let declared_context = gguf.arch_u32("context_length")? as usize;
        let vocab_size = gguf
            .string_array("tokenizer.ggml.tokens")
            .map(|t| t.len())
            .unwrap_or(0);
        // The own transformer runs on the CPU; a GPU device keeps candle's CUDA path.
        if backend == Backend::Own && architecture != Architecture::Gemma3 && device.is_cpu() {
            let transformer = Transformer::load(&gguf)?;
            return Ok(Model {
                weights: Weights::Own(Box::new(transformer)),
                architecture,
                context_length: declared_context,
                vocab_size,
                can_extend_batch: true,
                device: Device::Cpu,
            });
        }
        let path = gguf.path.clone();
        let load_err = |e: candle_core::Error| RuntimeError::ModelLoad {
            path: path.clone(),
            reason: candle_message(&e),
        };
        let mut reader = gguf.reader();
        // The reader borrows the map, so the content is read anew for candle to consume.
        let content =
            candle_core::quantized::gguf_file::Content::read(&mut reader).map_err(load_err)?;
        let (weights, arch_limit) = match architecture {
            Architecture::Qwen2 => (
                Weights::Qwen2(
                    quantized_qwen2::ModelWeights::from_gguf(content, &mut reader, device)
                        .map_err(load_err)?,
                ),
                usize::MAX,
            ),
            Architecture::Llama => (
                Weights::Llama(
                    quantized_llama::ModelWeights::from_gguf(content, &mut reader, device)
                        .map_err(load_err)?,
                ),
                quantized_llama::MAX_SEQ_LEN,
            ),
            Architecture::Gemma3 => (
                Weights::Gemma3(
                    quantized_gemma3::ModelWeights::from_gguf(content, &mut reader, device)
                        .map_err(load_err)?,
                ),
                quantized_gemma3::MAX_SEQ_LEN,
            ),
        };
        Ok(Model {
            weights,
            architecture,
            context_length: declared_context.min(arch_limit),
            vocab_size,
            can_extend_batch: architecture != Architecture::Gemma3,
            device: device.clone(),
        })
    }

    /// Feeds `tokens` at positions `pos..pos + tokens.len()` and returns the logits of the last
    /// one, shape `(vocab,)`, f32.
    pub fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<Tensor> {
        let input = || -> Result<Tensor> { Ok(Tensor::new(tokens, &self.device)?.unsqueeze(0)?) };
        let logits = match &mut self.weights {
            Weights::Own(t) => {
                let logits = t.forward(tokens, pos)?;
                return Ok(Tensor::from_slice(logits, logits.len(), &Device::Cpu)?);
            }
            Weights::Qwen2(m) => m.forward(&input()?, pos)?,
            Weights::Llama(m) => m.forward(&input()?, pos)?,
            Weights::Gemma3(m) => m.forward(&input()?, pos)?,
        };
        Ok(logits.squeeze(0)?.to_dtype(DType::F32)?)
    }

    /// Bytes of weights a decoding step reads, when the own transformer runs the model.
    pub fn weight_bytes_per_token(&self) -> Option<usize> {
        match &self.weights {
            Weights::Own(t) => Some(t.weight_bytes_per_token()),
            _ => None,
        }
    }

    /// The backend running this model.
    pub fn backend(&self) -> Backend {
        match self.weights {
            Weights::Own(_) => Backend::Own,
            _ => Backend::Candle,
        }
    }

    /// A KV cache for one more concurrent sequence, when this model can run several in one
    /// pass ([`Model::forward_batch`]): the own transformer can, candle's model code cannot.
    pub fn new_sequence(&self) -> Option<KvCache> {
        match &self.weights {
            Weights::Own(t) => Some(t.new_cache()),
            _ => None,
        }
    }

    /// Appends each item's tokens to its sequence in one pass and returns the logits of each
    /// item's last token, `items.len() × vocab_size`, f32. Only on models that give
    /// [`Model::new_sequence`].
    pub fn forward_batch(&mut self, items: &mut [BatchItem<'_>]) -> Result<&[f32]> {
        match &mut self.weights {
            Weights::Own(t) => t.forward_batch(items),
            _ => Err(RuntimeError::Inference(
                "candle's model code runs one sequence at a time".into(),
            )),
        }
    }

    /// Whether `truncate` works (the own transformer's cache can be cut back).
    pub fn can_truncate(&self) -> bool {
        matches!(self.weights, Weights::Own(_))
    }

    /// Keeps the first `len` cached positions and forgets the rest, so a shared prompt prefix
    /// need not be read again. Only the own transformer can; candle's caches cannot be cut.
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        match &mut self.weights {
            Weights::Own(t) => {
                t.truncate(len);
                Ok(())
            }
            _ => Err(RuntimeError::Inference(
                "candle's model code cannot truncate its KV cache".into(),
            )),
        }
    }
}
