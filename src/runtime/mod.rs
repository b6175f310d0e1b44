//! The model runtime: finding and verifying model files, opening GGUF, tokenizing, chat
//! templates, the forward pass and the generation loop.

pub mod batch;
pub mod bench;
pub mod catalog;
pub mod chat_template;
pub mod error;
pub mod generate;
pub mod gguf;
pub mod model;
pub mod sampler;
pub mod tokenizer;
pub mod transformer;

pub use catalog::{resolve_model, Catalog, ResolvedModel};
pub use chat_template::{ChatTemplate, Message, Role};
pub use error::{Result, RuntimeError};
pub use generate::{Engine, GenerateOptions, Generation, LoadOptions, StopReason};
pub use model::Backend;
pub use sampler::SamplingParams;

/// Sets the number of compute threads for this process. candle reads `RAYON_NUM_THREADS`
/// when it first builds its pools, so this must run before any model work.
pub fn set_threads(threads: usize) {
    let n = threads.max(1).to_string();
    std::env::set_var("RAYON_NUM_THREADS", &n);
    std::env::set_var("CANDLE_NUM_THREADS", &n);
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build_global();
}

/// The default thread count: the number of physical cores.
pub fn default_threads() -> usize {
    num_cpus::get_physical().max(1)
}

/// Fails when this binary was compiled for CPU features (see `.cargo/config.toml`) that the
/// CPU it runs on lacks, instead of dying later on an illegal instruction.
pub fn ensure_cpu_supported() -> Result<()> {
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
    {
        let f = frontdesk_kernels::cpu::CpuFeatures::detect();
        if !(f.avx2 && f.fma && f.f16c) {
            return Err(RuntimeError::UnsupportedCpu(
                "this build of frontdesk needs AVX2, FMA and F16C; rebuild it for this CPU with \
                 RUSTFLAGS=\"-C target-cpu=native\" cargo build --release"
                    .into(),
            ));
        }
    }
    Ok(())
}
