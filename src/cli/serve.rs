//! `frontdesk serve`: the assistant as an HTTP service.

use super::ask::AssistantArgs;
use super::common::Context;
use super::search::open_searcher;
use crate::answer::audit::{AuditLog, ModelRecord};
use crate::answer::Support;
use crate::kb::Embedder;
use crate::runtime::batch::Batcher;
use crate::server::auth::Keys;
use crate::server::metrics::Metrics;
use crate::server::worker::Worker;
use crate::server::{self, AppState, Conversations, Limits};
use anyhow::Context as _;
use clap::Args;
use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Serve the assistant over HTTP: an OpenAI-compatible API, the support API and a chat widget.
///
/// Routes: POST /v1/chat/completions (model "frontdesk-support" answers from the knowledge
/// base with citations; the model's own name is a plain chat model; "stream": true for SSE),
/// POST /v1/embeddings, GET /v1/models, POST /api/ask, POST /api/chat (multi-turn, by
/// conversation_id), POST /api/handoff, GET /api/sources/ID, GET /healthz, GET /metrics
/// (Prometheus), and the chat widget at /.
///
/// One model serves every request: generations run batched (up to --max-batch at once, one
/// forward pass per step for all of them); more wait in a queue of --queue; past that a
/// request gets 429 with Retry-After. A client that disconnects stops its generation.
///
/// Security: the server binds to loopback unless told otherwise, and refuses any other
/// address without API keys. With keys, every API route needs "Authorization: Bearer KEY";
/// a key given as KEY=KB1,KB2 sees only those knowledge bases. SIGTERM or Ctrl-C: answers in
/// flight finish, new requests are refused, then the server exits.
///
/// Examples:
///   frontdesk serve
///   frontdesk serve --kb support --bind 0.0.0.0:8080 --api-key "$(cat /etc/frontdesk/key)"
///   FRONTDESK_API_KEY="k1... k2...=billing" frontdesk serve --kb support --kb billing
///   curl -s localhost:8080/api/ask -d '{"question": "How long does a refund take?"}'
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ServeArgs {
    /// A knowledge base to answer from (repeatable; the first is the default).
    #[arg(long = "kb", value_name = "NAME", default_value = "default")]
    kbs: Vec<String>,

    /// Address and port to listen on (port 0: any free port, printed at start).
    #[arg(
        long,
        env = "FRONTDESK_BIND",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR"
    )]
    bind: String,

    /// An API key, KEY or KEY=KB,KB to limit it to those knowledge bases (repeatable;
    /// FRONTDESK_API_KEY takes several separated by spaces). At least 16 characters.
    #[arg(
        long = "api-key",
        env = "FRONTDESK_API_KEY",
        value_delimiter = ' ',
        value_name = "KEY",
        hide_env_values = true
    )]
    api_keys: Vec<String>,

    /// A TOML file of keys: [[key]] tables with key, name and kbs.
    #[arg(long, value_name = "FILE")]
    api_keys_file: Option<PathBuf>,

    /// The key the widget page sends (it is visible to anyone who loads the page: limit it
    /// to the public knowledge base, e.g. --api-key KEY=support).
    #[arg(
        long,
        value_name = "KEY",
        hide_env_values = true,
        env = "FRONTDESK_WIDGET_KEY"
    )]
    widget_key: Option<String>,

    /// An origin allowed to call the API from a browser (CORS), e.g. https://help.example.com
    /// where the widget is embedded (repeatable; default: none, same origin only).
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    cors_origins: Vec<String>,

    /// Where the documents are published: citations link to URL/PATH#ANCHOR. Without it the
    /// widget shows the cited passage itself.
    #[arg(long, value_name = "URL")]
    docs_url: Option<String>,

    /// Generations that run at once, batched.
    #[arg(long, default_value_t = 8, value_name = "N")]
    max_batch: usize,

    /// Requests that may wait for a free place in the batch; more get 429.
    #[arg(long, default_value_t = 32, value_name = "N")]
    queue: usize,

    /// Seconds a request may take, queue included, before it gets 504.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    timeout: u64,

    /// Largest request body accepted (413 past it).
    #[arg(long, default_value_t = Limits::default().max_body_bytes, value_name = "BYTES")]
    max_body_bytes: usize,

    /// Largest prompt of a chat completion, all messages together, in characters.
    #[arg(long, default_value_t = Limits::default().max_prompt_chars, value_name = "N")]
    max_prompt_chars: usize,

    /// The most tokens one completion may ask for.
    #[arg(long, default_value_t = Limits::default().max_tokens, value_name = "N")]
    max_tokens: usize,

    /// Conversations of /api/chat kept in memory (the least recently used leave first).
    #[arg(
        long,
        default_value_t = 10_000,
        value_name = "N",
        hide_short_help = true
    )]
    max_conversations: usize,

    #[command(flatten)]
    assistant: AssistantArgs,
}

