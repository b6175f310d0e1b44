//! frontdesk's own forward pass for the `qwen2` and `llama` GGUF architectures, on the
//! quantized kernels of `frontdesk-kernels` (candle's `quantized_qwen2`/`quantized_llama` stay
//! selectable as the reference, see `model::Backend`).
//!
//! One pass feeds T tokens at positions `pos..pos + T`. Every linear layer runs once for all T
//! rows (prompt processing is one matrix product per weight, not T), and the activations going
//! into several weights (q, k, v; gate, up) are quantized once. The KV cache holds f16 keys and
//! values; attention scores are f32. Buffers live in [`Scratch`] and only grow, so decoding
//! allocates no activations per token (only the kernels' short task lists). All parallel work
//! runs on rayon's global pool, like the kernels, and a pass runs on one of its workers.

use super::error::{Result, RuntimeError};
use super::gguf::{Architecture, GgufFile, RawTensor};
use frontdesk_kernels::ggml::{self, GgmlType};
use frontdesk_kernels::quant::{matmul_each, Activations, QMatrix};
use frontdesk_kernels::vector;
use half::f16;
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;
use std::path::Path;
use std::sync::Mutex;

/// How RoPE pairs the values of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Value `i` with `i + d/2` (GPT-NeoX; Qwen2's GGUF tensors are stored this way).
    Neox,
    /// Value `2i` with `2i + 1`: llama.cpp's converter permutes Llama's q and k rows so that
    /// the original half-split rotation becomes this pairwise one (candle's `rope_i`).
    Interleaved,
}

/// Hyper-parameters, from `{arch}.*` metadata.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub architecture: Architecture,
    pub dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Leading values of each head that RoPE rotates (the head size unless the file says less).
    pub rope_dim: usize,
    pub ffn_dim: usize,
    pub vocab: usize,
    pub context_length: usize,
    pub eps: f32,
    pub rope_base: f32,
    pub rope_style: RopeStyle,
}

impl Config {
    pub fn from_gguf(gguf: &GgufFile) -> Result<Config> {
        let arch = gguf.architecture;
        let rope_style = match arch {
            Architecture::Qwen2 => RopeStyle::Neox,
            Architecture::Llama => RopeStyle::Interleaved,
            Architecture::Gemma3 => {
                return Err(load_error(
                    &gguf.path,
                    "the own transformer runs qwen2 and llama only".into(),
                ))
            }
        };
        let need = |suffix: &str| -> Result<usize> {
            gguf.arch_u32(suffix)
                .map(|v| v as usize)
                .map_err(|_| missing(gguf, suffix))
        };
        let dim = need("embedding_length")?;
        let n_heads = need("attention.head_count")?;
        let n_kv_heads = need("attention.head_count_kv")?;
        let head_dim = dim.checked_div(n_heads).unwrap_or(0);
        // candle's llama requires the rotated size; Qwen2 files rotate whole heads.
        let rope_dim = match arch {
            Architecture::Llama => need("rope.dimension_count")?,
            _ => gguf
                .arch_u32("rope.dimension_count")
                .map_or(head_dim, |v| v as usize),
        };
        let config = Config {
            architecture: arch,
            dim,
            n_layers: need("block_count")?,
            n_heads,
            n_kv_heads,
            head_dim,
            rope_dim,
            ffn_dim: need("feed_forward_length")?,
            vocab: 0,
            context_length: need("context_length")?,
            eps: gguf
                .arch_f32("attention.layer_norm_rms_epsilon")
                .ok_or_else(|| missing(gguf, "attention.layer_norm_rms_epsilon"))?,
            rope_base: gguf.arch_f32("rope.freq_base").unwrap_or(10_000.0),
            rope_style,
        };
        let sane = config.n_layers > 0
            && dim > 0
            && n_heads > 0
            && n_kv_heads > 0
            && n_heads.is_multiple_of(n_kv_heads)
            && dim.is_multiple_of(n_heads)
            && rope_dim > 0
            && rope_dim.is_multiple_of(2)
            && rope_dim <= head_dim
            && config.context_length > 0;
        if !sane {
            return Err(load_error(
                &gguf.path,
                format!(
                    "inconsistent shape: {} layers, {dim} wide, {n_heads} heads, {n_kv_heads} \
                     key/value heads, RoPE over {rope_dim} of {head_dim}",
                    config.n_layers
                ),
            ));
        }
        Ok(config)
    }

    /// Width of the query projection (all heads).
    fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// Width of the key and value projections.
    fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
}

fn load_error(path: &Path, reason: String) -> RuntimeError {
    RuntimeError::ModelLoad {
        path: path.to_path_buf(),
        reason,
    }
}

fn missing(gguf: &GgufFile, suffix: &str) -> RuntimeError {
    load_error(
        &gguf.path,
        format!("missing metadata '{}.{suffix}'", gguf.architecture.name()),
    )
}

fn inference(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Inference(e.to_string())
}

/// The token embedding table, kept in the file's format: one row is dequantized per token.
struct Embedding {
    ty: GgmlType,
    dim: usize,
    vocab: usize,
    row_bytes: usize,
    data: Vec<u8>,
}

struct Layer {
    attn_norm: Vec<f32>,
    wq: QMatrix,
    wk: QMatrix,
    wv: QMatrix,
    /// Qwen2's q, k and v biases; Llama has none.
    bias: Option<[Vec<f32>; 3]>,
    wo: QMatrix,
    ffn_norm: Vec<f32>,
    gate: QMatrix,
    up: QMatrix,
    down: QMatrix,
}

/// Keys and values of every position fed so far, f16, per layer laid out
/// `[kv_head][capacity][head_dim]` so one head's keys are contiguous for attention.
/// One per sequence: the transformer holds one, and a batch brings one per sequence.
pub struct KvCache {
    k: Vec<Vec<f16>>,
    v: Vec<Vec<f16>>,
    n_kv_heads: usize,
    head_dim: usize,
    capacity: usize,
    len: usize,
    max: usize,
}

