//! Arguments and steps that several subcommands share.

use crate::runtime::{resolve_model, Backend, Engine, LoadOptions, ResolvedModel, SamplingParams};
use anyhow::Context as _;
use clap::Args;
use std::path::PathBuf;

pub struct Context {
    pub threads: usize,
    pub models_dir: PathBuf,
    /// Knowledge bases live under `data_dir/kb/NAME`.
    pub data_dir: PathBuf,
    /// How many times the global -v/--verbose was given.
    pub verbose: u8,
}

#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// A catalogue name (see `frontdesk models`), a path to a .gguf file, or org/repo:file
    /// from a local Hugging Face cache.
    #[arg(
        short,
        long,
        env = "FRONTDESK_MODEL",
        default_value = "qwen2.5-coder-0.5b"
    )]
    pub model: String,

    /// A tokenizer.json to use instead of the vocabulary stored in the GGUF file.
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,

    /// Prompt tokens per forward pass while reading the prompt.
    #[arg(long, default_value_t = 512, value_name = "N")]
    pub batch_size: usize,

    /// Who runs Qwen2 and Llama models: `own` (frontdesk's transformer) or `candle` (the
    /// reference). Gemma 3 always runs on candle.
    #[arg(
        long,
        env = "FRONTDESK_BACKEND",
        default_value = "own",
        value_name = "NAME",
        value_parser = parse_backend,
        hide_short_help = true
    )]
    pub backend: Backend,
}

fn parse_backend(s: &str) -> Result<Backend, String> {
    Backend::from_name(s).ok_or_else(|| format!("unknown backend '{s}' (own or candle)"))
}

impl ModelArgs {
    pub fn resolve(&self, ctx: &Context) -> anyhow::Result<ResolvedModel> {
        Ok(resolve_model(&self.model, &ctx.models_dir)?)
    }

    pub fn load(&self, ctx: &Context) -> anyhow::Result<Engine> {
        let resolved = self.resolve(ctx)?;
        self.load_resolved(&resolved)
    }

    pub fn load_resolved(&self, resolved: &ResolvedModel) -> anyhow::Result<Engine> {
        if self.batch_size == 0 {
            anyhow::bail!("--batch-size must be at least 1");
        }
        let options = LoadOptions {
            tokenizer_json: self.tokenizer.clone(),
            batch_size: self.batch_size,
            backend: self.backend,
        };
        let engine = Engine::load(resolved, &options)
            .with_context(|| format!("cannot load model '{}'", self.model))?;
        tracing::info!(
            "loaded {} ({} on {}, context {}, template {})",
            resolved.path.display(),
            engine.info.architecture,
            engine.info.backend,
            engine.info.context_length,
            engine.info.template
        );
        Ok(engine)
    }
}

#[derive(Debug, Clone, Args)]
pub struct SamplingArgs {
    /// Sampling temperature; 0 is greedy (always the most likely token).
    #[arg(long, default_value_t = 0.7, value_name = "T")]
    pub temperature: f64,

    /// Sample only among the K most likely tokens (0: no limit).
    #[arg(long, default_value_t = 40, value_name = "K")]
    pub top_k: usize,

    /// Sample only among the most likely tokens that together reach probability P (1: no limit).
    #[arg(long, default_value_t = 0.95, value_name = "P")]
    pub top_p: f64,

    /// Penalise tokens seen in the last --repeat-last-n tokens (1: off).
    #[arg(long, default_value_t = 1.1, value_name = "X")]
    pub repeat_penalty: f32,

    #[arg(long, default_value_t = 64, value_name = "N", hide_short_help = true)]
    pub repeat_last_n: usize,

    /// Random seed: the same seed, model and input give the same output.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Stop at most after this many generated tokens.
    #[arg(long, default_value_t = 512, value_name = "N")]
    pub max_tokens: usize,

    /// End the output before this text (repeatable).
    #[arg(long = "stop", value_name = "TEXT")]
    pub stop: Vec<String>,
}

impl SamplingArgs {
    pub fn options(&self) -> anyhow::Result<crate::runtime::GenerateOptions> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            anyhow::bail!("--temperature must be 0 or more");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            anyhow::bail!("--top-p must be in (0, 1]");
        }
        if !(self.repeat_penalty > 0.0 && self.repeat_penalty.is_finite()) {
            anyhow::bail!("--repeat-penalty must be more than 0");
        }
        Ok(crate::runtime::GenerateOptions {
            max_tokens: self.max_tokens,
            sampling: SamplingParams {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                repeat_penalty: self.repeat_penalty,
                repeat_last_n: self.repeat_last_n,
                seed: self.seed,
            },
            stop_sequences: self.stop.clone(),
            forbidden_starts: Vec::new(),
        })
    }
}
