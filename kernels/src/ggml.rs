//! The GGML block formats that GGUF files store weights in, decoded by plain scalar code.
//!
//! This is the reference the fast kernels are tested against, and the decoder the repacking in
//! [`crate::quant`] starts from. Every format here writes a weight as `d · q + m` for a small
//! unsigned integer `q` and a per-block scale `d` and offset `m`; [`decode_row`] returns exactly
//! those three, so repacking loses nothing.

use half::f16;

/// A weight type as GGUF numbers it (only the ones frontdesk runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q8_0,
    Q4K,
    Q6K,
}

impl GgmlType {
    /// The type for GGUF's numeric id, if frontdesk's kernels handle it.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        Some(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            6 => GgmlType::Q5_0,
            8 => GgmlType::Q8_0,
            12 => GgmlType::Q4K,
            14 => GgmlType::Q6K,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q5_0 => "Q5_0",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q4K => "Q4_K",
            GgmlType::Q6K => "Q6_K",
        }
    }

    /// Values per block.
    pub fn block_len(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 => 1,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q8_0 => 32,
            GgmlType::Q4K | GgmlType::Q6K => 256,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 => 2,
            GgmlType::Q4_0 => 18,
            GgmlType::Q4_1 => 20,
            GgmlType::Q5_0 => 22,
            GgmlType::Q8_0 => 34,
            GgmlType::Q4K => 144,
            GgmlType::Q6K => 210,
        }
    }

    /// Bytes of one row of `cols` values, or `None` when `cols` is not a whole number of blocks.
    pub fn row_bytes(self, cols: usize) -> Option<usize> {
        cols.is_multiple_of(self.block_len())
            .then(|| cols / self.block_len() * self.block_bytes())
    }

    /// Bits of the integer `q` in `d · q + m` (8 for the float types, which are not decoded
    /// that way).
    pub fn value_bits(self) -> u32 {
        match self {
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q4K => 4,
            GgmlType::Q5_0 => 5,
            GgmlType::Q6K => 6,
            GgmlType::Q8_0 | GgmlType::F32 | GgmlType::F16 => 8,
        }
    }

    /// Values sharing one `d` (and `m`) in the decoded form.
    pub fn scale_block(self) -> usize {
        match self {
            GgmlType::Q6K => 16,
            GgmlType::F32 | GgmlType::F16 => 1,
            _ => 32,
        }
    }

    pub fn is_quantized(self) -> bool {
        !matches!(self, GgmlType::F32 | GgmlType::F16)
    }
}