/// One sequence's share of [`Transformer::forward_batch`]: its cache and the tokens to
/// append to it (at positions `cache.len()..`).
pub struct BatchItem<'a> {
    pub cache: &'a mut KvCache,
    pub tokens: &'a [u32],
}

impl KvCache {
    /// Holds nothing and can hold nothing: a stand-in while the real one is lent out.
    fn empty() -> KvCache {
        KvCache {
            k: Vec::new(),
            v: Vec::new(),
            n_kv_heads: 0,
            head_dim: 0,
            capacity: 0,
            len: 0,
            max: 0,
        }
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every position from `len` on (no-op when fewer are held).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    fn new(config: &Config) -> KvCache {
        KvCache {
            k: vec![Vec::new(); config.n_layers],
            v: vec![Vec::new(); config.n_layers],
            n_kv_heads: config.n_kv_heads,
            head_dim: config.head_dim,
            capacity: 0,
            len: 0,
            max: config.context_length,
        }
    }

    /// Makes room for `needed` positions, doubling so a long generation re-lays the cache
    /// only a few times; never beyond the context length.
    fn reserve(&mut self, needed: usize) {
        if needed <= self.capacity {
            return;
        }
        let capacity = needed
            .max(self.capacity * 2)
            .max(256)
            .min(self.max.max(needed));
        let (hd, len, old) = (self.head_dim, self.len, self.capacity);
        for buf in self.k.iter_mut().chain(self.v.iter_mut()) {
            let mut grown = vec![f16::ZERO; self.n_kv_heads * capacity * hd];
            for h in 0..self.n_kv_heads {
                grown[h * capacity * hd..][..len * hd]
                    .copy_from_slice(&buf[h * old * hd..][..len * hd]);
            }
            *buf = grown;
        }
        self.capacity = capacity;
    }

    /// Stores `t` rows of keys and values (`t × kv_dim`, token-major) at positions
    /// `len..len + t` of one layer. `reserve` must have made room.
    fn write(&mut self, layer: usize, k: &[f32], v: &[f32], t: usize) {
        let (hd, cap, len) = (self.head_dim, self.capacity, self.len);
        let kv_dim = self.n_kv_heads * hd;
        for (src, dst) in [(k, &mut self.k[layer]), (v, &mut self.v[layer])] {
            for h in 0..self.n_kv_heads {
                for i in 0..t {
                    dst[(h * cap + len + i) * hd..][..hd]
                        .convert_from_f32_slice(&src[i * kv_dim + h * hd..][..hd]);
                }
            }
        }
    }
}

/// Per-thread buffers of the attention: one head's keys and values widened to f32, and the
/// scores of one query.
#[derive(Default)]
struct AttnScratch {
    k: Vec<f32>,
    v: Vec<f32>,
    scores: Vec<f32>,
}

/// Buffers of one forward pass, reused across calls (they only grow).
#[derive(Default)]
struct Scratch {
    /// The tokens of one pass (all sequences' in turn) and the position of each.
    tokens: Vec<u32>,
    positions: Vec<usize>,
    /// Residual stream, `T × dim`.
    x: Vec<f32>,
    /// Normalised input of the current block, `T × dim`.
    xn: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    /// Attention output, per head `[head][T][head_dim]`, then token-major in `attn`.
    heads: Vec<f32>,
    attn: Vec<f32>,
    /// Output of the attention or down projection, `T × dim`.
    proj: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    /// RoPE angles of the T positions, `T × rope_dim/2`.
    cos: Vec<f32>,
    sin: Vec<f32>,
    logits: Vec<f32>,
    act: Activations,
    /// Decodes the embedding rows of the tokens fed.
    embedding_rows: ggml::RowDecoder,
}

fn resize(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    buf.resize(len, 0.0);
    &mut buf[..len]
}

/// A decoder-only transformer (Qwen2 or Llama) with its KV cache.
pub struct Transformer {
    pub config: Config,
    embedding: Embedding,
    layers: Vec<Layer>,
    output_norm: Vec<f32>,
    output: QMatrix,
    cache: KvCache,
    scratch: Scratch,
    attn_scratch: Vec<Mutex<AttnScratch>>,
}

/// Reads tensors by name with shape checks, turning every problem into a load error.
struct Loader<'a> {
    gguf: &'a GgufFile,
    /// Widen every weight to f32 (the float reference: no activation quantization either).
    float: bool,
}

impl<'a> Loader<'a> {
    fn raw(&self, name: &str) -> Result<RawTensor<'a>> {
        self.gguf
            .tensor(name)?
            .ok_or_else(|| load_error(&self.gguf.path, format!("missing tensor '{name}'")))
    }

    fn check_dims(&self, name: &str, found: &[usize], expected: &[usize]) -> Result<()> {
        if found != expected {
            return Err(load_error(
                &self.gguf.path,
                format!("tensor '{name}' has shape {found:?}, expected {expected:?}"),
            ));
        }
        Ok(())
    }

    /// A `rows × cols` weight, repacked for the kernels.
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<QMatrix> {
        let raw = self.raw(name)?;
        self.matrix_from(name, &raw, rows, cols)
    }

    fn matrix_from(
        &self,
        name: &str,
        raw: &RawTensor,
        rows: usize,
        cols: usize,
    ) -> Result<QMatrix> {
        self.check_dims(name, &raw.dims, &[rows, cols])?;
        let widened;
        let (ty, data) = if self.float && raw.ty != GgmlType::F32 {
            let row_bytes = raw.ty.row_bytes(cols).unwrap_or(0).max(1);
            let mut row = vec![0f32; cols];
            widened = raw
                .data
                .chunks_exact(row_bytes)
                .flat_map(|r| {
                    ggml::dequantize_row(raw.ty, r, &mut row);
                    row.iter()
                        .flat_map(|v| v.to_le_bytes())
                        .collect::<Vec<u8>>()
                })
                .collect::<Vec<u8>>();
            (GgmlType::F32, &widened[..])
        } else {
            (raw.ty, raw.data)
        };
        QMatrix::from_ggml(ty, rows, cols, data)
            .map_err(|e| load_error(&self.gguf.path, format!("tensor '{name}': {e}")))
    }

    /// A vector (norm weights, biases) as f32.
    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        let raw = self.raw(name)?;
        self.check_dims(name, &raw.dims, &[len])?;
        match raw.ty.row_bytes(len) {
            Some(bytes) if bytes == raw.data.len() => {
                let mut out = vec![0f32; len];
                ggml::dequantize_row(raw.ty, raw.data, &mut out);
                Ok(out)
            }
            _ => Err(load_error(
                &self.gguf.path,
                format!(
                    "tensor '{name}' of {len} values cannot be stored as {}",
                    raw.ty.name()
                ),
            )),
        }
    }
}

