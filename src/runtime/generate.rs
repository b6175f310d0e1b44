//! The generation engine: a loaded model with its tokenizer and template, prefill in batches,
//! the decode loop with stop rules and streaming, and reuse of a cached prompt prefix.

use super::catalog::ResolvedModel;
use super::chat_template::{ChatTemplate, Message, Segment};
use super::error::{Result, RuntimeError};
use super::gguf::{Architecture, GgufFile};
use super::model::{Backend, Model};
use super::sampler::{Sampler, SamplingParams};
use super::tokenizer;
use candle_core::{Device, Tensor};
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;
use tokenizers::Tokenizer;

#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// A `tokenizer.json` that replaces the vocabulary in the GGUF file.
    pub tokenizer_json: Option<PathBuf>,
    /// Prompt tokens per forward pass during prefill.
    pub batch_size: usize,
    /// Who runs the forward pass of Qwen2 and Llama models: frontdesk's own transformer or
    /// candle's reference code.
    pub backend: Backend,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            tokenizer_json: None,
            batch_size: 512,
            backend: Backend::default(),
        }
    }
}

/// What a caller may want to report about the loaded model.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub path: PathBuf,
    pub file_sha256: Option<String>,
    pub architecture: &'static str,
    /// `own` or `candle`: who runs the forward pass.
    pub backend: &'static str,
    pub context_length: usize,
    pub template: &'static str,
}

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Generation ends before the first occurrence of any of these strings.
    pub stop_sequences: Vec<String>,
    /// The output may not begin with any of these texts (leading spaces aside): tokens that
    /// would start it so are never chosen first.
    pub forbidden_starts: Vec<String>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 256,
            sampling: SamplingParams::default(),
            stop_sequences: Vec::new(),
            forbidden_starts: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model ended its turn (an end-of-turn or end-of-text token).
    EndOfTurn,
    StopSequence,
    MaxTokens,
    /// The context window is full.
    ContextFull,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Timings {
    pub prefill_s: f64,
    /// From the call until the first generated token was chosen.
    pub ttft_s: f64,
    pub decode_s: f64,
    pub total_s: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Generation {
    pub text: String,
    pub tokens: Vec<u32>,
    pub prompt_tokens: usize,
    /// Prompt tokens whose KV state was already cached from the previous call.
    pub reused_prompt_tokens: usize,
    pub stop_reason: StopReason,
    pub timings: Timings,
}

pub struct Engine {
    pub(super) model: Model,
    /// Recognises special tokens: for template markup.
    tokenizer: Tokenizer,
    /// Encodes special-token strings as plain text: for message content.
    literal: Tokenizer,
    pub template: ChatTemplate,
    pub(super) stop_tokens: HashSet<u32>,
    bos: Option<u32>,
    pub(super) batch_size: usize,
    /// The tokens whose KV state the model holds, in order from position 0.
    pub(super) cached: Vec<u32>,
    /// The last `forbidden_starts` asked for and their tokens (a support prompt asks for the
    /// same ones every time; finding them reads the whole vocabulary).
    forbidden: Option<(Vec<String>, Vec<u32>)>,
    pub info: ModelInfo,
}

impl Engine {
    pub fn load(model: &ResolvedModel, options: &LoadOptions) -> Result<Self> {
        Self::load_on(model, options, &default_device()?)
    }

    pub fn load_on(
        resolved: &ResolvedModel,
        options: &LoadOptions,
        device: &Device,
    ) -> Result<Self> {
        let gguf = GgufFile::open(&resolved.path)?;
        let tokenizer = match &options.tokenizer_json {
            Some(path) => tokenizer::from_json_file(path)?,
            None => tokenizer::from_gguf(&gguf)?,
        };
        let mut literal = tokenizer.clone();
        literal.set_encode_special_tokens(true);
        let template = ChatTemplate::from_gguf(&gguf);
        let mut stop_tokens: HashSet<u32> = template
            .end_of_turn_tokens()
            .iter()
            .filter_map(|t| tokenizer.token_to_id(t))
            .collect();
        if let Some(eos) = gguf.u32("tokenizer.ggml.eos_token_id") {
            stop_tokens.insert(eos);
        }
        let add_bos = gguf
            .bool("tokenizer.ggml.add_bos_token")
            .unwrap_or(gguf.architecture == Architecture::Gemma3);
        let bos = if add_bos {
            gguf.u32("tokenizer.ggml.bos_token_id")
        } else {
            None
        };
        let model = Model::load_with(gguf, device, options.backend)?;
        let info = ModelInfo {
            name: resolved.name.clone(),
            path: resolved.path.clone(),
            file_sha256: resolved.sha256.clone(),
            architecture: model.architecture.name(),
            backend: model.backend().name(),
            context_length: model.context_length,
            template: template.name(),
        };
        Ok(Engine {
            model,
            tokenizer,
            literal,
            template,
            stop_tokens,
            bos,
            batch_size: options.batch_size.max(1),
            cached: Vec::new(),
            forbidden: None,
            info,
        })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn context_length(&self) -> usize {
        self.model.context_length
    }

    pub fn vocab_size(&self) -> usize {
        self.model.vocab_size
    }

    /// Encodes text as the model sees it, special-token strings included.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        encode_with(&self.tokenizer, text)
    }

    /// The prompt tokens of a conversation, rendered with the model's chat template.
    pub fn chat_prompt(&self, messages: &[Message]) -> Result<Vec<u32>> {
        let mut ids: Vec<u32> = self.bos.into_iter().collect();
        for segment in self.template.render(messages) {
            match segment {
                Segment::Markup(m) => ids.extend(encode_with(&self.tokenizer, &m)?),
                Segment::Text(t) => ids.extend(encode_with(&self.literal, &t)?),
            }
        }
        Ok(ids)
    }

    /// The prompt tokens of plain text (no template), for base models and raw completion.
    pub fn raw_prompt(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids: Vec<u32> = self.bos.into_iter().collect();
        ids.extend(self.encode(text)?);
        Ok(ids)
    }

    /// Tokens whose text, leading spaces aside, begins with one of `starts` (or is a proper
    /// beginning of one, so the start cannot be spelled a piece at a time).
    pub fn tokens_starting_with(&mut self, starts: &[String]) -> Vec<u32> {
        if starts.is_empty() {
            return Vec::new();
        }
        if let Some((asked, tokens)) = &self.forbidden {
            if asked.as_slice() == starts {
                return tokens.clone();
            }
        }
        let vocab = self.tokenizer.get_vocab_size(true) as u32;
        let tokens: Vec<u32> = (0..vocab)
            .filter(|&id| {
                let Some(raw) = self.tokenizer.id_to_token(id) else {
                    return false;
                };
                // Byte-level BPE marks a leading space with 'Ġ', SentencePiece with '▁'.
                let text = raw.trim_start_matches(['Ġ', '▁', ' ']);
                !text.is_empty()
                    && starts
                        .iter()
                        .any(|s| text.starts_with(s.as_str()) || s.starts_with(text))
            })
            .collect();
        self.forbidden = Some((starts.to_vec(), tokens.clone()));
        tokens
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| RuntimeError::Tokenizer(e.to_string()))
    }

    /// Feeds tokens at `pos` in batches and returns the last logits. Keeps `cached` in step.
    pub(super) fn feed(&mut self, tokens: &[u32]) -> Result<Tensor> {
        let batch = if self.model.can_extend_batch {
            self.batch_size
        } else {
            tokens.len().max(1)
        };
        let mut logits = None;
        for chunk in tokens.chunks(batch) {
            match self.model.forward(chunk, self.cached.len()) {
                Ok(l) => logits = Some(l),
                Err(e) => {
                    // Some layers may hold this chunk already: the cache is no longer known.
                    self.cached.clear();
                    return Err(e);
                }
            }
            self.cached.extend_from_slice(chunk);
        }
        logits.ok_or(RuntimeError::EmptyPrompt)
    }

    /// Processes `prompt` from position 0, reusing the longest cached prefix it shares (on the
    /// own transformer; candle's caches can only be extended).
    /// Returns the logits after the last prompt token and how many tokens were reused.
    pub fn prefill(&mut self, prompt: &[u32]) -> Result<(Tensor, usize)> {
        if prompt.is_empty() {
            return Err(RuntimeError::EmptyPrompt);
        }
        if prompt.len() >= self.model.context_length {
            return Err(RuntimeError::PromptTooLong {
                tokens: prompt.len(),
                context: self.model.context_length,
            });
        }
        if self.model.can_truncate() {
            // Keep whatever prefix this prompt shares with what is cached (a conversation's
            // earlier turns, the fixed system prompt of every support answer), but always feed
            // at least one token: its logits are the result.
            let common = shared_prefix(&self.cached, prompt).min(prompt.len() - 1);
            self.model.truncate(common)?;
            self.cached.truncate(common);
        } else {
            let reusable = self.model.can_extend_batch
                && self.cached.len() < prompt.len()
                && prompt.starts_with(&self.cached);
            if !reusable {
                self.cached.clear();
            }
        }
        let reused = self.cached.len();
        tracing::debug!("prompt of {} tokens, {reused} already cached", prompt.len());
        let logits = self.feed(&prompt[reused..])?;
        Ok((logits, reused))
    }

    /// Generates a continuation of `prompt`, calling `on_text` with each new piece of text as
    /// soon as it is final. The pieces joined equal the returned `text`.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        options: &GenerateOptions,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Generation> {
        let start = Instant::now();
        let (mut logits, reused) = self.prefill(prompt)?;
        let prefill_s = start.elapsed().as_secs_f64();
        let mut sampler = Sampler::new(&options.sampling);
        let forbidden = self.tokens_starting_with(&options.forbidden_starts);
        if !forbidden.is_empty() {
            logits = forbid(&logits, &forbidden)?;
        }
        let mut history: Vec<u32> = prompt.to_vec();
        let mut generated: Vec<u32> = Vec::new();
        let mut stream = TextStream::new(&options.stop_sequences);
        let mut ttft_s = None;
        let stop_reason = loop {
            if options.max_tokens == 0 {
                break StopReason::MaxTokens;
            }
            let next = sampler.sample(&logits, &history)?;
            ttft_s.get_or_insert_with(|| start.elapsed().as_secs_f64());
            if self.stop_tokens.contains(&next) {
                break StopReason::EndOfTurn;
            }
            generated.push(next);
            history.push(next);
            if stream.push(&self.decode(&generated)?, on_text) {
                break StopReason::StopSequence;
            }
            // Checked before feeding: the last token's logits would go unused.
            if generated.len() >= options.max_tokens {
                break StopReason::MaxTokens;
            }
            if self.cached.len() >= self.model.context_length {
                break StopReason::ContextFull;
            }
            logits = self.feed(&[next])?;
        };
        if stop_reason != StopReason::StopSequence {
            stream.finish(&self.decode(&generated)?, on_text);
        }
        let total_s = start.elapsed().as_secs_f64();
        let ttft_s = ttft_s.unwrap_or(total_s);
        Ok(Generation {
            text: stream.emitted,
            tokens: generated,
            prompt_tokens: prompt.len(),
            reused_prompt_tokens: reused,
            stop_reason,
            timings: Timings {
                prefill_s,
                ttft_s,
                decode_s: total_s - ttft_s,
                total_s,
            },
        })
    }

    /// Bytes of weights one generated token reads (own transformer only).
    pub fn weight_bytes_per_token(&self) -> Option<usize> {
        self.model.weight_bytes_per_token()
    }

    /// Feeds tokens with no sampling, from position `pos` (0 starts a new sequence): the
    /// benchmark's view of the model.
    pub fn forward_raw(&mut self, tokens: &[u32], pos: usize) -> Result<Tensor> {
        self.cached.clear();
        self.model.forward(tokens, pos)
    }
}

