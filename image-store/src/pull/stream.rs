//! The async half of a layer download: the body is read from the registry
//! under the pull's stall watch and capped at the descriptor's size, and
//! each chunk is handed to the layer's blocking job
//! (`crate::layer_stream`) as it arrives. A full channel holds the reading
//! back, so a slow disk slows the download instead of filling memory.

use super::layers::{Abort, LayerSpec};
use super::{same_size, Failure, Fetch, Pull};
use crate::distribution::Session;
use crate::error::{Error, Refusal};
use crate::layer_stream::{Chunk, LayerFault, LayerJob, CHANNEL_CHUNKS};
use reqwest::Response;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

/// How the download side ended when it did not fail.
enum Pumped {
    /// The whole body, of the declared size, went to the job: its size.
    Whole(u64),
    /// The job stopped reading (it failed on its own): its outcome says
    /// why.
    JobStopped,
}

impl Pull<'_> {
    /// Downloads one layer blob into a job that checks it and unpacks it
    /// (with `unpack`) or only hashes it, as it arrives; returns the blob's
    /// size once the layer is checked and in place.
    pub(super) async fn stream(
        &self,
        session: &Session,
        spec: &LayerSpec<'_>,
        unpack: bool,
        abort: &Abort,
        received: &AtomicU64,
    ) -> Fetch<u64> {
        let declared = spec.descriptor.size;
        let response = abort.until(session.blob(&spec.descriptor.digest)).await??;
        if response.content_length().is_some_and(|n| n > declared) {
            return Err(self.refuse(spec.object(), Refusal::OverDeclared { declared }));
        }
        let job = LayerJob {
            digest: spec.descriptor.digest.clone(),
            diff_id: spec.diff_id.clone(),
            compression: spec.compression,
            unpack_into: unpack.then(|| spec.chain_id.clone()),
            layers: self.layers.clone(),
        };
        let (sender, receiver) = mpsc::channel(CHANNEL_CHUNKS);
        let job = tokio::task::spawn_blocking(move || job.run(receiver));
        let pumped = self
            .pump(session, response, sender, (spec, received), abort)
            .await;
        // Awaited even when the pull is stopping: the job removes its
        // staging directory before it returns.
        let outcome = job.await.map_err(|_| Error::Task("unpacking a layer"))?;
        self.judge(spec, pumped, outcome)
    }

    /// Sends the body to the job chunk by chunk, then [`Chunk::End`] once
    /// it is whole and of the declared size. An error (the download's, or
    /// a refusal) drops the sender without `End`: the job discards what it
    /// made.
    async fn pump(
        &self,
        session: &Session,
        mut response: Response,
        sender: mpsc::Sender<Chunk>,
        (spec, received): (&LayerSpec<'_>, &AtomicU64),
        abort: &Abort,
    ) -> Fetch<Pumped> {
        let url = session.blob_url(&spec.descriptor.digest);
        let declared = spec.descriptor.size;
        let mut size = 0u64;
        while let Some(chunk) = abort
            .until(session.next_chunk(&mut response, &url))
            .await??
        {
            size = size.saturating_add(chunk.len() as u64);
            received.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            if size > declared {
                return Err(self.refuse(spec.object(), Refusal::OverDeclared { declared }));
            }
            if abort.until(sender.send(Chunk::Data(chunk))).await?.is_err() {
                return Ok(Pumped::JobStopped);
            }
        }
        same_size(spec.descriptor, size).map_err(|c| self.refuse(spec.object(), c))?;
        match sender.send(Chunk::End).await {
            Ok(()) => Ok(Pumped::Whole(size)),
            Err(_) => Ok(Pumped::JobStopped),
        }
    }

    /// The layer's result from both halves: the job's own fault first (it
    /// is the more precise), then the download's.
    fn judge(
        &self,
        spec: &LayerSpec<'_>,
        pumped: Fetch<Pumped>,
        outcome: Result<(), LayerFault>,
    ) -> Fetch<u64> {
        let object = spec.object();
        let fault = match (pumped, outcome) {
            (Ok(Pumped::Whole(size)), Ok(())) => return Ok(size),
            (Err(failure), Ok(()) | Err(LayerFault::Aborted)) => return Err(failure),
            (_, Err(fault)) => fault,
            (Ok(Pumped::JobStopped), Ok(())) => LayerFault::Aborted,
        };
        Err(match fault {
            LayerFault::Digest { actual } => {
                Failure::Remote(format!("{object}: digest mismatch, got {actual}"))
            }
            LayerFault::DiffId { expected, actual } => {
                self.refuse(object, Refusal::DiffId { expected, actual })
            }
            LayerFault::Unpack(source) => Failure::Local(Error::Unpack {
                image: self.image.to_string(),
                digest: spec.descriptor.digest.to_string(),
                source,
            }),
            LayerFault::Store(e) => Failure::Local(e),
            LayerFault::Aborted => Failure::Local(Error::Task("streaming a layer")),
        })
    }
}
