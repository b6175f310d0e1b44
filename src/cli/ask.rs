//! `frontdesk ask`: one support question answered from a knowledge base, with its sources —
//! or handed to a person with a ticket.

use super::common::{Context, ModelArgs};
use super::search::open_searcher;
use crate::answer::audit::{AuditLog, ModelRecord};
use crate::answer::persona::Persona;
use crate::answer::{Answer, AnswerSettings, Assistant};
use anyhow::Context as _;
use clap::Args;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

/// Answer a customer's question from a knowledge base, citing its sources.
///
/// frontdesk retrieves the best passages (hybrid search), asks the model to answer from them
/// only, and checks every citation: a [n] must name a passage that supports its sentence.
/// When the knowledge base holds nothing close to the question, the model finds no answer
/// in the passages, no citation survives the check, or the customer asks for a person,
/// frontdesk does not guess: it says a person will take over and prints a ticket (the
/// question, a summary, the candidate articles and the conversation). Every answer is
/// recorded in the audit log (DATA_DIR/frontdesk.sqlite; see `frontdesk stats`).
///
/// Examples:
///   frontdesk ask "How long does a refund take?"
///   frontdesk ask "Can I pay with Klarna?" --kb support --json
///   echo "Where is my parcel?" | frontdesk ask -
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct AskArgs {
    /// The question; "-" reads it from standard input.
    question: String,

    /// The knowledge base to answer from (made by `frontdesk ingest --kb NAME`).
    #[arg(long, default_value = "default", value_name = "NAME")]
    kb: String,

    /// Print one JSON object: answer, handoff, confidence, citations, ticket, timings, model.
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    pub(super) assistant: AssistantArgs,
}

/// How the assistant answers (shared by `ask` and `eval answers`).
#[derive(Debug, Args)]
pub(super) struct AssistantArgs {
    /// The assistant's persona (TOML: company, assistant_name, tone, support_email,
    /// support_hours, handoff_message); default: the built-in sample's.
    #[arg(long, value_name = "FILE")]
    persona: Option<PathBuf>,

    /// Hand off without asking the model when the best match between question and
    /// knowledge base is below this cosine similarity.
    #[arg(long, value_name = "X", default_value_t = AnswerSettings::default().min_confidence)]
    min_confidence: f64,

    /// Passages given to the model (at most).
    #[arg(long, value_name = "N", default_value_t = AnswerSettings::default().sources)]
    sources: usize,

    /// Leave out retrieved pages whose similarity to the question is more than this below
    /// the most similar one's (1 keeps them all).
    #[arg(long, value_name = "X", default_value_t = AnswerSettings::default().source_margin)]
    source_margin: f64,

    #[command(flatten)]
    model: ModelArgs,
}

impl AssistantArgs {
    pub(super) fn model(&self) -> &ModelArgs {
        &self.model
    }

    /// The settings, checked, and the persona (read before anything heavy loads).
    pub(super) fn settings(&self) -> anyhow::Result<(AnswerSettings, Persona)> {
        if self.sources == 0 {
            anyhow::bail!("--sources must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.min_confidence) {
            anyhow::bail!("--min-confidence must be between 0 and 1");
        }
        let persona = match &self.persona {
            Some(path) => Persona::load(path)
                .map_err(|e| anyhow::anyhow!("cannot read the persona {}: {e}", path.display()))?,
            None => Persona::builtin(),
        };
        if !(0.0..=1.0).contains(&self.source_margin) {
            anyhow::bail!("--source-margin must be between 0 and 1");
        }
        let settings = AnswerSettings {
            sources: self.sources,
            source_margin: self.source_margin,
            min_confidence: self.min_confidence,
            ..AnswerSettings::default()
        };
        Ok((settings, persona))
    }

    /// Opens the knowledge base, loads the model, and returns the assistant with the model's
    /// catalogue name and file sha256.
    pub(super) fn assistant(
        &self,
        ctx: &Context,
        kb: &str,
        settings: AnswerSettings,
        persona: Persona,
    ) -> anyhow::Result<(Assistant, String, String)> {
        let searcher = open_searcher(ctx, kb)?;
        let mut resolved = self.model.resolve(ctx)?;
        let engine = self.model.load_resolved(&resolved)?;
        let sha256 = resolved.sha256().context("hashing the model file")?;
        let name = resolved.name.clone();
        Ok((
            Assistant::new(searcher, engine, persona, settings),
            name,
            sha256,
        ))
    }
}

pub fn run(ctx: &Context, args: AskArgs) -> anyhow::Result<ExitCode> {
    let question = if args.question == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        args.question.clone()
    };
    let (settings, persona) = args.assistant.settings()?;
    // Cheap checks first: a bad question or a missing knowledge base fails before the
    // model loads.
    settings.check_question(&question)?;
    let (mut assistant, model_name, model_sha256) =
        args.assistant.assistant(ctx, &args.kb, settings, persona)?;
    let mut draft = DraftView::new(!args.json);
    let answer = assistant.ask_streaming(&question, &[], &mut |piece| draft.push(piece));
    draft.clear();
    let answer = answer?;
    let audit = AuditLog::open(&ctx.data_dir)?;
    audit.record(
        &args.kb,
        question.trim(),
        &answer,
        &ModelRecord {
            name: model_name.clone(),
            sha256: model_sha256.clone(),
        },
        assistant.settings(),
    )?;

