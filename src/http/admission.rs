//! Admission control (R5): a fixed number of requests in flight per endpoint, the excess
//! refused at once. A permit lives in the response body and is released only when the body has
//! been handed over completely, so a slow reader of a large page keeps its slot.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, MessageBody};
use actix_web::web::Bytes;
use prometheus::IntCounterVec;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::http::error::ApiError;

/// The in-flight limit of one endpoint.
#[derive(Clone)]
pub struct Admission {
    endpoint: &'static str,
    slots: Arc<Semaphore>,
    rejections: IntCounterVec,
}

impl Admission {
    /// `limit` requests of `endpoint` at a time; rejections counted in `rejections`.
    pub fn new(endpoint: &'static str, limit: usize, rejections: IntCounterVec) -> Admission {
        Admission { endpoint, slots: Arc::new(Semaphore::new(limit)), rejections }
    }

    /// A slot, or `Throttled` at once.
    pub fn admit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        Arc::clone(&self.slots).try_acquire_owned().map_err(|_| {
            self.rejections.with_label_values(&[self.endpoint]).inc();
            ApiError::Throttled(self.endpoint)
        })
    }
}

/// Bytes handed to the server in small chunks; under back-pressure the server stops asking for
/// chunks, so the permit is held until the client has taken nearly all of the body.
const CHUNK: usize = 8 * 1024;

/// A response body that holds an admission permit until it is fully written.
pub struct PermitBody {
    data: Bytes,
    len: u64,
    permit: Option<OwnedSemaphorePermit>,
}

impl PermitBody {
    /// `data` released in chunks; `permit` dropped after the last one (or on disconnect).
    pub fn new(data: impl Into<Bytes>, permit: OwnedSemaphorePermit) -> PermitBody {
        let data = data.into();
        PermitBody { len: data.len() as u64, data, permit: Some(permit) }
    }
}

impl MessageBody for PermitBody {
    type Error = Infallible;

    fn size(&self) -> BodySize {
        BodySize::Sized(self.len)
    }

    fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Bytes, Infallible>>> {
        let this = self.get_mut();
        if this.data.is_empty() {
            this.permit = None;
            return Poll::Ready(None);
        }
        let n = CHUNK.min(this.data.len());
        Poll::Ready(Some(Ok(this.data.split_to(n))))
    }
}
