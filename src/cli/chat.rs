//! `frontdesk chat`: a multi-turn conversation with the model, or with `--kb` a support
//! conversation answered from a knowledge base.

use super::ask::{answer_json, print_answer, AssistantArgs, DraftView};
use super::common::{Context, SamplingArgs};
use crate::answer::audit::{AuditLog, ModelRecord};
use crate::answer::handoff::Turn;
use crate::answer::AnswerError;
use crate::runtime::{Message, Role, RuntimeError};
use clap::Args;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

/// Talk with the model, turn after turn — or, with --kb, a support conversation.
///
/// When standard input is a terminal you get a prompt ("> "); type /reset to start over and
/// /exit (or Ctrl-D) to leave. Otherwise every line of standard input is one user message and
/// each reply is printed followed by an empty line. The model remembers the conversation:
/// earlier turns stay in its cache, so a follow-up costs only its own tokens.
///
/// With --kb NAME every message is a customer's question answered from that knowledge base as
/// `frontdesk ask` answers it (checked citations, or a hand-off with a ticket that carries the
/// conversation); a follow-up such as "and how long does that take?" is searched together with
/// the question before it. --json prints one JSON object per answer, one per line.
///
/// Examples:
///   frontdesk chat
///   printf 'Hi!\nWhat did I just say?\n' | frontdesk chat -m smollm2-135m --temperature 0
///   frontdesk chat --kb support
///   printf 'How do I return a jacket?\nAnd how long does that take?\n' | frontdesk chat --kb support --json
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ChatArgs {
    /// The system message that opens the conversation (not with --kb).
    #[arg(long, conflicts_with = "kb")]
    system: Option<String>,

    /// Answer as the support assistant from this knowledge base (see `frontdesk ask`).
    #[arg(long, value_name = "NAME")]
    kb: Option<String>,

    /// With --kb: print each answer as one line of JSON (the `ask --json` object).
    #[arg(long, requires = "kb")]
    json: bool,

    #[command(flatten)]
    assistant: AssistantArgs,

    #[command(flatten)]
    sampling: SamplingArgs,
}

pub fn run(ctx: &Context, args: ChatArgs) -> anyhow::Result<ExitCode> {
    if let Some(kb) = &args.kb {
        return support_chat(ctx, &args, kb);
    }
    let options = args.sampling.options()?;
    let mut engine = args.assistant.model().load(ctx)?;
    let interactive = std::io::stdin().is_terminal();
    let opening: Vec<Message> = args
        .system
        .iter()
        .map(|s| Message::new(Role::System, s.clone()))
        .collect();
    let mut messages = opening.clone();
    let stdout = std::io::stdout();
    let mut input = Input::new(interactive);
    while let Some(said) = input.next()? {
        let text = match said {
            Said::Message(text) => text,
            Said::Reset => {
                messages = opening.clone();
                continue;
            }
        };
        let text = text.as_str();
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

/// `chat --kb`: every line a customer message, answered from the knowledge base with the
/// conversation so far.
fn support_chat(ctx: &Context, args: &ChatArgs, kb: &str) -> anyhow::Result<ExitCode> {
    let (settings, persona) = args.assistant.settings()?;
    let (mut assistant, model_name, model_sha256) =
        args.assistant.assistant(ctx, kb, settings, persona)?;
    let audit = AuditLog::open(&ctx.data_dir)?;
    let model = ModelRecord {
        name: model_name.clone(),
        sha256: model_sha256.clone(),
    };
    let interactive = std::io::stdin().is_terminal();
    let mut history: Vec<Turn> = Vec::new();
    let mut input = Input::new(interactive);
    while let Some(said) = input.next()? {
        let text = match said {
            Said::Message(text) => text,
            Said::Reset => {
                history.clear();
                continue;
            }
        };
        let text = text.as_str();
        let mut draft = DraftView::new(!args.json);
        let answer = assistant.ask_streaming(text, &history, &mut |piece| draft.push(piece));
        draft.clear();
        let answer = match answer {
            Ok(a) => a,
            // A bad message ends a scripted session but not an interactive one.
            Err(e @ (AnswerError::EmptyQuestion | AnswerError::QuestionTooLong { .. }))
                if interactive =>
            {
                println!("({e})\n");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        audit.record(kb, text, &answer, &model, assistant.settings())?;
        if args.json {
            println!("{}", answer_json(&answer, &model_name, &model_sha256));
        } else {
            print_answer(&answer);
            println!();
        }
        history.push(Turn {
            role: "customer",
            text: text.to_string(),
        });
        history.push(Turn {
            role: "assistant",
            text: answer.answer,
        });
    }
    Ok(ExitCode::SUCCESS)
}

/// What the person at the keyboard (or the script) said.
enum Said {
    Message(String),
    /// `/reset` (interactive only): start the conversation over.
    Reset,
}

/// Messages from standard input, one per non-empty line. On a terminal it shows a prompt and
/// understands `/reset` and `/exit` (or `/quit`); a script's lines are all messages.
struct Input {
    lines: std::io::Lines<std::io::StdinLock<'static>>,
    interactive: bool,
}

impl Input {
    fn new(interactive: bool) -> Input {
        Input {
            lines: std::io::stdin().lock().lines(),
            interactive,
        }
    }

    /// The next message or command; `None` at the end of input or on `/exit`.
    fn next(&mut self) -> std::io::Result<Option<Said>> {
        loop {
            if self.interactive {
                print!("> ");
                std::io::stdout().flush()?;
            }
            let Some(line) = self.lines.next() else {
                return Ok(None);
            };
            let line = line?;
            let text = line.trim();
            if text.is_empty() {
                continue;
            }
            if self.interactive {
                match text {
                    "/exit" | "/quit" => return Ok(None),
                    "/reset" => {
                        println!("(conversation cleared)");
                        return Ok(Some(Said::Reset));
                    }
                    _ => {}
                }
            }
            return Ok(Some(Said::Message(text.to_string())));
        }
    }
}
