//! The HTTP layer's error: every rejection, mapped to its status code in one place, with a
//! JSON body `{"error": "..."}`.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use repricer_actors::error::ActorError;
use repricer_actors::query::QueryError;

/// Why a request was not served.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is wrong; the message names what is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// No such product.
    #[error("{0}")]
    NotFound(String),
    /// Body over the limit.
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// The body did not arrive in time.
    #[error("the request body was not received within {0:?}")]
    BodyTimeout(std::time::Duration),
    /// An unknown path.
    #[error("no such endpoint: {0}")]
    NoRoute(String),
    /// A known path with the wrong method.
    #[error("method {method} is not allowed here; use {allow}")]
    MethodNotAllowed {
        /// The method used.
        method: String,
        /// The method to use.
        allow: &'static str,
    },
    /// Not JSON.
    #[error("Content-Type must be application/json (in UTF-8, the only charset of JSON), not {0:?}")]
    UnsupportedMediaType(String),
    /// Admission limit reached for an endpoint.
    #[error("too many {0} requests in flight; retry shortly")]
    Throttled(&'static str),
    /// The event was not durable within the write timeout.
    #[error("storage did not confirm the write within {0:?}; retry shortly")]
    WriteTimeout(std::time::Duration),
    /// The actors could not take or finish the work.
    #[error(transparent)]
    Actor(#[from] ActorError),
    /// A query could not read its segments.
    #[error(transparent)]
    Query(#[from] QueryError),
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) | ApiError::NoRoute(_) => StatusCode::NOT_FOUND,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Throttled(_) | ApiError::Actor(_) | ApiError::WriteTimeout(_) | ApiError::Query(QueryError::ReadersStopped) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Query(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if self.status_code() == StatusCode::SERVICE_UNAVAILABLE {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
        }
        if let ApiError::MethodNotAllowed { allow, .. } = self {
            response.insert_header((header::ALLOW, HeaderValue::from_static(allow)));
        }
        response.content_type("application/json").body(error_body(&self.to_string()))
    }
}

/// `{"error": message}` as JSON text.
pub fn error_body(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}
