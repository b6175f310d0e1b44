//! Matrix products against GGUF's quantized weights: `y = x · Wᵀ` for the linear layers of a
//! language model, one kernel for generation (one row of `x`) and prompt processing (hundreds).
//!
//! Every supported GGML format decodes to `w = d · q + m` with a small unsigned integer `q`
//! (4, 5, 6 or 8 bits) and a scale `d` and offset `m` per block of 32 (16 for Q6_K) values.
//! At load time the weights are repacked, without losing a bit, into one layout: blocks of 16
//! output rows, and inside a block, for each run of 32 inputs, the 16 rows' values grouped four
//! inputs at a time — exactly the 64 bytes one AVX-512 VNNI `vpdpbusd` multiplies against four
//! broadcast activation bytes, so no horizontal sums are ever needed. 4-bit values are stored
//! as nibbles (two registers per 64 bytes), and the fifth and sixth bits as bit planes that a
//! masked byte add puts back, so a repacked matrix is no bigger than the file's.
//!
//! Activations are quantized per block of 32 to signed bytes with an f32 scale `da` (like
//! GGML's Q8_0); a block then contributes `d · (da · Σ q·a) + m · (da · Σ a)` — the integer
//! sum exact, then the same float operations in the same order on every path.
//!
//! The K-quants (Q4_K, Q6_K) take activations quantized per 256 inputs instead (like GGML's
//! Q8_K), the length of their super-blocks: with one activation scale per super-block, a
//! sub-block's integer sum needs one multiply-add by its small integer scale, and the offsets
//! (`m_j · Σ a`, integers on both sides) are summed exactly with 16-bit multiply-adds — a
//! third of the float work per 32 inputs, which dominated the prompt products.

use crate::cpu::CpuFeatures;
use crate::ggml::{self, GgmlType};
pub use crate::int8::ShapeError;
use crate::pages::{PageBuffer, PageVec};
use half::f16;
use rayon::prelude::*;
use std::sync::OnceLock;

/// Output rows per packed block: one 512-bit register of 32-bit sums.
pub const ROWS: usize = 16;
/// Inputs per activation block (one activation scale).
const KB: usize = 32;

/// Why a GGUF tensor cannot become a matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuantError {
    Unsupported(&'static str),
    /// The row length is not a whole number of the format's blocks (or of 32).
    RowLength {
        ty: &'static str,
        cols: usize,
    },
    Length {
        expected: usize,
        found: usize,
    },
}

impl std::fmt::Display for QuantError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QuantError::Unsupported(t) => write!(f, "weight type {t} is not supported"),
            QuantError::RowLength { ty, cols } => {
                write!(f, "rows of {cols} values cannot be stored as {ty}")
            }
            QuantError::Length { expected, found } => {
                write!(
                    f,
                    "tensor data is {found} bytes, its shape needs {expected}"
                )
            }
        }
    }
}

impl std::error::Error for QuantError {}

/// The instruction set a product runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantPath {
    Scalar,
    Avx2,
    Avx512Vnni,
}

impl QuantPath {
    /// The fastest path this CPU supports (detected once).
    pub fn best() -> QuantPath {
        static BEST: OnceLock<QuantPath> = OnceLock::new();
        *BEST.get_or_init(|| {
            let cpu = CpuFeatures::detect();
            if cpu.avx512f && cpu.avx512bw && cpu.avx512vnni {
                QuantPath::Avx512Vnni
            } else if cpu.avx2 && cpu.fma && cpu.f16c {
                QuantPath::Avx2
            } else {
                QuantPath::Scalar
            }
        })
    }

    pub fn supported(self) -> bool {
        match self {
            QuantPath::Scalar => true,
            QuantPath::Avx2 => matches!(QuantPath::best(), QuantPath::Avx2 | QuantPath::Avx512Vnni),
            QuantPath::Avx512Vnni => QuantPath::best() == QuantPath::Avx512Vnni,
        }
    }
}

/// Per-block scales as stored. f16 where the file's scale is one f16 (exact). The K-quants keep
/// their own compact form — an f16 per 256 inputs times a small integer per 32 (Q4_K) or 16
/// (Q6_K) — so a repacked matrix reads no more bytes per token than the file.
#[derive(Debug, Clone)]
enum Scales {
    F16(PageVec<u16>),
    /// `d[super] · sc[block]`; `d` is `[row block][256-input block][16 rows]`, `sc` is in
    /// the pair layout (`pair_index`).
    Super {
        d: PageVec<u16>,
        sc: PageVec<i8>,
    },
}

/// Per-block offsets: `-bias · d` for the symmetric formats (nothing stored), or stored.
#[derive(Debug, Clone)]
enum Mins {
    Bias(f32),
    F16(PageVec<u16>),
    /// `-dmin[super] · m[block]`, laid out as `Scales::Super` (Q4_K).
    Super {
        dmin: PageVec<u16>,
        m: PageVec<u8>,
    },
}

/// Q6_K's zero point: its values are stored as `q = w / (d · sc_j) + 32`. Its products start
/// each sub-block's integer sum at `-Q6K_ZERO · Σa`, so that the sum is `Σ (q − 32) · a` and
/// the offset needs no term of its own.
const Q6K_ZERO: i32 = 32;

/// `QMatrix::super_scales`: `(d, sc, Some((dmin, mins)))` for Q4_K, `None` offsets for Q6_K.
type SuperScales<'a> = (&'a [u16], &'a [i8], Option<(&'a [u16], &'a [u8])>);

/// Where sub-block `s`'s scale (or min) for row `r` of row block `g` is kept: the K-quants
/// store them `[row block][pair of sub-blocks][16 rows][2]`, so the two sub-blocks of a pair
/// are one 16-bit pair per row — Q4_K's mins are the operand of a `vpdpwssd` against two
/// activation sums, and the scales share their layout.
#[inline(always)]
fn pair_index(g: usize, nscales: usize, s: usize, r: usize) -> usize {
    (g * nscales + (s & !1)) * ROWS + r * 2 + (s & 1)
}

/// A quantized weight matrix (`rows` outputs × `cols` inputs) repacked for the kernels, or a
/// float one kept as f32.
#[derive(Debug, Clone)]
pub struct QMatrix {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    /// Bits of a value: 4, 5, 6 or 8.
    bits: u32,
    /// Inputs per scale: 32, or 16 for Q6_K.
    sb: usize,
    /// `[row block][32-input block][block_bytes]`.
    values: PageBuffer,
    /// `[row block][scale block][16 rows]`.
    scales: Scales,
    mins: Mins,
    /// Float weights, row-major (F32 and F16 tensors).
    dense: Vec<f32>,
    /// Q6_K's values again as whole bytes, for prompt products (`WIDE_MIN_ROWS`): restoring
    /// the 5th and 6th bits costs more there than reading a third more bytes.
    wide: Option<Box<QMatrix>>,
}

/// Activation rows from which a product reads a matrix's whole-byte copy, when it has one.
/// Generation (one row per conversation) reads the compact values: there bytes are the cost.
const WIDE_MIN_ROWS: usize = 16;
/// Q6_K matrices with more rows than this (the vocabulary projection, which prompt processing
/// applies to the last position only) get no whole-byte copy.
const WIDE_MAX_ROWS: usize = 65_536;

/// Bytes of one 16-row × 32-input block of values.
fn block_bytes(bits: u32) -> usize {
    match bits {
        8 => 512,
        b => 256 + (b as usize - 4) * 64,
    }
}

impl QMatrix {
    /// Repacks a GGUF tensor of `rows` rows of `cols` values (`data` in the file's layout).
    pub fn from_ggml(
        ty: GgmlType,
        rows: usize,
        cols: usize,
        data: &[u8],
    ) -> Result<QMatrix, QuantError> {
        let row_bytes = ty.row_bytes(cols).ok_or(QuantError::RowLength {
            ty: ty.name(),
            cols,
        })?;
        if data.len() != rows * row_bytes {
            return Err(QuantError::Length {
                expected: rows * row_bytes,
                found: data.len(),
            });
        }
        let mut m = QMatrix {
            ty,
            rows,
            cols,
            bits: ty.value_bits(),
            sb: ty.scale_block().max(16),
            values: PageBuffer::default(),
            scales: Scales::F16(PageVec::default()),
            mins: Mins::Bias(0.0),
            dense: Vec::new(),
            wide: None,
        };
        if !ty.is_quantized() {
            m.dense = vec![0.0; rows * cols];
            m.dense
                .par_chunks_mut(cols.max(1))
                .zip(data.par_chunks(row_bytes.max(1)))
                .for_each(|(out, row)| ggml::dequantize_row(ty, row, out));
            return Ok(m);
        }
        if !cols.is_multiple_of(KB) {
            return Err(QuantError::RowLength {
                ty: ty.name(),
                cols,
            });
        }
        let groups = rows.div_ceil(ROWS);
        let kblocks = cols / KB;
        let bb = block_bytes(m.bits);
        let nscales = cols / m.sb;
        let mut values = PageBuffer::zeroed(groups * kblocks * bb);
        let mut scales = vec![0f32; groups * nscales * ROWS];
        let mut mins = vec![0f32; groups * nscales * ROWS];
        let bits = m.bits;
        values
            .par_chunks_mut(kblocks * bb)
            .zip(scales.par_chunks_mut(nscales * ROWS))
            .zip(mins.par_chunks_mut(nscales * ROWS))
            .enumerate()
            .for_each(|(g, ((vals, scs), mns))| {
                let mut q = vec![0u8; cols];
                let mut rs = vec![0f32; nscales];
                let mut rm = vec![0f32; nscales];
                for r in 0..ROWS.min(rows - g * ROWS) {
                    let row = g * ROWS + r;
                    ggml::decode_row(
                        ty,
                        &data[row * row_bytes..][..row_bytes],
                        &mut q,
                        &mut rs,
                        &mut rm,
                    );
                    for s in 0..nscales {
                        scs[s * ROWS + r] = rs[s];
                        mns[s * ROWS + r] = rm[s];
                    }
                    for kb in 0..kblocks {
                        pack_row(
                            bits,
                            &q[kb * KB..kb * KB + KB],
                            r,
                            &mut vals[kb * bb..kb * bb + bb],
                        );
                    }
                }
            });
        m.values = values;
        let half = |v: &[f32]| v.iter().map(|&s| f16::from_f32(s).to_bits()).collect();
        m.mins = match ty {
            GgmlType::Q4_0 => Mins::Bias(8.0),
            GgmlType::Q5_0 => Mins::Bias(16.0),
            GgmlType::Q8_0 => Mins::Bias(128.0),
            GgmlType::Q6K => Mins::Bias(Q6K_ZERO as f32),
            // Packed below: per-32 f16 copies would be thrown away, and a slab does not
            // reuse what its buffers free.
            GgmlType::Q4K => Mins::Bias(0.0),
            _ => Mins::F16(half(&mins)),
        };
        if matches!(ty, GgmlType::Q4K | GgmlType::Q6K) {
            m.pack_super_scales(data, row_bytes);
        } else {
            m.scales = Scales::F16(half(&scales));
        }
        if ty == GgmlType::Q6K && rows <= WIDE_MAX_ROWS {
            m.wide = Some(Box::new(m.with_whole_bytes()));
        }
        Ok(m)
    }

