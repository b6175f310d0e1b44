//! Run-time CPU feature detection: what the SIMD dispatch can use on this machine.

use std::fmt;

/// The instruction-set extensions that matter to quantized inference kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuFeatures {
    pub avx2: bool,
    pub fma: bool,
    pub f16c: bool,
    pub avx512f: bool,
    pub avx512bw: bool,
    pub avx512vnni: bool,
    pub avx512bf16: bool,
    pub avx_vnni: bool,
    pub neon: bool,
    pub dotprod: bool,
}

impl CpuFeatures {
    /// Detects the features of the CPU this process runs on.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            CpuFeatures {
                avx2: std::arch::is_x86_feature_detected!("avx2"),
                fma: std::arch::is_x86_feature_detected!("fma"),
                f16c: std::arch::is_x86_feature_detected!("f16c"),
                avx512f: std::arch::is_x86_feature_detected!("avx512f"),
                avx512bw: std::arch::is_x86_feature_detected!("avx512bw"),
                avx512vnni: std::arch::is_x86_feature_detected!("avx512vnni"),
                avx512bf16: std::arch::is_x86_feature_detected!("avx512bf16"),
                avx_vnni: std::arch::is_x86_feature_detected!("avxvnni"),
                ..Default::default()
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            CpuFeatures {
                neon: std::arch::is_aarch64_feature_detected!("neon"),
                dotprod: std::arch::is_aarch64_feature_detected!("dotprod"),
                ..Default::default()
            }
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            CpuFeatures::default()
        }
    }

    /// The widest kernel family this CPU can run, in the order dispatch prefers them.
    pub fn best_kernel_family(&self) -> KernelFamily {
        if self.avx512f && self.avx512bw {
            KernelFamily::Avx512
        } else if self.avx2 && self.fma {
            KernelFamily::Avx2
        } else if self.neon {
            KernelFamily::Neon
        } else {
            KernelFamily::Scalar
        }
    }

    fn names(&self) -> Vec<&'static str> {
        let all = [
            (self.avx2, "avx2"),
            (self.fma, "fma"),
            (self.f16c, "f16c"),
            (self.avx512f, "avx512f"),
            (self.avx512bw, "avx512bw"),
            (self.avx512vnni, "avx512vnni"),
            (self.avx512bf16, "avx512bf16"),
            (self.avx_vnni, "avxvnni"),
            (self.neon, "neon"),
            (self.dotprod, "dotprod"),
        ];
        all.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect()
    }
}

impl fmt::Display for CpuFeatures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = self.names();
        if names.is_empty() {
            f.write_str("no SIMD extensions")
        } else {
            f.write_str(&names.join(" "))
        }
    }
}

/// A family of kernels compiled for one instruction set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFamily {
    Scalar,
    Avx2,
    Avx512,
    Neon,
}

impl fmt::Display for KernelFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KernelFamily::Scalar => "scalar",
            KernelFamily::Avx2 => "avx2",
            KernelFamily::Avx512 => "avx512",
            KernelFamily::Neon => "neon",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avx512_family_requires_both_f_and_bw() {
        let only_f = CpuFeatures {
            avx512f: true,
            avx2: true,
            fma: true,
            ..Default::default()
        };
        assert_eq!(only_f.best_kernel_family(), KernelFamily::Avx2);
        let both = CpuFeatures {
            avx512f: true,
            avx512bw: true,
            ..Default::default()
        };
        assert_eq!(both.best_kernel_family(), KernelFamily::Avx512);
        assert_eq!(
            CpuFeatures::default().best_kernel_family(),
            KernelFamily::Scalar
        );
    }

    #[test]
    fn display_lists_detected_features() {
        let f = CpuFeatures {
            avx2: true,
            fma: true,
            ..Default::default()
        };
        assert_eq!(f.to_string(), "avx2 fma");
        assert_eq!(CpuFeatures::default().to_string(), "no SIMD extensions");
    }
}