impl Transformer {
    /// Reads the hyper-parameters and weights of an opened file.
    pub fn load(gguf: &GgufFile) -> Result<Transformer> {
        Self::load_inner(gguf, false)
    }

    /// The float reference for tests: the same quantized weights, widened to f32 at load, so
    /// the products never quantize activations (four to eight times the memory, and slow).
    pub fn load_float_reference(gguf: &GgufFile) -> Result<Transformer> {
        Self::load_inner(gguf, true)
    }

    fn load_inner(gguf: &GgufFile, float: bool) -> Result<Transformer> {
        let mut config = Config::from_gguf(gguf)?;
        let ld = Loader { gguf, float };
        let (dim, q_dim, kv_dim, ffn) =
            (config.dim, config.q_dim(), config.kv_dim(), config.ffn_dim);

        let embd = ld.raw("token_embd.weight")?;
        let vocab = match embd.dims.as_slice() {
            [rows, cols] if *cols == dim && *rows > 0 => *rows,
            other => {
                return Err(load_error(
                    &gguf.path,
                    format!(
                        "tensor 'token_embd.weight' has shape {other:?}, expected [vocab, {dim}]"
                    ),
                ))
            }
        };
        config.vocab = vocab;
        let row_bytes = embd
            .ty
            .row_bytes(dim)
            .filter(|&b| b * vocab == embd.data.len())
            .ok_or_else(|| {
                load_error(
                    &gguf.path,
                    "tensor 'token_embd.weight' has a bad length".into(),
                )
            })?;
        // Without `output.weight` (SmolLM2, Qwen2.5 0.5B) the vocabulary product reuses the
        // embedding table (tied weights).
        let output = match gguf.tensor("output.weight")? {
            Some(raw) => ld.matrix_from("output.weight", &raw, vocab, dim)?,
            None => ld.matrix_from("token_embd.weight", &embd, vocab, dim)?,
        };
        let embedding = Embedding {
            ty: embd.ty,
            dim,
            vocab,
            row_bytes,
            data: embd.data.to_vec(),
        };

        let mut layers = Vec::with_capacity(config.n_layers);
        for i in 0..config.n_layers {
            let name = |t: &str| format!("blk.{i}.{t}");
            let bias = match config.architecture {
                Architecture::Qwen2 => Some([
                    ld.vector(&name("attn_q.bias"), q_dim)?,
                    ld.vector(&name("attn_k.bias"), kv_dim)?,
                    ld.vector(&name("attn_v.bias"), kv_dim)?,
                ]),
                _ => None,
            };
            layers.push(Layer {
                attn_norm: ld.vector(&name("attn_norm.weight"), dim)?,
                wq: ld.matrix(&name("attn_q.weight"), q_dim, dim)?,
                wk: ld.matrix(&name("attn_k.weight"), kv_dim, dim)?,
                wv: ld.matrix(&name("attn_v.weight"), kv_dim, dim)?,
                bias,
                wo: ld.matrix(&name("attn_output.weight"), dim, q_dim)?,
                ffn_norm: ld.vector(&name("ffn_norm.weight"), dim)?,
                gate: ld.matrix(&name("ffn_gate.weight"), ffn, dim)?,
                up: ld.matrix(&name("ffn_up.weight"), ffn, dim)?,
                down: ld.matrix(&name("ffn_down.weight"), dim, ffn)?,
            });
        }
        let output_norm = ld.vector("output_norm.weight", dim)?;
        let threads = rayon::current_num_threads().max(1);
        Ok(Transformer {
            cache: KvCache::new(&config),
            config,
            embedding,
            layers,
            output_norm,
            output,
            scratch: Scratch::default(),
            attn_scratch: (0..threads).map(|_| Mutex::default()).collect(),
        })
    }

    /// Bytes of weights one decoding step reads: every layer's matrices and the output
    /// projection (the embedding table gives one row per token). Divided into the machine's
    /// memory bandwidth, the fastest generation can be.
    pub fn weight_bytes_per_token(&self) -> usize {
        let layers: usize = self
            .layers
            .iter()
            .map(|l| {
                [&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down]
                    .iter()
                    .map(|m| m.bytes())
                    .sum::<usize>()
            })
            .sum();
        layers + self.output.bytes()
    }

    /// Positions held in the KV cache.
    pub fn cached_len(&self) -> usize {
        self.cache.len
    }

    /// Forgets every position from `len` on, keeping a shared prefix (no-op when fewer are
    /// held).
    pub fn truncate(&mut self, len: usize) {
        self.cache.len = self.cache.len.min(len);
    }

