//! `frontdesk serve` end to end: the real binary on a free port, the sample help centre in a
//! real knowledge base, real models, and real clients — this file's HTTP client, raw TCP for
//! hang-ups, curl for SSE, the official `openai` Python package, headless Chromium driving
//! the widget (Playwright), and `scripts/serve-bench` for the bounded load test.
//!
//! Needs (installed by `.ci/run`): `pip install openai`, Debian's `chromium`, and
//! `npm ci --prefix tests/e2e`.

mod common;

use common::{assert_clean_failure, frontdesk, stderr};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const KEY: &str = "test-key-0123456789abcdef";
/// A key limited to a knowledge base the server does not hold for it.
const OTHER_KEY: &str = "other-key-0123456789abcdef";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A data directory holding the sample help centre as kb "sample" (and a second, "other",
/// for key scoping), ingested once for all tests.
fn data_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        for kb in ["sample", "other"] {
            let out = frontdesk()
                .arg("--data-dir")
                .arg(dir.path())
                .args(["ingest", "--kb", kb])
                .arg(repo().join("data/sample/help-centre"))
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", stderr(&out));
        }
        dir
    })
    .path()
}

/// A running `frontdesk serve`; killed when dropped.
struct Server {
    child: Child,
    base: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    fn start(model: &str, extra: &[&str]) -> Server {
        let mut child = frontdesk()
            .arg("--data-dir")
            .arg(data_dir())
            .args([
                "serve",
                "--kb",
                "sample",
                "--kb",
                "other",
                "--bind",
                "127.0.0.1:0",
            ])
            .args(["-m", model])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(String::new()));
        let mut base = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            log.lock().unwrap().push_str(&format!("{line}\n"));
            if let Some(at) = line.find("on http://") {
                let url = line[at + 3..].split_whitespace().next().unwrap();
                base = Some(url.to_string());
                break;
            }
        }
        let base = base.unwrap_or_else(|| {
            let _ = child.wait();
            panic!("the server did not start: {}", log.lock().unwrap())
        });
        // Keep draining stderr so the server never blocks on a full pipe.
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        Server { child, base, log }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn addr(&self) -> String {
        self.base.trim_start_matches("http://").to_string()
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(300)))
        .build()
        .into()
}

/// Status, headers' Retry-After and JSON body of a POST.
fn post(
    server: &Server,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> (u16, Option<String>, Value) {
    let mut req = agent()
        .post(server.url(path))
        .header("Content-Type", "application/json");
    if let Some(k) = key {
        req = req.header("Authorization", format!("Bearer {k}"));
    }
    let mut resp = req.send(body).unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let text = resp.body_mut().read_to_string().unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, retry, json)
}

fn get(server: &Server, path: &str, key: Option<&str>) -> (u16, String) {
    let mut req = agent().get(server.url(path));
    if let Some(k) = key {
        req = req.header("Authorization", format!("Bearer {k}"));
    }
    let mut resp = req.call().unwrap();
    (
        resp.status().as_u16(),
        resp.body_mut().read_to_string().unwrap(),
    )
}

/// The value of a metric line (no labels) in the Prometheus text.
fn metric(server: &Server, name: &str) -> f64 {
    let (status, text) = get(server, "/metrics", Some(KEY));
    assert_eq!(status, 200);
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no metric {name} in {text}"))
        .trim()
        .parse()
        .unwrap()
}

/// An error body in the OpenAI shape with a message.
fn assert_error(status: u16, body: &Value, want_status: u16, want_message: &str) {
    assert_eq!(status, want_status, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(want_message),
        "expected '{want_message}' in {body}"
    );
    assert!(body["error"]["type"].is_string(), "{body}");
}

fn chat_body(model: &str, content: &str, max_tokens: u32, stream: bool) -> String {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
    })
    .to_string()
}

/// Sends a raw HTTP/1.1 POST and returns the open connection (for hang-ups and shutdown).
fn raw_post(server: &Server, path: &str, body: &str) -> TcpStream {
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        server.addr(),
        body.len()
    )
    .unwrap();
    s
}