    if args.json {
        let json = answer_json(&answer, &model_name, &model_sha256);
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print_answer(&answer);
    }
    Ok(ExitCode::SUCCESS)
}

/// The model's draft, shown dimmed on the terminal (stderr) while it is written, then erased
/// for the checked answer: the customer sees progress at once, but only checked text stays.
/// Off when stderr is not a terminal or the output is JSON.
pub(super) struct DraftView {
    term: console::Term,
    shown: String,
    on: bool,
}

impl DraftView {
    pub(super) fn new(wanted: bool) -> DraftView {
        let term = console::Term::stderr();
        let on = wanted && term.is_term();
        DraftView {
            term,
            shown: String::new(),
            on,
        }
    }

    pub(super) fn push(&mut self, piece: &str) {
        if !self.on {
            return;
        }
        self.shown.push_str(piece);
        // A terminal that stops taking output ends the view, not the answer.
        if self
            .term
            .write_str(&console::style(piece).dim().to_string())
            .is_err()
        {
            self.on = false;
        }
    }

    /// Erases the rows the draft took (its lines, wrapped at the terminal's width).
    pub(super) fn clear(&mut self) {
        if !self.on || self.shown.is_empty() {
            return;
        }
        let rows = rows_taken(&self.shown, usize::from(self.term.size().1));
        let _ = self.term.clear_line();
        if rows > 1 {
            let _ = self.term.clear_last_lines(rows - 1);
        }
        self.shown.clear();
    }
}

/// Terminal rows `text` takes when written from the start of a row `width` columns wide: each
/// line at least one, long ones wrapped (escape codes take no columns).
fn rows_taken(text: &str, width: usize) -> usize {
    let width = width.max(1);
    text.split('\n')
        .map(|line| console::measure_text_width(line).div_ceil(width).max(1))
        .sum()
}

/// DESIGN's `ask --json` object.
pub(super) fn answer_json(
    answer: &Answer,
    model_name: &str,
    model_sha256: &str,
) -> serde_json::Value {
    serde_json::json!({
        "answer": answer.answer,
        "handoff": answer.handoff,
        "confidence": answer.confidence,
        "citations": answer.citations,
        "ticket": answer.ticket,
        "timings": answer.timings,
        "model": {"name": model_name, "file_sha256": model_sha256},
    })
}

pub(super) fn print_answer(answer: &Answer) {
    println!("{}", answer.answer);
    if let Some(ticket) = &answer.ticket {
        println!("\nHand-off ticket: {}", ticket.summary);
        for c in &ticket.candidate_sources {
            println!("  candidate: {} — {}", c.title, c.path);
        }
        return;
    }
    println!("\nSources:");
    for c in &answer.citations {
        let place = if c.section.is_empty() {
            c.title.clone()
        } else {
            c.section.clone()
        };
        let link = match &c.anchor {
            Some(a) => format!("{}#{a}", c.path),
            None => c.path.clone(),
        };
        println!("  [{}] {place} — {link}", c.n);
    }
}

#[cfg(test)]
mod tests {
    use super::rows_taken;

    #[test]
    fn a_draft_takes_a_row_per_line_and_more_for_wrapped_ones() {
        assert_eq!(rows_taken("short", 80), 1);
        // Exactly one row wide stays one row; one more character wraps.
        assert_eq!(rows_taken(&"x".repeat(80), 80), 1);
        assert_eq!(rows_taken(&"x".repeat(81), 80), 2);
        // Every line break starts a row, an empty line included.
        assert_eq!(rows_taken("a\n\nb", 80), 3);
        // The dim styling's escape codes take no columns.
        let dim = console::style("x".repeat(80))
            .dim()
            .force_styling(true)
            .to_string();
        assert!(dim.len() > 80);
        assert_eq!(rows_taken(&dim, 80), 1);
        assert_eq!(rows_taken("abc", 0), 3);
    }
}
