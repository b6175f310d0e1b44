//! The support API the widget and help-desk tools use: `POST /api/ask` (one question, the
//! answer as `frontdesk ask --json` gives it), `POST /api/chat` (a conversation, by id;
//! optionally streamed as SSE: `token` events with the provisional draft, then one `answer`
//! event with the checked answer, or an `error` event), `POST /api/handoff` (the customer
//! asks for a person) and `GET /api/sources/{chunk_id}` (a cited passage).

use super::auth::Caller;
use super::error::ApiError;
use super::worker::{Job, SupportEvent, Usage};
use super::{parse_json, random_id, AppState};
use crate::answer::handoff::Turn;
use crate::answer::Answer;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream;
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// The answer as JSON: what `frontdesk ask --json` prints, citations with their links.
pub fn answer_json(state: &AppState, answer: &Answer, conversation_id: Option<&str>) -> Value {
    let citations: Vec<Value> = answer
        .citations
        .iter()
        .map(|c| {
            json!({
                "n": c.n,
                "path": c.path,
                "title": c.title,
                "section": c.section,
                "anchor": c.anchor,
                "chunk_id": c.chunk_id,
                "url": state.citation_url(&c.path, c.anchor.as_deref()),
            })
        })
        .collect();
    let mut out = json!({
        "answer": answer.answer,
        "handoff": answer.handoff,
        "confidence": answer.confidence,
        "citations": citations,
        "ticket": answer.ticket,
        "timings": answer.timings,
        "model": {"name": state.model_id, "file_sha256": state.model_sha256},
    });
    if let Some(id) = conversation_id {
        out["conversation_id"] = json!(id);
    }
    out
}

/// Waits for a support job's answer, passing over its draft.
pub async fn receive_answer(
    mut receiver: mpsc::UnboundedReceiver<SupportEvent>,
) -> Result<(Answer, Usage), ApiError> {
    loop {
        match receiver.recv().await {
            Some(SupportEvent::Draft(_)) => {}
            Some(SupportEvent::Answer(answer, usage)) => return Ok((*answer, usage)),
            Some(SupportEvent::Failed(e)) => return Err(e.into()),
            None => return Err(ApiError::internal("the model thread stopped")),
        }
    }
}

#[derive(Debug, Deserialize)]
struct AskBody {
    question: String,
    kb: Option<String>,
}

pub async fn ask(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let caller = state.caller(&headers)?;
    let body: AskBody = parse_json(body)?;
    let kb = state.kb_for(&caller, body.kb.as_deref())?;
    let (events, receiver) = mpsc::unbounded_channel();
    state
        .queue
        .submit(Job::Support {
            kb,
            question: body.question,
            history: Vec::new(),
            deadline: state.deadline(),
            events,
        })
        .map_err(ApiError::from_refused)?;
    let (answer, _) = receive_answer(receiver).await?;
    Ok(Json(answer_json(&state, &answer, None)))
}

#[derive(Debug, Deserialize)]
struct ChatBody {
    message: String,
    conversation_id: Option<String>,
    kb: Option<String>,
    #[serde(default)]
    stream: bool,
}

/// The turns an answer adds to its conversation.
fn turns_of(message: &str, answer: &Answer) -> Vec<Turn> {
    vec![
        Turn {
            role: "customer",
            text: message.trim().to_string(),
        },
        Turn {
            role: "assistant",
            text: answer.answer.clone(),
        },
    ]
}

/// The conversation a request continues (its id, knowledge base and turns so far), or a new
/// one on the knowledge base it names. A conversation belongs to the caller that started it and
/// stays with its knowledge base.
fn conversation(
    state: &AppState,
    caller: &Caller,
    id: Option<&str>,
    kb: Option<&str>,
) -> Result<(String, String, Vec<Turn>), ApiError> {
    let Some(id) = id else {
        return Ok((random_id("c-"), state.kb_for(caller, kb)?, Vec::new()));
    };
    let found = state
        .conversations
        .lock()
        .map_err(|_| ApiError::internal("conversation store poisoned"))?
        .history(id, caller);
    let (held, turns) = found.ok_or_else(|| {
        ApiError::not_found(format!(
            "no conversation '{id}' — start one without conversation_id"
        ))
    })?;
    if kb.is_some_and(|k| k != held) {
        return Err(ApiError::bad_request(
            "a conversation stays with its knowledge base",
        ));
    }
    Ok((id.to_string(), held, turns))
}

