//! `frontdesk serve`: the HTTP service. An OpenAI-compatible API (`openai`), the support API
//! and its chat widget (`support`, `assets`), health and metrics, in front of one model
//! thread (`worker`) that batches every generation.
//!
//! Request flow: route → key check (`auth`) → job on the bounded queue (full: 429) → the model
//! thread → events back on a channel → JSON or SSE. A client that goes away drops its
//! channel, which ends its generation.

pub mod auth;
pub mod error;
pub mod metrics;
mod openai;
mod support;
pub mod worker;

use crate::answer::handoff::Turn;
use auth::{Caller, Keys};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use error::ApiError;
use metrics::Metrics;
use serde::de::DeserializeOwned;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use worker::Queue;

const INDEX_HTML: &str = include_str!("assets/index.html");
const WIDGET_JS: &str = include_str!("assets/widget.js");
const WIDGET_CSS: &str = include_str!("assets/widget.css");

/// The id of the support model in `/v1/models` (`frontdesk-support:KB` for other knowledge
/// bases than the default).
pub const SUPPORT_MODEL: &str = "frontdesk-support";
/// The id of the embedding model in `/v1/models`.
pub const EMBEDDING_MODEL: &str = "all-minilm-l6-v2";

/// Limits on what one request may ask.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// Characters of all messages of a chat completion together.
    pub max_prompt_chars: usize,
    /// The most tokens one completion may ask for.
    pub max_tokens: usize,
    /// From arrival to the last token.
    pub request_timeout: Duration,
    /// Texts in one embeddings request.
    pub max_embedding_inputs: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 256 * 1024,
            max_prompt_chars: 24_000,
            max_tokens: 1024,
            request_timeout: Duration::from_secs(120),
            max_embedding_inputs: 128,
        }
    }
}

/// Everything the routes need.
pub struct AppState {
    pub queue: Queue,
    pub metrics: Arc<Metrics>,
    pub keys: Keys,
    /// The bare model id (its catalogue name or file name).
    pub model_id: String,
    pub model_sha256: String,
    /// Knowledge bases served, the default first.
    pub kbs: Vec<String>,
    pub limits: Limits,
    /// Base URL of the published documentation: citations link to `{docs_url}/{path}#{anchor}`.
    pub docs_url: Option<String>,
    /// The widget page with its placeholders filled in.
    pub widget_page: String,
    pub conversations: Mutex<Conversations>,
    pub shutting_down: AtomicBool,
}

impl AppState {
    /// The caller behind the request's `Authorization` header.
    fn caller(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        self.keys.check(auth).ok_or_else(ApiError::unauthorized)
    }

    /// The knowledge base a request names (`None`: the caller's first), checked against the
    /// caller's keys. Knowledge bases a caller may not use look the same as missing ones.
    fn kb_for(&self, caller: &Caller, requested: Option<&str>) -> Result<String, ApiError> {
        match requested {
            Some(name) => {
                if self.kbs.iter().any(|k| k == name) && caller.may_use(name) {
                    Ok(name.to_string())
                } else {
                    Err(ApiError::not_found(format!(
                        "no knowledge base named '{name}' is served here"
                    )))
                }
            }
            None => self
                .kbs
                .iter()
                .find(|k| caller.may_use(k))
                .cloned()
                .ok_or_else(|| ApiError::not_found("this API key has no knowledge base here")),
        }
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.limits.request_timeout
    }

    fn citation_url(&self, path: &str, anchor: Option<&str>) -> Option<String> {
        let base = self.docs_url.as_deref()?.trim_end_matches('/');
        Some(match anchor {
            Some(a) => format!("{base}/{path}#{a}"),
            None => format!("{base}/{path}"),
        })
    }
}

/// Parses a JSON body, turning every problem into a 4xx with a one-line reason.
fn parse_json<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                ..ApiError::bad_request("the request body is too large")
            }
        } else {
            ApiError::bad_request(format!("cannot read the request body: {}", r.body_text()))
        }
    })?;
    serde_json::from_slice(&body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::bad_request(format!("invalid request: {e}")),
        _ => ApiError::bad_request(format!("the request body is not valid JSON: {e}")),
    })
}