/// The address to listen on, refusing anything but loopback when no key guards the server.
fn bind_address(bind: &str, keys: &Keys) -> anyhow::Result<SocketAddr> {
    let addr = bind
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| anyhow::anyhow!("--bind {bind} is not an address (e.g. 127.0.0.1:8080)"))?;
    if !addr.ip().is_loopback() && keys.is_empty() {
        anyhow::bail!(
            "refusing to serve on {addr} without API keys: anyone on the network could use it — \
             add --api-key KEY (or FRONTDESK_API_KEY), or bind to 127.0.0.1"
        );
    }
    Ok(addr)
}

pub fn run(ctx: &Context, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let keys = Keys::load(&args.api_keys, args.api_keys_file.as_deref())?;
    let addr = bind_address(&args.bind, &keys)?;
    if args.max_batch == 0 || args.queue == 0 {
        anyhow::bail!("--max-batch and --queue must be at least 1");
    }
    if args.timeout == 0 {
        anyhow::bail!("--timeout must be at least 1 second");
    }
    let widget_key = args.widget_key.clone().unwrap_or_default();
    if !widget_key.is_empty() && keys.check(Some(&format!("Bearer {widget_key}"))).is_none() {
        anyhow::bail!("--widget-key must be one of the API keys (--api-key)");
    }
    let mut kbs = Vec::new();
    for kb in &args.kbs {
        if !kbs.contains(kb) {
            kbs.push(kb.clone());
        }
    }
    for key in keys.all() {
        for kb in key.kbs.iter().flatten() {
            if !kbs.contains(kb) {
                anyhow::bail!(
                    "API key '{}' names knowledge base '{kb}', which is not served — add --kb {kb}",
                    key.name
                );
            }
        }
    }

    let (settings, persona) = args.assistant.settings()?;
    let mut supports = HashMap::new();
    for kb in &kbs {
        let searcher = open_searcher(ctx, kb)?;
        supports.insert(
            kb.clone(),
            Support::new(searcher, persona.clone(), settings.clone()),
        );
    }
    let model_args = args.assistant.model();
    let mut resolved = model_args.resolve(ctx)?;
    let engine = model_args.load_resolved(&resolved)?;
    let sha256 = resolved.sha256().context("hashing the model file")?;
    let model_id = resolved.name.clone();
    let embedder = Embedder::load(&ctx.models_dir)?;
    let audit = AuditLog::open(&ctx.data_dir)?;
    let batcher = Batcher::new(engine, args.max_batch);
    let batch = batcher.capacity();
    let backend = batcher.engine().info.backend;

    let metrics = Arc::new(Metrics::default());
    let worker = Worker {
        batcher,
        kbs: supports,
        embedder,
        audit: Some(audit),
        model: ModelRecord {
            name: model_id.clone(),
            sha256: sha256.clone(),
        },
    };
    let (queue, model_thread) = worker
        .spawn(args.queue, metrics.clone())
        .context("starting the model thread")?;
    let state = Arc::new(AppState {
        queue,
        metrics,
        keys,
        model_id: model_id.clone(),
        model_sha256: sha256,
        kbs: kbs.clone(),
        limits: Limits {
            max_body_bytes: args.max_body_bytes,
            max_prompt_chars: args.max_prompt_chars,
            max_tokens: args.max_tokens,
            request_timeout: Duration::from_secs(args.timeout),
            ..Limits::default()
        },
        docs_url: args.docs_url.clone(),
        widget_page: server::render_widget_page(
            &persona.company,
            &persona.assistant_name,
            &widget_key,
        ),
        conversations: Mutex::new(Conversations::new(args.max_conversations)),
        shutting_down: AtomicBool::new(false),
    });
    let app = server::router(state.clone(), &args.cors_origins).map_err(anyhow::Error::msg)?;

    // The HTTP side only moves bytes; the cores belong to the model thread.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the HTTP runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        eprintln!(
            "frontdesk: serving {model_id} ({backend}, {batch} at once) with knowledge base{} {} \
             on http://{local} — widget at /, OpenAI API at /v1",
            if kbs.len() == 1 { "" } else { "s" },
            kbs.join(", ")
        );
        server::serve(listener, app, state).await?;
        anyhow::Ok(())
    })?;
    // Every route and its queue handle are gone: the model thread finishes and ends.
    let _ = model_thread.join();
    eprintln!("frontdesk: stopped");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_addresses_than_loopback_need_keys() {
        let none = Keys::default();
        assert!(bind_address("127.0.0.1:0", &none).is_ok());
        assert!(bind_address("[::1]:0", &none).is_ok());
        let err = bind_address("0.0.0.0:8080", &none).unwrap_err().to_string();
        assert!(err.contains("without API keys"), "{err}");
        let keys = Keys::load(&["0123456789abcdef0123".into()], None).unwrap();
        assert!(bind_address("0.0.0.0:8080", &keys).is_ok());
        assert!(bind_address("not an address", &keys).is_err());
    }
}
