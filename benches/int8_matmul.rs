//! The 8-bit integer matrix product behind the embedder (`frontdesk_kernels::int8`), on the
//! shapes of all-MiniLM-L6-v2's linear layers for a 256-token chunk, on every path this CPU
//! runs. Reports GOP/s (one multiply-add = 2 operations; criterion's "elem/s" ÷ 1e9).
//!
//! `cargo bench --bench int8_matmul`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use frontdesk_kernels::int8::{matmul_with, Int8Path, PackedWeights, QuantizedRows};

/// (rows of x, outputs, inputs): the fused QKV, the attention output, the two FFN layers.
const SHAPES: [(usize, usize, usize, &str); 4] = [
    (256, 1152, 384, "qkv"),
    (256, 384, 384, "attention_out"),
    (256, 1536, 384, "ffn_in"),
    (256, 384, 1536, "ffn_out"),
];

fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

fn bench_int8(c: &mut Criterion) {
    let mut group = c.benchmark_group("int8_matmul");
    for path in [Int8Path::Avx512Vnni, Int8Path::Avx2, Int8Path::Scalar] {
        if !path.supported() {
            continue;
        }
        for (m, n, k, name) in SHAPES {
            let w = PackedWeights::quantize(&values(n * k, 1), n, k).expect("shape");
            let mut x = QuantizedRows::new();
            x.quantize(&values(m * k, 2), m, k).expect("shape");
            let bias = values(n, 3);
            let mut out = vec![0.0f32; m * n];
            group.throughput(Throughput::Elements((2 * m * n * k) as u64));
            group.bench_function(format!("{path:?}/{name}_{m}x{n}x{k}"), |b| {
                b.iter(|| matmul_with(path, &x, &w, Some(&bias), &mut out).expect("shape"))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_int8);
criterion_main!(benches);
