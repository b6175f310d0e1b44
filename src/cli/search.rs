//! `frontdesk search`: the pages of a knowledge base that best match a question.

use super::common::Context;
use crate::kb::{Embedder, Hit, KbDir, KbError, Mode, Searcher};
use clap::{Args, ValueEnum};
use std::process::ExitCode;

/// Search a knowledge base and list the best-matching pages.
///
/// Each page appears once, represented by its best chunk: rank, path (with #anchor, or
/// p.N for a PDF page), section headings, score and a short excerpt. Hybrid mode (the
/// default) fuses keyword (BM25) and meaning (embedding) rankings by reciprocal rank fusion;
/// its scores are small fusion scores, comparable only within one result list.
///
/// Examples:
///   frontdesk search "How long does a refund take?"
///   frontdesk search "reset password" --kb support --k 5 --mode bm25
///   frontdesk search "can I send parcels abroad" --json
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct SearchArgs {
    /// The question or keywords to search for.
    query: String,

    /// The knowledge base to search (made by `frontdesk ingest --kb NAME`).
    #[arg(long, default_value = "default", value_name = "NAME")]
    kb: String,

    /// How many pages to list.
    #[arg(short, long, default_value_t = 10, value_name = "N")]
    k: usize,

    /// Ranking: keywords (bm25), meaning (vector) or both fused (hybrid).
    #[arg(long, value_enum, default_value_t = SearchMode::Hybrid)]
    mode: SearchMode,

    /// Print a JSON array of hits (chunk_id, path, title, heading_path, anchor, page, score,
    /// snippet) instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SearchMode {
    Bm25,
    Vector,
    Hybrid,
}

impl From<SearchMode> for Mode {
    fn from(m: SearchMode) -> Mode {
        match m {
            SearchMode::Bm25 => Mode::Bm25,
            SearchMode::Vector => Mode::Vector,
            SearchMode::Hybrid => Mode::Hybrid,
        }
    }
}

/// Opens the published generation of `name`, failing fast (before the embedder loads) when
/// the knowledge base does not exist.
pub(super) fn open_searcher(ctx: &Context, name: &str) -> anyhow::Result<Searcher> {
    let kb = KbDir::new(&ctx.data_dir, name)?;
    kb.open_current()?;
    let embedder = Embedder::load(&ctx.models_dir)?;
    Ok(Searcher::open(&kb, embedder)?)
}

pub fn run(ctx: &Context, args: SearchArgs) -> anyhow::Result<ExitCode> {
    if args.query.trim().is_empty() {
        return Err(KbError::EmptyQuery.into());
    }
    if args.k == 0 {
        anyhow::bail!("--k must be at least 1");
    }
    let searcher = open_searcher(ctx, &args.kb)?;
    let hits = searcher.search(&args.query, args.k, args.mode.into())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&hits)?);
        return Ok(ExitCode::SUCCESS);
    }
    if hits.is_empty() {
        println!("no matches in knowledge base {:?}", args.kb);
        return Ok(ExitCode::SUCCESS);
    }
    for (rank, hit) in hits.iter().enumerate() {
        print!("{}", format_hit(rank + 1, hit));
    }
    Ok(ExitCode::SUCCESS)
}

/// Where a hit is: the path with `#anchor` or ` p.N`.
pub fn location(hit: &Hit) -> String {
    match (&hit.anchor, hit.page) {
        (Some(anchor), _) if !anchor.is_empty() => format!("{}#{anchor}", hit.path),
        (_, Some(page)) => format!("{} p.{page}", hit.path),
        _ => hit.path.clone(),
    }
}

fn format_hit(rank: usize, hit: &Hit) -> String {
    let mut out = format!("{rank:>2}. {}  (score {:.4})\n", location(hit), hit.score);
    let headings = if hit.heading_path.is_empty() {
        hit.title.clone()
    } else {
        hit.heading_path.join(" › ")
    };
    if !headings.is_empty() {
        out.push_str(&format!("    {headings}\n"));
    }
    if !hit.snippet.is_empty() {
        out.push_str(&format!("    {}\n", hit.snippet));
    }
    out
}
