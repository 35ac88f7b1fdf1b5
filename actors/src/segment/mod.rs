//! FileSegment: the actor in front of the segment files (R7, R8).
//!
//! It takes sequenced events and window seals from the Sequencer, in order, and hands them to
//! the [`writer::SegmentWriter`] thread, which does the blocking writes and the group-commit
//! fsync off the actor threads. The request is released by the writer once its event is
//! durable.

pub mod checkpoint;
pub mod data_dir;
pub mod format;
pub mod recovery;
pub mod sealer;
pub mod writer;

use std::sync::mpsc::Sender;

use actix::prelude::*;
use prometheus::IntGauge;

use crate::error::ActorError;
use crate::event::Event;
use crate::hop_span;
use crate::telemetry::{span_context, Traced};
use crate::time::Nanos;
use writer::{Waiter, WriteJob};

/// Store a sequenced event in the window the Sequencer chose.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Append {
    /// The event.
    pub event: Event,
    /// Its window.
    pub window_start: Nanos,
    /// Released once it is durable.
    pub waiter: Waiter,
}

/// Seal the window starting at `window_start`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SealWindow {
    /// The window.
    pub window_start: Nanos,
}

/// The FileSegment actor.
pub struct FileSegment {
    jobs: Sender<WriteJob>,
    writer_depth: IntGauge,
}

impl FileSegment {
    /// An actor feeding the writer thread through `jobs`; `writer_depth` counts queued jobs.
    pub fn new(jobs: Sender<WriteJob>, writer_depth: IntGauge) -> FileSegment {
        FileSegment { jobs, writer_depth }
    }

    fn submit(&self, job: WriteJob) -> Result<(), WriteJob> {
        self.writer_depth.inc();
        self.jobs.send(job).map_err(|rejected| {
            self.writer_depth.dec();
            rejected.0
        })
    }
}

impl Actor for FileSegment {
    type Context = Context<Self>;
}

impl Handler<Traced<Append>> for FileSegment {
    type Result = ();

    fn handle(&mut self, traced: Traced<Append>, _: &mut Self::Context) {
        // The span closes here, on the actor thread, with its ancestors: the writer thread keeps
        // only its identity for the links, so closing spans never delays a commit.
        let link = span_context(&hop_span!(traced, "FileSegment handle Append"));
        let Append { event, window_start, waiter } = traced.msg;
        if let Err(rejected) = self.submit(WriteJob::Append { event, window_start, waiter, link }) {
            if let WriteJob::Append { waiter, .. } = rejected {
                let _ = waiter.send(Err(ActorError::ShuttingDown));
            }
        }
    }
}

impl Handler<Traced<SealWindow>> for FileSegment {
    type Result = ();

    fn handle(&mut self, traced: Traced<SealWindow>, _: &mut Self::Context) {
        let _ = self.submit(WriteJob::Seal { window_start: traced.msg.window_start });
    }
}
