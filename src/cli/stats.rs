//! `frontdesk stats`: what the audit log says about the answers given so far.

use super::common::Context;
use crate::answer::audit::stats;
use clap::Args;
use std::process::ExitCode;

/// Counts, hand-off rate, citation rate and latencies of the answers in the audit log.
///
/// Reads DATA_DIR/frontdesk.sqlite, where `frontdesk ask` records every answer and hand-off.
///
/// Examples:
///   frontdesk stats
///   frontdesk --data-dir /srv/frontdesk stats --json
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct StatsArgs {
    /// Print {"answers", "handoffs", "handoff_rate", "citation_rate", "ttft_s": {"p50", "p95"},
    /// "total_s": {"p50", "p95"}}.
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Context, args: StatsArgs) -> anyhow::Result<ExitCode> {
    let s = stats(&ctx.data_dir)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("answers                  {}", s.answers);
    println!(
        "hand-offs                {} ({:.1} %)",
        s.handoffs,
        100.0 * s.handoff_rate
    );
    println!("answers with citations   {:.1} %", 100.0 * s.citation_rate);
    println!(
        "time to first token      p50 {:.2} s, p95 {:.2} s",
        s.ttft_s.p50, s.ttft_s.p95
    );
    println!(
        "total time               p50 {:.2} s, p95 {:.2} s",
        s.total_s.p50, s.total_s.p95
    );
    Ok(ExitCode::SUCCESS)
}