fn half_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// One row decoded to `value = scales[i / sb] · q[i] + mins[i / sb]` with
/// `sb = ty.scale_block()`. `row` holds `ty.row_bytes(q.len())` bytes. Quantized types only.
pub fn decode_row(ty: GgmlType, row: &[u8], q: &mut [u8], scales: &mut [f32], mins: &mut [f32]) {
    let n = q.len();
    debug_assert!(ty.is_quantized());
    debug_assert_eq!(Some(row.len()), ty.row_bytes(n));
    debug_assert_eq!(scales.len(), n / ty.scale_block());
    match ty {
        GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q8_0 => {
            for (b, block) in row.chunks_exact(ty.block_bytes()).enumerate() {
                let d = half_at(block, 0);
                let out = &mut q[b * 32..b * 32 + 32];
                let m = match ty {
                    GgmlType::Q4_0 => {
                        nibbles(&block[2..18], out);
                        -8.0 * d
                    }
                    GgmlType::Q4_1 => {
                        nibbles(&block[4..20], out);
                        half_at(block, 2)
                    }
                    GgmlType::Q5_0 => {
                        nibbles(&block[6..22], out);
                        let high = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
                        for (j, v) in out.iter_mut().enumerate() {
                            *v |= (((high >> j) & 1) as u8) << 4;
                        }
                        -16.0 * d
                    }
                    _ => {
                        for (v, &s) in out.iter_mut().zip(&block[2..34]) {
                            *v = (s as i8 as i16 + 128) as u8;
                        }
                        -128.0 * d
                    }
                };
                scales[b] = d;
                mins[b] = m;
            }
        }
        GgmlType::Q4K => {
            for (b, block) in row.chunks_exact(144).enumerate() {
                let d = half_at(block, 0);
                let dmin = half_at(block, 2);
                let packed = &block[4..16];
                let qs = &block[16..144];
                for sub in 0..8 {
                    let (sc, m) = q4k_scale_min(sub, packed);
                    scales[b * 8 + sub] = d * sc as f32;
                    mins[b * 8 + sub] = -dmin * m as f32;
                }
                // Each 32 bytes hold two sub-blocks: low nibbles, then high nibbles.
                for chunk in 0..4 {
                    let bytes = &qs[chunk * 32..chunk * 32 + 32];
                    let base = b * 256 + chunk * 64;
                    for (l, &byte) in bytes.iter().enumerate() {
                        q[base + l] = byte & 0x0f;
                        q[base + 32 + l] = byte >> 4;
                    }
                }
            }
        }
        GgmlType::Q6K => {
            for (b, block) in row.chunks_exact(210).enumerate() {
                let ql = &block[0..128];
                let qh = &block[128..192];
                let sc = &block[192..208];
                let d = half_at(block, 208);
                for (s, &scale) in sc.iter().enumerate() {
                    let ds = d * (scale as i8) as f32;
                    scales[b * 16 + s] = ds;
                    mins[b * 16 + s] = -32.0 * ds;
                }
                for half in 0..2 {
                    let ql = &ql[half * 64..half * 64 + 64];
                    let qh = &qh[half * 32..half * 32 + 32];
                    let base = b * 256 + half * 128;
                    for l in 0..32 {
                        q[base + l] = (ql[l] & 0x0f) | ((qh[l] & 3) << 4);
                        q[base + l + 32] = (ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4);
                        q[base + l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
                        q[base + l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
                    }
                }
            }
        }
        GgmlType::F32 | GgmlType::F16 => unreachable!("float rows are not decoded to integers"),
    }
}

/// The 16 bytes of a 32-value block of nibbles: low nibbles are values 0..16, high 16..32.
fn nibbles(bytes: &[u8], out: &mut [u8]) {
    for (j, &b) in bytes.iter().enumerate() {
        out[j] = b & 0x0f;
        out[j + 16] = b >> 4;
    }
}

/// Q4_K packs eight 6-bit scales and eight 6-bit mins into 12 bytes.
pub(crate) fn q4k_scale_min(sub: usize, packed: &[u8]) -> (u8, u8) {
    if sub < 4 {
        (packed[sub] & 63, packed[sub + 4] & 63)
    } else {
        (
            (packed[sub + 4] & 0x0f) | ((packed[sub - 4] >> 6) << 4),
            (packed[sub + 4] >> 4) | ((packed[sub] >> 6) << 4),
        )
    }
}

/// One row of `out.len()` values to f32: the plain reference dequantizer (tests; a
/// `RowDecoder` does the same without allocating).
pub fn dequantize_row(ty: GgmlType, row: &[u8], out: &mut [f32]) {
    RowDecoder::default().dequantize(ty, row, out);
}

/// Dequantizes rows one at a time into buffers it keeps (embedding lookups, per token).
#[derive(Debug, Clone, Default)]
pub struct RowDecoder {
    q: Vec<u8>,
    scales: Vec<f32>,
    mins: Vec<f32>,
}

impl RowDecoder {
    /// `dequantize_row`, reusing this decoder's buffers.
    pub fn dequantize(&mut self, ty: GgmlType, row: &[u8], out: &mut [f32]) {
        let n = out.len();
        match ty {
            GgmlType::F32 => {
                for (o, b) in out.iter_mut().zip(row.chunks_exact(4)) {
                    *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            GgmlType::F16 => {
                for (o, b) in out.iter_mut().zip(row.chunks_exact(2)) {
                    *o = f16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
            _ => {
                let sb = ty.scale_block();
                self.q.resize(n, 0);
                self.scales.resize(n / sb, 0.0);
                self.mins.resize(n / sb, 0.0);
                decode_row(ty, row, &mut self.q, &mut self.scales, &mut self.mins);
                for (i, o) in out.iter_mut().enumerate() {
                    *o = self.scales[i / sb] * self.q[i] as f32 + self.mins[i / sb];
                }
            }
        }
    }
}

/// A well-formed tensor of `rows × cols` values in `ty` with pseudo-random contents (value
/// bits uniform, scales modest), for kernel tests and benchmarks: the kernels' speed and
/// correctness do not depend on trained values.
pub fn synthetic_tensor(ty: GgmlType, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.max(1);
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let row_bytes = ty.row_bytes(cols).expect("whole blocks");
    let mut data: Vec<u8> = (0..rows * row_bytes).map(|_| next() as u8).collect();
    let mut unit = move || (next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
    let put = |data: &mut Vec<u8>, at: usize, v: f32| {
        data[at..at + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes())
    };
    let bb = ty.block_bytes();
    for b in 0..rows * row_bytes / bb {
        let o = b * bb;
        match ty {
            GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => put(&mut data, o, unit() * 0.05),
            GgmlType::Q4_1 => {
                put(&mut data, o, unit().abs() * 0.05);
                put(&mut data, o + 2, unit() * 0.4);
            }
            GgmlType::Q4K => {
                put(&mut data, o, unit().abs() * 0.01);
                put(&mut data, o + 2, unit().abs() * 0.01);
            }
            GgmlType::Q6K => put(&mut data, o + 208, unit().abs() * 0.002),
            GgmlType::F16 => put(&mut data, o, unit()),
            GgmlType::F32 => data[o..o + 4].copy_from_slice(&unit().to_le_bytes()),
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known blocks written by hand from the format definitions.
    #[test]
    fn q4_0_and_q8_0_blocks_decode() {
        let mut block = vec![0u8; 18];
        block[..2].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        block[2] = 0x3f; // value 0 = 15, value 16 = 3
        let mut out = vec![0f32; 32];
        dequantize_row(GgmlType::Q4_0, &block, &mut out);
        assert_eq!(out[0], 0.5 * (15.0 - 8.0));
        assert_eq!(out[16], 0.5 * (3.0 - 8.0));
        assert_eq!(out[1], 0.5 * -8.0);

        let mut block = vec![0u8; 34];
        block[..2].copy_from_slice(&f16::from_f32(0.25).to_le_bytes());
        block[2] = (-100i8) as u8;
        block[33] = 7;
        dequantize_row(GgmlType::Q8_0, &block, &mut out);
        assert_eq!(out[0], -25.0);
        assert_eq!(out[31], 1.75);
    }

    #[test]
    fn q5_0_high_bits_come_from_the_mask() {
        let mut block = vec![0u8; 22];
        block[..2].copy_from_slice(&f16::from_f32(1.0).to_le_bytes());
        block[2..6].copy_from_slice(&(1u32 | 1 << 17).to_le_bytes());
        block[6] = 0x21; // value 0 low nibble 1, value 16 low nibble 2
        block[7] = 0x0f; // value 1 = 15, value 17 = 0 | high bit
        let mut out = vec![0f32; 32];
        dequantize_row(GgmlType::Q5_0, &block, &mut out);
        assert_eq!(out[0], (1 + 16 - 16) as f32);
        assert_eq!(out[16], (2 - 16) as f32);
        assert_eq!(out[1], (15 - 16) as f32);
        assert_eq!(out[17], (16 - 16) as f32);
    }

    #[test]
    fn q4k_scales_unpack_both_halves() {
        let mut packed = [0u8; 12];
        packed[0] = 0b1100_0101; // sub 0 scale 5, high bits 3 go to sub 4's scale
        packed[4] = 0b0100_0111; // sub 0 min 7, high bits 1 go to sub 4's min
        packed[8] = 0x92; // sub 4 low scale 2, low min 9
        assert_eq!(q4k_scale_min(0, &packed), (5, 7));
        assert_eq!(q4k_scale_min(4, &packed), (2 | 3 << 4, 9 | 1 << 4));
    }
}
