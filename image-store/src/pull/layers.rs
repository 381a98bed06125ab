//! An image's layers, fetched in parallel: up to
//! [`PullOptions::max_concurrent_downloads`](crate::PullOptions) downloads
//! at once, each unpacked while it arrives (`stream.rs`), a layer the store
//! knows skipped before any byte of it is fetched, and a layer another pull
//! is fetching waited for rather than fetched twice (`crate::flights`).
//!
//! The first failure stops the other layers of the pull, and the pull
//! returns only once each of them is over and has removed its staging
//! directory: a failed pull leaves complete, verified layers at most.

use super::report::{Report, REPORT_EVERY};
use super::{declared_within, Failure, Fetch, Pull};
use crate::digest::Digest;
use crate::distribution::Session;
use crate::error::Refusal;
use crate::flights::Claim;
use crate::layer_store::ChainId;
use crate::layer_unpack::Compression;
use crate::oci::{Descriptor, MAX_LAYER_SIZE};
use futures_util::stream::{FuturesUnordered, StreamExt};
use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::time::Instant;
use tokio::sync::{watch, Semaphore};

/// One layer of the image: what its manifest and config say of it.
pub(super) struct LayerSpec<'m> {
    /// The manifest's descriptor: the blob's digest, size, media type.
    pub descriptor: &'m Descriptor,
    /// The config's diff id for it.
    pub diff_id: &'m Digest,
    /// Its chain id: the directory it is unpacked to.
    pub chain_id: &'m ChainId,
    /// From its media type.
    pub compression: Compression,
}

impl LayerSpec<'_> {
    /// `layer sha256:…`, for messages.
    pub(super) fn object(&self) -> String {
        format!("layer {}", self.descriptor.digest)
    }
}

/// The signal that stops a pull's other layers once one failed.
pub(super) struct Abort(watch::Receiver<bool>);

impl Abort {
    /// `work`'s output, or [`Failure::Aborted`] as soon as the pull is
    /// stopped (`work` is then dropped).
    pub(super) async fn until<F: Future>(&self, work: F) -> Fetch<F::Output> {
        let mut stopped = self.0.clone();
        tokio::select! {
            biased;
            _ = stopped.wait_for(|stop| *stop) => Err(Failure::Aborted),
            output = work => Ok(output),
        }
    }
}

impl Pull<'_> {
    /// Checks every layer's media type and declared size before anything
    /// is fetched, then makes sure each is unpacked, several at a time.
    pub(super) async fn layers(
        &self,
        session: &Session,
        descriptors: &[Descriptor],
        diff_ids: &[Digest],
        chain: &[ChainId],
    ) -> Fetch<()> {
        let mut specs = Vec::with_capacity(descriptors.len());
        for ((descriptor, diff_id), chain_id) in descriptors.iter().zip(diff_ids).zip(chain) {
            let object = format!("layer {}", descriptor.digest);
            let compression =
                Compression::from_media_type(&descriptor.media_type).ok_or_else(|| {
                    let media_type = descriptor.media_type.clone();
                    self.refuse(&object, Refusal::LayerMediaType(media_type))
                })?;
            declared_within(descriptor, MAX_LAYER_SIZE).map_err(|c| self.refuse(&object, c))?;
            specs.push(LayerSpec {
                descriptor,
                diff_id,
                chain_id,
                compression,
            });
        }
        let permits = Semaphore::new(self.options.max_concurrent_downloads());
        let (stop, stopped) = watch::channel(false);
        let abort = Abort(stopped);
        let report = Report::new(&specs);
        let (reported, slots, stopping) = (&report, &permits, &abort);
        let mut work: FuturesUnordered<_> = specs
            .iter()
            .enumerate()
            .map(|(i, spec)| async move {
                let done = self
                    .layer(session, spec, slots, stopping, reported.done(i))
                    .await;
                reported.complete(i);
                done
            })
            .collect();
        let mut first = None;
        let mut ticks =
            tokio::time::interval_at(tokio::time::Instant::now() + REPORT_EVERY, REPORT_EVERY);
        // Every layer runs to its end, even after a failure: an aborted
        // one returns only once its job removed what it made.
        loop {
            let done = tokio::select! {
                done = work.next() => done,
                _ = ticks.tick() => {
                    report.log(self.image);
                    continue;
                }
            };
            let Some(done) = done else { break };
            if let Err(failure) = done {
                if first.is_none() {
                    stop.send_replace(true);
                    first = Some(failure);
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Makes sure one layer is unpacked and its blob verified against it:
    /// skipped when known, waited for when another pull fetches it, else
    /// fetched once a download slot is free.
    async fn layer(
        &self,
        session: &Session,
        spec: &LayerSpec<'_>,
        permits: &Semaphore,
        abort: &Abort,
        received: &AtomicU64,
    ) -> Fetch<()> {
        let started = Instant::now();
        let digest = &spec.descriptor.digest;
        let mut join = true;
        loop {
            match self.flights.claim(spec.chain_id, digest, join) {
                Claim::Known => {
                    if self.unpacked(spec.chain_id).await? {
                        tracing::debug!(image = %self.image, layer = %digest, "layer present, not fetched");
                        return Ok(());
                    }
                    self.flights.forget(spec.chain_id, digest);
                }
                Claim::Join(flight) => {
                    tracing::debug!(image = %self.image, layer = %digest, "waiting for another pull's download");
                    match abort.until(flight.outcome()).await? {
                        Some(theirs) if theirs == *digest => {
                            tracing::debug!(image = %self.image, layer = %digest, elapsed_ms = ms(started), "layer fetched by another pull");
                            return Ok(());
                        }
                        // Their blob, not ours: ours is checked next.
                        Some(_) => {}
                        // Their failure may be theirs alone: ours to try.
                        None => join = false,
                    }
                }
                Claim::Lead(lead) => {
                    let unpack = !self.unpacked(spec.chain_id).await?;
                    let _slot = abort
                        .until(permits.acquire())
                        .await?
                        .map_err(|_| Failure::Aborted)?;
                    let fetching = Instant::now();
                    let bytes = self.stream(session, spec, unpack, abort, received).await?;
                    lead.succeed(digest.clone());
                    self.count(bytes);
                    tracing::debug!(
                        image = %self.image, layer = %digest, bytes, unpack,
                        queued_ms = ms(started).saturating_sub(ms(fetching)),
                        fetch_unpack_ms = ms(fetching),
                        "layer fetched and checked"
                    );
                    return Ok(());
                }
            }
        }
    }

    /// Whether the chain id's directory is there (a stat, on a blocking
    /// thread).
    async fn unpacked(&self, chain_id: &ChainId) -> Fetch<bool> {
        let (layers, chain_id) = (self.layers.clone(), chain_id.clone());
        Ok(super::blocking(move || Ok(layers.contains(&chain_id))).await?)
    }
}

/// Milliseconds since `since`.
pub(super) fn ms(since: Instant) -> u64 {
    since.elapsed().as_millis() as u64
}
