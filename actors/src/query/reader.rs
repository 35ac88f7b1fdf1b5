//! SegmentReader: plans the pages that need segment files opened, on threads of their own.
//!
//! A `SyncArbiter` of `--query-threads` readers. Each reader reads and parses the files a page
//! needs into the shared segment cache, so the QueryPlanner answers the next page over the same
//! segments from memory.

use std::sync::Arc;

use actix::prelude::*;

use super::pages::{PageCost, PagePlanner, Reads};
use super::{record_cost, Page, QueryError, RunQuery};
use crate::hop_span;
use crate::telemetry::Traced;

/// Plan and read a page, opening segment files as needed.
#[derive(Message, Debug)]
#[rtype(result = "Result<(Page, PageCost), QueryError>")]
pub struct ReadPage(pub RunQuery);

/// One reader thread's actor.
pub struct SegmentReader {
    pages: Arc<PagePlanner>,
}

impl SegmentReader {
    /// A reader over the shared page planner.
    pub fn new(pages: Arc<PagePlanner>) -> SegmentReader {
        SegmentReader { pages }
    }
}

impl Actor for SegmentReader {
    type Context = SyncContext<Self>;

    /// Reader threads run at a lower priority than the write path: under contention for the
    /// cores, queries that read files slow down before reprices do.
    fn started(&mut self, _: &mut Self::Context) {
        crate::system::lower_thread_priority();
    }
}

impl Handler<Traced<ReadPage>> for SegmentReader {
    type Result = Result<(Page, PageCost), QueryError>;

    fn handle(&mut self, traced: Traced<ReadPage>, _: &mut Self::Context) -> Self::Result {
        let span = hop_span!(
            traced,
            "SegmentReader handle ReadPage",
            query.segments_planned = tracing::field::Empty,
            query.segments_opened = tracing::field::Empty,
            query.total = tracing::field::Empty
        );
        let _entered = span.enter();
        let (page, cost) = self.pages.run(&traced.msg.0, Reads::FromDisk)?.expect("reads from disk always plan a page");
        record_cost(&span, &page, cost);
        Ok((page, cost))
    }
}
