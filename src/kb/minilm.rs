//! A BERT encoder (all-MiniLM-L6-v2's shape) run on frontdesk's own kernels: every linear
//! layer is an 8-bit integer product (`frontdesk_kernels::int8`, AVX-512 VNNI where the CPU
//! has it), everything else is f32.
//!
//! Why not candle's `BertModel`: on 2 cores it embeds about 7 chunks of 256 tokens a second
//! (f32 matrix products, plus allocation and dispatch for every small op), a third of an hour
//! for a 500-page manual. One sequence at a time, single-threaded, with buffers reused, and
//! sequences spread over cores by the caller, needs no padding and no attention mask, and the
//! integer products do four times the work per instruction. Vectors stay within about 0.01 of
//! candle's in cosine (checked by the tests against candle's model).

use candle_core::DType;
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{Config, HiddenAct};
use frontdesk_kernels::int8::{self, PackedWeights, QuantizedRows};
use frontdesk_kernels::vector;

/// One encoder layer. The query, key and value projections are one fused product.
struct Layer {
    qkv: PackedWeights,
    qkv_bias: Vec<f32>,
    attention_out: PackedWeights,
    attention_out_bias: Vec<f32>,
    attention_norm: (Vec<f32>, Vec<f32>),
    ffn_in: PackedWeights,
    ffn_in_bias: Vec<f32>,
    ffn_out: PackedWeights,
    ffn_out_bias: Vec<f32>,
    output_norm: (Vec<f32>, Vec<f32>),
}

/// The encoder with its weights quantized for the integer kernels.
pub struct MiniLm {
    hidden: usize,
    heads: usize,
    intermediate: usize,
    max_positions: usize,
    eps: f32,
    word_embeddings: Vec<f32>,
    vocab: usize,
    position_embeddings: Vec<f32>,
    /// Token type 0: every text is a single segment.
    token_type: Vec<f32>,
    embedding_norm: (Vec<f32>, Vec<f32>),
    layers: Vec<Layer>,
}

/// Buffers of one forward pass, kept per thread so a warm pass allocates nothing.
pub struct Scratch {
    hidden: Vec<f32>,
    qkv: Vec<f32>,
    context: Vec<f32>,
    projected: Vec<f32>,
    intermediate: Vec<f32>,
    scores: Vec<f32>,
    head_q: Vec<f32>,
    head_k: Vec<f32>,
    head_v: Vec<f32>,
    head_out: Vec<f32>,
    keys: PackedWeights,
    values: PackedWeights,
    quantized: QuantizedRows,
}

impl Default for Scratch {
    fn default() -> Scratch {
        Scratch {
            hidden: Vec::new(),
            qkv: Vec::new(),
            context: Vec::new(),
            projected: Vec::new(),
            intermediate: Vec::new(),
            scores: Vec::new(),
            head_q: Vec::new(),
            head_k: Vec::new(),
            head_v: Vec::new(),
            head_out: Vec::new(),
            keys: PackedWeights::empty(),
            values: PackedWeights::empty(),
            quantized: QuantizedRows::new(),
        }
    }
}

