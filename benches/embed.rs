//! Embedding throughput of all-MiniLM-L6-v2: every ingested chunk passes through it once.
//! Reports chunks per second for 64 chunks of about 200 words (criterion's "elem/s").
//! Needs `scripts/fetch-models minilm-l6`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use frontdesk::kb::embedder::Embedder;
use frontdesk::runtime::catalog::models_dir;

const CHUNKS: usize = 64;
const WORDS_PER_CHUNK: usize = 200;

/// Support-page-like prose, varied per chunk so the batches are not identical.
fn chunks() -> Vec<String> {
    let words: Vec<&str> = include_str!("../README.md").split_whitespace().collect();
    (0..CHUNKS)
        .map(|i| {
            let start = (i * 37) % words.len().max(1);
            (0..WORDS_PER_CHUNK)
                .map(|j| words[(start + j) % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn bench_embed(c: &mut Criterion) {
    let embedder = match Embedder::load(&models_dir(None)) {
        Ok(e) => e,
        Err(e) => panic!("{e}"),
    };
    let texts = chunks();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut group = c.benchmark_group("embedder");
    group.throughput(Throughput::Elements(CHUNKS as u64));
    group.bench_function("minilm_l6_64_chunks_of_200_words", |b| {
        b.iter(|| embedder.embed_documents(&refs).expect("embed").len())
    });
    group.finish();
}

criterion_group!(benches, bench_embed);
criterion_main!(benches);