    /// The same matrix with its values stored as whole bytes (the layout of Q8_0's).
    fn with_whole_bytes(&self) -> QMatrix {
        let kblocks = self.cols / KB;
        let (from, to) = (block_bytes(self.bits), block_bytes(8));
        let mut values = PageBuffer::zeroed(self.groups() * kblocks * to);
        values
            .par_chunks_mut(kblocks * to)
            .zip(self.values.par_chunks(kblocks * from))
            .for_each(|(wide, packed)| {
                for (w, p) in wide.chunks_exact_mut(to).zip(packed.chunks_exact(from)) {
                    let mut q = [0u8; KB];
                    for r in 0..ROWS {
                        for (k, v) in q.iter_mut().enumerate() {
                            *v = unpack_value(self.bits, p, r, k);
                        }
                        pack_row(8, &q, r, w);
                    }
                }
            });
        QMatrix {
            bits: 8,
            values,
            scales: self.scales.clone(),
            mins: self.mins.clone(),
            dense: Vec::new(),
            wide: None,
            ..*self
        }
    }

    /// The copy of this matrix a product with `n` activation rows reads.
    fn for_rows(&self, n: usize) -> &QMatrix {
        match &self.wide {
            Some(wide) if n >= WIDE_MIN_ROWS => wide,
            _ => self,
        }
    }