impl MiniLm {
    /// Reads and quantizes the weights of a BERT checkpoint with absolute positions and GELU.
    pub fn load(vb: &VarBuilder, config: &Config) -> candle_core::Result<MiniLm> {
        if !matches!(config.hidden_act, HiddenAct::Gelu) {
            candle_core::bail!("only the exact GELU activation is supported");
        }
        let hidden = config.hidden_size;
        let heads = config.num_attention_heads;
        if heads == 0 || !hidden.is_multiple_of(heads) {
            candle_core::bail!("hidden size {hidden} does not split into {heads} heads");
        }
        let intermediate = config.intermediate_size;
        let floats = |name: &str, shape: &[usize]| -> candle_core::Result<Vec<f32>> {
            vb.get(shape, name)?
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()
        };
        let linear = |name: &str, outputs: usize, inputs: usize| {
            let w = floats(&format!("{name}.weight"), &[outputs, inputs])?;
            let b = floats(&format!("{name}.bias"), &[outputs])?;
            Ok::<_, candle_core::Error>((w, b))
        };
        let norm = |name: &str| -> candle_core::Result<(Vec<f32>, Vec<f32>)> {
            Ok((
                floats(&format!("{name}.weight"), &[hidden])?,
                floats(&format!("{name}.bias"), &[hidden])?,
            ))
        };
        let pack = |w: &[f32], outputs: usize, inputs: usize| {
            PackedWeights::quantize(w, outputs, inputs)
                .map_err(|e| candle_core::Error::Msg(e.to_string()))
        };

        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            let (qw, qb) = linear(&format!("{p}.attention.self.query"), hidden, hidden)?;
            let (kw, kb) = linear(&format!("{p}.attention.self.key"), hidden, hidden)?;
            let (vw, vbias) = linear(&format!("{p}.attention.self.value"), hidden, hidden)?;
            let qkv_weights = [qw, kw, vw].concat();
            let (ow, ob) = linear(&format!("{p}.attention.output.dense"), hidden, hidden)?;
            let (iw, ib) = linear(&format!("{p}.intermediate.dense"), intermediate, hidden)?;
            let (fw, fb) = linear(&format!("{p}.output.dense"), hidden, intermediate)?;
            layers.push(Layer {
                qkv: pack(&qkv_weights, 3 * hidden, hidden)?,
                qkv_bias: [qb, kb, vbias].concat(),
                attention_out: pack(&ow, hidden, hidden)?,
                attention_out_bias: ob,
                attention_norm: norm(&format!("{p}.attention.output.LayerNorm"))?,
                ffn_in: pack(&iw, intermediate, hidden)?,
                ffn_in_bias: ib,
                ffn_out: pack(&fw, hidden, intermediate)?,
                ffn_out_bias: fb,
                output_norm: norm(&format!("{p}.output.LayerNorm"))?,
            });
        }
        let token_types = floats(
            "embeddings.token_type_embeddings.weight",
            &[config.type_vocab_size, hidden],
        )?;
        Ok(MiniLm {
            hidden,
            heads,
            intermediate,
            max_positions: config.max_position_embeddings,
            eps: config.layer_norm_eps as f32,
            word_embeddings: floats(
                "embeddings.word_embeddings.weight",
                &[config.vocab_size, hidden],
            )?,
            vocab: config.vocab_size,
            position_embeddings: floats(
                "embeddings.position_embeddings.weight",
                &[config.max_position_embeddings, hidden],
            )?,
            token_type: token_types[..hidden].to_vec(),
            embedding_norm: norm("embeddings.LayerNorm")?,
            layers,
        })
    }

    /// Width of the vectors.
    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    /// The mean of the last hidden states of `ids` (one text, `[CLS]` … `[SEP]`), L2-normalised.
    /// Ids past the position table are ignored; unknown ids read as id 0 (`[PAD]`).
    pub fn embed(&self, ids: &[u32], s: &mut Scratch) -> Vec<f32> {
        let len = ids.len().min(self.max_positions);
        let h = self.hidden;
        if len == 0 {
            return vec![0.0; h];
        }
        s.hidden.clear();
        for (position, &id) in ids[..len].iter().enumerate() {
            let id = if (id as usize) < self.vocab {
                id as usize
            } else {
                0
            };
            let word = &self.word_embeddings[id * h..(id + 1) * h];
            let pos = &self.position_embeddings[position * h..(position + 1) * h];
            s.hidden.extend(
                word.iter()
                    .zip(pos)
                    .zip(&self.token_type)
                    .map(|((w, p), t)| w + p + t),
            );
        }
        let (gamma, beta) = &self.embedding_norm;
        vector::layer_norm(&mut s.hidden, gamma, beta, self.eps);
        for layer in &self.layers {
            self.layer(layer, len, s);
        }

        let mut pooled = vec![0.0f32; h];
        for row in s.hidden.chunks_exact(h) {
            vector::add_in_place(&mut pooled, row);
        }
        let norm = (pooled.iter().map(|v| v * v).sum::<f32>() / (len * len) as f32).sqrt();
        let scale = 1.0 / (len as f32 * norm.max(1e-12));
        pooled.iter_mut().for_each(|v| *v *= scale);
        pooled
    }

    fn layer(&self, layer: &Layer, len: usize, s: &mut Scratch) {
        let h = self.hidden;
        linear(
            s.hidden.as_slice(),
            len,
            &layer.qkv,
            &layer.qkv_bias,
            &mut s.quantized,
            &mut s.qkv,
        );
        self.attention(len, s);
        linear(
            s.context.as_slice(),
            len,
            &layer.attention_out,
            &layer.attention_out_bias,
            &mut s.quantized,
            &mut s.projected,
        );
        vector::add_in_place(&mut s.hidden, &s.projected);
        vector::layer_norm(
            &mut s.hidden,
            &layer.attention_norm.0,
            &layer.attention_norm.1,
            self.eps,
        );

        linear(
            s.hidden.as_slice(),
            len,
            &layer.ffn_in,
            &layer.ffn_in_bias,
            &mut s.quantized,
            &mut s.intermediate,
        );
        vector::gelu_erf(&mut s.intermediate);
        linear(
            s.intermediate.as_slice(),
            len,
            &layer.ffn_out,
            &layer.ffn_out_bias,
            &mut s.quantized,
            &mut s.projected,
        );
        vector::add_in_place(&mut s.hidden, &s.projected);
        vector::layer_norm(
            &mut s.hidden,
            &layer.output_norm.0,
            &layer.output_norm.1,
            self.eps,
        );
        debug_assert_eq!(s.hidden.len(), len * h);
        debug_assert_eq!(s.intermediate.len(), len * self.intermediate);
    }

    /// Scaled dot-product attention of every head over the whole sequence (no mask: there is
    /// no padding), from `s.qkv` (len × 3·hidden) into `s.context` (len × hidden). Both
    /// products run on the integer kernel: the keys (len × d) and the transposed values
    /// (d × len) take the place of weights.
    fn attention(&self, len: usize, s: &mut Scratch) {
        let h = self.hidden;
        let d = h / self.heads;
        let scale = 1.0 / (d as f32).sqrt();
        s.context.clear();
        s.context.resize(len * h, 0.0);
        for head in 0..self.heads {
            let at = head * d;
            s.head_q.clear();
            s.head_k.clear();
            s.head_v.resize(d * len, 0.0);
            for (t, row) in s.qkv.chunks_exact(3 * h).enumerate() {
                s.head_q.extend(row[at..at + d].iter().map(|v| v * scale));
                s.head_k.extend_from_slice(&row[h + at..h + at + d]);
                for c in 0..d {
                    s.head_v[c * len + t] = row[2 * h + at + c];
                }
            }
            s.scores.clear();
            s.scores.resize(len * len, 0.0);
            let products = s
                .keys
                .repack(&s.head_k, len, d)
                .and_then(|()| s.quantized.quantize(&s.head_q, len, d))
                .and_then(|()| int8::matmul(&s.quantized, &s.keys, None, &mut s.scores));
            for row in s.scores.chunks_exact_mut(len) {
                vector::softmax(row);
            }
            s.head_out.clear();
            s.head_out.resize(len * d, 0.0);
            products
                .and_then(|()| s.values.repack(&s.head_v, d, len))
                .and_then(|()| s.quantized.quantize(&s.scores, len, len))
                .and_then(|()| int8::matmul(&s.quantized, &s.values, None, &mut s.head_out))
                .expect("attention shapes follow from the sequence length");
            for (out, ctx) in s
                .head_out
                .chunks_exact(d)
                .zip(s.context.chunks_exact_mut(h))
            {
                ctx[at..at + d].copy_from_slice(out);
            }
        }
    }
}

/// `out = x · Wᵀ + b` for `rows` rows of `x`, through the integer kernel.
fn linear(
    x: &[f32],
    rows: usize,
    w: &PackedWeights,
    bias: &[f32],
    quantized: &mut QuantizedRows,
    out: &mut Vec<f32>,
) {
    out.clear();
    out.resize(rows * w.outputs(), 0.0);
    // Shapes are fixed by `load`; a mismatch here would be a bug in this file.
    quantized
        .quantize(x, rows, w.inputs())
        .and_then(|()| int8::matmul(quantized, w, Some(bias), out))
        .expect("linear layer shapes are set at load time");
}
