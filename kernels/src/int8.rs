//! 8-bit integer matrix multiplication for the linear layers of small transformer encoders:
//! `y = x · Wᵀ + b`, with `W` (outputs × inputs) quantized once per output row and `x`
//! quantized per row when the layer runs.
//!
//! Every path (AVX-512 VNNI, AVX2, scalar) sums the same integer products exactly and then
//! applies the same float operations in the same order, so all of them give bit-identical
//! results: a knowledge base embedded on one machine is searched with the same vectors on any
//! other.
//!
//! Weights are packed in blocks of 16 output rows; inside a block, each group of 4 inputs of
//! the 16 rows lies together (64 bytes), which is what one VNNI `vpdpbusd` multiplies against 4
//! broadcast input bytes. VNNI multiplies unsigned by signed bytes, so activations are stored
//! offset by 128 and the offset is taken back with each row's weight sum.

use std::sync::OnceLock;

/// Output rows per packed weight block (one 512-bit register of 32-bit sums).
pub const BLOCK_ROWS: usize = 16;
/// Inputs per 32-bit lane of a dot-product instruction.
const GROUP: usize = 4;
/// Largest magnitude of a quantized value; symmetric, so -128 never occurs (the AVX2 sign
/// trick relies on it).
const QMAX: f32 = 127.0;

/// Why a product cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShapeError {
    /// The data length does not match the stated shape.
    Length { expected: usize, found: usize },
    /// The inner dimensions of the two operands differ.
    Inner { left: usize, right: usize },
    /// The activations were quantized for other weight types than this one (named).
    NotQuantizedFor(&'static str),
}

impl std::fmt::Display for ShapeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShapeError::Length { expected, found } => {
                write!(f, "expected {expected} values for the shape, found {found}")
            }
            ShapeError::Inner { left, right } => {
                write!(f, "inner dimensions differ: {left} inputs against {right}")
            }
            ShapeError::NotQuantizedFor(ty) => {
                write!(f, "the activations were not quantized for {ty} weights")
            }
        }
    }
}

impl std::error::Error for ShapeError {}

/// A weight matrix (outputs × inputs) quantized to signed bytes, one scale per output row,
/// packed for the kernels.
#[derive(Debug, Clone)]
pub struct PackedWeights {
    outputs: usize,
    inputs: usize,
    /// `inputs` rounded up to a multiple of `GROUP`; the padding holds zeros.
    padded_inputs: usize,
    /// `[block][group][row in block][byte in group]`.
    data: Vec<i8>,
    /// Per output row (zero for padding rows).
    scales: Vec<f32>,
    /// Per output row: the sum of its quantized weights, to remove the activation offset.
    sums: Vec<i32>,
}

impl PackedWeights {
    /// Quantizes `weights`, row-major with `outputs` rows of `inputs` values (the layout of a
    /// PyTorch `Linear.weight`).
    pub fn quantize(
        weights: &[f32],
        outputs: usize,
        inputs: usize,
    ) -> Result<PackedWeights, ShapeError> {
        let mut packed = PackedWeights::empty();
        packed.repack(weights, outputs, inputs)?;
        Ok(packed)
    }

    /// A 0 × 0 matrix, to be filled by `repack`.
    pub fn empty() -> PackedWeights {
        PackedWeights {
            outputs: 0,
            inputs: 0,
            padded_inputs: 0,
            data: Vec::new(),
            scales: Vec::new(),
            sums: Vec::new(),
        }
    }

