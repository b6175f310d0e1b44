//! frontdesk's own compute kernels.
//!
//! Everything here picks its instruction set at run time, so one binary runs on any x86-64
//! (or aarch64) machine and uses AVX-512 where the CPU has it. The quantized matrix kernels
//! that replace candle's live here as they are written; this crate depends on nothing of the
//! application.

pub mod cpu;
pub mod ggml;
pub mod int8;
pub mod pages;
pub mod quant;
pub mod vector;