/// Reads from a connection until `needle` has arrived (or the connection ends).
fn read_until(s: &mut TcpStream, needle: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(needle) {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn tool(name: &str, hint: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(found, "{name} is needed for this test: {hint}");
}

#[test]
fn openai_client_curl_and_the_widget_in_chromium_get_cited_answers() {
    tool("python3", "install Python 3");
    tool("curl", "apt-get install -y curl");
    tool("chromium", "apt-get install -y chromium (as .ci/run does)");
    let openai = Command::new("python3")
        .args(["-c", "import openai"])
        .status()
        .unwrap();
    assert!(
        openai.success(),
        "the openai package is needed: pip install openai"
    );
    assert!(
        repo()
            .join("tests/e2e/node_modules/playwright-core")
            .is_dir(),
        "playwright-core is needed: npm ci --prefix tests/e2e"
    );
    // The default model answers the sample's questions with citations (the small test model
    // often cannot cite, and is handed off).
    let model = "qwen2.5-coder-0.5b";
    let server = Server::start(
        model,
        &[
            "--api-key",
            KEY,
            "--widget-key",
            KEY,
            "--api-key",
            &format!("{OTHER_KEY}=other"),
        ],
    );

    // The official Python client: models, plain and streamed completions, the support model
    // with citations, embeddings, 404 for an unknown model and 401 for a wrong key.
    let out = Command::new("python3")
        .arg(repo().join("tests/e2e/openai_client.py"))
        .arg(&server.base)
        .arg(KEY)
        .env("FD_MODEL", model)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openai client checks failed:\n{}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );

    // curl reads the SSE stream of a completion to its end.
    let out = Command::new("curl")
        .args(["-sN", "--max-time", "120", "-H"])
        .arg(format!("Authorization: Bearer {KEY}"))
        .args(["-H", "Content-Type: application/json", "-d"])
        .arg(chat_body(model, "Say hello.", 16, true))
        .arg(server.url("/v1/chat/completions"))
        .output()
        .unwrap();
    let sse = String::from_utf8_lossy(&out.stdout);
    let data: Vec<&str> = sse
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{sse}");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(chunks.len() >= 3, "{sse}");
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(!text.trim().is_empty(), "{sse}");

    // The widget, driven by the keyboard in headless Chromium; the screenshot is kept.
    let shots = repo().join("target/e2e");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("widget.png");
    let out = Command::new("node")
        .arg(repo().join("tests/e2e/widget.mjs"))
        .arg(&server.base)
        .arg(&shot)
        .arg(KEY)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "widget test failed (screenshot: {}):\n{}\n{}\nserver log:\n{}",
        shots.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let summary: Value = serde_json::from_slice(
        out.stdout
            .split(|&b| b == b'\n')
            .rfind(|l| !l.is_empty())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(summary["ok"], true);
    assert!(!summary["citations"].as_array().unwrap().is_empty());
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a real screenshot"
    );

    // Every answer went to the audit log.
    let (status, text) = get(&server, "/metrics", Some(KEY));
    assert_eq!(status, 200);
    assert!(text.contains("frontdesk_answers_total"), "{text}");
    assert!(metric(&server, "frontdesk_answers_total") >= 3.0);
}

#[test]
fn bad_requests_get_a_clear_4xx_and_the_server_keeps_serving() {
    let server = Server::start(
        "smollm2-135m",
        &[
            "--api-key",
            KEY,
            "--api-key",
            &format!("{OTHER_KEY}=other"),
            "--max-body-bytes",
            "4096",
        ],
    );
    let good = chat_body("smollm2-135m", "Hi", 4, false);
    let (s, _, b) = post(&server, "/v1/chat/completions", None, &good);
    assert_error(s, &b, 401, "API key");
    let (s, _, b) = post(
        &server,
        "/v1/chat/completions",
        Some("wrong-key-0123456789abc"),
        &good,
    );
    assert_error(s, &b, 401, "API key");
    let (s, _) = get(&server, "/v1/models", None);
    assert_eq!(s, 401);
    let (s, _, b) = post(&server, "/v1/chat/completions", Some(KEY), "{\"model\": ");
    assert_error(s, &b, 400, "not valid JSON");
    let (s, _, b) = post(
        &server,
        "/v1/chat/completions",
        Some(KEY),
        r#"{"model": "smollm2-135m", "messages": "hello"}"#,
    );
    assert_error(s, &b, 400, "invalid request");
    let (s, _, b) = post(
        &server,
        "/v1/chat/completions",
        Some(KEY),
        r#"{"model": "smollm2-135m", "messages": [{"role": "user", "content": "x"}], "max_tokens": "ten"}"#,
    );
    assert_error(s, &b, 400, "invalid request");
    let (s, _, b) = post(
        &server,
        "/v1/chat/completions",
        Some(KEY),
        &chat_body("gpt-4", "Hi", 4, false),
    );
    assert_error(s, &b, 404, "does not exist");
    let (s, _, b) = post(
        &server,
        "/v1/chat/completions",
        Some(KEY),
        &chat_body("smollm2-135m", "Hi", 100_000, false),
    );
    assert_error(s, &b, 400, "max_tokens");
    let big = chat_body("smollm2-135m", &"a".repeat(10_000), 4, false);
    let (s, _, b) = post(&server, "/v1/chat/completions", Some(KEY), &big);
    assert_error(s, &b, 413, "too large");
    let (s, _, b) = post(&server, "/api/ask", Some(KEY), r#"{"question": "   "}"#);
    assert_error(s, &b, 400, "empty");
    let (s, _, b) = post(
        &server,
        "/api/chat",
        Some(KEY),
        r#"{"message": "Hi", "conversation_id": "c-nope"}"#,
    );
    assert_error(s, &b, 404, "no conversation");
    let (s, _, b) = post(
        &server,
        "/v1/embeddings",
        Some(KEY),
        r#"{"model": "all-minilm-l6-v2", "input": []}"#,
    );
    assert_error(s, &b, 400, "input");
    let (s, body) = get(&server, "/../../etc/passwd", None);
    assert_eq!(s, 404, "{body}");
    let (s, _) = get(&server, "/api/sources/abc", Some(KEY));
    assert_eq!(s, 400);

    // A key sees only its own knowledge bases: the other one does not exist for it.
    let ask_sample = r#"{"question": "Where is my parcel?", "kb": "sample"}"#;
    let (s, _, b) = post(&server, "/api/ask", Some(OTHER_KEY), ask_sample);
    assert_error(s, &b, 404, "no knowledge base named 'sample'");
    let (s, models) = get(&server, "/v1/models", Some(OTHER_KEY));
    assert_eq!(s, 200);
    assert!(
        models.contains("frontdesk-support:other") && !models.contains("frontdesk-support:sample")
    );

    // A client that hangs up mid-stream stops its generation: nothing is left running and
    // the abandoned generation never finishes (finished ones count their tokens).
    let before = metric(&server, "frontdesk_completion_tokens_total");
    let mut s = raw_post(
        &server,
        "/v1/chat/completions",
        &chat_body(
            "smollm2-135m",
            "Count from one to one thousand in words.",
            1000,
            true,
        ),
    );
    let head = read_until(&mut s, "\"content\"");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    drop(s);
    wait_for("the abandoned generation to stop", || {
        metric(&server, "frontdesk_running_sequences") == 0.0
    });
    assert_eq!(metric(&server, "frontdesk_completion_tokens_total"), before);

    // And after all that, a good request is answered.
    let (s, _, b) = post(&server, "/v1/chat/completions", Some(KEY), &good);
    assert_eq!(s, 200, "{b}");
    assert!(b["choices"][0]["message"]["content"].is_string());
    assert!(b["usage"]["completion_tokens"].as_u64().unwrap() <= 4);
    let (s, body) = get(&server, "/healthz", None);
    assert_eq!((s, body.contains("ok")), (200, true));
}

#[test]
fn a_bounded_load_of_200_requests_16_at_a_time_has_no_errors() {
    let server = Server::start("smollm2-135m", &[]);
    let out = Command::new("python3")
        .arg(repo().join("scripts/serve-bench"))
        .args(["--url", &server.base, "--model", "smollm2-135m"])
        .args([
            "load",
            "--requests",
            "200",
            "--concurrency",
            "16",
            "--max-tokens",
            "16",
            "--json",
        ])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    println!("load test: {report}");
    assert!(
        out.status.success(),
        "{report}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let report: Value = serde_json::from_str(report.lines().last().unwrap()).unwrap();
    // 16 clients fit the batch (8) and the queue (32): every one is served.
    assert_eq!(report["by_status"]["200"], 200, "{report}");
}

#[test]
fn past_the_queue_requests_get_429_with_retry_after() {
    let server = Server::start("smollm2-135m", &["--max-batch", "1", "--queue", "1"]);
    let results: Vec<(u16, Option<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let server = &server;
                scope.spawn(move || {
                    let body = chat_body(
                        "smollm2-135m",
                        &format!("Tell a story number {i}."),
                        48,
                        false,
                    );
                    let (s, retry, _) = post(server, "/v1/chat/completions", None, &body);
                    (s, retry)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        results.iter().all(|(s, _)| *s == 200 || *s == 429),
        "{results:?}"
    );
    assert!(results.iter().any(|(s, _)| *s == 200), "{results:?}");
    let refused: Vec<_> = results.iter().filter(|(s, _)| *s == 429).collect();
    assert!(
        !refused.is_empty(),
        "one in the batch and one waiting; the rest are refused: {results:?}"
    );
    for (_, retry) in refused {
        let secs: u64 = retry
            .as_deref()
            .expect("Retry-After on 429")
            .parse()
            .unwrap();
        assert!(secs >= 1);
    }
}

#[test]
fn sigterm_lets_the_answer_in_flight_finish_and_refuses_new_ones() {
    let mut server = Server::start("smollm2-135m", &[]);
    let mut s = raw_post(
        &server,
        "/v1/chat/completions",
        &chat_body(
            "smollm2-135m",
            "Write a long story about a lighthouse.",
            64,
            true,
        ),
    );
    let head = read_until(&mut s, "\"content\"");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    // The stream in flight runs to its end.
    let rest = read_until(&mut s, "[DONE]");
    assert!(rest.contains("data: [DONE]"), "{head}{rest}");
    // New requests are not served.
    std::thread::sleep(Duration::from_millis(300));
    let refused = match TcpStream::connect(server.addr()) {
        Err(_) => true,
        Ok(mut c) => {
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let _ = write!(c, "GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n");
            let mut buf = String::new();
            let _ = c.read_to_string(&mut buf);
            !buf.starts_with("HTTP/1.1 200")
        }
    };
    assert!(refused, "a request after SIGTERM was served");
    let status = server.child.wait().unwrap();
    assert!(status.success(), "exit status {status}: {}", server.log());
    assert!(server.log().contains("shutting down"), "{}", server.log());
}

#[test]
fn serving_beyond_loopback_without_keys_is_refused() {
    let out = frontdesk()
        .arg("--data-dir")
        .arg(data_dir())
        .args(["serve", "--kb", "sample", "--bind", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_clean_failure(&out, "without API keys");
    let out = frontdesk()
        .arg("--data-dir")
        .arg(data_dir())
        .args(["serve", "--kb", "sample", "--api-key", "short"])
        .output()
        .unwrap();
    assert_clean_failure(&out, "shorter than 16 characters");
    let out = frontdesk()
        .arg("--data-dir")
        .arg(data_dir())
        .args(["serve", "--kb", "nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}
