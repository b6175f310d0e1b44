//! `frontdesk generate`: one prompt in, generated text out (streamed, or as JSON).

use super::common::{Context, ModelArgs, SamplingArgs};
use crate::runtime::{Message, Role};
use clap::Args;
use std::io::{Read, Write};
use std::process::ExitCode;

/// Generate text from a prompt.
///
/// The prompt is sent as a user message in the model's chat template (instruction-tuned
/// models), or as plain text with --raw and for base models. Output streams as it is
/// generated.
///
/// Examples:
///   frontdesk generate --prompt "Explain what a refund is in one sentence."
///   frontdesk generate -m smollm2-135m --prompt "Hi" --temperature 0 --max-tokens 32
///   echo "Once upon a time" | frontdesk generate --raw --prompt -
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct GenerateArgs {
    /// The prompt; "-" reads it from standard input.
    #[arg(short, long)]
    prompt: String,

    /// A system message placed before the prompt (chat models).
    #[arg(long)]
    system: Option<String>,

    /// Feed the prompt as is, without the chat template.
    #[arg(long)]
    raw: bool,

    /// Print one JSON object (text, tokens, timings) instead of streaming text.
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    model: ModelArgs,

    #[command(flatten)]
    sampling: SamplingArgs,
}

pub fn run(ctx: &Context, args: GenerateArgs) -> anyhow::Result<ExitCode> {
    let prompt_text = if args.prompt == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        args.prompt.clone()
    };
    if prompt_text.trim().is_empty() {
        return Err(crate::runtime::RuntimeError::EmptyPrompt.into());
    }
    let options = args.sampling.options()?;
    let resolved = args.model.resolve(ctx)?;
    let mut engine = args.model.load_resolved(&resolved)?;
    let prompt = if args.raw || engine.template == crate::runtime::ChatTemplate::Raw {
        engine.raw_prompt(&prompt_text)?
    } else {
        let mut messages = Vec::new();
        if let Some(system) = &args.system {
            messages.push(Message::new(Role::System, system.clone()));
        }
        messages.push(Message::new(Role::User, prompt_text));
        engine.chat_prompt(&messages)?
    };

    let stdout = std::io::stdout();
    let generation = if args.json {
        engine.generate(&prompt, &options, &mut |_| {})?
    } else {
        let mut out = stdout.lock();
        let g = engine.generate(&prompt, &options, &mut |piece| {
            // A closed pipe (`| head`) is not an error worth reporting mid-stream.
            let _ = out.write_all(piece.as_bytes());
            let _ = out.flush();
        })?;
        let _ = writeln!(out);
        g
    };
    if args.json {
        let json = serde_json::json!({
            "text": generation.text,
            "stop_reason": generation.stop_reason,
            "prompt_tokens": generation.prompt_tokens,
            "generated_tokens": generation.tokens.len(),
            "tokens": generation.tokens,
            "seed": options.sampling.seed,
            "sampling": options.sampling,
            "timings": generation.timings,
            "model": engine.info,
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        let t = &generation.timings;
        tracing::info!(
            "{} prompt tokens in {:.2}s, {} generated in {:.2}s ({:.1} tok/s), stop: {:?}",
            generation.prompt_tokens,
            t.prefill_s,
            generation.tokens.len(),
            t.decode_s,
            generation.tokens.len() as f64 / t.decode_s.max(1e-9),
            generation.stop_reason
        );
    }
    Ok(ExitCode::SUCCESS)
}