    /// `quantize` into this matrix's buffers: for operands made at run time (attention's keys
    /// and values), so a warm forward pass allocates nothing.
    pub fn repack(
        &mut self,
        weights: &[f32],
        outputs: usize,
        inputs: usize,
    ) -> Result<(), ShapeError> {
        if weights.len() != outputs * inputs {
            return Err(ShapeError::Length {
                expected: outputs * inputs,
                found: weights.len(),
            });
        }
        let padded_inputs = inputs.next_multiple_of(GROUP);
        let groups = padded_inputs / GROUP;
        let blocks = outputs.div_ceil(BLOCK_ROWS);
        self.outputs = outputs;
        self.inputs = inputs;
        self.padded_inputs = padded_inputs;
        self.data.clear();
        self.data.resize(blocks * BLOCK_ROWS * padded_inputs, 0);
        self.scales.clear();
        self.scales.resize(blocks * BLOCK_ROWS, 0.0);
        self.sums.clear();
        self.sums.resize(blocks * BLOCK_ROWS, 0);
        for (o, row) in weights
            .chunks_exact(inputs.max(1))
            .enumerate()
            .take(outputs)
        {
            let (block, lane) = (o / BLOCK_ROWS, o % BLOCK_ROWS);
            let (scale, inverse) = scale_of(row);
            self.scales[o] = scale;
            let mut sum = 0i32;
            for (g, part) in row.chunks(GROUP).enumerate() {
                let mut row_q = [0i8; GROUP];
                for (q, &v) in row_q.iter_mut().zip(part) {
                    *q = quantize_one(v, inverse);
                    sum += *q as i32;
                }
                let at = ((block * groups + g) * BLOCK_ROWS + lane) * GROUP;
                self.data[at..at + GROUP].copy_from_slice(&row_q);
            }
            self.sums[o] = sum;
        }
        Ok(())
    }

    pub fn outputs(&self) -> usize {
        self.outputs
    }

    pub fn inputs(&self) -> usize {
        self.inputs
    }

    fn groups(&self) -> usize {
        self.padded_inputs / GROUP
    }

    fn blocks(&self) -> usize {
        self.outputs.div_ceil(BLOCK_ROWS)
    }
}

/// Rows of activations quantized to bytes (stored offset by 128), one scale per row. Reused
/// across calls so a forward pass allocates nothing once warm.
#[derive(Debug, Clone, Default)]
pub struct QuantizedRows {
    rows: usize,
    inputs: usize,
    padded_inputs: usize,
    data: Vec<u8>,
    scales: Vec<f32>,
}

impl QuantizedRows {
    pub fn new() -> QuantizedRows {
        QuantizedRows::default()
    }

    /// Quantizes `x`, row-major with `rows` rows of `inputs` values, replacing what was held.
    pub fn quantize(&mut self, x: &[f32], rows: usize, inputs: usize) -> Result<(), ShapeError> {
        if x.len() != rows * inputs {
            return Err(ShapeError::Length {
                expected: rows * inputs,
                found: x.len(),
            });
        }
        let padded = inputs.next_multiple_of(GROUP);
        self.rows = rows;
        self.inputs = inputs;
        self.padded_inputs = padded;
        self.data.clear();
        self.data.resize(rows * padded, 128);
        self.scales.clear();
        self.scales.resize(rows, 0.0);
        for (r, row) in x.chunks_exact(inputs.max(1)).enumerate().take(rows) {
            let (scale, inverse) = scale_of(row);
            self.scales[r] = scale;
            for (dst, &v) in self.data[r * padded..r * padded + inputs]
                .iter_mut()
                .zip(row)
            {
                *dst = (quantize_one(v, inverse) as i16 + 128) as u8;
            }
        }
        Ok(())
    }

    pub fn rows(&self) -> usize {
        self.rows
    }
}

/// A row's symmetric scale (largest magnitude / 127) and its inverse; both zero for a row of
/// zeros (or one holding a non-finite value, which then quantizes to zeros).
fn scale_of(row: &[f32]) -> (f32, f32) {
    let mut lanes = [0.0f32; 8];
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        for l in 0..8 {
            let a = c[l].abs();
            lanes[l] = if a > lanes[l] { a } else { lanes[l] };
        }
    }
    let max = lanes
        .into_iter()
        .chain(chunks.remainder().iter().map(|v| v.abs()))
        .fold(0.0f32, f32::max);
    if max == 0.0 || !max.is_finite() {
        (0.0, 0.0)
    } else {
        (max / QMAX, QMAX / max)
    }
}

