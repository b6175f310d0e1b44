//! The OpenAI-compatible routes: `GET /v1/models`, `POST /v1/chat/completions` (JSON or SSE)
//! and `POST /v1/embeddings`, with the schemas the official clients expect.
//!
//! Model ids: the bare model (its catalogue name) is a plain chat model; `frontdesk-support`
//! answers the last user message from the default knowledge base (`frontdesk-support:KB` from
//! another), with the checked citations in an extra `frontdesk` object. Support answers are
//! checked before anyone sees them, so a streamed support answer arrives when it is complete.

use super::error::ApiError;
use super::support::{answer_json, receive_answer};
use super::worker::Job;
use super::{parse_json, unix_now, AppState, EMBEDDING_MODEL, SUPPORT_MODEL};
use crate::answer::handoff::Turn;
use crate::runtime::batch::Event;
use crate::runtime::{GenerateOptions, Generation, Message, Role, SamplingParams, StopReason};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

pub async fn models(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = state.caller(&headers)?;
    let created = unix_now();
    let entry = |id: String| json!({"id": id, "object": "model", "created": created, "owned_by": "frontdesk"});
    let mut data = vec![entry(state.model_id.clone())];
    let visible: Vec<&String> = state.kbs.iter().filter(|k| caller.may_use(k)).collect();
    if !visible.is_empty() {
        data.push(entry(SUPPORT_MODEL.to_string()));
        for kb in visible {
            data.push(entry(format!("{SUPPORT_MODEL}:{kb}")));
        }
    }
    data.push(entry(EMBEDDING_MODEL.to_string()));
    Ok(Json(json!({"object": "list", "data": data})))
}

#[derive(Debug, Deserialize)]
struct ChatRequest {
    model: String,
    messages: Vec<ChatMessage>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    seed: Option<u64>,
    stop: Option<Stop>,
    n: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
struct ContentPart {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

impl ChatMessage {
    fn text(&self) -> Result<String, ApiError> {
        match &self.content {
            None => Ok(String::new()),
            Some(Content::Text(t)) => Ok(t.clone()),
            Some(Content::Parts(parts)) => parts
                .iter()
                .map(|p| match (p.kind.as_str(), &p.text) {
                    ("text", Some(t)) => Ok(t.as_str()),
                    (kind, _) => Err(ApiError::bad_request(format!(
                        "message content of type '{kind}' is not supported (text only)"
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|texts| texts.concat()),
        }
    }
}

/// What the request asks for, checked.
struct Checked {
    messages: Vec<Message>,
    options: GenerateOptions,
}

fn check_request(state: &AppState, req: &ChatRequest) -> Result<Checked, ApiError> {
    if req.messages.is_empty() {
        return Err(ApiError::bad_request("'messages' is empty"));
    }
    if req.n.is_some_and(|n| n != 1) {
        return Err(ApiError::bad_request("only n = 1 is supported"));
    }
    let limits = &state.limits;
    let max_tokens = req
        .max_completion_tokens
        .or(req.max_tokens)
        .unwrap_or(256.min(limits.max_tokens as u64));
    if max_tokens == 0 || max_tokens > limits.max_tokens as u64 {
        return Err(ApiError::bad_request(format!(
            "max_tokens must be between 1 and {}",
            limits.max_tokens
        )));
    }
    let temperature = req.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::bad_request("temperature must be between 0 and 2"));
    }
    let top_p = req.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::bad_request("top_p must be in (0, 1]"));
    }
    let stop_sequences = match &req.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s.clone()],
        Some(Stop::Many(v)) if v.len() <= 4 => v.clone(),
        Some(Stop::Many(_)) => return Err(ApiError::bad_request("at most 4 stop sequences")),
    };
    let mut messages = Vec::with_capacity(req.messages.len());
    let mut chars = 0;
    for m in &req.messages {
        let role = match m.role.as_str() {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => {
                return Err(ApiError::bad_request(format!(
                    "message role '{other}' is not supported (system, user, assistant)"
                )))
            }
        };
        let text = m.text()?;
        chars += text.chars().count();
        messages.push(Message::new(role, text));
    }
    if chars > limits.max_prompt_chars {
        return Err(ApiError::bad_request(format!(
            "the messages hold {chars} characters; the limit is {}",
            limits.max_prompt_chars
        )));
    }
    Ok(Checked {
        messages,
        options: GenerateOptions {
            max_tokens: max_tokens as usize,
            sampling: SamplingParams {
                temperature,
                top_k: 0,
                top_p,
                repeat_penalty: 1.0,
                repeat_last_n: 64,
                seed: req.seed.unwrap_or(42),
            },
            stop_sequences,
            forbidden_starts: Vec::new(),
        },
    })
}

pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers)?;
    let req: ChatRequest = parse_json(body)?;
    let checked = check_request(&state, &req)?;
    let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let id = super::random_id("chatcmpl-");

    if let Some(kb) = support_kb(&req.model) {
        let kb = state.kb_for(&caller, kb)?;
        let (question, history) = support_question(&checked.messages)?;
        let (events, receiver) = mpsc::unbounded_channel();
        state
            .queue
            .submit(Job::Support {
                kb,
                question,
                history,
                deadline: state.deadline(),
                events,
            })
            .map_err(ApiError::from_refused)?;
        let (answer, usage) = receive_answer(receiver).await?;
        let extension = answer_json(&state, &answer, None);
        let usage = usage_json(usage.prompt_tokens, usage.completion_tokens);
        if req.stream {
            let chunks = vec![
                chunk(
                    &id,
                    &req.model,
                    json!({"role": "assistant", "content": ""}),
                    None,
                ),
                chunk(&id, &req.model, json!({"content": answer.answer}), None),
                {
                    let mut last = chunk(&id, &req.model, json!({}), Some("stop"));
                    last["frontdesk"] = extension;
                    last
                },
            ];
            let tail = include_usage.then(|| usage_chunk(&id, &req.model, usage));
            let events = chunks.into_iter().chain(tail).map(|c| c.to_string());
            return Ok(sse(stream::iter(
                events.chain(std::iter::once("[DONE]".to_string())),
            )));
        }
        let mut body = completion(&id, &req.model, &answer.answer, "stop", usage);
        body["frontdesk"] = extension;
        return Ok(Json(body).into_response());
    }

    if req.model != state.model_id {
        return Err(ApiError::not_found(format!(
            "the model '{}' does not exist here — GET /v1/models lists {} and {SUPPORT_MODEL}",
            req.model, state.model_id
        )));
    }
    let (events, mut receiver) = mpsc::unbounded_channel();
    state
        .queue
        .submit(Job::Chat {
            messages: checked.messages,
            options: checked.options,
            deadline: state.deadline(),
            events,
        })
        .map_err(ApiError::from_refused)?;

    if req.stream {
        return Ok(sse(completion_stream(
            receiver,
            id,
            req.model.clone(),
            include_usage,
        )));
    }
    let mut text = String::new();
    let generation = loop {
        match receiver.recv().await {
            Some(Event::Text(piece)) => text.push_str(&piece),
            Some(Event::Done(g)) => break g,
            Some(Event::Failed(e)) => return Err(e.into()),
            None => return Err(ApiError::internal("the model thread stopped")),
        }
    };
    let usage = usage_json(generation.prompt_tokens, generation.tokens.len());
    let body = completion(&id, &req.model, &text, finish_reason(&generation), usage);
    Ok(Json(body).into_response())
}

/// `frontdesk-support` → the default knowledge base (`Some(None)`); `frontdesk-support:KB`
/// → that one; anything else is not the support model.
fn support_kb(model: &str) -> Option<Option<&str>> {
    if model == SUPPORT_MODEL {
        return Some(None);
    }
    model
        .strip_prefix(SUPPORT_MODEL)
        .and_then(|rest| rest.strip_prefix(':'))
        .map(Some)
}

/// The last user message is the question; earlier user and assistant messages are the
/// conversation (system messages are the client's, not the customer's, and are left out).
fn support_question(messages: &[Message]) -> Result<(String, Vec<Turn>), ApiError> {
    let last_user = messages
        .iter()
        .rposition(|m| m.role == Role::User)
        .ok_or_else(|| ApiError::bad_request("the support model needs a user message"))?;
    let history = messages[..last_user]
        .iter()
        .filter_map(|m| match m.role {
            Role::User => Some(Turn {
                role: "customer",
                text: m.content.clone(),
            }),
            Role::Assistant => Some(Turn {
                role: "assistant",
                text: m.content.clone(),
            }),
            Role::System => None,
        })
        .collect();
    Ok((messages[last_user].content.clone(), history))
}

fn finish_reason(g: &Generation) -> &'static str {
    match g.stop_reason {
        StopReason::EndOfTurn | StopReason::StopSequence => "stop",
        StopReason::MaxTokens | StopReason::ContextFull => "length",
    }
}

fn usage_json(prompt: usize, completion: usize) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    })
}

/// A non-streamed `chat.completion` object.
fn completion(id: &str, model: &str, content: &str, finish: &str, usage: Value) -> Value {
    json!({
        "id": id,
        "object": "chat.completion",
        "created": unix_now(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": finish,
        }],
        "usage": usage,
    })
}

fn chunk(id: &str, model: &str, delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": unix_now(),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    })
}

fn usage_chunk(id: &str, model: &str, usage: Value) -> Value {
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": unix_now(),
        "model": model,
        "choices": [],
        "usage": usage,
    })
}

