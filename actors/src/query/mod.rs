//! QueryPlanner: answers paged, filtered history queries (R4).
//!
//! A page is planned from the [`catalog::Catalog`] (segment time ranges, first sequence
//! numbers, per-product runs) with binary searches; only the segments that hold the page, plus
//! at most one boundary segment per time bound, are opened. Events not yet sealed come from the
//! catalog's in-memory tail.
//!
//! The QueryPlanner runs beside the other actors on the HTTP thread and answers every page whose
//! segments are already parsed in the [`pages::SegmentCache`] (recent history, hot products)
//! without leaving that thread. A page that needs a segment file is forwarded to a
//! [`reader::SegmentReader`] thread, so reading files never stalls the HTTP thread or the write
//! path.

pub mod catalog;
pub mod pages;
pub mod reader;

use std::future::ready;

use actix::prelude::*;
use prometheus::IntGauge;

use crate::event::Event;
use crate::hop_span;
use crate::telemetry::Traced;
use catalog::Filter;
use pages::{PageCost, PagePlanner, Reads};
use reader::{ReadPage, SegmentReader};

/// Fetch one page of the events that pass a filter, in sequence order.
#[derive(Message, Clone, Debug)]
#[rtype(result = "Result<Page, QueryError>")]
pub struct RunQuery {
    /// Which events.
    pub filter: Filter,
    /// 1-based page number.
    pub page_number: u64,
    /// Events per page.
    pub page_size: u64,
}

/// One page and the size of the whole result.
#[derive(Debug, Default)]
pub struct Page {
    /// Events passing the filter (`X-Total-Count`).
    pub total: u64,
    /// The page's events.
    pub rows: Vec<Event>,
}

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A sealed segment could not be read.
    #[error("cannot read segment {file}: {reason}")]
    Segment {
        /// The file.
        file: String,
        /// What went wrong.
        reason: String,
    },
    /// The SegmentReader threads are gone (shutdown).
    #[error("the query readers have stopped")]
    ReadersStopped,
}

/// The planner actor: answers cached pages itself and forwards the rest to the readers.
/// Cloning one gives another planner over the same catalog, cache and readers (one per HTTP
/// worker thread, so that pages answered from memory use every worker).
#[derive(Clone)]
pub struct QueryPlanner {
    pages: std::sync::Arc<PagePlanner>,
    readers: Addr<SegmentReader>,
    reader_depth: IntGauge,
    mailbox_capacity: usize,
}

impl QueryPlanner {
    /// A planner over `pages` that sends pages needing files to `readers` (whose mailbox
    /// depth is `reader_depth`).
    pub fn new(pages: std::sync::Arc<PagePlanner>, readers: Addr<SegmentReader>, reader_depth: IntGauge, mailbox_capacity: usize) -> QueryPlanner {
        QueryPlanner { pages, readers, reader_depth, mailbox_capacity }
    }
}

impl Actor for QueryPlanner {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
    }
}

/// Reports a page's cost on the query span.
fn record_cost(span: &tracing::Span, page: &Page, cost: PageCost) {
    span.record("query.segments_planned", cost.planned as i64);
    span.record("query.segments_opened", cost.opened as i64);
    span.record("query.total", page.total as i64);
}

impl Handler<Traced<RunQuery>> for QueryPlanner {
    type Result = ResponseFuture<Result<Page, QueryError>>;

    fn handle(&mut self, traced: Traced<RunQuery>, _: &mut Self::Context) -> Self::Result {
        let span = hop_span!(
            traced,
            "QueryPlanner handle RunQuery",
            query.segments_planned = tracing::field::Empty,
            query.segments_opened = tracing::field::Empty,
            query.total = tracing::field::Empty,
            query.read_from_disk = false
        );
        let entered = span.enter();
        let cached = match self.pages.run(&traced.msg, Reads::CachedOnly) {
            Ok(cached) => cached,
            Err(e) => return Box::pin(ready(Err(e))),
        };
        if let Some((page, cost)) = cached {
            record_cost(&span, &page, cost);
            drop(entered);
            return Box::pin(ready(Ok(page)));
        }
        span.record("query.read_from_disk", true);
        let read = self.readers.send(Traced::new(ReadPage(traced.msg), &self.reader_depth));
        drop(entered);
        Box::pin(async move {
            let (page, cost) = read.await.map_err(|_| QueryError::ReadersStopped)??;
            record_cost(&span, &page, cost);
            Ok(page)
        })
    }
}