    /// An empty KV cache for one more sequence of a batch (see [`Transformer::forward_batch`]).
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(&self.config)
    }

    /// Feeds `tokens` at positions `pos..pos + tokens.len()` and returns the logits of the last
    /// one (`vocab` values). `pos` may not pass the cached length; a smaller `pos` (0 starts a
    /// new sequence) first drops the positions from `pos` on.
    pub fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<&[f32]> {
        if pos > self.cache.len {
            return Err(inference(format!(
                "position {pos} does not follow the {} cached positions",
                self.cache.len
            )));
        }
        self.truncate(pos);
        // The transformer's own cache takes part as a batch of one.
        let mut cache = std::mem::replace(&mut self.cache, KvCache::empty());
        let fed = self
            .forward_batch(&mut [BatchItem {
                cache: &mut cache,
                tokens,
            }])
            .map(|_| ());
        self.cache = cache;
        fed.map(|()| &self.scratch.logits[..self.config.vocab])
    }

    /// Appends tokens to several sequences in one pass: every linear layer runs once over the
    /// rows of all of them (so concurrent generations read the weights once per step), while
    /// RoPE positions, the KV cache and attention stay each sequence's own. Returns the logits
    /// of each item's last token, `items.len() × vocab`, in item order.
    pub fn forward_batch(&mut self, items: &mut [BatchItem<'_>]) -> Result<&[f32]> {
        // A step runs a few hundred parallel products. Run from a pool worker, each is a
        // fork-join the other workers steal from while still spinning; run from outside the
        // pool, each would be injected into it and park the calling thread until done.
        rayon::scope(|_| self.forward_batch_on_worker(items))
    }

    fn forward_batch_on_worker(&mut self, items: &mut [BatchItem<'_>]) -> Result<&[f32]> {
        let c = self.config;
        if items.is_empty() {
            return Err(inference("no sequences to feed"));
        }
        for item in items.iter() {
            if item.tokens.is_empty() {
                return Err(inference("no tokens to feed"));
            }
            let end = item.cache.len + item.tokens.len();
            if end > c.context_length {
                return Err(inference(format!(
                    "positions up to {end} do not fit the context of {}",
                    c.context_length
                )));
            }
            if let Some(&bad) = item.tokens.iter().find(|&&id| id as usize >= c.vocab) {
                return Err(inference(format!(
                    "token {bad} is outside the vocabulary of {}",
                    c.vocab
                )));
            }
        }
        let s = &mut self.scratch;
        s.tokens.clear();
        s.positions.clear();
        for item in items.iter_mut() {
            let pos = item.cache.len;
            item.cache.reserve(pos + item.tokens.len());
            s.tokens.extend_from_slice(item.tokens);
            s.positions.extend(pos..pos + item.tokens.len());
        }
        let t = s.tokens.len();
        let (dim, q_dim, kv_dim, ffn, hd) = (c.dim, c.q_dim(), c.kv_dim(), c.ffn_dim, c.head_dim);

        embed(&self.embedding, s);
        rope_angles(&c, &s.positions, &mut s.cos, &mut s.sin);
        resize(&mut s.xn, t * dim);
        resize(&mut s.q, t * q_dim);
        resize(&mut s.k, t * kv_dim);
        resize(&mut s.v, t * kv_dim);
        resize(&mut s.heads, t * q_dim);
        resize(&mut s.attn, t * q_dim);
        resize(&mut s.proj, t * dim);
        resize(&mut s.gate, t * ffn);
        resize(&mut s.up, t * ffn);

        // Rows the layers carry: every token's, until the last layer, which only needs each
        // sequence's last row past its keys and values (the logits read nothing else).
        let mut rows = t;
        let last_layer = self.layers.len().saturating_sub(1);
        for (li, layer) in self.layers.iter().enumerate() {
            // Attention block: x += Wo · attention(rope(Wq·n(x) + bq), rope(Wk·n(x) + bk), …).
            rms_norm_rows(&s.x, &layer.attn_norm, c.eps, &mut s.xn);
            s.act
                .quantize_for(&[&layer.wq, &layer.wk, &layer.wv], &s.xn, t, dim)
                .map_err(inference)?;
            matmul_each(
                &mut [
                    (&layer.wq, &mut s.q[..]),
                    (&layer.wk, &mut s.k[..]),
                    (&layer.wv, &mut s.v[..]),
                ],
                &s.act,
            )
            .map_err(inference)?;
            if let Some([bq, bk, bv]) = &layer.bias {
                add_rows(&mut s.q, bq);
                add_rows(&mut s.k, bk);
                add_rows(&mut s.v, bv);
            }
            rope(&c, &mut s.q, c.n_heads, &s.cos, &s.sin);
            rope(&c, &mut s.k, c.n_kv_heads, &s.cos, &s.sin);
            let outputs_only = li == last_layer;
            let mut row = 0;
            for (j, item) in items.iter_mut().enumerate() {
                let n = item.tokens.len();
                let pos = item.cache.len;
                item.cache.write(
                    li,
                    &s.k[row * kv_dim..(row + n) * kv_dim],
                    &s.v[row * kv_dim..(row + n) * kv_dim],
                    n,
                );
                // The queries that go on: all of this sequence's, or in the last layer only its
                // last, whose residual row then moves up to row `j` (never past a row still to
                // be read).
                let (first, nq, out_row) = if outputs_only {
                    let last = row + n - 1;
                    s.x.copy_within(last * dim..(last + 1) * dim, j * dim);
                    (last, 1, j)
                } else {
                    (row, n, row)
                };
                // Their heads, `[head][nq][hd]`, in their rows' share of `heads`.
                let heads = &mut s.heads[first * q_dim..(first + nq) * q_dim];
                attention(
                    &c,
                    item.cache,
                    li,
                    pos + (first - row),
                    nq,
                    &s.q[first * q_dim..(first + nq) * q_dim],
                    heads,
                    &self.attn_scratch,
                );
                // [head][nq][hd] → [nq][head·hd] for the output product.
                for h in 0..c.n_heads {
                    for i in 0..nq {
                        s.attn[(out_row + i) * q_dim + h * hd..][..hd]
                            .copy_from_slice(&heads[(h * nq + i) * hd..][..hd]);
                    }
                }
                row += n;
            }
            if outputs_only {
                rows = items.len();
            }
            let x = &mut s.x[..rows * dim];
            let xn = &mut s.xn[..rows * dim];
            let proj = &mut s.proj[..rows * dim];
            let gate = &mut s.gate[..rows * ffn];
            s.act
                .quantize_for(&[&layer.wo], &s.attn[..rows * q_dim], rows, q_dim)
                .map_err(inference)?;
            layer.wo.matmul(&s.act, proj).map_err(inference)?;
            vector::add_in_place(x, proj);

            // Feed-forward block: x += W_down · (silu(W_gate · n(x)) ⊙ W_up · n(x)).
            rms_norm_rows(x, &layer.ffn_norm, c.eps, xn);
            s.act
                .quantize_for(&[&layer.gate, &layer.up], xn, rows, dim)
                .map_err(inference)?;
            matmul_each(
                &mut [
                    (&layer.gate, &mut *gate),
                    (&layer.up, &mut s.up[..rows * ffn]),
                ],
                &s.act,
            )
            .map_err(inference)?;
            silu_mul(gate, &s.up[..rows * ffn]);
            s.act
                .quantize_for(&[&layer.down], gate, rows, ffn)
                .map_err(inference)?;
            layer.down.matmul(&s.act, proj).map_err(inference)?;
            vector::add_in_place(x, proj);
        }

        // Only each sequence's last position's logits are wanted: after the last layer, row
        // `j` of `x` is sequence `j`'s last.
        for item in items.iter_mut() {
            item.cache.len += item.tokens.len();
        }
        let n = items.len();
        rms_norm_rows(
            &s.x[..n * dim],
            &self.output_norm,
            c.eps,
            &mut s.xn[..n * dim],
        );
        s.act
            .quantize_for(&[&self.output], &s.xn[..n * dim], n, dim)
            .map_err(inference)?;
        let logits = resize(&mut s.logits, n * c.vocab);
        self.output.matmul(&s.act, logits).map_err(inference)?;
        Ok(&s.logits[..n * c.vocab])
    }
}

/// Looks up the rows of `s.tokens` (checked to be in the vocabulary) into `s.x`.
fn embed(e: &Embedding, s: &mut Scratch) {
    let x = resize(&mut s.x, s.tokens.len() * e.dim);
    for (i, &id) in s.tokens.iter().enumerate() {
        debug_assert!((id as usize) < e.vocab);
        let row = &e.data[id as usize * e.row_bytes..][..e.row_bytes];
        s.embedding_rows
            .dequantize(e.ty, row, &mut x[i * e.dim..][..e.dim]);
    }
}

/// `out = x / sqrt(mean(x²) + eps) · w`, row by row (`x` and `out` are whole rows of
/// `w.len()`).
pub fn rms_norm_rows(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let dim = w.len();
    for (xr, or) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
        let ss = vector::dot(xr, xr);
        let scale = 1.0 / (ss / dim as f32 + eps).sqrt();
        for ((o, &v), &g) in or.iter_mut().zip(xr).zip(w) {
            *o = v * scale * g;
        }
    }
}

