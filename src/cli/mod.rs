//! The command line: argument types, one module per subcommand, output formatting.

mod ask;
mod bench;
mod chat;
mod common;
mod eval;
mod generate;
mod ingest;
mod models;
mod search;
mod serve;
mod stats;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

const ABOUT: &str = "frontdesk — an offline support assistant. Runs quantized open-weight \
language models on this machine (no external API, no network) and answers from your own \
documents.";

const AFTER_HELP: &str = "\
Examples:
  scripts/fetch-models                         # fetch the default model (once)
  frontdesk generate --prompt \"Write a haiku about tea\"
  frontdesk chat --model smollm2-135m
  frontdesk ingest ./docs --kb support
  frontdesk bench --model qwen2.5-coder-0.5b --json
  frontdesk models
  frontdesk search \"How long does a refund take?\" --kb support
  frontdesk eval retrieval --kb support --questions faq.jsonl
  frontdesk serve --kb support                 # API + chat widget on http://127.0.0.1:8080";

#[derive(Debug, Parser)]
#[command(name = "frontdesk", version, about = ABOUT, after_help = AFTER_HELP)]
pub struct Cli {
    /// Compute threads (default: the number of physical cores).
    #[arg(long, global = true, env = "FRONTDESK_THREADS", value_name = "N")]
    threads: Option<usize>,

    /// Where model files are (default: $FRONTDESK_MODELS, models/ of this checkout, or the data directory).
    #[arg(long, global = true, env = "FRONTDESK_MODELS", value_name = "DIR")]
    models_dir: Option<PathBuf>,

    /// Where knowledge bases and logs live (default: $FRONTDESK_HOME or ~/.local/share/frontdesk).
    #[arg(long, global = true, env = "FRONTDESK_HOME", value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Say more (-v: info logs and, for ingest, every skipped file; -vv: debug). RUST_LOG
    /// overrides the log level.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Ask(ask::AskArgs),
    Generate(generate::GenerateArgs),
    Chat(chat::ChatArgs),
    Ingest(ingest::IngestArgs),
    Bench(bench::BenchArgs),
    Models(models::ModelsArgs),
    Search(search::SearchArgs),
    Eval(eval::EvalArgs),
    Serve(serve::ServeArgs),
    Stats(stats::StatsArgs),
}

/// Parses the command line and runs one command.
pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    crate::runtime::ensure_cpu_supported()?;
    init_logging(cli.verbose);
    let threads = match cli.threads {
        Some(0) => anyhow::bail!("--threads must be at least 1"),
        Some(n) => n,
        None => crate::runtime::default_threads(),
    };
    crate::runtime::set_threads(threads);
    let ctx = common::Context {
        threads,
        models_dir: crate::runtime::catalog::models_dir(cli.models_dir.as_deref()),
        data_dir: cli
            .data_dir
            .unwrap_or_else(crate::runtime::catalog::data_dir),
        verbose: cli.verbose,
    };
    match cli.command {
        Command::Ask(args) => ask::run(&ctx, args),
        Command::Generate(args) => generate::run(&ctx, args),
        Command::Chat(args) => chat::run(&ctx, args),
        Command::Ingest(args) => ingest::run(&ctx, args),
        Command::Bench(args) => bench::run(&ctx, args),
        Command::Models(args) => models::run(&ctx, args),
        Command::Search(args) => search::run(&ctx, args),
        Command::Eval(args) => eval::run(&ctx, args),
        Command::Serve(args) => serve::run(&ctx, args),
        Command::Stats(args) => stats::run(&ctx, args),
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
