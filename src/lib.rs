//! frontdesk: an offline support assistant. Quantized open-weight models run locally through
//! candle; answers come from a company's own documents, with citations.
//!
//! Modules by capability: `runtime` (models and generation), `kb` (the knowledge base),
//! `answer` (grounded answers, citations, hand-off), `eval` and `cli` (the command line).
//! See ARCHITECTURE.md for the map and the flow of data.

pub mod answer;
pub mod cli;
pub mod eval;
pub mod kb;
pub mod runtime;
pub mod server;