/// Adds `bias` to every row of `x`.
fn add_rows(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        vector::add_in_place(row, bias);
    }
}

/// `gate ← silu(gate) · up`, one pass.
fn silu_mul(gate: &mut [f32], up: &[f32]) {
    gate.par_chunks_mut(1 << 14)
        .zip(up.par_chunks(1 << 14))
        .for_each(|(gate, up)| {
            for (g, &u) in gate.iter_mut().zip(up) {
                *g = *g / (1.0 + vector::exp(-*g)) * u;
            }
        });
}

/// cos and sin of `p · θ_i` for the position `p` of each row, `θ_i = base^(-2i/rope_dim)`,
/// computed in f32 like candle and llama.cpp.
fn rope_angles(c: &Config, positions: &[usize], cos: &mut Vec<f32>, sin: &mut Vec<f32>) {
    let half = c.rope_dim / 2;
    let t = positions.len();
    let cos = resize(cos, t * half);
    let sin = resize(sin, t * half);
    for (i, &p) in positions.iter().enumerate() {
        let p = p as f32;
        for j in 0..half {
            let theta = 1.0 / c.rope_base.powf((2 * j) as f32 / c.rope_dim as f32);
            let (s, co) = (p * theta).sin_cos();
            cos[i * half + j] = co;
            sin[i * half + j] = s;
        }
    }
}

/// Rotates the leading `rope_dim` values of each of `heads` heads in every row of `x`
/// (`T × heads·head_dim`), row `i` by the angles of its position.
fn rope(c: &Config, x: &mut [f32], heads: usize, cos: &[f32], sin: &[f32]) {
    let half = c.rope_dim / 2;
    for (i, row) in x.chunks_exact_mut(heads * c.head_dim).enumerate() {
        let (cs, sn) = (&cos[i * half..][..half], &sin[i * half..][..half]);
        for head in row.chunks_exact_mut(c.head_dim) {
            rope_head(c.rope_style, &mut head[..c.rope_dim], cs, sn);
        }
    }
}

/// One head's rotation: pairs `(i, i + d/2)` (NeoX) or `(2i, 2i + 1)` (interleaved).
pub fn rope_head(style: RopeStyle, x: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = x.len() / 2;
    match style {
        RopeStyle::Neox => {
            let (a, b) = x.split_at_mut(half);
            for j in 0..half {
                let (x0, x1) = (a[j], b[j]);
                a[j] = x0 * cos[j] - x1 * sin[j];
                b[j] = x0 * sin[j] + x1 * cos[j];
            }
        }
        RopeStyle::Interleaved => {
            for (j, pair) in x.chunks_exact_mut(2).enumerate() {
                let (x0, x1) = (pair[0], pair[1]);
                pair[0] = x0 * cos[j] - x1 * sin[j];
                pair[1] = x0 * sin[j] + x1 * cos[j];
            }
        }
    }
}

