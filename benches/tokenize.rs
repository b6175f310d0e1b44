//! Tokenizer throughput of the GGUF-built Qwen tokenizer: every prompt and, later, every
//! ingested chunk passes through it. Needs `scripts/fetch-models qwen2.5-coder-0.5b`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use frontdesk::runtime::catalog::models_dir;
use frontdesk::runtime::gguf::GgufFile;
use frontdesk::runtime::{resolve_model, tokenizer};

fn bench_encode(c: &mut Criterion) {
    let dir = models_dir(None);
    let model = match resolve_model("qwen2.5-coder-0.5b", &dir) {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    };
    let gguf = GgufFile::open(&model.path).expect("open GGUF");
    let tok = tokenizer::from_gguf(&gguf).expect("tokenizer");
    let text = include_str!("../README.md").repeat(4);
    let mut group = c.benchmark_group("tokenizer");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("qwen2_encode_readme_x4", |b| {
        b.iter(|| tok.encode_fast(text.as_str(), false).expect("encode").len())
    });
    group.finish();
}

criterion_group!(benches, bench_encode);
criterion_main!(benches);