/// Conversations of `/api/chat`, kept in memory and forgotten least recently used first.
pub struct Conversations {
    by_id: HashMap<String, Conversation>,
    max: usize,
}

pub struct Conversation {
    pub owner: String,
    pub kb: String,
    pub turns: Vec<Turn>,
    touched: Instant,
}

/// Turns kept per conversation (older ones leave the history, not the audit log).
const MAX_TURNS: usize = 20;

impl Conversations {
    pub fn new(max: usize) -> Conversations {
        Conversations {
            by_id: HashMap::new(),
            max: max.max(1),
        }
    }

    /// The turns of a conversation the caller owns, `None` when there is no such one.
    pub fn history(&mut self, id: &str, caller: &Caller) -> Option<(String, Vec<Turn>)> {
        let c = self.by_id.get_mut(id)?;
        if c.owner != caller.id() {
            return None;
        }
        c.touched = Instant::now();
        Some((c.kb.clone(), c.turns.clone()))
    }

    /// Appends turns to a conversation, creating it when new.
    pub fn append(&mut self, id: &str, caller: &Caller, kb: &str, turns: Vec<Turn>) {
        if !self.by_id.contains_key(id) && self.by_id.len() >= self.max {
            if let Some(oldest) = self
                .by_id
                .iter()
                .min_by_key(|(_, c)| c.touched)
                .map(|(k, _)| k.clone())
            {
                self.by_id.remove(&oldest);
            }
        }
        let c = self
            .by_id
            .entry(id.to_string())
            .or_insert_with(|| Conversation {
                owner: caller.id().to_string(),
                kb: kb.to_string(),
                turns: Vec::new(),
                touched: Instant::now(),
            });
        c.turns.extend(turns);
        let excess = c.turns.len().saturating_sub(MAX_TURNS);
        c.turns.drain(..excess);
        c.touched = Instant::now();
    }
}