/// Causal grouped-query attention of the T new queries against the cache (positions
/// `0..pos + T`), one rayon task per query head. Writes `out` as `[head][T][head_dim]`.
#[allow(clippy::too_many_arguments)]
fn attention(
    c: &Config,
    cache: &KvCache,
    layer: usize,
    pos: usize,
    t: usize,
    q: &[f32],
    out: &mut [f32],
    scratch: &[Mutex<AttnScratch>],
) {
    let hd = c.head_dim;
    let group = c.n_heads / c.n_kv_heads;
    let kv_len = pos + t;
    let scale = 1.0 / (hd as f32).sqrt();
    let q_dim = c.q_dim();
    out.par_chunks_mut(t * hd).enumerate().for_each(|(h, out)| {
        let g = h / group;
        // A task holds its thread's buffers: tasks on one thread run one after another,
        // so the lock is never contended (the modulo only matters if the pool grew).
        let slot = rayon::current_thread_index().unwrap_or(0) % scratch.len();
        let mut guard = scratch[slot].lock().unwrap_or_else(|e| e.into_inner());
        let AttnScratch { k, v, scores } = &mut *guard;
        // The head's keys and values, widened once for all T queries.
        let base = g * cache.capacity * hd;
        let keys = &cache.k[layer][base..base + kv_len * hd];
        cache.v[layer][base..base + kv_len * hd].convert_to_f32_slice(resize(v, kv_len * hd));
        // Query i of this head is q[i·q_dim + h·hd..][..hd].
        let q = &q[h * hd..];
        // Head sizes known at compile time keep a query and its output in registers.
        match hd {
            64 => {
                transpose_keys::<64>(keys, k);
                let head = Head {
                    k,
                    v,
                    q,
                    q_stride: q_dim,
                    pos,
                    scale,
                };
                attend_head::<64>(&head, scores, out)
            }
            128 => {
                transpose_keys::<128>(keys, k);
                let head = Head {
                    k,
                    v,
                    q,
                    q_stride: q_dim,
                    pos,
                    scale,
                };
                attend_head::<128>(&head, scores, out)
            }
            _ => {
                let scores = resize(scores, kv_len);
                keys.convert_to_f32_slice(resize(k, kv_len * hd));
                for i in 0..t {
                    let n = pos + i + 1; // causal: this query sees positions 0..=pos+i
                    let (qi, o) = (&q[i * q_dim..][..hd], &mut out[i * hd..][..hd]);
                    let sc = &mut scores[..n];
                    for (s, kj) in sc.iter_mut().zip(k.chunks_exact(hd)) {
                        *s = vector::dot(qi, kj) * scale;
                    }
                    vector::softmax(sc);
                    o.fill(0.0);
                    for (&p, vj) in sc.iter().zip(v.chunks_exact(hd)) {
                        vector::axpy(o, p, vj);
                    }
                }
            }
        }
    });
}

/// Widens keys (`n × HD`, f16) into blocks of eight keys stored value-major,
/// `[block][HD][8]`, zero-padded: one query's scores against eight keys are then `HD` vector
/// multiply-adds with no horizontal sums.
fn transpose_keys<const HD: usize>(keys: &[f16], out: &mut Vec<f32>) {
    let n = keys.len() / HD;
    // An even number of blocks: `attend_queries` reads them in pairs.
    let blocks = n.div_ceil(16) * 2;
    let out = resize(out, blocks * HD * 8);
    let mut row = [0f32; HD];
    for (j, key) in keys.chunks_exact(HD).enumerate() {
        key.convert_to_f32_slice(&mut row);
        let block = &mut out[(j / 8) * HD * 8..][..HD * 8];
        for (d, &x) in row.iter().enumerate() {
            block[d * 8 + j % 8] = x;
        }
    }
    // Padding keys score 0 and are never read back (each query reads its first n scores).
    for j in n..blocks * 8 {
        let block = &mut out[(j / 8) * HD * 8..][..HD * 8];
        for d in 0..HD {
            block[d * 8 + j % 8] = 0.0;
        }
    }
}

/// What attention reads of one head: its keys from `transpose_keys`, its values widened
/// (`n × HD`), and its queries, `HD` values each, query `i` at `q[i·q_stride..]` and at
/// position `pos + i`.
#[derive(Clone, Copy)]
struct Head<'a> {
    k: &'a [f32],
    v: &'a [f32],
    q: &'a [f32],
    q_stride: usize,
    pos: usize,
    /// `1/√HD`, applied to the scores.
    scale: f32,
}

/// The queries of one head (output `i` at `out[i·HD..]`): `softmax(q·Kᵀ·scale)·V` over the
/// positions each may see.
#[inline(always)]
fn attend_head<const HD: usize>(head: &Head, scores: &mut Vec<f32>, out: &mut [f32]) {
    let t = out.len() / HD;
    if t == 1 {
        // Generation: one query.
        let scores = resize(scores, (head.pos + 1).next_multiple_of(8));
        return attend_one_by_one::<HD>(head, scores, out);
    }
    // Prompts: QUERY_BLOCK queries per pass over the keys and values (the last block padded).
    // One query at a time reads every key and value from the L2 cache per multiply-add, and
    // the cache, not the FMA units, then sets the pace.
    for (b, o) in out.chunks_mut(QUERY_BLOCK * HD).enumerate() {
        let first = b * QUERY_BLOCK;
        let block = Head {
            q: &head.q[first * head.q_stride..],
            pos: head.pos + first,
            ..*head
        };
        attend_queries::<HD>(&block, scores, o);
    }
}

