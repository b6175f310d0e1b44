//! Counters for `GET /metrics`, in Prometheus' text format: requests by route and status,
//! request latencies, tokens, queue depth, running sequences, answers and hand-offs.

use crate::answer::Answer;
use crate::runtime::Generation;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds (seconds) of the latency histogram's buckets.
const BUCKETS: [f64; 11] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, n) in BUCKETS.iter().zip(self.counts.iter_mut()) {
            if seconds <= *bound {
                *n += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    latency: Mutex<BTreeMap<&'static str, Histogram>>,
    time_to_first_token: Mutex<Histogram>,
    /// Jobs waiting for the model thread.
    pub queue_depth: AtomicI64,
    /// Sequences being generated.
    pub running: AtomicU64,
    prompt_tokens: AtomicU64,
    reused_prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    answers: AtomicU64,
    handoffs: AtomicU64,
}

impl Metrics {
    pub fn count_request(&self, route: &'static str, status: u16, seconds: f64) {
        if let Ok(mut r) = self.requests.lock() {
            *r.entry((route, status)).or_default() += 1;
        }
        if let Ok(mut l) = self.latency.lock() {
            l.entry(route).or_default().observe(seconds);
        }
    }

    pub fn count_generation(&self, g: &Generation) {
        self.prompt_tokens
            .fetch_add(g.prompt_tokens as u64, Ordering::Relaxed);
        self.reused_prompt_tokens
            .fetch_add(g.reused_prompt_tokens as u64, Ordering::Relaxed);
        self.completion_tokens
            .fetch_add(g.tokens.len() as u64, Ordering::Relaxed);
        if let Ok(mut h) = self.time_to_first_token.lock() {
            h.observe(g.timings.ttft_s);
        }
    }

    pub fn count_answer(&self, answer: &Answer) {
        self.answers.fetch_add(1, Ordering::Relaxed);
        if answer.handoff {
            self.handoffs.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The Prometheus exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        let gauge = |out: &mut String, name: &str, help: &str, value: f64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        };
        out.push_str("# HELP frontdesk_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE frontdesk_requests_total counter\n");
        if let Ok(r) = self.requests.lock() {
            for ((route, status), n) in r.iter() {
                let _ = writeln!(
                    out,
                    "frontdesk_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP frontdesk_request_seconds Request latency by route.\n");
        out.push_str("# TYPE frontdesk_request_seconds histogram\n");
        if let Ok(l) = self.latency.lock() {
            for (route, h) in l.iter() {
                write_histogram(&mut out, "frontdesk_request_seconds", Some(route), h);
            }
        }
        out.push_str("# HELP frontdesk_time_to_first_token_seconds From a generation's start (after the queue) to its first token.\n");
        out.push_str("# TYPE frontdesk_time_to_first_token_seconds histogram\n");
        if let Ok(h) = self.time_to_first_token.lock() {
            write_histogram(&mut out, "frontdesk_time_to_first_token_seconds", None, &h);
        }
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        gauge(
            &mut out,
            "frontdesk_queue_depth",
            "Jobs waiting for the model.",
            self.queue_depth.load(Ordering::Relaxed).max(0) as f64,
        );
        gauge(
            &mut out,
            "frontdesk_running_sequences",
            "Generations in the current batch.",
            load(&self.running) as f64,
        );
        counter(
            &mut out,
            "frontdesk_prompt_tokens_total",
            "Prompt tokens of finished generations.",
            load(&self.prompt_tokens),
        );
        counter(
            &mut out,
            "frontdesk_reused_prompt_tokens_total",
            "Prompt tokens whose KV state was reused from an earlier request.",
            load(&self.reused_prompt_tokens),
        );
        counter(
            &mut out,
            "frontdesk_completion_tokens_total",
            "Generated tokens of finished generations.",
            load(&self.completion_tokens),
        );
        let (answers, handoffs) = (load(&self.answers), load(&self.handoffs));
        counter(
            &mut out,
            "frontdesk_answers_total",
            "Support questions answered or handed off.",
            answers,
        );
        counter(
            &mut out,
            "frontdesk_handoffs_total",
            "Support questions handed to a person.",
            handoffs,
        );
        gauge(
            &mut out,
            "frontdesk_handoff_rate",
            "Hand-offs among support questions since start.",
            if answers == 0 {
                0.0
            } else {
                handoffs as f64 / answers as f64
            },
        );
        out
    }
}

fn write_histogram(out: &mut String, name: &str, route: Option<&str>, h: &Histogram) {
    let label = |extra: &str| match (route, extra.is_empty()) {
        (Some(r), true) => format!("{{route=\"{r}\"}}"),
        (Some(r), false) => format!("{{route=\"{r}\",{extra}}}"),
        (None, true) => String::new(),
        (None, false) => format!("{{{extra}}}"),
    };
    for (bound, n) in BUCKETS.iter().zip(h.counts) {
        let _ = writeln!(
            out,
            "{name}_bucket{} {n}",
            label(&format!("le=\"{bound}\""))
        );
    }
    let _ = writeln!(out, "{name}_bucket{} {}", label("le=\"+Inf\""), h.count);
    let _ = writeln!(out, "{name}_sum{} {}", label(""), h.sum);
    let _ = writeln!(out, "{name}_count{} {}", label(""), h.count);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_latencies_render_as_prometheus_text() {
        let m = Metrics::default();
        m.count_request("chat_completions", 200, 0.3);
        m.count_request("chat_completions", 429, 0.001);
        let text = m.render();
        assert!(
            text.contains("frontdesk_requests_total{route=\"chat_completions\",status=\"200\"} 1")
        );
        assert!(
            text.contains("frontdesk_requests_total{route=\"chat_completions\",status=\"429\"} 1")
        );
        assert!(text
            .contains("frontdesk_request_seconds_bucket{route=\"chat_completions\",le=\"0.5\"} 2"));
        assert!(text.contains(
            "frontdesk_request_seconds_bucket{route=\"chat_completions\",le=\"0.25\"} 1"
        ));
        assert!(text.contains("frontdesk_request_seconds_count{route=\"chat_completions\"} 2"));
        assert!(text.contains("frontdesk_queue_depth 0"));
    }
}
