//! `frontdesk eval`: measure the assistant against a question set.

use super::common::Context;
use super::search::open_searcher;
use crate::eval::{evaluate, read_questions, EvalError};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Measure retrieval and answers against a questions file.
///
/// A questions file is JSON Lines, one object per line:
///   {"id": "q1", "question": "How long do refunds take?", "relevant": ["billing/refunds.md"],
///    "answer": "...", "answerable": true}
/// `relevant` holds page paths relative to the folder that was ingested.
///
/// Examples:
///   frontdesk eval retrieval --kb support --questions faq.jsonl
///   frontdesk eval retrieval --kb support --questions faq.jsonl --json
///   frontdesk eval retrieval --kb support --questions faq.jsonl --verbose
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct EvalArgs {
    #[command(subcommand)]
    action: EvalAction,
}

#[derive(Debug, Subcommand)]
enum EvalAction {
    Retrieval(RetrievalArgs),
    Answers(AnswersArgs),
}

/// Score the assistant's answers and hand-offs on a questions file.
///
/// Asks every question as `frontdesk ask` would (each on its own) and reports: answer rate
/// on answerable questions, hand-off rate on unanswerable ones, citation precision (cited
/// page among the question's `relevant` pages), token F1 of the answer against the reference
/// `answer`, and time to first token and total time (p50, p95). --verbose lists each
/// question's outcome, with the answer given. A small model on 2 cores takes a few seconds
/// per answered question.
///
/// Examples:
///   frontdesk eval answers --kb support --questions faq.jsonl
///   frontdesk eval answers --kb sample --questions data/sample/questions.jsonl --json
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
struct AnswersArgs {
    /// The knowledge base to answer from.
    #[arg(long, default_value = "default", value_name = "NAME")]
    kb: String,

    /// The questions, JSON Lines (see `frontdesk eval --help`).
    #[arg(long, value_name = "FILE.jsonl")]
    questions: PathBuf,

    /// Print {"questions", "answerable", "unanswerable", "answer_rate",
    /// "handoff_rate_unanswerable", "citation_precision", "answer_f1", "ttft_s", "total_s"}.
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    assistant: super::ask::AssistantArgs,
}

/// Score the search modes on a questions file (recall, MRR, nDCG).
///
/// Searches every answerable question in each mode (bm25, vector, hybrid) with k = 10 and
/// reports recall@1/5/10, MRR@10 and nDCG@10 (binary relevance) over the distinct pages
/// returned, averaged over the questions; unanswerable questions are left out. With
/// --verbose (-v), also list each question's missed pages per mode (to stderr with --json).
///
/// Examples:
///   frontdesk eval retrieval --kb support --questions faq.jsonl --json
///   frontdesk eval retrieval --kb support --questions faq.jsonl --verbose
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
struct RetrievalArgs {
    /// The knowledge base to search (made by `frontdesk ingest --kb NAME`).
    #[arg(long, default_value = "default", value_name = "NAME")]
    kb: String,

    /// The questions, JSON Lines (see `frontdesk eval --help`).
    #[arg(long, value_name = "FILE.jsonl")]
    questions: PathBuf,

    /// Print {"questions", "modes": {"bm25": {...}, "vector": {...}, "hybrid": {...}}}.
    #[arg(long)]
    json: bool,
    // --verbose / -v is the global flag (it also raises the log level): it lists, for each
    // mode, the questions whose relevant pages were missed (to stderr with --json).
}

pub fn run(ctx: &Context, args: EvalArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        EvalAction::Retrieval(args) => retrieval(ctx, args),
        EvalAction::Answers(args) => answers(ctx, args),
    }
}

fn answers(ctx: &Context, args: AnswersArgs) -> anyhow::Result<ExitCode> {
    let questions = read_questions(&args.questions)?;
    if questions.is_empty() {
        return Err(EvalError::NoQuestions {
            path: args.questions,
        }
        .into());
    }
    let (settings, persona) = args.assistant.settings()?;
    let (mut assistant, _, _) = args.assistant.assistant(ctx, &args.kb, settings, persona)?;
    let verbose = ctx.verbose > 0;
    let report = crate::eval::evaluate_answers(&mut assistant, &questions, &mut |q, a| {
        if verbose {
            let cited: Vec<&str> = a.citations.iter().map(|c| c.path.as_str()).collect();
            eprintln!(
                "{} [{}] {}: {}",
                q.id,
                if q.answerable {
                    "answerable"
                } else {
                    "unanswerable"
                },
                if a.handoff { "hand-off" } else { "answered" },
                match &a.ticket {
                    Some(t) => t.reason.describe().to_string(),
                    None => format!("{}\n    {}", cited.join(", "), a.answer.replace('\n', " ")),
                }
            );
        }
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} questions ({} answerable, {} unanswerable), knowledge base {:?}",
        report.questions, report.answerable, report.unanswerable, args.kb
    );
    println!("answer rate (answerable)        {:.3}", report.answer_rate);
    println!(
        "hand-off rate (unanswerable)    {:.3}",
        report.handoff_rate_unanswerable
    );
    println!(
        "citation precision              {:.3}",
        report.citation_precision
    );
    println!("answer token F1                 {:.3}", report.answer_f1);
    println!(
        "time to first token p50 / p95   {:.2} s / {:.2} s",
        report.ttft_s.p50, report.ttft_s.p95
    );
    println!(
        "total time p50 / p95            {:.2} s / {:.2} s",
        report.total_s.p50, report.total_s.p95
    );
    Ok(ExitCode::SUCCESS)
}

fn retrieval(ctx: &Context, args: RetrievalArgs) -> anyhow::Result<ExitCode> {
    let questions = read_questions(&args.questions)?;
    if !questions
        .iter()
        .any(|q| q.answerable && !q.relevant.is_empty())
    {
        return Err(EvalError::NoQuestions {
            path: args.questions,
        }
        .into());
    }
    let searcher = open_searcher(ctx, &args.kb)?;
    let report = evaluate(&searcher, &questions)?;
    if ctx.verbose > 0 {
        let mut lines = Vec::new();
        for m in &report.misses {
            lines.push(format!(
                "[{}] {} {:?}: missed {} (top: {})",
                m.mode,
                m.id,
                m.question,
                m.missed.join(", "),
                if m.returned.is_empty() {
                    "nothing".to_string()
                } else {
                    m.returned.join(", ")
                }
            ));
        }
        if lines.is_empty() {
            lines.push("no misses".to_string());
        }
        for line in lines {
            if args.json {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} questions, k = {}, knowledge base {:?}",
        report.questions,
        crate::eval::retrieval::EVAL_K,
        args.kb
    );
    println!(
        "{:<8} {:>9} {:>9} {:>10} {:>7} {:>8} {:>8} {:>8}",
        "mode", "recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10", "p50 ms", "p95 ms"
    );
    for mode in crate::kb::Mode::ALL {
        let m = report.modes[mode.name()];
        let s = m.scores;
        println!(
            "{:<8} {:>9.3} {:>9.3} {:>10.3} {:>7.3} {:>8.3} {:>8.1} {:>8.1}",
            mode.name(),
            s.recall_1,
            s.recall_5,
            s.recall_10,
            s.mrr_10,
            s.ndcg_10,
            m.latency_ms.p50,
            m.latency_ms.p95
        );
    }
    Ok(ExitCode::SUCCESS)
}