/// How many leading tokens `a` and `b` have in common.
pub(super) fn shared_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// `logits` with the `tokens` made impossible.
fn forbid(logits: &Tensor, tokens: &[u32]) -> Result<Tensor> {
    let mut values = logits.to_vec1::<f32>()?;
    forbid_in(&mut values, tokens);
    Ok(Tensor::from_vec(
        values.clone(),
        values.len(),
        logits.device(),
    )?)
}

pub(super) fn forbid_in(logits: &mut [f32], tokens: &[u32]) {
    for &t in tokens {
        if let Some(l) = logits.get_mut(t as usize) {
            *l = f32::NEG_INFINITY;
        }
    }
}

fn encode_with(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    tokenizer
        .encode_fast(text, false)
        .map(|e| e.get_ids().to_vec())
        .map_err(|e| RuntimeError::Tokenizer(e.to_string()))
}

/// The device inference runs on: the first CUDA GPU when built with `cuda` and one is there.
pub fn default_device() -> Result<Device> {
    #[cfg(feature = "cuda")]
    {
        Ok(Device::cuda_if_available(0)?)
    }
    #[cfg(not(feature = "cuda"))]
    {
        Ok(Device::Cpu)
    }
}

/// Turns the decoded text of all generated tokens, step by step, into final pieces: text is
/// held back while it could still be the start of a stop sequence or ends in a partial
/// UTF-8 character.
pub(super) struct TextStream {
    stops: Vec<String>,
    pub(super) emitted: String,
}

