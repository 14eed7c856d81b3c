//! Errors as RFC 9457 `application/problem+json` answers.

use axum::body::Body;
use axum::http::{Response, StatusCode};
use serde::Serialize;

use crate::domain::FieldError;
use crate::flow::StepError;
use crate::ports::{QueueError, StoreError};

/// Every way an API call can fail, each with its status code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request is invalid")]
    Invalid(Vec<FieldError>),
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the body must be application/json")]
    UnsupportedMediaType,
    /// No credential, or not a valid one: the text says which kind the route needs.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A valid credential that does not allow this (a channel key used for another channel).
    #[error("{0}")]
    Forbidden(String),
    /// The request's headers are larger than the server takes.
    #[error("the request headers are larger than {0} bytes")]
    HeadersTooLarge(usize),
    /// Too many requests from one client.
    #[error("too many requests; try again in a second")]
    TooManyRequests,
    #[error("{0}")]
    NotFound(String),
    #[error("no such route")]
    NoRoute,
    #[error("this route does not take that method")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unprocessable(String, Vec<String>),
    /// Well-formed but refused by what the system knows (an unknown SKU): 422, naming fields.
    #[error("the request cannot be taken")]
    Refused(Vec<FieldError>),
    #[error("the service is busy; try again")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn field(field: &str, reason: impl Into<String>) -> Self {
        ApiError::Invalid(vec![FieldError {
            field: field.into(),
            reason: reason.into(),
        }])
    }

    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Invalid(_) => (StatusCode::BAD_REQUEST, "validation"),
            ApiError::MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed-json"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too-large"),
            ApiError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type")
            }
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::TooManyRequests => (StatusCode::TOO_MANY_REQUESTS, "too-many-requests"),
            ApiError::HeadersTooLarge(_) => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers-too-large",
            ),
            ApiError::NotFound(_) | ApiError::NoRoute => (StatusCode::NOT_FOUND, "not-found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Unprocessable(..) | ApiError::Refused(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable")
            }
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    pub fn to_response(self) -> Response<Body> {
        #[derive(Serialize)]
        struct Problem<'a> {
            #[serde(rename = "type")]
            kind: String,
            title: &'a str,
            status: u16,
            detail: String,
            #[serde(skip_serializing_if = "Vec::is_empty")]
            errors: Vec<FieldError>,
            #[serde(skip_serializing_if = "Vec::is_empty")]
            reasons: Vec<String>,
        }
        let (status, slug) = self.parts();
        let detail = match &self {
            ApiError::Invalid(errors) | ApiError::Refused(errors) => errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
            // Internal details go to the log, not to the caller.
            ApiError::Internal(_) => "internal error".into(),
            ApiError::Unavailable(_) => "the service is busy; try again".into(),
            other => other.to_string(),
        };
        if let ApiError::Internal(e) | ApiError::Unavailable(e) = &self {
            tracing::error!(error = %e, status = status.as_u16(), "request failed");
        }
        let (errors, reasons) = match self {
            ApiError::Invalid(errors) | ApiError::Refused(errors) => (errors, vec![]),
            ApiError::Unprocessable(_, reasons) => (vec![], reasons),
            _ => (vec![], vec![]),
        };
        let problem = Problem {
            kind: format!("urn:oms:problem:{slug}"),
            title: status.canonical_reason().unwrap_or("error"),
            status: status.as_u16(),
            detail,
            errors,
            reasons,
        };
        let mut b = Response::builder()
            .status(status)
            .header("content-type", "application/problem+json");
        if status == StatusCode::UNAUTHORIZED {
            b = b.header("www-authenticate", "Bearer");
        }
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            b = b.header("retry-after", "1");
        }
        let body = serde_json::to_string(&problem).unwrap_or_else(|_| "{}".into());
        b.body(Body::from(body))
            .unwrap_or_else(|_| Response::new(Body::empty()))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(id) => ApiError::Conflict(format!(
                "order {id} changed meanwhile; read it and try again"
            )),
            StoreError::NotFound(id) => ApiError::NotFound(format!("order {id} does not exist")),
            StoreError::InvalidQuery(q) => ApiError::field("status", q),
            StoreError::BelowReserved { .. } => ApiError::Conflict(e.to_string()),
            StoreError::InsufficientStock(_) | StoreError::NumberTaken(_) => {
                ApiError::Conflict(e.to_string())
            }
            e if e.is_retryable() => ApiError::Unavailable(e.to_string()),
            e => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        if e.is_retryable() {
            ApiError::Unavailable(e.to_string())
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

impl From<StepError> for ApiError {
    fn from(e: StepError) -> Self {
        match e {
            StepError::Store(s) => s.into(),
            StepError::Queue(q) => q.into(),
            StepError::Refused(r) => ApiError::Conflict(r.to_string()),
            StepError::UnknownOrder(id) => ApiError::NotFound(format!("order {id} does not exist")),
            StepError::Transient(m) => ApiError::Unavailable(m),
            other => ApiError::Internal(other.to_string()),
        }
    }
}