#[inline(always)]
fn quantize_one(v: f32, inverse: f32) -> i8 {
    let x = v * inverse;
    // NaN becomes 0; written as a select and an unchecked conversion of a value known to be in
    // range, so the loops around it vectorise (a saturating `as` does not).
    let x = if x.is_nan() { 0.0 } else { x };
    let x = x.round_ties_even().clamp(-QMAX, QMAX);
    // SAFETY: x is finite and within ±127.
    unsafe { x.to_int_unchecked::<i32>() as i8 }
}

/// The instruction set a product runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Int8Path {
    Scalar,
    Avx2,
    Avx512Vnni,
}

impl Int8Path {
    /// The fastest path this CPU supports (detected once).
    pub fn best() -> Int8Path {
        static BEST: OnceLock<Int8Path> = OnceLock::new();
        *BEST.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vnni")
                {
                    return Int8Path::Avx512Vnni;
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    return Int8Path::Avx2;
                }
            }
            Int8Path::Scalar
        })
    }

    /// Whether this CPU can run the path.
    pub fn supported(self) -> bool {
        match self {
            Int8Path::Scalar => true,
            Int8Path::Avx2 => matches!(Int8Path::best(), Int8Path::Avx2 | Int8Path::Avx512Vnni),
            Int8Path::Avx512Vnni => Int8Path::best() == Int8Path::Avx512Vnni,
        }
    }
}