pub async fn chat(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers)?;
    let body: ChatBody = parse_json(body)?;
    let (conversation_id, kb, history) = conversation(
        &state,
        &caller,
        body.conversation_id.as_deref(),
        body.kb.as_deref(),
    )?;
    let (events, receiver) = mpsc::unbounded_channel();
    state
        .queue
        .submit(Job::Support {
            kb: kb.clone(),
            question: body.message.clone(),
            history,
            deadline: state.deadline(),
            events,
        })
        .map_err(ApiError::from_refused)?;

    if !body.stream {
        let (answer, _) = receive_answer(receiver).await?;
        if let Ok(mut c) = state.conversations.lock() {
            c.append(
                &conversation_id,
                &caller,
                &kb,
                turns_of(&body.message, &answer),
            );
        }
        return Ok(Json(answer_json(&state, &answer, Some(&conversation_id))).into_response());
    }

    // token* then answer | error. The conversation grows when the answer is sent.
    let message = body.message;
    let events = stream::unfold(Some(receiver), move |receiver| {
        let state = state.clone();
        let (caller, kb, id, message) = (
            caller.clone(),
            kb.clone(),
            conversation_id.clone(),
            message.clone(),
        );
        async move {
            let mut receiver = receiver?;
            let event = match receiver.recv().await {
                Some(SupportEvent::Draft(text)) => {
                    let e = Event::default()
                        .event("token")
                        .data(json!({ "text": text }).to_string());
                    return Some((Ok::<_, Infallible>(e), Some(receiver)));
                }
                Some(SupportEvent::Answer(answer, _)) => {
                    if let Ok(mut c) = state.conversations.lock() {
                        c.append(&id, &caller, &kb, turns_of(&message, &answer));
                    }
                    Event::default()
                        .event("answer")
                        .data(answer_json(&state, &answer, Some(&id)).to_string())
                }
                Some(SupportEvent::Failed(e)) => Event::default()
                    .event("error")
                    .data(ApiError::from(e).body().to_string()),
                None => Event::default().event("error").data(
                    ApiError::internal("the model thread stopped")
                        .body()
                        .to_string(),
                ),
            };
            Some((Ok(event), None))
        }
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

#[derive(Debug, Deserialize)]
struct HandoffBody {
    conversation_id: Option<String>,
    kb: Option<String>,
}

pub async fn handoff(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let caller = state.caller(&headers)?;
    let body: HandoffBody = parse_json(body)?;
    let (id, kb, conversation) = conversation(
        &state,
        &caller,
        body.conversation_id.as_deref(),
        body.kb.as_deref(),
    )?;
    let (reply, answer) = oneshot::channel();
    state
        .queue
        .submit(Job::Handoff {
            kb,
            conversation,
            reply,
        })
        .map_err(ApiError::from_refused)?;
    let answer = answer
        .await
        .map_err(|_| ApiError::internal("the model thread stopped"))?;
    Ok(Json(answer_json(&state, &answer, Some(&id))))
}

#[derive(Debug, Deserialize)]
pub struct SourceQuery {
    kb: Option<String>,
}

pub async fn source(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    chunk_id: Result<Path<i64>, PathRejection>,
    query: Result<Query<SourceQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let caller = state.caller(&headers)?;
    let Path(chunk_id) =
        chunk_id.map_err(|_| ApiError::bad_request("the source id must be a whole number"))?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let kb = state.kb_for(&caller, query.kb.as_deref())?;
    let (reply, answer) = oneshot::channel();
    state
        .queue
        .submit(Job::Source {
            kb,
            chunk_id,
            reply,
        })
        .map_err(ApiError::from_refused)?;
    let chunk = answer
        .await
        .map_err(|_| ApiError::internal("the model thread stopped"))?
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("no source {chunk_id}")))?;
    Ok(Json(json!({
        "chunk_id": chunk.id,
        "path": chunk.path,
        "title": chunk.title,
        "section": chunk.heading_path.join(" › "),
        "anchor": chunk.anchor,
        "url": state.citation_url(&chunk.path, chunk.anchor.as_deref()),
        "text": chunk.text,
    })))
}