/// An SSE response of `data:` lines.
fn sse(data: impl Stream<Item = String> + Send + 'static) -> Response {
    use futures_util::StreamExt;
    let events = data.map(|d| Ok::<_, Infallible>(axum::response::sse::Event::default().data(d)));
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The chunks of a streamed completion as its tokens arrive. Dropping the stream (the client
/// left) drops the receiver, which ends the generation.
fn completion_stream(
    receiver: mpsc::UnboundedReceiver<Event>,
    id: String,
    model: String,
    include_usage: bool,
) -> impl Stream<Item = String> + Send + 'static {
    enum Phase {
        Start,
        Tokens,
        Usage(Value),
        Done,
        End,
    }
    let state = (receiver, Phase::Start);
    stream::unfold(state, move |(mut receiver, phase)| {
        let (id, model) = (id.clone(), model.clone());
        async move {
            match phase {
                Phase::Start => {
                    let first = chunk(
                        &id,
                        &model,
                        json!({"role": "assistant", "content": ""}),
                        None,
                    );
                    Some((first.to_string(), (receiver, Phase::Tokens)))
                }
                Phase::Tokens => match receiver.recv().await {
                    Some(Event::Text(piece)) => {
                        let c = chunk(&id, &model, json!({"content": piece}), None);
                        Some((c.to_string(), (receiver, Phase::Tokens)))
                    }
                    Some(Event::Done(g)) => {
                        let last = chunk(&id, &model, json!({}), Some(finish_reason(&g)));
                        let next = if include_usage {
                            Phase::Usage(usage_json(g.prompt_tokens, g.tokens.len()))
                        } else {
                            Phase::Done
                        };
                        Some((last.to_string(), (receiver, next)))
                    }
                    Some(Event::Failed(e)) => {
                        let body = ApiError::from(e).body();
                        Some((body.to_string(), (receiver, Phase::End)))
                    }
                    None => {
                        let body = ApiError::internal("the model thread stopped").body();
                        Some((body.to_string(), (receiver, Phase::End)))
                    }
                },
                Phase::Usage(usage) => Some((
                    usage_chunk(&id, &model, usage).to_string(),
                    (receiver, Phase::Done),
                )),
                Phase::Done => Some(("[DONE]".to_string(), (receiver, Phase::End))),
                Phase::End => None,
            }
        }
    })
}

#[derive(Debug, Deserialize)]
struct EmbeddingsRequest {
    model: String,
    input: EmbeddingInput,
    encoding_format: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
}

pub async fn embeddings(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    state.caller(&headers)?;
    let req: EmbeddingsRequest = parse_json(body)?;
    if req.model != EMBEDDING_MODEL {
        return Err(ApiError::not_found(format!(
            "the embedding model '{}' does not exist here — use {EMBEDDING_MODEL}",
            req.model
        )));
    }
    // The official clients ask for base64 (little-endian f32) by default.
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(f) => {
            return Err(ApiError::bad_request(format!(
                "encoding_format '{f}' is not supported (float or base64)"
            )))
        }
    };
    let texts = match req.input {
        EmbeddingInput::One(t) => vec![t],
        EmbeddingInput::Many(v) => v,
    };
    let limits = &state.limits;
    if texts.is_empty() || texts.len() > limits.max_embedding_inputs {
        return Err(ApiError::bad_request(format!(
            "'input' must hold 1 to {} texts",
            limits.max_embedding_inputs
        )));
    }
    if texts.iter().any(|t| t.trim().is_empty()) {
        return Err(ApiError::bad_request("'input' holds an empty text"));
    }
    if texts
        .iter()
        .any(|t| t.chars().count() > limits.max_prompt_chars)
    {
        return Err(ApiError::bad_request(format!(
            "a text of 'input' is longer than {} characters",
            limits.max_prompt_chars
        )));
    }
    let (reply, answer) = oneshot::channel();
    state
        .queue
        .submit(Job::Embed { texts, reply })
        .map_err(ApiError::from_refused)?;
    let (vectors, tokens) = answer
        .await
        .map_err(|_| ApiError::internal("the model thread stopped"))?
        .map_err(ApiError::internal)?;
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                use base64::Engine as _;
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": EMBEDDING_MODEL,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn support_model_ids_name_the_knowledge_base() {
        assert_eq!(support_kb("frontdesk-support"), Some(None));
        assert_eq!(support_kb("frontdesk-support:shop"), Some(Some("shop")));
        assert_eq!(support_kb("frontdesk-supportx"), None);
        assert_eq!(support_kb("qwen2.5-coder-0.5b"), None);
    }

    #[test]
    fn the_last_user_message_is_the_question_and_the_rest_the_history() {
        let m = |role, text: &str| Message::new(role, text);
        let (q, h) = support_question(&[
            m(Role::System, "be nice"),
            m(Role::User, "How do I return a jacket?"),
            m(Role::Assistant, "In your account [1]."),
            m(Role::User, "and how long does that take?"),
        ])
        .unwrap();
        assert_eq!(q, "and how long does that take?");
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].role, "customer");
        assert!(support_question(&[m(Role::System, "x")]).is_err());
    }
}