/// `out = x · Wᵀ + bias` with the fastest path: `out` is `x.rows() × w.outputs()`, row-major.
pub fn matmul(
    x: &QuantizedRows,
    w: &PackedWeights,
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> Result<(), ShapeError> {
    matmul_with(Int8Path::best(), x, w, bias, out)
}

/// `matmul` on a chosen path; a path this CPU lacks falls back to scalar.
pub fn matmul_with(
    path: Int8Path,
    x: &QuantizedRows,
    w: &PackedWeights,
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> Result<(), ShapeError> {
    if x.inputs != w.inputs {
        return Err(ShapeError::Inner {
            left: x.inputs,
            right: w.inputs,
        });
    }
    if out.len() != x.rows * w.outputs {
        return Err(ShapeError::Length {
            expected: x.rows * w.outputs,
            found: out.len(),
        });
    }
    if let Some(b) = bias {
        if b.len() != w.outputs {
            return Err(ShapeError::Length {
                expected: w.outputs,
                found: b.len(),
            });
        }
    }
    let path = if path.supported() {
        path
    } else {
        Int8Path::Scalar
    };
    match path {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `supported` checked the CPU features; shapes were checked above.
        Int8Path::Avx512Vnni => unsafe { x86::matmul_vnni(x, w, bias, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Int8Path::Avx2 => unsafe { x86::matmul_avx2(x, w, bias, out) },
        _ => matmul_scalar(x, w, bias, out),
    }
    Ok(())
}

/// The float epilogue every path applies to an exact integer sum, in this order.
#[inline(always)]
fn epilogue(sum: i32, x_scale: f32, w_scale: f32, bias: f32) -> f32 {
    sum as f32 * x_scale * w_scale + bias
}

fn matmul_scalar(x: &QuantizedRows, w: &PackedWeights, bias: Option<&[f32]>, out: &mut [f32]) {
    let groups = w.groups();
    for r in 0..x.rows {
        let a = &x.data[r * x.padded_inputs..(r + 1) * x.padded_inputs];
        for o in 0..w.outputs {
            let (block, lane) = (o / BLOCK_ROWS, o % BLOCK_ROWS);
            let mut sum = 0i32;
            for g in 0..groups {
                let at = ((block * groups + g) * BLOCK_ROWS + lane) * GROUP;
                for t in 0..GROUP {
                    sum += (a[g * GROUP + t] as i32 - 128) * w.data[at + t] as i32;
                }
            }
            let b = bias.map_or(0.0, |b| b[o]);
            out[r * w.outputs + o] = epilogue(sum, x.scales[r], w.scales[o], b);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use std::arch::x86_64::*;

    /// Rows of `x` per tile.
    const TILE_ROWS: usize = 4;
    /// Weight blocks (of 16 outputs) per tile.
    const TILE_BLOCKS: usize = 4;

    /// # Safety
    /// The CPU must have AVX-512 F, BW and VNNI; shapes must have been checked.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn matmul_vnni(
        x: &QuantizedRows,
        w: &PackedWeights,
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) {
        let blocks = w.blocks();
        let mut block = 0;
        // Weight tiles outermost: a tile (≤ 4 × 16 rows × inputs bytes) stays in cache while
        // every row of x passes over it.
        while block < blocks {
            let nb = (blocks - block).min(TILE_BLOCKS);
            let mut row = 0;
            while row < x.rows {
                let mr = (x.rows - row).min(TILE_ROWS);
                match (mr, nb) {
                    (4, 4) => tile_vnni::<4, 4>(x, w, bias, out, row, block),
                    (4, 3) => tile_vnni::<4, 3>(x, w, bias, out, row, block),
                    (4, 2) => tile_vnni::<4, 2>(x, w, bias, out, row, block),
                    (4, _) => tile_vnni::<4, 1>(x, w, bias, out, row, block),
                    (3, 4) => tile_vnni::<3, 4>(x, w, bias, out, row, block),
                    (3, 3) => tile_vnni::<3, 3>(x, w, bias, out, row, block),
                    (3, 2) => tile_vnni::<3, 2>(x, w, bias, out, row, block),
                    (3, _) => tile_vnni::<3, 1>(x, w, bias, out, row, block),
                    (2, 4) => tile_vnni::<2, 4>(x, w, bias, out, row, block),
                    (2, 3) => tile_vnni::<2, 3>(x, w, bias, out, row, block),
                    (2, 2) => tile_vnni::<2, 2>(x, w, bias, out, row, block),
                    (2, _) => tile_vnni::<2, 1>(x, w, bias, out, row, block),
                    (_, 4) => tile_vnni::<1, 4>(x, w, bias, out, row, block),
                    (_, 3) => tile_vnni::<1, 3>(x, w, bias, out, row, block),
                    (_, 2) => tile_vnni::<1, 2>(x, w, bias, out, row, block),
                    (_, _) => tile_vnni::<1, 1>(x, w, bias, out, row, block),
                }
                row += mr;
            }
            block += nb;
        }
    }

    /// `MR` rows of x against `NB` weight blocks starting at `block`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn tile_vnni<const MR: usize, const NB: usize>(
        x: &QuantizedRows,
        w: &PackedWeights,
        bias: Option<&[f32]>,
        out: &mut [f32],
        row: usize,
        block: usize,
    ) {
        let groups = w.groups();
        let block_bytes = groups * BLOCK_ROWS * GROUP;
        let a = x.data.as_ptr().add(row * x.padded_inputs);
        let wp = w.data.as_ptr().add(block * block_bytes);
        let mut acc = [[_mm512_setzero_si512(); NB]; MR];
        for g in 0..groups {
            let mut wv = [_mm512_setzero_si512(); NB];
            for (j, v) in wv.iter_mut().enumerate() {
                *v = _mm512_loadu_si512(wp.add(j * block_bytes + g * 64) as *const __m512i);
            }
            for (r, acc_row) in acc.iter_mut().enumerate() {
                let bytes = (a.add(r * x.padded_inputs + g * GROUP) as *const i32).read_unaligned();
                let av = _mm512_set1_epi32(bytes);
                for (j, acc_cell) in acc_row.iter_mut().enumerate() {
                    *acc_cell = _mm512_dpbusd_epi32(*acc_cell, av, wv[j]);
                }
            }
        }
        #[allow(clippy::needless_range_loop)]
        for j in 0..NB {
            let first = (block + j) * BLOCK_ROWS;
            let valid = (w.outputs - first).min(BLOCK_ROWS);
            let mask: __mmask16 = if valid == BLOCK_ROWS {
                0xffff
            } else {
                (1u16 << valid) - 1
            };
            // Padding rows have zero scale and sum; reading them is in bounds.
            let offset = _mm512_slli_epi32::<7>(_mm512_loadu_si512(
                w.sums.as_ptr().add(first) as *const __m512i
            ));
            let w_scale = _mm512_loadu_ps(w.scales.as_ptr().add(first));
            let b = match bias {
                Some(b) => _mm512_maskz_loadu_ps(mask, b.as_ptr().add(first)),
                None => _mm512_setzero_ps(),
            };
            for (r, acc_row) in acc.iter().enumerate() {
                let sum = _mm512_sub_epi32(acc_row[j], offset);
                let x_scale = _mm512_set1_ps(x.scales[row + r]);
                let v = _mm512_add_ps(
                    _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(sum), x_scale), w_scale),
                    b,
                );
                let dst = out.as_mut_ptr().add((row + r) * w.outputs + first);
                _mm512_mask_storeu_ps(dst, mask, v);
            }
        }
    }

    /// # Safety
    /// The CPU must have AVX2; shapes must have been checked.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn matmul_avx2(
        x: &QuantizedRows,
        w: &PackedWeights,
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) {
        let groups = w.groups();
        let block_bytes = groups * BLOCK_ROWS * GROUP;
        let ones = _mm256_set1_epi16(1);
        let flip = 0x8080_8080u32 as i32;
        let mut sums = [[0i32; BLOCK_ROWS]; TILE_ROWS];
        for block in 0..w.blocks() {
            let wp = w.data.as_ptr().add(block * block_bytes);
            let mut row = 0;
            while row < x.rows {
                let mr = (x.rows - row).min(TILE_ROWS);
                // Two registers of 8 lanes per row: outputs 0–7 and 8–15 of the block.
                let mut acc = [[_mm256_setzero_si256(); 2]; TILE_ROWS];
                for g in 0..groups {
                    let lo = _mm256_loadu_si256(wp.add(g * 64) as *const __m256i);
                    let hi = _mm256_loadu_si256(wp.add(g * 64 + 32) as *const __m256i);
                    for (r, acc_row) in acc.iter_mut().enumerate().take(mr) {
                        let at = x.data.as_ptr().add((row + r) * x.padded_inputs + g * GROUP);
                        // Back from offset bytes to signed: flipping the top bit subtracts 128.
                        let signed = (at as *const i32).read_unaligned() ^ flip;
                        let av = _mm256_set1_epi32(signed);
                        // |a| × (w · sign a): unsigned × signed bytes that cannot saturate,
                        // since neither side holds -128.
                        let magnitude = _mm256_sign_epi8(av, av);
                        for (half, weights) in [lo, hi].into_iter().enumerate() {
                            let signed_w = _mm256_sign_epi8(weights, av);
                            let pairs = _mm256_maddubs_epi16(magnitude, signed_w);
                            acc_row[half] =
                                _mm256_add_epi32(acc_row[half], _mm256_madd_epi16(pairs, ones));
                        }
                    }
                }
                for (r, acc_row) in acc.iter().enumerate().take(mr) {
                    _mm256_storeu_si256(sums[r].as_mut_ptr() as *mut __m256i, acc_row[0]);
                    _mm256_storeu_si256(sums[r].as_mut_ptr().add(8) as *mut __m256i, acc_row[1]);
                }
                let first = block * BLOCK_ROWS;
                let valid = (w.outputs - first).min(BLOCK_ROWS);
                for (r, row_sums) in sums.iter().enumerate().take(mr) {
                    let x_scale = x.scales[row + r];
                    for (lane, &sum) in row_sums[..valid].iter().enumerate() {
                        let o = first + lane;
                        let b = bias.map_or(0.0, |b| b[o]);
                        out[(row + r) * w.outputs + o] = epilogue(sum, x_scale, w.scales[o], b);
                    }
                }
                row += mr;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift), so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        }
        fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
            (0..n).map(|_| self.next() * scale).collect()
        }
    }

    fn reference(x: &[f32], w: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
        let mut out = vec![0.0; m * n];
        for r in 0..m {
            for o in 0..n {
                let dot: f32 = (0..k).map(|i| x[r * k + i] * w[o * k + i]).sum();
                out[r * n + o] = dot + b[o];
            }
        }
        out
    }

    fn run(path: Int8Path, m: usize, n: usize, k: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
        let mut rng = Rng(seed);
        let x = rng.vec(m * k, 3.0);
        let w = rng.vec(n * k, 0.1);
        let b = rng.vec(n, 1.0);
        let packed = PackedWeights::quantize(&w, n, k).unwrap();
        let mut q = QuantizedRows::new();
        q.quantize(&x, m, k).unwrap();
        let mut out = vec![f32::NAN; m * n];
        matmul_with(path, &q, &packed, Some(&b), &mut out).unwrap();
        (out, reference(&x, &w, &b, m, n, k))
    }

    const SHAPES: [(usize, usize, usize); 9] = [
        (1, 1, 1),
        (1, 16, 384),
        (7, 33, 5),
        (4, 64, 384),
        (5, 100, 97),
        (13, 1152, 384),
        (9, 384, 1536),
        (3, 17, 896),
        (256, 80, 64),
    ];

    #[test]
    fn scalar_is_close_to_float() {
        for (i, &(m, n, k)) in SHAPES.iter().enumerate() {
            let (got, want) = run(Int8Path::Scalar, m, n, k, 7 + i as u64);
            // Two 8-bit roundings: the error grows like √k times a quantization step.
            let tolerance = 0.3 * 0.1 * 3.0 * (k as f32).sqrt() / 127.0 * 4.0 + 1e-5;
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= tolerance, "{m}x{n}x{k}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn simd_paths_equal_scalar_bit_for_bit() {
        for path in [Int8Path::Avx2, Int8Path::Avx512Vnni] {
            if !path.supported() {
                eprintln!("{path:?} not supported on this CPU; skipped");
                continue;
            }
            for (i, &(m, n, k)) in SHAPES.iter().enumerate() {
                let (simd, _) = run(path, m, n, k, 100 + i as u64);
                let (scalar, _) = run(Int8Path::Scalar, m, n, k, 100 + i as u64);
                assert_eq!(simd, scalar, "{path:?} {m}x{n}x{k}");
            }
        }
    }

    #[test]
    fn zero_rows_and_no_bias() {
        let w = vec![0.5f32; 20 * 8];
        let packed = PackedWeights::quantize(&w, 20, 8).unwrap();
        let mut q = QuantizedRows::new();
        q.quantize(&[0.0; 16], 2, 8).unwrap();
        let mut out = vec![f32::NAN; 40];
        matmul(&q, &packed, None, &mut out).unwrap();
        assert!(out.iter().all(|&v| v == 0.0), "{out:?}");
    }

    #[test]
    fn shape_errors() {
        assert!(PackedWeights::quantize(&[1.0; 5], 2, 3).is_err());
        let packed = PackedWeights::quantize(&[1.0; 6], 2, 3).unwrap();
        let mut q = QuantizedRows::new();
        q.quantize(&[1.0; 8], 2, 4).unwrap();
        let mut out = vec![0.0; 4];
        assert_eq!(
            matmul(&q, &packed, None, &mut out),
            Err(ShapeError::Inner { left: 4, right: 3 })
        );
        q.quantize(&[1.0; 6], 2, 3).unwrap();
        let mut short = vec![0.0; 3];
        assert!(matmul(&q, &packed, None, &mut short).is_err());
        assert!(matmul(&q, &packed, Some(&[0.0]), &mut out).is_err());
    }
}