impl TextStream {
    pub(super) fn new(stops: &[String]) -> Self {
        TextStream {
            stops: stops.to_vec(),
            emitted: String::new(),
        }
    }

    /// Returns true when a stop sequence was found (the text before it has been emitted).
    pub(super) fn push(&mut self, decoded: &str, on_text: &mut dyn FnMut(&str)) -> bool {
        if decoded.ends_with('\u{FFFD}') {
            return false;
        }
        let first_stop = self
            .stops
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| decoded.find(s.as_str()))
            .min();
        if let Some(at) = first_stop {
            self.emit_up_to(decoded, at, on_text);
            return true;
        }
        let held = self
            .stops
            .iter()
            .map(|s| longest_suffix_that_starts(decoded, s))
            .max()
            .unwrap_or(0);
        self.emit_up_to(decoded, decoded.len() - held, on_text);
        false
    }

    pub(super) fn finish(&mut self, decoded: &str, on_text: &mut dyn FnMut(&str)) {
        self.emit_up_to(decoded, decoded.len(), on_text);
    }

    fn emit_up_to(&mut self, decoded: &str, end: usize, on_text: &mut dyn FnMut(&str)) {
        // Decoding is stable for the tokens seen so far, so what was emitted is a prefix.
        let start = self.emitted.len();
        if end > start && decoded.is_char_boundary(start) && decoded.is_char_boundary(end) {
            let piece = &decoded[start..end];
            on_text(piece);
            self.emitted.push_str(piece);
        }
    }
}

