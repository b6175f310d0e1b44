//! Choosing the next token from the logits: greedy, or sampled with temperature, top-k and
//! top-p, after a repeat penalty. A seeded RNG makes sampled output reproducible.

use super::error::Result;
use candle_core::Tensor;
use candle_transformers::generation::{LogitsProcessor, Sampling};

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SamplingParams {
    /// 0 means greedy (always the most likely token).
    pub temperature: f64,
    /// Keep only the k most likely tokens (0 = no limit).
    pub top_k: usize,
    /// Keep the most likely tokens whose probabilities add up to p (1.0 = no limit).
    pub top_p: f64,
    /// Divide the logits of recently seen tokens by this (1.0 = off).
    pub repeat_penalty: f32,
    /// How many recent tokens the repeat penalty looks at.
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.7,
            top_k: 40,
            top_p: 0.95,
            repeat_penalty: 1.1,
            repeat_last_n: 64,
            seed: 42,
        }
    }
}

impl SamplingParams {
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            repeat_penalty: 1.0,
            ..Default::default()
        }
    }

    fn sampling(&self) -> Sampling {
        let temperature = self.temperature;
        if temperature <= 0.0 {
            return Sampling::ArgMax;
        }
        let top_p = self.top_p < 1.0 && self.top_p > 0.0;
        match (self.top_k > 0, top_p) {
            (true, true) => Sampling::TopKThenTopP {
                k: self.top_k,
                p: self.top_p,
                temperature,
            },
            (true, false) => Sampling::TopK {
                k: self.top_k,
                temperature,
            },
            (false, true) => Sampling::TopP {
                p: self.top_p,
                temperature,
            },
            (false, false) => Sampling::All { temperature },
        }
    }
}

pub struct Sampler {
    params: SamplingParams,
    processor: LogitsProcessor,
}

impl Sampler {
    pub fn new(params: &SamplingParams) -> Self {
        Sampler {
            processor: LogitsProcessor::from_sampling(params.seed, params.sampling()),
            params: params.clone(),
        }
    }

    /// Picks the next token; `history` is every token of the sequence so far.
    pub fn sample(&mut self, logits: &Tensor, history: &[u32]) -> Result<u32> {
        let logits = if self.params.repeat_penalty != 1.0 && !history.is_empty() {
            let start = history.len().saturating_sub(self.params.repeat_last_n);
            candle_transformers::utils::apply_repeat_penalty(
                logits,
                self.params.repeat_penalty,
                &history[start..],
            )?
        } else {
            logits.clone()
        };
        Ok(self.processor.sample(&logits)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn logits(v: &[f32]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    #[test]
    fn greedy_takes_the_largest_logit() {
        let mut s = Sampler::new(&SamplingParams::greedy());
        assert_eq!(s.sample(&logits(&[0.1, 3.0, 2.0]), &[]).unwrap(), 1);
    }

    #[test]
    fn repeat_penalty_can_change_the_greedy_choice() {
        let params = SamplingParams {
            repeat_penalty: 2.0,
            ..SamplingParams::greedy()
        };
        let mut s = Sampler::new(&params);
        // Token 1 was just produced; halving its logit makes token 2 the best.
        assert_eq!(s.sample(&logits(&[0.1, 3.0, 2.0]), &[1]).unwrap(), 2);
    }

    #[test]
    fn same_seed_same_draws_other_seed_other_draws() {
        let l = logits(&[1.0; 50]);
        let draw = |seed| {
            let mut s = Sampler::new(&SamplingParams {
                seed,
                top_k: 0,
                top_p: 1.0,
                repeat_penalty: 1.0,
                ..Default::default()
            });
            (0..20)
                .map(|_| s.sample(&l, &[]).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn top_k_one_is_greedy_even_when_hot() {
        let params = SamplingParams {
            temperature: 5.0,
            top_k: 1,
            top_p: 1.0,
            repeat_penalty: 1.0,
            seed: 3,
            ..Default::default()
        };
        let mut s = Sampler::new(&params);
        for _ in 0..10 {
            assert_eq!(s.sample(&logits(&[0.0, 0.5, 0.4]), &[]).unwrap(), 1);
        }
    }
}
