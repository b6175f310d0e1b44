//! `frontdesk chat`: a multi-turn conversation with the model.

use super::common::{Context, ModelArgs, SamplingArgs};
use crate::runtime::{Message, Role, RuntimeError};
use clap::Args;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

/// Talk with the model, turn after turn.
///
/// When standard input is a terminal you get a prompt ("> "); type /reset to start over and
/// /exit (or Ctrl-D) to leave. Otherwise every line of standard input is one user message and
/// each reply is printed followed by an empty line. The model remembers the conversation:
/// earlier turns stay in its cache, so a follow-up costs only its own tokens.
///
/// Examples:
///   frontdesk chat
///   printf 'Hi!\nWhat did I just say?\n' | frontdesk chat -m smollm2-135m --temperature 0
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ChatArgs {
    /// The system message that opens the conversation.
    #[arg(long)]
    system: Option<String>,

    #[command(flatten)]
    model: ModelArgs,

    #[command(flatten)]
    sampling: SamplingArgs,
}

pub fn run(ctx: &Context, args: ChatArgs) -> anyhow::Result<ExitCode> {
    let options = args.sampling.options()?;
    let mut engine = args.model.load(ctx)?;
    let interactive = std::io::stdin().is_terminal();
    let opening: Vec<Message> = args
        .system
        .iter()
        .map(|s| Message::new(Role::System, s.clone()))
        .collect();
    let mut messages = opening.clone();
    let stdout = std::io::stdout();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            print!("> ");
            std::io::stdout().flush()?;
        }
        let Some(line) = lines.next() else { break };
        let line = line?;
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        if interactive {
            match text {
                "/exit" | "/quit" => break,
                "/reset" => {
                    messages = opening.clone();
                    println!("(conversation cleared)");
                    continue;
                }
                _ => {}
            }
        }
        messages.push(Message::new(Role::User, text.to_string()));
        let prompt = engine.chat_prompt(&messages)?;
        let result = {
            let mut out = stdout.lock();
            engine.generate(&prompt, &options, &mut |piece| {
                let _ = out.write_all(piece.as_bytes());
                let _ = out.flush();
            })
        };
        match result {
            Ok(generation) => {
                println!("\n");
                messages.push(Message::new(Role::Assistant, generation.text));
            }
            Err(RuntimeError::PromptTooLong { tokens, context }) => {
                // The conversation outgrew the context: say so and keep the session usable.
                messages.pop();
                anyhow::ensure!(
                    interactive,
                    "the conversation is {tokens} tokens, more than the model's context of {context}"
                );
                println!("(the conversation is {tokens} tokens, more than the context of {context}; type /reset)\n");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(ExitCode::SUCCESS)
}