    /// The K-quants' scales in their compact form, straight from the file's blocks.
    fn pack_super_scales(&mut self, data: &[u8], row_bytes: usize) {
        let nsuper = self.cols / 256;
        let nscales = self.cols / self.sb;
        let per_super = 256 / self.sb;
        let (ty, rows) = (self.ty, self.rows);
        let q4k = ty == GgmlType::Q4K;
        let half = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
        // One row block's d, sub-block scales, dmin and mins (indices as for row block 0).
        type RowBlock = (Vec<u16>, Vec<i8>, Vec<u16>, Vec<u8>);
        let packed: Vec<RowBlock> = (0..self.groups())
            .into_par_iter()
            .map(|g| {
                let mut d = vec![0u16; nsuper * ROWS];
                let mut sc = vec![0i8; nscales * ROWS];
                let (mut dmin, mut mins) = if q4k {
                    (vec![0u16; nsuper * ROWS], vec![0u8; nscales * ROWS])
                } else {
                    (Vec::new(), Vec::new())
                };
                for r in 0..ROWS.min(rows - g * ROWS) {
                    let row = g * ROWS + r;
                    for (b, block) in data[row * row_bytes..][..row_bytes]
                        .chunks_exact(ty.block_bytes())
                        .enumerate()
                    {
                        let si = |sub: usize| pair_index(0, nscales, b * per_super + sub, r);
                        if q4k {
                            d[b * ROWS + r] = half(block, 0);
                            dmin[b * ROWS + r] = half(block, 2);
                            for sub in 0..8 {
                                let (s, m) = ggml::q4k_scale_min(sub, &block[4..16]);
                                sc[si(sub)] = s as i8;
                                mins[si(sub)] = m;
                            }
                        } else {
                            d[b * ROWS + r] = half(block, 208);
                            for sub in 0..16 {
                                sc[si(sub)] = block[192 + sub] as i8;
                            }
                        }
                    }
                }
                (d, sc, dmin, mins)
            })
            .collect();
        let d = packed.iter().flat_map(|p| p.0.iter().copied()).collect();
        let sc = packed.iter().flat_map(|p| p.1.iter().copied()).collect();
        self.scales = Scales::Super { d, sc };
        if q4k {
            let dmin = packed.iter().flat_map(|p| p.2.iter().copied()).collect();
            let m = packed.iter().flat_map(|p| p.3.iter().copied()).collect();
            self.mins = Mins::Super { dmin, m };
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn ggml_type(&self) -> GgmlType {
        self.ty
    }

    /// Bytes held (what a forward pass reads).
    pub fn bytes(&self) -> usize {
        let scales = match &self.scales {
            Scales::F16(v) => v.len() * 2,
            Scales::Super { d, sc } => d.len() * 2 + sc.len(),
        };
        let mins = match &self.mins {
            Mins::Bias(_) => 0,
            Mins::F16(v) => v.len() * 2,
            Mins::Super { dmin, m } => dmin.len() * 2 + m.len(),
        };
        self.values.len() + scales + mins + self.dense.len() * 4
    }

    fn groups(&self) -> usize {
        self.rows.div_ceil(ROWS)
    }

    /// Scale `i` (`[row block][scale block][16 rows]`) of a format with one f16 per block.
    /// The K-quants have no such scale (NaN, which no product could hide); their factors come
    /// from `super_factors` and `sub_factors`.
    fn scale(&self, i: usize) -> f32 {
        match &self.scales {
            Scales::F16(v) => f16::from_bits(v[i]).to_f32(),
            Scales::Super { .. } => f32::NAN,
        }
    }

    /// Offset `i`, as `scale`.
    fn min(&self, i: usize) -> f32 {
        match &self.mins {
            Mins::Bias(b) => -b * self.scale(i),
            Mins::F16(v) => f16::from_bits(v[i]).to_f32(),
            Mins::Super { .. } => f32::NAN,
        }
    }

    /// The K-quants' per-super-block factors of row block `g`, super-block `b`, row `r`:
    /// `(d, dmin)` with `w = d · sc_j · q − dmin · m_j`; Q6_K's `w = d · sc_j · (q − 32)` has
    /// its offset in the integer sums (`Q6K_ZERO`), so `dmin = 0`.
    fn super_factors(&self, g: usize, b: usize, r: usize) -> (f32, f32) {
        let at = (g * (self.cols / 256) + b) * ROWS + r;
        let d = match &self.scales {
            Scales::Super { d, .. } => f16::from_bits(d[at]).to_f32(),
            Scales::F16(_) => f32::NAN,
        };
        match &self.mins {
            Mins::Super { dmin, .. } => (d, f16::from_bits(dmin[at]).to_f32()),
            _ => (d, 0.0),
        }
    }

    /// Sub-block `s`'s scale and offset multiplier (`m_j`; 0 for Q6_K, see `super_factors`)
    /// of row `r` in row block `g`.
    fn sub_factors(&self, g: usize, s: usize, r: usize) -> (i32, i32) {
        let at = pair_index(g, self.cols / self.sb, s, r);
        let sc = match &self.scales {
            Scales::Super { sc, .. } => sc[at] as i32,
            Scales::F16(_) => 0,
        };
        match &self.mins {
            Mins::Super { m, .. } => (sc, m[at] as i32),
            _ => (sc, 0),
        }
    }

    /// A K-quant matrix's compact scales, `(d, sc, Q4_K's (dmin, mins))` in the layouts of
    /// `Scales::Super` and `Mins::Super`; `None` for the other formats.
    fn super_scales(&self) -> Option<SuperScales<'_>> {
        let Scales::Super { d, sc } = &self.scales else {
            return None;
        };
        let offsets = match &self.mins {
            Mins::Super { dmin, m } => Some((&dmin[..], &m[..])),
            _ => None,
        };
        Some((d, sc, offsets))
    }

    fn is_super(&self) -> bool {
        matches!(self.scales, Scales::Super { .. })
    }

    /// `out = x · Wᵀ` with the fastest path; `out` is `x.rows() × self.rows()`, row-major.
    pub fn matmul(&self, x: &Activations, out: &mut [f32]) -> Result<(), ShapeError> {
        self.matmul_with(QuantPath::best(), x, out)
    }

    /// `matmul` on a chosen path; a path this CPU lacks falls back to scalar.
    pub fn matmul_with(
        &self,
        path: QuantPath,
        x: &Activations,
        out: &mut [f32],
    ) -> Result<(), ShapeError> {
        matmul_each_with(path, &mut [(self, out)], x)
    }

    fn check_product(&self, x: &Activations, out: &[f32]) -> Result<(), ShapeError> {
        if x.cols != self.cols {
            return Err(ShapeError::Inner {
                left: x.cols,
                right: self.cols,
            });
        }
        if out.len() != x.n * self.rows {
            return Err(ShapeError::Length {
                expected: x.n * self.rows,
                found: out.len(),
            });
        }
        let prepared = if self.is_super() {
            x.per_super
        } else {
            x.per_block
        };
        if !prepared {
            return Err(ShapeError::NotQuantizedFor(self.ty.name()));
        }
        Ok(())
    }

    /// Row blocks `g0..g1` of `out = x · Wᵀ` on `path` (which this CPU supports), read from
    /// this copy of the matrix (see `for_rows`).
    ///
    /// # Safety
    /// Shapes checked by `check_product`; `out` holds `x.n × self.rows` values and no other
    /// task writes these row blocks.
    unsafe fn matmul_blocks(
        &self,
        path: QuantPath,
        x: &Activations,
        out: *mut f32,
        g0: usize,
        g1: usize,
    ) {
        let m = self;
        match path {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the caller checked the CPU and the shapes.
            QuantPath::Avx512Vnni => unsafe { x86::matmul_vnni(m, x, out, g0, g1) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            QuantPath::Avx2 => unsafe { x86::matmul_avx2(m, x, out, g0, g1) },
            // SAFETY: as above.
            _ => unsafe { m.matmul_scalar(x, out, g0, g1) },
        }
    }

    fn dense_matmul(&self, x: &Activations, out: &mut [f32]) {
        let cols = self.cols;
        out.par_chunks_mut(self.rows)
            .enumerate()
            .for_each(|(i, o)| {
                // Whole blocks: the activations as the quantized products see them, so every
                // weight type answers to the same inputs; otherwise the rows as given.
                let xi: Vec<f32> = if x.float.is_empty() {
                    (0..cols)
                        .map(|k| x.d[i * x.kblocks + k / KB] * x.q[i * cols + k] as f32)
                        .collect()
                } else {
                    x.float[i * cols..(i + 1) * cols].to_vec()
                };
                for (r, v) in o.iter_mut().enumerate() {
                    *v = crate::vector::dot(&self.dense[r * cols..(r + 1) * cols], &xi);
                }
            });
    }

    /// # Safety
    /// `out` must hold `x.n × self.rows` values; no other task writes row blocks `g0..g1`.
    unsafe fn matmul_scalar(&self, x: &Activations, out: *mut f32, g0: usize, g1: usize) {
        if self.is_super() {
            // SAFETY: as this function's.
            return unsafe { self.matmul_scalar_super(x, out, g0, g1) };
        }
        let nscales = self.cols / self.sb;
        let per_kb = KB / self.sb;
        let kblocks = self.cols / KB;
        let bb = block_bytes(self.bits);
        // One row's 32 values at a time, unpacked once for every row of x.
        let mut q = [0u8; KB];
        let mut acc = vec![0f32; x.n * ROWS];
        for g in g0..g1 {
            acc.fill(0.0);
            let valid = (self.rows - g * ROWS).min(ROWS);
            for kb in 0..kblocks {
                let block = &self.values[(g * kblocks + kb) * bb..][..bb];
                for r in 0..valid {
                    for (k, v) in q.iter_mut().enumerate() {
                        *v = unpack_value(self.bits, block, r, k);
                    }
                    for i in 0..x.n {
                        let a = &x.q[i * x.cols + kb * KB..][..KB];
                        for part in 0..per_kb {
                            let range = part * self.sb..(part + 1) * self.sb;
                            let isum: i32 = q[range.clone()]
                                .iter()
                                .zip(&a[range])
                                .map(|(&w, &a)| w as i32 * a as i32)
                                .sum();
                            let s = kb * per_kb + part;
                            let si = (g * nscales + s) * ROWS + r;
                            let da = x.d[i * x.kblocks + kb];
                            let bs = x.block_sum(i, kb);
                            let cell = &mut acc[i * ROWS + r];
                            if let Mins::Bias(b) = self.mins {
                                let t = (isum as f32).mul_add(da, -b * bs);
                                *cell = self.scale(si).mul_add(t, *cell);
                            } else {
                                let t = isum as f32 * da;
                                *cell = self.scale(si).mul_add(t, *cell);
                                *cell = self.min(si).mul_add(bs, *cell);
                            }
                        }
                    }
                }
            }
            for i in 0..x.n {
                for r in 0..valid {
                    *out.add(i * self.rows + g * ROWS + r) = acc[i * ROWS + r];
                }
            }
        }
    }

    /// The K-quants on the scalar path, against the per-256 activations: per super-block,
    /// `F = Σ_j isum_j · sc_j` in float (sub-blocks in order), `M = Σ_j m_j · Σa_j` in
    /// integers, then `da · (d · F − dmin · M)` — the operations of the SIMD paths. Q6_K's
    /// symmetric offset goes into the integer sums instead (`isum_j = Σ (q − 32) · a`, `M = 0`):
    /// one multiply-add per sub-block less in the SIMD tiles.
    ///
    /// # Safety
    /// As `matmul_scalar`.
    unsafe fn matmul_scalar_super(&self, x: &Activations, out: *mut f32, g0: usize, g1: usize) {
        let kblocks = self.cols / KB;
        let nsuper = self.cols / 256;
        let per_super = 256 / self.sb;
        let bb = block_bytes(self.bits);
        let sums = x.super_sums(self.sb);
        // Where each sub-block's integer sum starts, per unit of `Σa`: Q6_K's zero point.
        let zero = match self.mins {
            Mins::Super { .. } => 0,
            _ => Q6K_ZERO,
        };
        let mut q = vec![0u8; self.cols];
        for g in g0..g1 {
            let valid = (self.rows - g * ROWS).min(ROWS);
            for r in 0..valid {
                for (kb, values) in q.chunks_exact_mut(KB).enumerate() {
                    let block = &self.values[(g * kblocks + kb) * bb..][..bb];
                    for (k, v) in values.iter_mut().enumerate() {
                        *v = unpack_value(self.bits, block, r, k);
                    }
                }
                for i in 0..x.n {
                    let a = &x.sq[i * x.cols..][..x.cols];
                    let bs = &sums[i * (x.cols / self.sb)..][..x.cols / self.sb];
                    let mut acc = 0f32;
                    for b in 0..nsuper {
                        let (mut f, mut mi) = (0f32, 0i32);
                        for j in 0..per_super {
                            let s = b * per_super + j;
                            let range = s * self.sb..(s + 1) * self.sb;
                            let isum: i32 = q[range.clone()]
                                .iter()
                                .zip(&a[range])
                                .map(|(&w, &a)| w as i32 * a as i32)
                                .sum();
                            let isum = isum - zero * bs[s] as i32;
                            let (sc, mm) = self.sub_factors(g, s, r);
                            f = (isum as f32).mul_add(sc as f32, f);
                            mi += mm * bs[s] as i32;
                        }
                        let (d, dmin) = self.super_factors(g, b, r);
                        let t = d.mul_add(f, -(dmin * mi as f32));
                        acc = t.mul_add(x.sd[i * nsuper + b], acc);
                    }
                    *out.add(i * self.rows + g * ROWS + r) = acc;
                }
            }
        }
    }
}

/// `out_i = x · W_iᵀ` for several matrices that read the same activations (a layer's query,
/// key and value projections; its gate and up projections), with the fastest path.
pub fn matmul_each(
    products: &mut [(&QMatrix, &mut [f32])],
    x: &Activations,
) -> Result<(), ShapeError> {
    matmul_each_with(QuantPath::best(), products, x)
}

/// `matmul_each` on a chosen path. The row blocks of all the matrices are split across the
/// thread pool in one parallel region: generation runs a few hundred products per token, and
/// small ones (a 256-row key projection) alone would leave threads idle or waiting.
pub fn matmul_each_with(
    path: QuantPath,
    products: &mut [(&QMatrix, &mut [f32])],
    x: &Activations,
) -> Result<(), ShapeError> {
    for (m, out) in products.iter() {
        m.check_product(x, out)?;
    }
    if x.n == 0 {
        return Ok(());
    }
    let path = if path.supported() {
        path
    } else {
        QuantPath::Scalar
    };
    let mut tasks: Vec<(usize, usize, usize)> = Vec::new();
    let quantized: usize = products
        .iter()
        .filter(|(m, _)| m.ty.is_quantized())
        .map(|(m, _)| m.groups())
        .sum();
    let threads = rayon::current_num_threads().max(1);
    let per_task = quantized.div_ceil(threads * 4).max(1);
    for (i, (m, out)) in products.iter_mut().enumerate() {
        if !m.ty.is_quantized() {
            m.dense_matmul(x, out);
            continue;
        }
        let groups = m.groups();
        tasks.extend(
            (0..groups)
                .step_by(per_task)
                .map(|g0| (i, g0, (g0 + per_task).min(groups))),
        );
    }
    let outs: Vec<(&QMatrix, SendPtr)> = products
        .iter_mut()
        .map(|(m, out)| (&**m, SendPtr(out.as_mut_ptr())))
        .collect();
    tasks.into_par_iter().for_each(|(i, g0, g1)| {
        let (m, out) = (outs[i].0, outs[i].1);
        // SAFETY: `path` is supported; shapes were checked above (both copies of a matrix
        // have the same shape, row blocks and scales); tasks write disjoint row blocks of
        // their own matrix's output.
        unsafe { m.for_rows(x.n).matmul_blocks(path, x, out.0, g0, g1) }
    });
    Ok(())
}

/// Where byte `byte` of register `j` keeps its 5th and 6th bits in a 6-bit block: 16 bytes per
/// register after the nibbles, byte `b` holding the two bits of bytes `b`, `b + 16`, `b + 32`
/// and `b + 48` (one per 128-bit lane) — one 16-byte broadcast and a rotation per lane bring
/// them into place, where two bit planes took two mask loads and two masked adds.
#[inline(always)]
fn crumb_at(j: usize, byte: usize) -> usize {
    256 + j * 16 + byte % 16
}

/// The bit position of that pair of bits in its byte.
#[inline(always)]
fn crumb_shift(byte: usize) -> usize {
    2 * (byte / 16)
}

/// Writes row `r`'s 32 values `q` into a packed block.
fn pack_row(bits: u32, q: &[u8], r: usize, block: &mut [u8]) {
    for (k, &v) in q.iter().enumerate() {
        let (j, t) = (k / 4, k % 4);
        let byte = r * 4 + t;
        if bits == 8 {
            block[j * 64 + byte] = v;
            continue;
        }
        // Registers 2p and 2p+1 share 64 bytes: low and high nibbles.
        let at = (j / 2) * 64 + byte;
        block[at] |= (v & 0x0f) << ((j % 2) * 4);
        if bits == 6 {
            block[crumb_at(j, byte)] |= (v >> 4) << crumb_shift(byte);
            continue;
        }
        for plane in 0..(bits as usize - 4) {
            if (v >> (4 + plane)) & 1 == 1 {
                let word = 256 + plane * 64 + j * 8;
                block[word + byte / 8] |= 1 << (byte % 8);
            }
        }
    }
}

fn unpack_value(bits: u32, block: &[u8], r: usize, k: usize) -> u8 {
    let (j, t) = (k / 4, k % 4);
    let byte = r * 4 + t;
    if bits == 8 {
        return block[j * 64 + byte];
    }
    let mut v = (block[(j / 2) * 64 + byte] >> ((j % 2) * 4)) & 0x0f;
    if bits == 6 {
        return v | ((block[crumb_at(j, byte)] >> crumb_shift(byte)) & 3) << 4;
    }
    for plane in 0..(bits as usize - 4) {
        let word = 256 + plane * 64 + j * 8;
        v |= ((block[word + byte / 8] >> (byte % 8)) & 1) << (4 + plane);
    }
    v
}

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: tasks write disjoint elements through it (see `matmul_each_with`).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// Rows of activations quantized for the quantized products: per block of 32 inputs, and per
/// 256 (for the K-quants) when a row is a whole number of 256.
#[derive(Debug, Clone, Default)]
pub struct Activations {
    n: usize,
    cols: usize,
    kblocks: usize,
    /// `n × cols` signed bytes.
    q: Vec<i8>,
    /// `n × kblocks` scales.
    d: Vec<f32>,
    /// `da · Σ a` per 32 inputs (`n × kblocks`).
    sum32: Vec<f32>,
    /// For the K-quants, when `cols` is a multiple of 256: the rows quantized per 256 inputs
    /// (`n × cols` bytes, `n × cols/256` scales) and the integer sums of each 16 and 32 bytes.
    sq: Vec<i8>,
    sd: Vec<f32>,
    ssum16: Vec<i16>,
    ssum32: Vec<i16>,
    /// The rows as given, kept only when `cols` is not a whole number of blocks (then only
    /// float weights can take them).
    float: Vec<f32>,
    /// Which of the two quantizations the last `quantize_for` made (per 32, per 256).
    per_block: bool,
    per_super: bool,
}

impl Activations {
    pub fn new() -> Activations {
        Activations::default()
    }

    pub fn rows(&self) -> usize {
        self.n
    }

    /// Quantizes `x` (`n` rows of `cols`, row-major) for every weight type, replacing what was
    /// held. `cols` must be a multiple of 32 for quantized weights.
    pub fn quantize(&mut self, x: &[f32], n: usize, cols: usize) -> Result<(), ShapeError> {
        self.quantize_parts(x, n, cols, true, true)
    }

    /// `quantize`, making only what `readers` take: the K-quants read the per-256
    /// quantization, every other type the per-32 one (a model of K-quants alone skips a pass
    /// over its activations). A product with a matrix of another type then fails.
    pub fn quantize_for(
        &mut self,
        readers: &[&QMatrix],
        x: &[f32],
        n: usize,
        cols: usize,
    ) -> Result<(), ShapeError> {
        let per_super = readers.iter().any(|m| m.is_super());
        let per_block = readers.iter().any(|m| !m.is_super());
        self.quantize_parts(x, n, cols, per_block, per_super)
    }

    fn quantize_parts(
        &mut self,
        x: &[f32],
        n: usize,
        cols: usize,
        per_block: bool,
        per_super: bool,
    ) -> Result<(), ShapeError> {
        if x.len() != n * cols {
            return Err(ShapeError::Length {
                expected: n * cols,
                found: x.len(),
            });
        }
        self.n = n;
        self.cols = cols;
        self.kblocks = cols / KB;
        self.per_block = per_block;
        self.per_super = per_super;
        let kblocks = self.kblocks;
        self.float.clear();
        if !cols.is_multiple_of(KB) {
            self.float.extend_from_slice(x);
        }
        // Small batches (generation) are not worth a trip through the thread pool.
        let min_rows = if n * cols < 1 << 16 { n.max(1) } else { 1 };
        if per_super {
            self.quantize_super(x, min_rows);
        }
        if !per_block {
            return Ok(());
        }
        // Every element below is written by the quantization: resized without clearing, so
        // that a prompt's megabytes are not zeroed first for each product.
        self.q.resize(n * cols, 0);
        self.d.resize(n * kblocks, 0.0);
        self.sum32.resize(n * kblocks, 0.0);
        if n == 0 || kblocks == 0 {
            return Ok(());
        }
        let rows = x
            .par_chunks(cols)
            .zip(self.q.par_chunks_mut(cols))
            .zip(self.d.par_chunks_mut(kblocks))
            .zip(self.sum32.par_chunks_mut(kblocks));
        rows.with_min_len(min_rows).for_each(|(((x, q), d), s32)| {
            let mut halves = [0i32; 2];
            for kb in 0..kblocks {
                let dk = quantize_run(&x[kb * KB..][..KB], &mut q[kb * KB..][..KB], &mut halves);
                d[kb] = dk;
                s32[kb] = dk * (halves[0] + halves[1]) as f32;
            }
        });
        Ok(())
    }

    /// The per-256 quantization the K-quants take (nothing when `cols` is not a multiple of
    /// 256: no K-quant matrix has such rows).
    fn quantize_super(&mut self, x: &[f32], min_rows: usize) {
        let (n, cols) = (self.n, self.cols);
        let nsuper = if cols.is_multiple_of(256) {
            cols / 256
        } else {
            0
        };
        // Written in full below, as in `quantize`.
        self.sq.resize(n * nsuper * 256, 0);
        self.sd.resize(n * nsuper, 0.0);
        self.ssum16.resize(n * nsuper * 16, 0);
        self.ssum32.resize(n * nsuper * 8, 0);
        if nsuper == 0 || n == 0 {
            return;
        }
        x.par_chunks(cols)
            .zip(self.sq.par_chunks_mut(cols))
            .zip(self.sd.par_chunks_mut(nsuper))
            .zip(self.ssum16.par_chunks_mut(cols / 16))
            .zip(self.ssum32.par_chunks_mut(cols / 32))
            .with_min_len(min_rows)
            .for_each(|((((x, q), d), s16), s32)| {
                let mut sums = [0i32; 16];
                for b in 0..nsuper {
                    d[b] = quantize_run(&x[b * 256..][..256], &mut q[b * 256..][..256], &mut sums);
                    // At most 32 · 127 in magnitude: exact in 16 bits.
                    for (j, pair) in sums.chunks_exact(2).enumerate() {
                        s16[b * 16 + j * 2] = pair[0] as i16;
                        s16[b * 16 + j * 2 + 1] = pair[1] as i16;
                        s32[b * 8 + j] = (pair[0] + pair[1]) as i16;
                    }
                }
            });
    }

    /// The per-256 sums a K-quant matrix with `sb`-input sub-blocks pairs with its offsets.
    fn super_sums(&self, sb: usize) -> &[i16] {
        if sb == 16 {
            &self.ssum16
        } else {
            &self.ssum32
        }
    }

    /// `da · Σ a` over block `kb` of row `i`.
    #[inline(always)]
    fn block_sum(&self, i: usize, kb: usize) -> f32 {
        self.sum32[i * self.kblocks + kb]
    }
}

/// A run of inputs (a multiple of 16: a block of 32, or a K-quant super-block of 256) to
/// signed bytes with one scale: returns the scale and writes the sum of each 16 bytes.
#[inline]
fn quantize_run(x: &[f32], q: &mut [i8], sums: &mut [i32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if QuantPath::best() == QuantPath::Avx512Vnni {
        // SAFETY: the CPU has AVX-512 F and BW; the lengths are checked inside.
        if let Some(d) = unsafe { x86::quantize_run_avx512(x, q, sums) } {
            return d;
        }
    }
    quantize_run_scalar(x, q, sums)
}

fn quantize_run_scalar(x: &[f32], q: &mut [i8], sums: &mut [i32]) -> f32 {
    let max = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let (d, inv) = if max > 0.0 && max.is_finite() {
        (max / 127.0, 127.0 / max)
    } else {
        (0.0, 0.0)
    };
    sums.fill(0);
    for (k, (o, &v)) in q.iter_mut().zip(x).enumerate() {
        let y = v * inv;
        // NaN (and ∞ · 0) becomes 0.
        let y = if y.is_nan() { 0.0 } else { y };
        let y = y.round_ties_even().clamp(-127.0, 127.0);
        // SAFETY: finite and within ±127.
        let a = unsafe { y.to_int_unchecked::<i32>() };
        *o = a as i8;
        sums[k / 16] += a;
    }
    d
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use std::arch::x86_64::*;

    /// `quantize_run_scalar` with AVX-512, giving the same bytes; `None` for a run holding a
    /// non-finite value (left to the scalar code) or not a whole number of 16 values.
    /// # Safety
    /// AVX-512 F and BW.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn quantize_run_avx512(
        x: &[f32],
        q: &mut [i8],
        sums: &mut [i32],
    ) -> Option<f32> {
        let chunks = x.len() / 16;
        if !x.len().is_multiple_of(16) || q.len() != x.len() || sums.len() != chunks {
            return None;
        }
        let mut abs = _mm512_setzero_ps();
        let mut unordered = 0;
        for c in 0..chunks {
            let v = _mm512_loadu_ps(x.as_ptr().add(c * 16));
            abs = _mm512_max_ps(abs, _mm512_abs_ps(v));
            unordered |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
        }
        let max = _mm512_reduce_max_ps(abs);
        if !max.is_finite() || unordered != 0 {
            return None;
        }
        let (d, inv) = if max > 0.0 {
            (max / 127.0, 127.0 / max)
        } else {
            (0.0, 0.0)
        };
        let inv = _mm512_set1_ps(inv);
        let lim = _mm512_set1_epi32(127);
        for (c, sum) in sums.iter_mut().enumerate() {
            let v = _mm512_loadu_ps(x.as_ptr().add(c * 16));
            // Rounds to nearest, ties to even (the default MXCSR mode), like the scalar code.
            let a = _mm512_cvtps_epi32(_mm512_mul_ps(v, inv));
            let a = _mm512_max_epi32(_mm512_min_epi32(a, lim), _mm512_set1_epi32(-127));
            _mm_storeu_si128(
                q.as_mut_ptr().add(c * 16) as *mut __m128i,
                _mm512_cvtepi32_epi8(a),
            );
            *sum = _mm512_reduce_add_epi32(a);
        }
        Some(d)
    }

    /// Activation rows per tile.
    const MR: usize = 4;
    /// Row blocks per tile.
    const NB: usize = 2;
    /// Row blocks per tile of a single activation row.
    const NB_ONE_ROW: usize = 4;

    /// # Safety
    /// AVX-512 F, BW and VNNI; checked shapes; disjoint row blocks per task.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn matmul_vnni(
        m: &QMatrix,
        x: &Activations,
        out: *mut f32,
        g0: usize,
        g1: usize,
    ) {
        // Generation (one activation row) takes four row blocks per tile of the 4-bit and
        // K-quant formats: four weight streams in flight instead of two (1.5B +4 %, SmolLM2
        // +7 % tokens/s; Q5_0 and Q8_0, most of the 0.5B model, were 2 % slower).
        let nb_max = if x.n == 1 && (m.bits == 4 || m.is_super()) {
            NB_ONE_ROW
        } else {
            NB
        };
        let mut g = g0;
        while g < g1 {
            let nb = (g1 - g).min(nb_max);
            let mut i = 0;
            while i < x.n {
                let mr = (x.n - i).min(MR);
                match (m.bits, m.sb, mr, nb) {
                    (8, 16, mr, nb) => dispatch_tile::<8, 16>(m, x, out, g, i, mr, nb),
                    (_, 16, mr, nb) => dispatch_tile::<6, 16>(m, x, out, g, i, mr, nb),
                    (4, _, mr, nb) => dispatch_tile::<4, 32>(m, x, out, g, i, mr, nb),
                    (5, _, mr, nb) => dispatch_tile::<5, 32>(m, x, out, g, i, mr, nb),
                    (6, _, mr, nb) => dispatch_tile::<6, 32>(m, x, out, g, i, mr, nb),
                    (_, _, mr, nb) => dispatch_tile::<8, 32>(m, x, out, g, i, mr, nb),
                }
                i += mr;
            }
            g += nb;
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn dispatch_tile<const BITS: u32, const SB: usize>(
        m: &QMatrix,
        x: &Activations,
        out: *mut f32,
        g: usize,
        i: usize,
        mr: usize,
        nb: usize,
    ) {
        match (mr, nb) {
            (1, 4) => tile::<BITS, SB, 1, 4>(m, x, out, g, i),
            (1, 3) => tile::<BITS, SB, 1, 3>(m, x, out, g, i),
            (4, 2) => tile::<BITS, SB, 4, 2>(m, x, out, g, i),
            (3, 2) => tile::<BITS, SB, 3, 2>(m, x, out, g, i),
            (2, 2) => tile::<BITS, SB, 2, 2>(m, x, out, g, i),
            (1, 2) => tile::<BITS, SB, 1, 2>(m, x, out, g, i),
            (4, _) => tile::<BITS, SB, 4, 1>(m, x, out, g, i),
            (3, _) => tile::<BITS, SB, 3, 1>(m, x, out, g, i),
            (2, _) => tile::<BITS, SB, 2, 1>(m, x, out, g, i),
            (_, _) => tile::<BITS, SB, 1, 1>(m, x, out, g, i),
        }
    }

    /// Register `j` (inputs 4j..4j+4 of the 16 rows) of a packed 32-input block.
    #[inline(always)]
    unsafe fn unpack<const BITS: u32>(block: *const u8, j: usize) -> __m512i {
        if BITS == 8 {
            return _mm512_loadu_si512(block.add(j * 64) as *const __m512i);
        }
        let packed = _mm512_loadu_si512(block.add((j / 2) * 64) as *const __m512i);
        let low = _mm512_set1_epi8(0x0f);
        let mut v = if j.is_multiple_of(2) {
            _mm512_and_si512(packed, low)
        } else {
            _mm512_and_si512(_mm512_srli_epi16::<4>(packed), low)
        };
        if BITS == 6 {
            // `crumb_at`: lane L's pairs sit at bits 2L of each byte; rotating lane L's dwords
            // left by 4 − 2L (mod 32) puts them at bits 4–5, and one ternary-logic op keeps
            // those and ors them in.
            let crumbs =
                _mm512_broadcast_i32x4(_mm_loadu_si128(block.add(256 + j * 16) as *const __m128i));
            let turn = _mm512_set_epi32(30, 30, 30, 30, 0, 0, 0, 0, 2, 2, 2, 2, 4, 4, 4, 4);
            let high = _mm512_rolv_epi32(crumbs, turn);
            return _mm512_ternarylogic_epi32::<0xF8>(v, high, _mm512_set1_epi8(0x30));
        }
        if BITS >= 5 {
            let plane = (block.add(256 + j * 8) as *const u64).read_unaligned();
            v = _mm512_mask_add_epi8(v, plane, v, _mm512_set1_epi8(16));
        }
        v
    }

    /// The scales of a format with one f16 per block (the K-quants go through `tile_super`).
    #[inline(always)]
    unsafe fn load_scales(m: &QMatrix, at: usize) -> __m512 {
        match &m.scales {
            Scales::F16(v) => half16(v, at),
            Scales::Super { .. } => _mm512_setzero_ps(),
        }
    }

    /// Stored offsets (the formats without a bias).
    #[inline(always)]
    unsafe fn load_mins(m: &QMatrix, at: usize) -> __m512 {
        match &m.mins {
            Mins::F16(v) => half16(v, at),
            Mins::Super { .. } | Mins::Bias(_) => _mm512_setzero_ps(),
        }
    }

    #[inline(always)]
    unsafe fn half16(v: &[u16], at: usize) -> __m512 {
        _mm512_cvtph_ps(_mm256_loadu_si256(v.as_ptr().add(at) as *const __m256i))
    }

    /// `R` activation rows from `i` against `N` row blocks from `g`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn tile<const BITS: u32, const SB: usize, const R: usize, const N: usize>(
        m: &QMatrix,
        x: &Activations,
        out: *mut f32,
        g: usize,
        i: usize,
    ) {
        if m.is_super() {
            return tile_super::<BITS, SB, R, N>(m, x, out, g, i);
        }
        let kblocks = m.cols / KB;
        let nscales = m.cols / SB;
        let bb = block_bytes(BITS);
        let mut acc = [[_mm512_setzero_ps(); N]; R];
        let regs = SB / 4;
        for kb in 0..kblocks {
            let blocks: [*const u8; N] =
                std::array::from_fn(|n| m.values.as_ptr().add(((g + n) * kblocks + kb) * bb));
            for half in 0..KB / SB {
                let mut isum = [[_mm512_setzero_si512(); N]; R];
                for jj in 0..regs {
                    let j = half * regs + jj;
                    let w: [__m512i; N] = std::array::from_fn(|n| unpack::<BITS>(blocks[n], j));
                    for (r, row) in isum.iter_mut().enumerate() {
                        let a = (x.q.as_ptr().add((i + r) * x.cols + kb * KB + j * 4)
                            as *const i32)
                            .read_unaligned();
                        let a = _mm512_set1_epi32(a);
                        for (n, s) in row.iter_mut().enumerate() {
                            *s = _mm512_dpbusd_epi32(*s, w[n], a);
                        }
                    }
                }
                let s = kb * (KB / SB) + half;
                let sc: [__m512; N] =
                    std::array::from_fn(|n| load_scales(m, ((g + n) * nscales + s) * ROWS));
                if let Mins::Bias(b) = m.mins {
                    // m = -b · d folds into the integer sum's scaling: one FMA less.
                    for r in 0..R {
                        let da = _mm512_set1_ps(*x.d.get_unchecked((i + r) * x.kblocks + kb));
                        let nbs = _mm512_set1_ps(-b * x.block_sum(i + r, kb));
                        for n in 0..N {
                            let t = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[r][n]), da, nbs);
                            acc[r][n] = _mm512_fmadd_ps(sc[n], t, acc[r][n]);
                        }
                    }
                } else {
                    let mn: [__m512; N] =
                        std::array::from_fn(|n| load_mins(m, ((g + n) * nscales + s) * ROWS));
                    for r in 0..R {
                        let da = _mm512_set1_ps(*x.d.get_unchecked((i + r) * x.kblocks + kb));
                        let bs = _mm512_set1_ps(x.block_sum(i + r, kb));
                        for n in 0..N {
                            let t = _mm512_mul_ps(_mm512_cvtepi32_ps(isum[r][n]), da);
                            acc[r][n] = _mm512_fmadd_ps(sc[n], t, acc[r][n]);
                            acc[r][n] = _mm512_fmadd_ps(mn[n], bs, acc[r][n]);
                        }
                    }
                }
            }
        }
        store_tile(m, &acc, out, g, i);
    }