/// Up to `QUERY_BLOCK` consecutive queries of one head (`out.len() / HD` of them) against
/// the keys and values together: a pair of key blocks' scores for four queries are eight
/// independent sums per dimension, and a value row read once serves four outputs.
#[inline(always)]
fn attend_queries<const HD: usize>(head: &Head, scores: &mut Vec<f32>, out: &mut [f32]) {
    const PV_CHUNK: usize = 16;
    let Head {
        k,
        v,
        q,
        q_stride,
        pos,
        scale,
    } = *head;
    let nq = out.len() / HD;
    // Missing queries of a short last block repeat the last one; their outputs are not kept.
    let mut qa = [[0f32; HD]; QUERY_BLOCK];
    for (u, qu) in qa.iter_mut().enumerate() {
        qu.copy_from_slice(&q[u.min(nq - 1) * q_stride..][..HD]);
    }
    let n_max = pos + nq; // the last query sees positions 0..pos+nq
    let pairs = n_max.div_ceil(16);
    let stride = pairs * 16;
    let scores = resize(scores, QUERY_BLOCK * stride);
    // k: `[block][HD][8]` from `transpose_keys`, an even number of blocks.
    let (k, _) = k.as_chunks::<8>();
    for p in 0..pairs {
        let kb = &k[p * 2 * HD..][..2 * HD];
        let mut s = [[[0f32; 8]; 2]; QUERY_BLOCK];
        for d in 0..HD {
            let (k0, k1) = (&kb[d], &kb[HD + d]);
            for (su, qu) in s.iter_mut().zip(&qa) {
                let qd = qu[d];
                for l in 0..8 {
                    su[0][l] = qd.mul_add(k0[l], su[0][l]);
                    su[1][l] = qd.mul_add(k1[l], su[1][l]);
                }
            }
        }
        for (u, su) in s.iter().enumerate() {
            for (o, x) in scores[u * stride + p * 16..][..16]
                .iter_mut()
                .zip(su.as_flattened())
            {
                *o = x * scale;
            }
        }
    }
    // Each query's probabilities over the positions it sees; zero past them, so that the
    // shared pass over the values below adds nothing for keys a query may not see.
    for u in 0..QUERY_BLOCK {
        let row = &mut scores[u * stride..][..stride];
        let n = (pos + u.min(nq - 1) + 1).min(n_max);
        vector::softmax(&mut row[..n]);
        row[n..].fill(0.0);
    }
    let (v, _) = v.as_chunks::<HD>();
    for c in 0..HD / PV_CHUNK {
        let mut acc = [[0f32; PV_CHUNK]; QUERY_BLOCK];
        for (j, vj) in v[..n_max].iter().enumerate() {
            let vc = &vj[c * PV_CHUNK..][..PV_CHUNK];
            for (u, au) in acc.iter_mut().enumerate() {
                let p = scores[u * stride + j];
                for (a, &x) in au.iter_mut().zip(vc) {
                    *a = p.mul_add(x, *a);
                }
            }
        }
        for (u, au) in acc.iter().enumerate().take(nq) {
            out[u * HD + c * PV_CHUNK..][..PV_CHUNK].copy_from_slice(au);
        }
    }
}

/// The queries of one head one at a time (generation's single query).
#[inline(always)]
fn attend_one_by_one<const HD: usize>(head: &Head, scores: &mut [f32], out: &mut [f32]) {
    let Head {
        k,
        v,
        q,
        q_stride,
        pos,
        scale,
    } = *head;
    // k: `[block][HD][8]` from `transpose_keys`.
    let (k, _) = k.as_chunks::<8>();
    let (v, _) = v.as_chunks::<HD>();
    for (i, o) in out.chunks_exact_mut(HD).enumerate() {
        let n = pos + i + 1; // causal: this query sees positions 0..=pos+i
        let mut qa = [0f32; HD];
        qa.copy_from_slice(&q[i * q_stride..][..HD]);
        let blocks = n.div_ceil(8);
        let (wide, narrow) =
            scores[..blocks * 8].split_at_mut((blocks / KEY_BLOCKS) * KEY_BLOCKS * 8);
        let (k_wide, k_narrow) = k.split_at(wide.len() / 8 * HD);
        // Several key blocks at once: each block's sum over the head's dimensions is a chain
        // of dependent multiply-adds, and one chain alone leaves the FMA units idle.
        for (sb, kb) in wide
            .chunks_exact_mut(8 * KEY_BLOCKS)
            .zip(k_wide.chunks_exact(HD * KEY_BLOCKS))
        {
            let mut s = [[0f32; 8]; KEY_BLOCKS];
            for (d, &qd) in qa.iter().enumerate() {
                for (u, su) in s.iter_mut().enumerate() {
                    let kd = &kb[u * HD + d];
                    for l in 0..8 {
                        su[l] = qd.mul_add(kd[l], su[l]);
                    }
                }
            }
            for (o, x) in sb.iter_mut().zip(s.as_flattened()) {
                *o = x * scale;
            }
        }
        for (sb, kb) in narrow.chunks_exact_mut(8).zip(k_narrow.chunks_exact(HD)) {
            let mut s8 = [0f32; 8];
            for (&qd, kd) in qa.iter().zip(kb) {
                for l in 0..8 {
                    s8[l] = qd.mul_add(kd[l], s8[l]);
                }
            }
            for (o, x) in sb.iter_mut().zip(s8) {
                *o = x * scale;
            }
        }
        let sc = &mut scores[..n];
        vector::softmax(sc);
        // 64 outputs at a time: their accumulators and the operands fit in the registers.
        for (half, o) in o.chunks_exact_mut(OUT_CHUNK).enumerate() {
            let mut acc = [0f32; OUT_CHUNK];
            for (&p, vj) in sc.iter().zip(v) {
                for (a, &x) in acc.iter_mut().zip(&vj[half * OUT_CHUNK..][..OUT_CHUNK]) {
                    *a = p.mul_add(x, *a);
                }
            }
            o.copy_from_slice(&acc);
        }
    }
}

