//! Element-wise float kernels of a transformer encoder: layer normalisation, GELU, softmax.
//!
//! Written as plain loops without branches in their bodies, so the compiler vectorises them for
//! the build's target (AVX2 with this project's x86-64 settings); `exp` and `erf` are
//! polynomial approximations for that reason, accurate to a few units in the last place of
//! f32, far below the 8-bit quantization of the matrix products around them.

/// `x ← (x − mean) / √(var + eps) · gamma + beta` over each row of `gamma.len()` values.
pub fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let width = gamma.len();
    debug_assert_eq!(beta.len(), width);
    for row in x.chunks_exact_mut(width) {
        let mean = sum(row) / width as f32;
        let var = row
            .iter()
            .map(|v| (v - mean) * (v - mean))
            .fold(0.0, |a, b| a + b)
            / width as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
            *v = (*v - mean) * inv * g + b;
        }
    }
}

/// `x ← x + y`, element by element.
pub fn add_in_place(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// GELU with the exact (erf) form BERT uses: `x · ½ (1 + erf(x / √2))`.
pub fn gelu_erf(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = *v * 0.5 * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// Softmax of one row in place.
pub fn softmax(x: &mut [f32]) {
    let max = max(x);
    for v in x.iter_mut() {
        *v = exp(*v - max);
    }
    let inv = 1.0 / sum(x);
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// The largest value (−∞ for an empty slice), in eight lanes so it vectorises.
pub fn max(x: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for l in 0..8 {
            lanes[l] = if c[l] > lanes[l] { c[l] } else { lanes[l] };
        }
    }
    let rest = chunks.remainder().iter().copied();
    lanes
        .into_iter()
        .chain(rest)
        .fold(f32::NEG_INFINITY, f32::max)
}

/// `Σ x`, in eight partial sums: a float reduction the compiler may not reorder by itself.
pub fn sum(x: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for l in 0..8 {
            lanes[l] += c[l];
        }
    }
    lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// `Σ a·b` over the shorter of the two, in eight partial sums so it vectorises.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut lanes = [0.0f32; 8];
    let (mut ca, mut cb) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    lanes.iter().sum::<f32>() + tail
}

/// `y ← y + a·x`.
#[inline]
pub fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (v, &u) in y.iter_mut().zip(x) {
        *v += a * u;
    }
}

/// e^x for f32, relative error below 2e-7 over the range where the result is normal; 0 below
/// about -87 and +∞ above about 88.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Not `clamp`: it passes NaN through, and the unchecked conversion below needs a finite
    // value; `max` turns NaN into the bound.
    #[allow(clippy::manual_clamp)]
    let x = x.max(-87.3).min(88.7);
    // x = n·ln2 + r with |r| ≤ ln2/2; e^x = 2^n · e^r.
    let n = (x * std::f32::consts::LOG2_E).round_ties_even();
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    // Degree-6 Taylor polynomial of e^r on [-ln2/2, ln2/2].
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // SAFETY: n is an integer in [-126, 128] after the clamp; a saturating `as` would stop
    // the loops around this from vectorising.
    let n = unsafe { n.to_int_unchecked::<i32>() };
    let scale = f32::from_bits(((n + 127) as u32) << 23);
    p * scale
}

/// erf(x) for f32, absolute error below 3e-7 (Abramowitz & Stegun 7.1.26).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let sign = x.signum();
    let a = x.abs();
    // Abramowitz & Stegun 7.1.26: 1 − (a1 t + … + a5 t⁵) e^(−x²), t = 1 / (1 + p x).
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    sign * (1.0 - poly * exp(-a * a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (exp(x), x.exp());
            assert!(
                ((got - want) / want).abs() < 5e-7,
                "exp({x}) = {got}, want {want}"
            );
            x += 0.0137;
        }
        let tiny = exp(-1000.0);
        assert!((0.0..1e-37).contains(&tiny), "{tiny}");
    }

    #[test]
    fn erf_matches_known_values() {
        // erf values to 7 digits (Abramowitz & Stegun table 7.1).
        for (x, want) in [
            (0.0f32, 0.0f32),
            (0.1, 0.112_462_9),
            (0.5, 0.520_499_9),
            (1.0, 0.842_700_8),
            (1.5, 0.966_105_1),
            (2.0, 0.995_322_3),
            (3.0, 0.999_977_9),
        ] {
            assert!((erf(x) - want).abs() < 3e-7, "erf({x}) = {}", erf(x));
            assert!((erf(-x) + want).abs() < 3e-7, "erf(-{x}) = {}", erf(-x));
        }
    }

    #[test]
    fn softmax_sums_to_one_and_survives_large_inputs() {
        let mut row = vec![1000.0f32, 999.0, -1000.0, 0.0];
        softmax(&mut row);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((row[0] / row[1] - std::f32::consts::E).abs() < 1e-4);
        assert!(row[2] < 1e-30, "{row:?}");
    }

    #[test]
    fn layer_norm_gives_zero_mean_unit_variance() {
        let mut x = vec![1.0f32, 2.0, 3.0, 4.0, 10.0, 10.0, 10.0, 10.0];
        layer_norm(&mut x, &[1.0; 4], &[0.0; 4], 1e-12);
        let mean: f32 = x[..4].iter().sum::<f32>() / 4.0;
        let var: f32 = x[..4].iter().map(|v| v * v).sum::<f32>() / 4.0;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5, "{x:?}");
        // A constant row has no variance: it normalises to zeros, not NaN.
        assert!(x[4..].iter().all(|&v| v == 0.0), "{x:?}");
    }

    #[test]
    fn dot_and_axpy() {
        let a: Vec<f32> = (0..19).map(|i| i as f32).collect();
        let b = vec![2.0f32; 19];
        assert_eq!(dot(&a, &b), 342.0);
        let mut y = vec![1.0f32; 19];
        axpy(&mut y, 0.5, &a);
        assert_eq!(y[18], 10.0);
    }
}