    /// Sub-block `s0 + H` of a K-quant tile: its integer sums against the per-256 activations,
    /// added to `f` times the sub-block's scales (`H` picks them out of the 16-bit pairs).
    /// With `OFFSET` (Q6_K) each sum starts from `-32 · Σa` of its activation row, so that it
    /// is `Σ (q − 32) · a`: the offset then needs no sum of its own.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn super_sub_block<
        const BITS: u32,
        const SB: usize,
        const R: usize,
        const N: usize,
        const H: usize,
        const OFFSET: bool,
    >(
        m: &QMatrix,
        x: &Activations,
        g: usize,
        i: usize,
        s0: usize,
        pairs: &[__m512i; N],
        f: &mut [[__m512; N]; R],
    ) {
        let kblocks = m.cols / KB;
        let nscales = m.cols / SB;
        let bb = block_bytes(BITS);
        let scale: [__m512; N] = std::array::from_fn(|n| {
            let v = if H == 0 {
                _mm512_srai_epi32::<16>(_mm512_slli_epi32::<16>(pairs[n]))
            } else {
                _mm512_srai_epi32::<16>(pairs[n])
            };
            _mm512_cvtepi32_ps(v)
        });
        let first = (s0 + H) * SB;
        // A Q6_K pair of sub-blocks is one block of 32 inputs; a Q4_K pair is two.
        let kb = first / KB;
        let j0 = if SB == 16 { H * 4 } else { 0 };
        let blocks: [*const u8; N] =
            std::array::from_fn(|n| m.values.as_ptr().add(((g + n) * kblocks + kb) * bb));
        let mut isum: [[__m512i; N]; R] = std::array::from_fn(|r| {
            let init = if OFFSET {
                let sums = x.super_sums(SB);
                -Q6K_ZERO * *sums.get_unchecked((i + r) * nscales + s0 + H) as i32
            } else {
                0
            };
            [_mm512_set1_epi32(init); N]
        });
        for jj in 0..SB / 4 {
            let w: [__m512i; N] = std::array::from_fn(|n| unpack::<BITS>(blocks[n], j0 + jj));
            for (r, row) in isum.iter_mut().enumerate() {
                let a = (x.sq.as_ptr().add((i + r) * x.cols + first + jj * 4) as *const i32)
                    .read_unaligned();
                let a = _mm512_set1_epi32(a);
                for (n, s) in row.iter_mut().enumerate() {
                    *s = _mm512_dpbusd_epi32(*s, w[n], a);
                }
            }
        }
        for r in 0..R {
            for n in 0..N {
                let v = _mm512_cvtepi32_ps(isum[r][n]);
                f[r][n] = _mm512_fmadd_ps(v, scale[n], f[r][n]);
            }
        }
    }

