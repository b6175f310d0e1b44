//! One type over the model architectures candle runs: load from GGUF, forward with a KV cache.

use super::error::{candle_message, Result, RuntimeError};
use super::gguf::{Architecture, GgufFile};
use candle_core::{DType, Device, Tensor};
use candle_transformers::models::{quantized_gemma3, quantized_llama, quantized_qwen2};

enum Weights {
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
    /// Loads the weights; consumes the opened file.
    pub fn load(gguf: GgufFile, device: &Device) -> Result<Self> {
        let architecture = gguf.architecture;
        let declared_context = gguf.arch_u32("context_length")? as usize;
        let vocab_size = gguf
            .string_array("tokenizer.ggml.tokens")
            .map(|t| t.len())
            .unwrap_or(0);
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
        let input = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        let logits = match &mut self.weights {
            Weights::Qwen2(m) => m.forward(&input, pos)?,
            Weights::Llama(m) => m.forward(&input, pos)?,
            Weights::Gemma3(m) => m.forward(&input, pos)?,
        };
        Ok(logits.squeeze(0)?.to_dtype(DType::F32)?)
    }
}
