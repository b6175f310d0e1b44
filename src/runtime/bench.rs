//! llama-bench-style throughput: prompt processing of N tokens in one pass from an empty
//! cache (ppN) and N single-token decode steps (tgN), repeated, with mean and spread.

use super::error::Result;
use super::generate::Engine;
use std::time::Instant;

#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchResult {
    pub test: String,
    pub n_tokens: usize,
    pub tok_per_s_mean: f64,
    pub tok_per_s_stddev: f64,
    pub runs: usize,
    pub samples_tok_per_s: Vec<f64>,
}

/// Token ids spread over the vocabulary; the values do not affect speed.
fn bench_tokens(n: usize, vocab: usize) -> Vec<u32> {
    let span = vocab.clamp(2, 32_000) as u64 - 1;
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            1 + ((state >> 33) % span) as u32
        })
        .collect()
}

/// Seconds to process `n` prompt tokens from an empty cache, in batches of `batch`.
pub fn time_prompt(engine: &mut Engine, n: usize, batch: usize) -> Result<f64> {
    let tokens = bench_tokens(n, engine.vocab_size());
    let start = Instant::now();
    for (i, chunk) in tokens.chunks(batch.max(1)).enumerate() {
        engine.forward_raw(chunk, i * batch)?;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Seconds for `n` single-token steps from an empty cache.
pub fn time_generation(engine: &mut Engine, n: usize) -> Result<f64> {
    let tokens = bench_tokens(n, engine.vocab_size());
    let start = Instant::now();
    for (pos, token) in tokens.iter().enumerate() {
        engine.forward_raw(&[*token], pos)?;
    }
    Ok(start.elapsed().as_secs_f64())
}

pub fn summarize(test: String, n_tokens: usize, seconds: &[f64]) -> BenchResult {
    let rates: Vec<f64> = seconds
        .iter()
        .map(|s| n_tokens as f64 / s.max(1e-9))
        .collect();
    let mean = rates.iter().sum::<f64>() / rates.len().max(1) as f64;
    let var = if rates.len() > 1 {
        rates.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (rates.len() - 1) as f64
    } else {
        0.0
    };
    BenchResult {
        test,
        n_tokens,
        tok_per_s_mean: mean,
        tok_per_s_stddev: var.sqrt(),
        runs: rates.len(),
        samples_tok_per_s: rates,
    }
}

/// Memory read bandwidth in GB/s with the thread pool: the best of `passes` parallel reads
/// of a buffer of `bytes` (far larger than any cache). Generation reads every weight once per
/// token, so this over the bytes a token reads bounds tokens per second.
pub fn memory_read_gb_s(bytes: usize, passes: usize) -> f64 {
    use rayon::prelude::*;
    // Non-zero values: pages are really allocated, not the shared zero page.
    let buffer = vec![1u64; (bytes / 8).max(1 << 16)];
    let mut best = f64::INFINITY;
    for _ in 0..passes.max(1) {
        let start = Instant::now();
        let sum: u64 = buffer
            .par_chunks(1 << 17)
            .map(|c| c.iter().fold(0u64, |a, &x| a.wrapping_add(x)))
            .sum();
        best = best.min(start.elapsed().as_secs_f64());
        std::hint::black_box(sum);
    }
    (buffer.len() * 8) as f64 / best.max(1e-9) / 1e9
}

/// Peak resident memory of this process in MB (Linux), from `VmHWM`.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_known_times() {
        let r = summarize("tg4".into(), 4, &[1.0, 2.0]);
        assert_eq!(r.samples_tok_per_s, vec![4.0, 2.0]);
        assert!((r.tok_per_s_mean - 3.0).abs() < 1e-12);
        assert!((r.tok_per_s_stddev - 2f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn memory_bandwidth_is_measured() {
        // A real figure, not a constant: more than a slow disk, less than any cache.
        let gb_s = memory_read_gb_s(64 << 20, 2);
        assert!(gb_s > 0.5 && gb_s < 2_000.0, "{gb_s} GB/s");
    }

    #[test]
    fn bench_tokens_stay_inside_the_vocabulary() {
        assert!(bench_tokens(1000, 100).iter().all(|t| (1..100).contains(t)));
    }
}