    /// Writes an `R × N` tile's sums to `out`, leaving out rows past the matrix's last.
    #[inline(always)]
    unsafe fn store_tile<const R: usize, const N: usize>(
        m: &QMatrix,
        acc: &[[__m512; N]; R],
        out: *mut f32,
        g: usize,
        i: usize,
    ) {
        for n in 0..N {
            let first = (g + n) * ROWS;
            let valid = (m.rows - first).min(ROWS);
            let mask: __mmask16 = if valid == ROWS {
                0xffff
            } else {
                (1u16 << valid) - 1
            };
            for (r, row) in acc.iter().enumerate() {
                _mm512_mask_storeu_ps(out.add((i + r) * m.rows + first), mask, row[n]);
            }
        }
    }

    /// `tile` for the K-quants, against the per-256 activations (see `matmul_scalar_super`
    /// for the arithmetic). A pair of sub-blocks shares one load of their scales as 16-bit
    /// pairs: the offsets' sum is one `vpdpwssd` per pair and activation row.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn tile_super<const BITS: u32, const SB: usize, const R: usize, const N: usize>(
        m: &QMatrix,
        x: &Activations,
        out: *mut f32,
        g: usize,
        i: usize,
    ) {
        match m.super_scales() {
            Some((_, _, None)) => tile_super_with::<BITS, SB, R, N, true>(m, x, out, g, i),
            Some((_, _, Some(_))) => tile_super_with::<BITS, SB, R, N, false>(m, x, out, g, i),
            None => {}
        }
    }

    /// `tile_super`; `OFFSET` for Q6_K, whose offset (`32 · sc_j`) goes into the sub-blocks'
    /// integer sums (see `super_sub_block`).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn tile_super_with<
        const BITS: u32,
        const SB: usize,
        const R: usize,
        const N: usize,
        const OFFSET: bool,
    >(
        m: &QMatrix,
        x: &Activations,
        out: *mut f32,
        g: usize,
        i: usize,
    ) {
        let Some((d, sc, offsets)) = m.super_scales() else {
            return;
        };
        let (dmin, mins) = offsets.unzip();
        let nscales = m.cols / SB;
        let nsuper = m.cols / 256;
        let per_super = 256 / SB;
        let sums = x.super_sums(SB);
        // The tile's sums live in `out` between super-blocks: kept in registers next to the
        // integer and float sums of a super-block, they were spilled inside its loop.
        let masks: [__mmask16; N] = std::array::from_fn(|n| {
            let valid = (m.rows - (g + n) * ROWS).min(ROWS);
            if valid == ROWS {
                0xffff
            } else {
                (1u16 << valid) - 1
            }
        });
        for b in 0..nsuper {
            let mut f = [[_mm512_setzero_ps(); N]; R];
            for s0 in (b * per_super..(b + 1) * per_super).step_by(2) {
                let pairs: [__m512i; N] = std::array::from_fn(|n| {
                    let at = pair_index(g + n, nscales, s0, 0);
                    _mm512_cvtepi8_epi16(_mm256_loadu_si256(sc.as_ptr().add(at) as *const __m256i))
                });
                super_sub_block::<BITS, SB, R, N, 0, OFFSET>(m, x, g, i, s0, &pairs, &mut f);
                super_sub_block::<BITS, SB, R, N, 1, OFFSET>(m, x, g, i, s0, &pairs, &mut f);
            }
            // Q4_K's offsets' integer sum, after the sub-blocks so that its accumulators are
            // not live next to theirs (Q6_K has none: `OFFSET`).
            let mut mi = [[_mm512_setzero_si512(); N]; R];
            if let Some(mins) = mins.filter(|_| !OFFSET) {
                for s0 in (b * per_super..(b + 1) * per_super).step_by(2) {
                    let offsets: [__m512i; N] = std::array::from_fn(|n| {
                        let at = pair_index(g + n, nscales, s0, 0);
                        _mm512_cvtepu8_epi16(_mm256_loadu_si256(
                            mins.as_ptr().add(at) as *const __m256i
                        ))
                    });
                    for (r, row) in mi.iter_mut().enumerate() {
                        let pair = (sums.as_ptr().add((i + r) * nscales + s0) as *const i32)
                            .read_unaligned();
                        let pair = _mm512_set1_epi32(pair);
                        for (n, v) in row.iter_mut().enumerate() {
                            *v = _mm512_dpwssd_epi32(*v, offsets[n], pair);
                        }
                    }
                }
            }
            let dv: [__m512; N] = std::array::from_fn(|n| half16(d, ((g + n) * nsuper + b) * ROWS));
            let dm: Option<[__m512; N]> = dmin
                .filter(|_| !OFFSET)
                .map(|dmin| std::array::from_fn(|n| half16(dmin, ((g + n) * nsuper + b) * ROWS)));
            for r in 0..R {
                let da = _mm512_set1_ps(*x.sd.get_unchecked((i + r) * nsuper + b));
                for n in 0..N {
                    let t = match &dm {
                        None => _mm512_mul_ps(dv[n], f[r][n]),
                        Some(dm) => {
                            let u = _mm512_mul_ps(dm[n], _mm512_cvtepi32_ps(mi[r][n]));
                            _mm512_fmsub_ps(dv[n], f[r][n], u)
                        }
                    };
                    let at = out.add((i + r) * m.rows + (g + n) * ROWS);
                    let before = if b == 0 {
                        _mm512_setzero_ps()
                    } else {
                        _mm512_maskz_loadu_ps(masks[n], at)
                    };
                    _mm512_mask_storeu_ps(at, masks[n], _mm512_fmadd_ps(t, da, before));
                }
            }
        }
    }

    /// AVX2 (+FMA, F16C): 8 rows per register, `vpmaddubsw` + `vpmaddwd` for the products.
    /// # Safety
    /// As `matmul_vnni`, for AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn matmul_avx2(
        m: &QMatrix,
        x: &Activations,
        out: *mut f32,
        g0: usize,
        g1: usize,
    ) {
        if m.is_super() {
            return matmul_avx2_super(m, x, out, g0, g1);
        }
        let kblocks = m.cols / KB;
        let nscales = m.cols / m.sb;
        let mut unpacked = [0u8; KB * ROWS];
        let mut acc = vec![_mm256_setzero_ps(); x.n * 2];
        for g in g0..g1 {
            acc.fill(_mm256_setzero_ps());
            for kb in 0..kblocks {
                unpack_block_avx2(m, g, kb, &mut unpacked);
                for i in 0..x.n {
                    for half in 0..KB / m.sb {
                        let mut isum = [_mm256_setzero_si256(); 2];
                        let regs = m.sb / 4;
                        for jj in 0..regs {
                            let j = half * regs + jj;
                            let a = (x.q.as_ptr().add(i * x.cols + kb * KB + j * 4) as *const i32)
                                .read_unaligned();
                            let a = _mm256_set1_epi32(a);
                            for (h, s) in isum.iter_mut().enumerate() {
                                let w = _mm256_loadu_si256(
                                    unpacked.as_ptr().add(j * 64 + h * 32) as *const __m256i
                                );
                                *s = _mm256_add_epi32(*s, dot_u8_i8(w, a));
                            }
                        }
                        let s = kb * (KB / m.sb) + half;
                        let da = _mm256_set1_ps(x.d[i * x.kblocks + kb]);
                        let bs = _mm256_set1_ps(x.block_sum(i, kb));
                        for h in 0..2 {
                            let at = (g * nscales + s) * ROWS + h * 8;
                            let sc = match &m.scales {
                                Scales::F16(v) => half8(v, at),
                                Scales::Super { .. } => _mm256_setzero_ps(),
                            };
                            let a = &mut acc[i * 2 + h];
                            let sum = _mm256_cvtepi32_ps(isum[h]);
                            let mn = match &m.mins {
                                Mins::Bias(b) => {
                                    let nbs = _mm256_mul_ps(bs, _mm256_set1_ps(-b));
                                    let t = _mm256_fmadd_ps(sum, da, nbs);
                                    *a = _mm256_fmadd_ps(sc, t, *a);
                                    continue;
                                }
                                Mins::F16(v) => half8(v, at),
                                Mins::Super { .. } => _mm256_setzero_ps(),
                            };
                            let t = _mm256_mul_ps(sum, da);
                            *a = _mm256_fmadd_ps(sc, t, *a);
                            *a = _mm256_fmadd_ps(mn, bs, *a);
                        }
                    }
                }
            }
            store_rows_avx2(m, &acc, out, g);
        }
    }

    /// The K-quants on the AVX2 path (the arithmetic of `matmul_scalar_super`): each block of
    /// 32 inputs unpacked once for all rows of `x`, whose float and integer sums run on to the
    /// end of the super-block.
    /// # Safety
    /// As `matmul_avx2`.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn matmul_avx2_super(m: &QMatrix, x: &Activations, out: *mut f32, g0: usize, g1: usize) {
        let Some((d, sc, offsets)) = m.super_scales() else {
            return;
        };
        let (dmin, mins) = offsets.unzip();
        let kblocks = m.cols / KB;
        let nscales = m.cols / m.sb;
        let nsuper = m.cols / 256;
        let per_kb = KB / m.sb;
        let sums = x.super_sums(m.sb);
        let mut unpacked = [0u8; KB * ROWS];
        let mut acc = vec![_mm256_setzero_ps(); x.n * 2];
        let mut f = vec![_mm256_setzero_ps(); x.n * 2];
        let mut mi = vec![_mm256_setzero_si256(); x.n * 2];
        for g in g0..g1 {
            acc.fill(_mm256_setzero_ps());
            for kb in 0..kblocks {
                unpack_block_avx2(m, g, kb, &mut unpacked);
                for part in 0..per_kb {
                    let s = kb * per_kb + part;
                    // Sub-block s's scales and Q4_K's offset multipliers of rows h·8.., from the
                    // pairs.
                    let factors = |h: usize| {
                        let at = pair_index(g, nscales, s, h * 8) - (s & 1);
                        let pick = |v: __m256i| {
                            if s & 1 == 0 {
                                _mm256_srai_epi32::<16>(_mm256_slli_epi32::<16>(v))
                            } else {
                                _mm256_srai_epi32::<16>(v)
                            }
                        };
                        let pairs = _mm256_cvtepi8_epi16(_mm_loadu_si128(
                            sc.as_ptr().add(at) as *const __m128i
                        ));
                        let offsets = mins.map(|mins| {
                            pick(_mm256_cvtepu8_epi16(_mm_loadu_si128(
                                mins.as_ptr().add(at) as *const __m128i
                            )))
                        });
                        (_mm256_cvtepi32_ps(pick(pairs)), offsets)
                    };
                    let halves = [factors(0), factors(1)];
                    for i in 0..x.n {
                        let bs = sums[i * nscales + s] as i32;
                        // Q6_K's offset in the integer sums, as in the VNNI path.
                        let init = if mins.is_none() { -Q6K_ZERO * bs } else { 0 };
                        let mut isum = [_mm256_set1_epi32(init); 2];
                        for jj in 0..m.sb / 4 {
                            let j = part * (m.sb / 4) + jj;
                            let a = (x.sq.as_ptr().add(i * x.cols + kb * KB + j * 4) as *const i32)
                                .read_unaligned();
                            let a = _mm256_set1_epi32(a);
                            for (h, v) in isum.iter_mut().enumerate() {
                                let w = _mm256_loadu_si256(
                                    unpacked.as_ptr().add(j * 64 + h * 32) as *const __m256i
                                );
                                *v = _mm256_add_epi32(*v, dot_u8_i8(w, a));
                            }
                        }
                        let bs = _mm256_set1_epi32(bs);
                        for (h, (scale, offset)) in halves.iter().enumerate() {
                            let at = i * 2 + h;
                            f[at] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[h]), *scale, f[at]);
                            if let Some(offset) = offset {
                                mi[at] = _mm256_add_epi32(mi[at], _mm256_mullo_epi32(*offset, bs));
                            }
                        }
                    }
                }
                if !((kb + 1) * KB).is_multiple_of(256) {
                    continue;
                }
                // The end of a super-block.
                let b = kb * KB / 256;
                for h in 0..2 {
                    let at = (g * nsuper + b) * ROWS + h * 8;
                    let dv = half8(d, at);
                    let dm = dmin.map(|dmin| half8(dmin, at));
                    for i in 0..x.n {
                        let k = i * 2 + h;
                        let da = _mm256_set1_ps(x.sd[i * nsuper + b]);
                        let t = match dm {
                            // Q6_K: the offset is in the integer sums.
                            None => _mm256_mul_ps(dv, f[k]),
                            Some(dm) => _mm256_fmsub_ps(
                                dv,
                                f[k],
                                _mm256_mul_ps(dm, _mm256_cvtepi32_ps(mi[k])),
                            ),
                        };
                        acc[k] = _mm256_fmadd_ps(t, da, acc[k]);
                        f[k] = _mm256_setzero_ps();
                        mi[k] = _mm256_setzero_si256();
                    }
                }
            }
            store_rows_avx2(m, &acc, out, g);
        }
    }

    /// Block `kb` of row block `g` unpacked to one byte per value in the VNNI register order
    /// (`[register][16 rows][4 inputs]`): once per block for all rows of `x` — the AVX2 paths
    /// are kept simple, they do not carry the speed targets.
    #[inline(always)]
    fn unpack_block_avx2(m: &QMatrix, g: usize, kb: usize, unpacked: &mut [u8; KB * ROWS]) {
        let bb = block_bytes(m.bits);
        let block = &m.values[(g * (m.cols / KB) + kb) * bb..][..bb];
        for r in 0..ROWS {
            for k in 0..KB {
                unpacked[(k / 4) * 64 + r * 4 + k % 4] = unpack_value(m.bits, block, r, k);
            }
        }
    }

    /// Writes row block `g`'s sums (two 8-row registers per activation row) to `out`, leaving
    /// out rows past the matrix's last.
    #[inline(always)]
    unsafe fn store_rows_avx2(m: &QMatrix, acc: &[__m256], out: *mut f32, g: usize) {
        let first = g * ROWS;
        let valid = (m.rows - first).min(ROWS);
        for (i, pair) in acc.chunks_exact(2).enumerate() {
            let mut lanes = [0f32; ROWS];
            _mm256_storeu_ps(lanes.as_mut_ptr(), pair[0]);
            _mm256_storeu_ps(lanes.as_mut_ptr().add(8), pair[1]);
            for (r, v) in lanes.iter().enumerate().take(valid) {
                *out.add(i * m.rows + first + r) = *v;
            }
        }
    }

    #[inline(always)]
    unsafe fn half8(v: &[u16], at: usize) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(v.as_ptr().add(at) as *const __m128i))
    }

    /// Sums of four u8 × i8 products per 32-bit lane, exact for any u8 (`vpmaddubsw` saturates
    /// 16-bit pairs above 6-bit weights, so the bytes are split into their high and low
    /// nibbles).
    #[inline(always)]
    unsafe fn dot_u8_i8(w: __m256i, a: __m256i) -> __m256i {
        let ones = _mm256_set1_epi16(1);
        let low = _mm256_set1_epi8(0x0f);
        let wl = _mm256_and_si256(w, low);
        let wh = _mm256_and_si256(_mm256_srli_epi16::<4>(w), low);
        let pl = _mm256_madd_epi16(_mm256_maddubs_epi16(wl, a), ones);
        let ph = _mm256_madd_epi16(_mm256_maddubs_epi16(wh, a), ones);
        _mm256_add_epi32(pl, _mm256_slli_epi32::<4>(ph))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn float(&mut self) -> f32 {
            (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        }
    }

    const TYPES: [GgmlType; 8] = [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q8_0,
        GgmlType::Q4K,
        GgmlType::Q6K,
        GgmlType::F32,
        GgmlType::F16,
    ];

    /// `x · Wᵀ` in f64 from the plain dequantizer.
    fn reference(
        ty: GgmlType,
        data: &[u8],
        x: &[f32],
        n: usize,
        rows: usize,
        cols: usize,
    ) -> (Vec<f32>, Vec<f32>) {
        let rb = ty.row_bytes(cols).unwrap();
        let mut w = vec![0f32; rows * cols];
        for r in 0..rows {
            ggml::dequantize_row(
                ty,
                &data[r * rb..(r + 1) * rb],
                &mut w[r * cols..(r + 1) * cols],
            );
        }
        let mut y = vec![0f32; n * rows];
        let mut magnitude = vec![0f32; n * rows];
        for i in 0..n {
            for r in 0..rows {
                let p = (0..cols).map(|k| x[i * cols + k] as f64 * w[r * cols + k] as f64);
                y[i * rows + r] = p.clone().sum::<f64>() as f32;
                magnitude[i * rows + r] = p.map(f64::abs).sum::<f64>() as f32;
            }
        }
        (y, magnitude)
    }

    fn check(ty: GgmlType, n: usize, rows: usize, cols: usize, seed: u64) {
        let data = ggml::synthetic_tensor(ty, rows, cols, seed);
        let m = QMatrix::from_ggml(ty, rows, cols, &data).expect("repack");
        let mut rng = Rng(seed + 99);
        let x: Vec<f32> = (0..n * cols).map(|_| rng.float()).collect();
        let mut a = Activations::new();
        a.quantize(&x, n, cols).unwrap();
        let (want, magnitude) = reference(ty, &data, &x, n, rows, cols);
        let mut scalar = vec![0f32; n * rows];
        m.matmul_with(QuantPath::Scalar, &a, &mut scalar).unwrap();
        // 8-bit activations: each product is off by at most half a step of its block's scale.
        for (k, (s, w)) in scalar.iter().zip(&want).enumerate() {
            assert!(
                (s - w).abs() <= 0.01 * magnitude[k] + 1e-6,
                "{ty:?} {n}x{rows}x{cols} at {k}: {s} vs {w}"
            );
        }
        for path in [QuantPath::Avx2, QuantPath::Avx512Vnni] {
            if !path.supported() {
                continue;
            }
            let mut got = vec![f32::NAN; n * rows];
            m.matmul_with(path, &a, &mut got).unwrap();
            // And all row blocks as one task, whatever the pool's size: every tile shape.
            let mut whole = vec![f32::NAN; n * rows];
            if ty.is_quantized() {
                // SAFETY: the path is supported, the shapes are those `matmul_with` checked.
                unsafe {
                    m.for_rows(n)
                        .matmul_blocks(path, &a, whole.as_mut_ptr(), 0, m.groups())
                };
            } else {
                whole.copy_from_slice(&got);
            }
            for (k, ((g, s), h)) in got.iter().zip(&scalar).zip(&whole).enumerate() {
                assert!(
                    (g - s).abs() <= 1e-5 * magnitude[k] + 1e-7,
                    "{ty:?} {path:?} {n}x{rows}x{cols} at {k}: {g} vs scalar {s}"
                );
                assert!(
                    (h - s).abs() <= 1e-5 * magnitude[k] + 1e-7,
                    "{ty:?} {path:?} {n}x{rows}x{cols} one task, at {k}: {h} vs scalar {s}"
                );
            }
        }
    }

    #[test]
    fn every_type_matches_the_reference_on_odd_shapes() {
        for (t, ty) in TYPES.iter().enumerate() {
            let cols = if ty.block_len() == 256 { 512 } else { 96 };
            // (1, 100): one activation row over seven row blocks, the last partial — the
            // four- and three-block tiles of generation.
            for (n, rows) in [(1, 1), (1, 7), (1, 100), (7, 33), (5, 16), (3, 40)] {
                check(*ty, n, rows, cols, 17 + t as u64 * 31 + n as u64);
            }
        }
    }

    #[test]
    fn model_shapes() {
        // Qwen2.5-0.5B: 896 inputs (3.5 K-blocks, so never K-quants), 4864 inputs.
        check(GgmlType::Q5_0, 3, 64, 896, 5);
        check(GgmlType::Q8_0, 1, 48, 896, 6);
        check(GgmlType::Q4K, 2, 32, 4864, 7);
        check(GgmlType::Q6K, 9, 16, 4864, 8);
        check(GgmlType::Q4_1, 5, 32, 576, 9);
    }

    #[test]
    fn every_type_on_long_rows() {
        // 4864 inputs (Qwen2.5-0.5B's FFN width; 19 K-blocks), 1 and 7 rows of activations.
        for (t, ty) in TYPES.iter().enumerate() {
            check(*ty, 1, 17, 4864, 40 + t as u64);
            check(*ty, 7, 16, 4864, 50 + t as u64);
            check(*ty, 21, 40, 512, 70 + t as u64);
        }
        for ty in [
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q8_0,
        ] {
            check(ty, 7, 20, 896, 60);
        }
    }

    #[test]
    fn q6k_prompt_products_read_whole_bytes_with_the_same_result() {
        let (rows, cols, n) = (40, 512, WIDE_MIN_ROWS + 3);
        let data = ggml::synthetic_tensor(GgmlType::Q6K, rows, cols, 21);
        let m = QMatrix::from_ggml(GgmlType::Q6K, rows, cols, &data).unwrap();
        let wide = m.wide.as_deref().expect("a whole-byte copy");
        assert_eq!((wide.bits, wide.values.len()), (8, m.values.len() / 3 * 4));
        assert!(std::ptr::eq(m.for_rows(n), wide));
        assert!(std::ptr::eq(m.for_rows(WIDE_MIN_ROWS - 1), &m));
        let mut rng = Rng(3);
        let x: Vec<f32> = (0..n * cols).map(|_| rng.float()).collect();
        let mut a = Activations::new();
        a.quantize(&x, n, cols).unwrap();
        for path in [QuantPath::Scalar, QuantPath::Avx2, QuantPath::Avx512Vnni] {
            if !path.supported() {
                continue;
            }
            let (mut compact, mut whole) = (vec![0f32; n * rows], vec![1f32; n * rows]);
            // SAFETY: the path is supported, `out` holds n × rows, one task writes all.
            unsafe {
                m.matmul_blocks(path, &a, compact.as_mut_ptr(), 0, m.groups());
                wide.matmul_blocks(path, &a, whole.as_mut_ptr(), 0, m.groups());
            }
            assert_eq!(compact, whole, "{path:?}");
        }
        // The vocabulary projection keeps one copy.
        let big = WIDE_MAX_ROWS + 16;
        let data = ggml::synthetic_tensor(GgmlType::Q6K, big, 256, 2);
        assert!(QMatrix::from_ggml(GgmlType::Q6K, big, 256, &data)
            .unwrap()
            .wide
            .is_none());
    }

    #[test]
    fn vocabulary_sized_outputs() {
        // 151936 outputs: the vocabulary projection, split over the whole thread pool.
        check(GgmlType::Q8_0, 1, 151_936, 32, 10);
        check(GgmlType::Q5_0, 2, 151_936, 32, 11);
    }

    #[test]
    fn activation_blocks_quantize_alike_on_every_path() {
        let mut rng = Rng(5);
        let mut blocks: Vec<Vec<f32>> = (0..50)
            .map(|b| (0..32).map(|_| rng.float() * (b as f32 + 0.1)).collect())
            .collect();
        // Exact ties at the largest value 127 / 2, zeros, and non-finite values.
        blocks.push(
            (0..32)
                .map(|k| if k == 0 { 127.0 } else { 0.5 * k as f32 })
                .collect(),
        );
        blocks.push(vec![0.0; 32]);
        let mut poisoned = vec![1.0; 32];
        poisoned[3] = f32::NAN;
        blocks.push(poisoned);
        let mut infinite = vec![1.0; 32];
        infinite[30] = f32::INFINITY;
        blocks.push(infinite);
        // And runs of 256 (the K-quants' activations), one value far larger than the rest.
        for b in 0..4 {
            let mut run: Vec<f32> = (0..256).map(|_| rng.float()).collect();
            run[b * 60] = 300.0 * (b as f32 - 1.5);
            blocks.push(run);
        }
        for x in &blocks {
            let mut scalar = vec![0i8; x.len()];
            let mut want_sums = vec![0i32; x.len() / 16];
            let want = quantize_run_scalar(x, &mut scalar, &mut want_sums);
            let mut best = vec![0i8; x.len()];
            let mut sums = vec![7i32; x.len() / 16];
            let got = quantize_run(x, &mut best, &mut sums);
            assert_eq!((got, &best, &sums), (want, &scalar, &want_sums), "{x:?}");
            assert!(scalar.iter().all(|&v| v != -128));
            for (c, sum) in want_sums.iter().enumerate() {
                let bytes: i32 = scalar[c * 16..][..16].iter().map(|&v| v as i32).sum();
                assert_eq!(*sum, bytes);
            }
        }
    }

    #[test]
    fn float_weights_take_rows_of_any_length() {
        let (rows, cols) = (3, 8);
        let data = ggml::synthetic_tensor(GgmlType::F32, rows, cols, 4);
        let m = QMatrix::from_ggml(GgmlType::F32, rows, cols, &data).unwrap();
        let x: Vec<f32> = (0..2 * cols).map(|k| k as f32 * 0.25 - 1.0).collect();
        let mut a = Activations::new();
        a.quantize(&x, 2, cols).unwrap();
        let mut got = vec![0f32; 2 * rows];
        m.matmul(&a, &mut got).unwrap();
        let (want, _) = reference(GgmlType::F32, &data, &x, 2, rows, cols);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "{g} vs {w}");
        }
        // Quantized formats still need whole blocks of 32.
        assert!(matches!(
            QMatrix::from_ggml(GgmlType::Q8_0, 1, 8, &[0; 34]),
            Err(QuantError::RowLength { .. })
        ));
    }

    #[test]
    fn several_products_in_one_region_match_each_alone() {
        let cols = 256;
        let n = 3;
        let shapes = [(GgmlType::Q4K, 40), (GgmlType::Q5_0, 7), (GgmlType::F32, 5)];
        let matrices: Vec<QMatrix> = shapes
            .iter()
            .enumerate()
            .map(|(i, &(ty, rows))| {
                let data = ggml::synthetic_tensor(ty, rows, cols, 11 + i as u64);
                QMatrix::from_ggml(ty, rows, cols, &data).expect("repack")
            })
            .collect();
        let mut rng = Rng(5);
        let x: Vec<f32> = (0..n * cols).map(|_| rng.float()).collect();
        let mut a = Activations::new();
        a.quantize(&x, n, cols).unwrap();
        let alone: Vec<Vec<f32>> = matrices
            .iter()
            .map(|m| {
                let mut out = vec![0f32; n * m.rows()];
                m.matmul(&a, &mut out).unwrap();
                out
            })
            .collect();
        let mut outs: Vec<Vec<f32>> = matrices
            .iter()
            .map(|m| vec![f32::NAN; n * m.rows()])
            .collect();
        {
            let mut products: Vec<(&QMatrix, &mut [f32])> = matrices
                .iter()
                .zip(outs.iter_mut())
                .map(|(m, o)| (m, &mut o[..]))
                .collect();
            matmul_each(&mut products, &a).unwrap();
        }
        assert_eq!(outs, alone);

        // One product of the wrong shape: an error, and no output written.
        let mut outs: Vec<Vec<f32>> = vec![vec![f32::NAN; n * 40], vec![f32::NAN; n * 7 - 1]];
        let (first, second) = outs.split_at_mut(1);
        let result = matmul_each(
            &mut [
                (&matrices[0], &mut first[0][..]),
                (&matrices[1], &mut second[0][..]),
            ],
            &a,
        );
        assert!(
            matches!(result, Err(ShapeError::Length { .. })),
            "{result:?}"
        );
        assert!(outs.iter().flatten().all(|v| v.is_nan()));
    }

    #[test]
    fn activations_quantized_for_their_readers_give_the_same_products() {
        let cols = 512;
        let n = 5;
        let matrices: Vec<QMatrix> = [GgmlType::Q4K, GgmlType::Q6K, GgmlType::Q5_0, GgmlType::F16]
            .iter()
            .enumerate()
            .map(|(i, &ty)| {
                let data = ggml::synthetic_tensor(ty, 48, cols, 21 + i as u64);
                QMatrix::from_ggml(ty, 48, cols, &data).expect("repack")
            })
            .collect();
        let mut rng = Rng(9);
        let x: Vec<f32> = (0..n * cols).map(|_| rng.float()).collect();
        let mut all = Activations::new();
        all.quantize(&x, n, cols).unwrap();
        let product = |m: &QMatrix, a: &Activations| {
            let mut out = vec![f32::NAN; n * m.rows()];
            m.matmul(a, &mut out).map(|()| out)
        };
        let (kquants, others) = matrices.split_at(2);
        for readers in [kquants, others] {
            let refs: Vec<&QMatrix> = readers.iter().collect();
            let mut some = Activations::new();
            some.quantize_for(&refs, &x, n, cols).unwrap();
            for m in &matrices {
                if readers.iter().any(|r| std::ptr::eq(r, m)) {
                    assert_eq!(product(m, &some), product(m, &all), "{:?}", m.ty);
                } else {
                    // The other kind of quantization was skipped: refused, not read stale.
                    assert!(
                        matches!(product(m, &some), Err(ShapeError::NotQuantizedFor(_))),
                        "{:?}",
                        m.ty
                    );
                }
            }
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert!(matches!(
            QMatrix::from_ggml(GgmlType::Q4K, 2, 896, &[]),
            Err(QuantError::RowLength { .. })
        ));
        assert!(matches!(
            QMatrix::from_ggml(GgmlType::Q8_0, 2, 64, &[0; 10]),
            Err(QuantError::Length { .. })
        ));
        let m = QMatrix::from_ggml(
            GgmlType::Q8_0,
            1,
            32,
            &ggml::synthetic_tensor(GgmlType::Q8_0, 1, 32, 3),
        )
        .unwrap();
        let mut a = Activations::new();
        a.quantize(&[0.0; 64], 1, 64).unwrap();
        assert!(m.matmul(&a, &mut [0.0]).is_err());
    }
}
