//! The quantized products behind the language models (`frontdesk_kernels::quant`), on the
//! shapes of Qwen2.5-0.5B's layers and formats, on every path this CPU runs:
//! - prompt processing (512 rows of activations): GOP/s (one multiply-add = 2 operations;
//!   criterion's "elem/s" ÷ 1e9);
//! - generation (one row): GB/s of weights read (criterion's "B/s"), to compare with the
//!   machine's memory bandwidth, measured in the same run (`memory/read_1GiB`); only the
//!   vocabulary-sized and `dram_` matrices are too large for the caches, as in a model.
//!
//! `cargo bench --bench quant_matmul` (`-- prompt`, `-- generation` or `-- memory` for a part)

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use frontdesk_kernels::ggml::{synthetic_tensor, GgmlType};
use frontdesk_kernels::quant::{Activations, QMatrix, QuantPath};
use rayon::prelude::*;

/// (type, outputs, inputs, name): Qwen2.5-0.5B Q4_K_M's matrices, then the 1.5B's
/// (K-quants only) and SmolLM2's.
const SHAPES: [(GgmlType, usize, usize, &str); 8] = [
    (GgmlType::Q5_0, 896, 896, "attn_q"),
    (GgmlType::Q5_0, 4864, 896, "ffn_up"),
    (GgmlType::Q4K, 896, 4864, "ffn_down_q4k"),
    (GgmlType::Q6K, 896, 4864, "ffn_down_q6k"),
    (GgmlType::Q8_0, 896, 896, "attn_v_q8_0"),
    (GgmlType::Q4K, 8960, 1536, "1.5b_ffn_up_q4k"),
    (GgmlType::Q6K, 1536, 8960, "1.5b_ffn_down_q6k"),
    (GgmlType::Q4_1, 1536, 576, "smollm_ffn_up_q4_1"),
];

fn activations(n: usize, cols: usize) -> Activations {
    let x: Vec<f32> = (0..n * cols)
        .map(|i| ((i as f32 * 0.618_034).fract() - 0.5) * 2.0)
        .collect();
    let mut a = Activations::new();
    a.quantize(&x, n, cols).expect("shape");
    a
}

fn paths() -> Vec<QuantPath> {
    [QuantPath::Avx512Vnni, QuantPath::Avx2]
        .into_iter()
        .filter(|p| p.supported())
        .collect()
}

fn bench_prompt(c: &mut Criterion) {
    let mut group = c.benchmark_group("prompt");
    group.sample_size(10);
    let n = 512;
    for path in paths() {
        for (ty, rows, cols, name) in SHAPES {
            let m = QMatrix::from_ggml(ty, rows, cols, &synthetic_tensor(ty, rows, cols, 1))
                .expect("repack");
            let x = activations(n, cols);
            let mut out = vec![0.0f32; n * rows];
            group.throughput(Throughput::Elements((2 * n * rows * cols) as u64));
            group.bench_function(format!("{path:?}/{name}_{n}x{rows}x{cols}"), |b| {
                b.iter(|| m.matmul_with(path, &x, &mut out).expect("shape"))
            });
        }
    }
    group.finish();
}

fn bench_generation(c: &mut Criterion) {
    let mut group = c.benchmark_group("generation");
    let mut shapes = SHAPES.to_vec();
    // The vocabulary projections: the largest matrices a token reads, and far larger than the
    // caches — what generation meets (the other shapes stay cached between iterations).
    shapes.push((GgmlType::Q8_0, 151_936, 896, "output_q8_0"));
    shapes.push((GgmlType::Q6K, 151_936, 1536, "1.5b_output_q6k"));
    shapes.push((GgmlType::Q4K, 65_536, 1536, "dram_q4k"));
    for path in paths() {
        for &(ty, rows, cols, name) in &shapes {
            let m = QMatrix::from_ggml(ty, rows, cols, &synthetic_tensor(ty, rows, cols, 1))
                .expect("repack");
            let x = activations(1, cols);
            let mut out = vec![0.0f32; rows];
            group.throughput(Throughput::Bytes(m.bytes() as u64));
            group.bench_function(format!("{path:?}/{name}_{rows}x{cols}"), |b| {
                b.iter(|| m.matmul_with(path, &x, &mut out).expect("shape"))
            });
        }
    }
    group.finish();
}

/// The machine's read bandwidth, measured as `frontdesk bench --memory-bound` does
/// (`runtime::bench::memory_read_gb_s`): the yardstick for the uncached generation figures
/// above, in the same run.
fn bench_memory(c: &mut Criterion) {
    let mut group = c.benchmark_group("memory");
    group.sample_size(10);
    let bytes = 1usize << 30;
    // Non-zero values: pages really allocated, not the shared zero page.
    let buffer = vec![1u64; bytes / 8];
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("read_1GiB", |b| {
        b.iter(|| {
            buffer
                .par_chunks(1 << 17)
                .map(|c| c.iter().fold(0u64, |a, &x| a.wrapping_add(x)))
                .sum::<u64>()
        })
    });
    group.finish();
}

fn bench_quantize(c: &mut Criterion) {
    let mut group = c.benchmark_group("quantize");
    let (n, cols) = (512, 4864);
    let x: Vec<f32> = (0..n * cols)
        .map(|i| (i as f32 * 0.618_034).fract() - 0.5)
        .collect();
    let mut a = Activations::new();
    group.throughput(Throughput::Elements((n * cols) as u64));
    group.bench_function(format!("activations_{n}x{cols}"), |b| {
        b.iter(|| a.quantize(&x, n, cols).expect("shape"))
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_prompt,
    bench_generation,
    bench_memory,
    bench_quantize
);
criterion_main!(benches);