/// An id nobody can guess: 128 bits from the process's random hasher keys.
pub fn random_id(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let a = RandomState::new().hash_one((n, nanos));
    let b = RandomState::new().hash_one((nanos, n, a));
    format!("{prefix}{a:016x}{b:016x}")
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The router with every route, limit and layer.
pub fn router(state: Arc<AppState>, cors_origins: &[String]) -> Result<Router, String> {
    let max_body = state.limits.max_body_bytes;
    let mut app = Router::new()
        .route("/", get(widget_page))
        .route("/widget.js", get(widget_js))
        .route("/widget.css", get(widget_css))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/v1/models", get(openai::models))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/api/ask", post(support::ask))
        .route("/api/chat", post(support::chat))
        .route("/api/handoff", post(support::handoff))
        .route("/api/sources/{chunk_id}", get(support::source))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state);
    if !cors_origins.is_empty() {
        let origins = cors_origins
            .iter()
            .map(|o| {
                HeaderValue::from_str(o.trim_end_matches('/'))
                    .map_err(|_| format!("--cors-origin {o} is not a valid origin"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        app = app.layer(
            tower_http::cors::CorsLayer::new()
                .allow_origin(origins)
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
                .max_age(Duration::from_secs(600)),
        );
    }
    Ok(app)
}

/// Refuses new requests once shutdown began, and counts every request with its latency.
async fn observe(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = route_name(
        request
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str),
    );
    let response = if state.shutting_down.load(Ordering::Relaxed) && route != "healthz" {
        ApiError::unavailable("the server is shutting down").into_response()
    } else {
        next.run(request).await
    };
    state.metrics.count_request(
        route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// A fixed label per route (never the raw path, which a client controls).
fn route_name(matched: Option<&str>) -> &'static str {
    match matched {
        Some("/") | Some("/widget.js") | Some("/widget.css") => "widget",
        Some("/healthz") => "healthz",
        Some("/metrics") => "metrics",
        Some("/v1/models") => "models",
        Some("/v1/chat/completions") => "chat_completions",
        Some("/v1/embeddings") => "embeddings",
        Some("/api/ask") => "ask",
        Some("/api/chat") => "chat",
        Some("/api/handoff") => "handoff",
        Some("/api/sources/{chunk_id}") => "sources",
        _ => "other",
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found(
        "no such route — see GET /v1/models, POST /v1/chat/completions, POST /api/ask",
    )
}

async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let status = if state.shutting_down.load(Ordering::Relaxed) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let body = serde_json::json!({
        "status": if status == StatusCode::OK { "ok" } else { "shutting_down" },
        "model": state.model_id,
    });
    (status, axum::Json(body)).into_response()
}

async fn metrics_text(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(e) = state.caller(&headers) {
        return e.into_response();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// Security headers of the widget's files: nothing from other origins, no framing by others.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'self'; base-uri 'none'; form-action 'self'";

fn asset(content_type: &'static str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn widget_page(State(state): State<Arc<AppState>>) -> Response {
    asset("text/html; charset=utf-8", state.widget_page.clone())
}

async fn widget_js() -> Response {
    asset("text/javascript; charset=utf-8", WIDGET_JS.to_string())
}

async fn widget_css() -> Response {
    asset("text/css; charset=utf-8", WIDGET_CSS.to_string())
}

/// The widget page with the company, the assistant's name and the key it sends filled in.
pub fn render_widget_page(company: &str, assistant: &str, widget_key: &str) -> String {
    INDEX_HTML
        .replace("__FRONTDESK_COMPANY__", &html_escape(company))
        .replace("__FRONTDESK_ASSISTANT__", &html_escape(assistant))
        .replace("__FRONTDESK_WIDGET_KEY__", &html_escape(widget_key))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Serves until SIGTERM or Ctrl-C, then lets in-flight requests finish and refuses new ones.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    state: Arc<AppState>,
) -> std::io::Result<()> {
    let shutdown_state = state.clone();
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown_signal().await;
        shutdown_state.shutting_down.store(true, Ordering::Relaxed);
        tracing::warn!("shutting down: finishing the requests in flight, refusing new ones");
    })
    .await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_widget_page_escapes_what_it_fills_in() {
        let page = render_widget_page("A <b>&</b> Co", "Wren\"", "");
        assert!(page.contains("A &lt;b&gt;&amp;&lt;/b&gt; Co"));
        assert!(!page.contains("__FRONTDESK_"));
    }

    #[test]
    fn conversations_belong_to_their_caller_and_the_oldest_leaves_first() {
        let alice = Caller::Key {
            name: "alice".into(),
            kbs: None,
        };
        let mut c = Conversations::new(2);
        let turn = |t: &str| Turn {
            role: "customer",
            text: t.into(),
        };
        c.append("c1", &alice, "shop", vec![turn("one")]);
        assert_eq!(c.history("c1", &Caller::Open), None);
        assert_eq!(c.history("c1", &alice).unwrap().1.len(), 1);
        c.append("c2", &alice, "shop", vec![turn("two")]);
        std::thread::sleep(Duration::from_millis(2));
        c.history("c1", &alice);
        c.append("c3", &alice, "shop", vec![turn("three")]);
        assert!(
            c.history("c2", &alice).is_none(),
            "least recently used left"
        );
        assert!(c.history("c1", &alice).is_some());
        for i in 0..30 {
            c.append("c1", &alice, "shop", vec![turn(&i.to_string())]);
        }
        assert_eq!(c.history("c1", &alice).unwrap().1.len(), MAX_TURNS);
    }

    #[test]
    fn ids_do_not_repeat() {
        let a = random_id("c-");
        let b = random_id("c-");
        assert_ne!(a, b);
        assert_eq!(a.len(), 2 + 32);
    }
}
