//! Errors as HTTP responses, in the shape OpenAI clients parse:
//! `{"error": {"message", "type", "param", "code"}}`, with `Retry-After` on 429.

use super::worker::{JobError, Refused};
use crate::answer::AnswerError;
use crate::runtime::RuntimeError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
            retry_after_s: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "missing or wrong API key — send the header Authorization: Bearer YOUR_KEY",
        )
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found_error", message)
    }

    pub fn busy(retry_after_s: u64) -> ApiError {
        ApiError {
            retry_after_s: Some(retry_after_s),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                format!("the server is busy (its queue is full) — try again in {retry_after_s} s"),
            )
        }
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
    }

    pub fn timed_out(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout_error", message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// The JSON body (also sent as an SSE `error` event when a stream fails midway).
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": null,
            "code": self.status.as_u16(),
        }})
    }

    pub fn from_refused(refused: Refused) -> ApiError {
        match refused {
            Refused::Full => ApiError::busy(2),
            Refused::Stopped => ApiError::unavailable("the server is shutting down"),
        }
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> ApiError {
        match e {
            RuntimeError::EmptyPrompt | RuntimeError::PromptTooLong { .. } => {
                ApiError::bad_request(e.to_string())
            }
            RuntimeError::TimedOut { .. } => ApiError::timed_out(e.to_string()),
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> ApiError {
        match e {
            JobError::UnknownKb(_) => ApiError::not_found(e.to_string()),
            JobError::Answer(AnswerError::EmptyQuestion)
            | JobError::Answer(AnswerError::QuestionTooLong { .. }) => {
                ApiError::bad_request(e.to_string())
            }
            JobError::Answer(AnswerError::Runtime(r)) | JobError::Runtime(r) => r.into(),
            JobError::Answer(other) => ApiError::internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(s) = self.retry_after_s {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}