/// Key blocks of eight whose scores one query computes together.
const KEY_BLOCKS: usize = 4;
/// Queries of one head that a prompt's attention takes through the keys together.
const QUERY_BLOCK: usize = 4;
/// Outputs of a head accumulated together (head sizes are multiples of it).
const OUT_CHUNK: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32]) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn rms_norm_by_hand() {
        // mean(x²) = (9 + 16) / 2 = 12.5; 1/sqrt(12.5) = 0.28284271.
        let mut out = [0f32; 2];
        rms_norm_rows(&[3.0, -4.0], &[1.0, 2.0], 0.0, &mut out);
        close(&out, &[0.848_528_1, -2.262_741_7]);
        // Two rows are normalised independently; eps enters under the root.
        let mut out = [0f32; 4];
        rms_norm_rows(&[1.0, 1.0, 0.0, 2.0], &[1.0, 1.0], 1.0, &mut out);
        // Row 1: 1/sqrt(1 + 1); row 2: 1/sqrt(2 + 1).
        let r = std::f32::consts::FRAC_1_SQRT_2;
        close(&out, &[r, r, 0.0, 1.154_700_5]);
    }

    #[test]
    fn rope_pairs_halves_for_neox_and_neighbours_for_interleaved() {
        // A quarter turn on the first pair, none on the second.
        let (cos, sin) = ([0.0, 1.0], [1.0, 0.0]);
        let mut x = [1.0, 2.0, 3.0, 4.0];
        rope_head(RopeStyle::Neox, &mut x, &cos, &sin);
        // Pairs (x0, x2) = (1, 3) → (1·0 − 3·1, 1·1 + 3·0) = (−3, 1); (x1, x3) unchanged.
        close(&x, &[-3.0, 2.0, 1.0, 4.0]);
        let mut x = [1.0, 2.0, 3.0, 4.0];
        rope_head(RopeStyle::Interleaved, &mut x, &cos, &sin);
        // Pairs (x0, x1) = (1, 2) → (−2, 1); (x2, x3) unchanged.
        close(&x, &[-2.0, 1.0, 3.0, 4.0]);
    }

    #[test]
    fn rope_angles_follow_the_frequency_base() {
        let c = Config {
            architecture: Architecture::Llama,
            dim: 8,
            n_layers: 1,
            n_heads: 2,
            n_kv_heads: 2,
            head_dim: 4,
            rope_dim: 4,
            ffn_dim: 8,
            vocab: 1,
            context_length: 8,
            eps: 1e-5,
            rope_base: 100.0,
            rope_style: RopeStyle::Interleaved,
        };
        let (mut cos, mut sin) = (Vec::new(), Vec::new());
        rope_angles(&c, &[2, 3], &mut cos, &mut sin);
        // θ = [1, 100^(-1/2) = 0.1]; positions 2 and 3.
        close(&cos, &[2f32.cos(), 0.2f32.cos(), 3f32.cos(), 0.3f32.cos()]);
        close(&sin, &[2f32.sin(), 0.2f32.sin(), 3f32.sin(), 0.3f32.sin()]);
    }

    /// `attend_head` (keys in blocks of eight, several blocks per pass, outputs in chunks)
    /// against softmax(q·Kᵀ·scale)·V written out, for both head sizes, with cached positions
    /// before the new queries and key counts that leave a partial block.
    fn attention_matches_the_definition<const HD: usize>() {
        let value = |i: usize| ((i as f32 * 0.618_034).fract() - 0.5) * 2.0;
        for (pos, t) in [(0, 1), (0, 7), (37, 3), (64, 9), (5, 2), (0, 16), (3, 17)] {
            let n = pos + t;
            let keys: Vec<f16> = (0..n * HD).map(|i| f16::from_f32(value(i))).collect();
            let v: Vec<f32> = (0..n * HD).map(|i| value(i + 7919)).collect();
            // Two heads' queries interleaved, as the model lays them out; the second is used.
            let q_stride = 2 * HD;
            let q: Vec<f32> = (0..t * q_stride).map(|i| value(i + 104_729)).collect();
            let q = &q[HD..];
            let scale = 1.0 / (HD as f32).sqrt();
            let mut k = Vec::new();
            transpose_keys::<HD>(&keys, &mut k);
            let mut scores = Vec::new();
            let mut out = vec![0f32; t * HD];
            let head = Head {
                k: &k,
                v: &v,
                q,
                q_stride,
                pos,
                scale,
            };
            attend_head::<HD>(&head, &mut scores, &mut out);
            for i in 0..t {
                let seen = pos + i + 1;
                let logits: Vec<f64> = (0..seen)
                    .map(|j| {
                        (0..HD)
                            .map(|d| q[i * q_stride + d] as f64 * keys[j * HD + d].to_f64())
                            .sum::<f64>()
                            * scale as f64
                    })
                    .collect();
                let max = logits.iter().cloned().fold(f64::MIN, f64::max);
                let weights: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
                let total: f64 = weights.iter().sum();
                for d in 0..HD {
                    let want: f64 = (0..seen)
                        .map(|j| weights[j] / total * v[j * HD + d] as f64)
                        .sum();
                    let got = out[i * HD + d] as f64;
                    assert!(
                        (got - want).abs() < 1e-4,
                        "HD {HD}, pos {pos}, query {i}, dim {d}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn attention_of_64_and_128_wide_heads_matches_the_definition() {
        attention_matches_the_definition::<64>();
        attention_matches_the_definition::<128>();
    }
}
