//! `frontdesk bench`: prompt-processing and generation throughput, llama-bench style.

use super::common::{Context, ModelArgs};
use crate::runtime::bench::{
    memory_read_gb_s, peak_rss_mb, summarize, time_generation, time_prompt, BenchResult,
};
use clap::Args;
use std::process::ExitCode;
use std::time::Instant;

/// Measure tokens per second on this machine.
///
/// ppN: N prompt tokens processed from an empty cache in batches of --batch-size.
/// tgN: N tokens generated one at a time from an empty cache.
/// Each test runs once to warm up, then --repetitions times; the table shows mean ± standard
/// deviation. Compare against llama.cpp with scripts/bench-vs-llamacpp.
/// --memory-bound also measures this machine's memory read bandwidth: generation reads every
/// weight once per token, so bandwidth / bytes per token is the fastest it can be.
///
/// Examples:
///   frontdesk bench
///   frontdesk bench -m smollm2-135m -p 512 -n 128 -r 3 --json
///   frontdesk bench -m qwen2.5-coder-1.5b -p 0 -n 128 --memory-bound
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct BenchArgs {
    /// Prompt lengths to test (0 skips prompt processing).
    #[arg(
        short = 'p',
        long = "n-prompt",
        default_value = "512",
        value_delimiter = ',',
        value_name = "N"
    )]
    n_prompt: Vec<usize>,

    /// Generation lengths to test (0 skips generation).
    #[arg(
        short = 'n',
        long = "n-gen",
        default_value = "128",
        value_delimiter = ',',
        value_name = "N"
    )]
    n_gen: Vec<usize>,

    /// Timed runs of each test.
    #[arg(short, long, default_value_t = 5, value_name = "R")]
    repetitions: usize,

    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,

    /// Also measure memory read bandwidth (a 1 GiB buffer) and report generation as a share
    /// of the bound it sets.
    #[arg(long)]
    memory_bound: bool,

    #[command(flatten)]
    model: ModelArgs,
}

pub fn run(ctx: &Context, args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.repetitions > 0, "--repetitions must be at least 1");
    let mut resolved = args.model.resolve(ctx)?;
    let file_sha256 = resolved.sha256()?;
    let started = Instant::now();
    let mut engine = args.model.load_resolved(&resolved)?;
    let load_s = started.elapsed().as_secs_f64();
    let context = engine.context_length();
    let batch = args.model.batch_size;

    let mut results: Vec<BenchResult> = Vec::new();
    for &n in args.n_prompt.iter().filter(|&&n| n > 0) {
        anyhow::ensure!(
            n < context,
            "-p {n} does not fit the model's context of {context} tokens"
        );
        time_prompt(&mut engine, n.min(32), batch)?;
        let times = (0..args.repetitions)
            .map(|_| time_prompt(&mut engine, n, batch))
            .collect::<Result<Vec<_>, _>>()?;
        results.push(summarize(format!("pp{n}"), n, &times));
    }
    for &n in args.n_gen.iter().filter(|&&n| n > 0) {
        anyhow::ensure!(
            n < context,
            "-n {n} does not fit the model's context of {context} tokens"
        );
        time_generation(&mut engine, n.min(8))?;
        let times = (0..args.repetitions)
            .map(|_| time_generation(&mut engine, n))
            .collect::<Result<Vec<_>, _>>()?;
        results.push(summarize(format!("tg{n}"), n, &times));
    }
    let peak = peak_rss_mb();
    let features = frontdesk_kernels::cpu::CpuFeatures::detect();
    let bytes_per_token = engine.weight_bytes_per_token();
    let bandwidth = args.memory_bound.then(|| memory_read_gb_s(1 << 30, 5));
    // Tokens per second if generation did nothing but read the weights at full bandwidth.
    let bound = match (bandwidth, bytes_per_token) {
        (Some(gb_s), Some(bytes)) if bytes > 0 => Some(gb_s * 1e9 / bytes as f64),
        _ => None,
    };

    if args.json {
        let json = serde_json::json!({
            "model": engine.info.name,
            "file": engine.info.path,
            "file_sha256": file_sha256,
            "architecture": engine.info.architecture,
            "threads": ctx.threads,
            "batch_size": batch,
            "load_s": load_s,
            "peak_rss_mb": peak,
            "cpu_features": features.to_string(),
            "weight_bytes_per_token": bytes_per_token,
            "memory_read_gb_s": bandwidth,
            "tg_memory_bound_tok_per_s": bound,
            "results": results,
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        println!(
            "model: {} ({}), {} threads, load {:.2}s, peak memory {}",
            engine.info.name,
            engine.info.architecture,
            ctx.threads,
            load_s,
            peak.map(|p| format!("{p:.0} MB"))
                .unwrap_or_else(|| "unknown".into())
        );
        println!("cpu: {features}");
        if let Some(gb_s) = bandwidth {
            match (bytes_per_token, bound) {
                (Some(bytes), Some(b)) => println!(
                    "memory: {gb_s:.1} GB/s read; a token reads {:.0} MB of weights: \
                     generation is bounded near {b:.1} tok/s",
                    bytes as f64 / 1e6
                ),
                _ => println!("memory: {gb_s:.1} GB/s read"),
            }
        }
        println!(
            "{:<8} {:>8} {:>22} {:>5}",
            "test", "tokens", "tok/s", "runs"
        );
        for r in &results {
            let share = bound
                .filter(|_| r.test.starts_with("tg"))
                .map(|b| {
                    format!(
                        "  {:.0} % of the memory bound",
                        100.0 * r.tok_per_s_mean / b
                    )
                })
                .unwrap_or_default();
            println!(
                "{:<8} {:>8} {:>13.2} ± {:<6.2} {:>5}{share}",
                r.test, r.n_tokens, r.tok_per_s_mean, r.tok_per_s_stddev, r.runs
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