/// Length of the longest proper prefix of `stop` that `text` ends with.
fn longest_suffix_that_starts(text: &str, stop: &str) -> usize {
    (1..stop.len())
        .rev()
        .filter(|&n| stop.is_char_boundary(n))
        .find(|&n| text.ends_with(&stop[..n]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(steps: &[&str], stops: &[&str]) -> (Vec<String>, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut stream = TextStream::new(&stops);
        let mut pieces = Vec::new();
        let mut stopped = false;
        for s in steps {
            if stream.push(s, &mut |p| pieces.push(p.to_string())) {
                stopped = true;
                break;
            }
        }
        if !stopped {
            stream.finish(steps.last().unwrap(), &mut |p| pieces.push(p.to_string()));
        }
        assert_eq!(pieces.concat(), stream.emitted);
        (pieces, stopped)
    }

    #[test]
    fn text_before_a_stop_sequence_is_emitted_and_the_rest_is_not() {
        let (pieces, stopped) = run(
            &["Hello", "Hello\nUs", "Hello\nUser:", "Hello\nUser: x"],
            &["\nUser:"],
        );
        assert!(stopped);
        assert_eq!(pieces.concat(), "Hello");
    }

    #[test]
    fn a_false_start_of_a_stop_sequence_is_released_later() {
        let (pieces, stopped) = run(&["a\nU", "a\nUnder"], &["\nUser:"]);
        assert!(!stopped);
        assert_eq!(pieces, vec!["a", "\nUnder"]);
    }

    #[test]
    fn partial_utf8_is_held_back() {
        let (pieces, _) = run(&["caf", "caf\u{FFFD}", "café"], &[]);
        assert_eq!(pieces, vec!["caf", "é"]);
    }

    #[test]
    fn suffix_overlap() {
        assert_eq!(longest_suffix_that_starts("abc\nUs", "\nUser:"), 3);
        assert_eq!(longest_suffix_that_starts("abc", "\nUser:"), 0);
    }
}
