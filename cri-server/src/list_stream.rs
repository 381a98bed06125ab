//! The `Stream*` RPCs of Kubernetes 1.36 (KEP-5825, feature gate
//! CRIListStreaming): the same answers as their `List*` twins, cut into
//! messages so a node with many pods never meets gRPC's message size limit.
//!
//! Messages are cut by encoded size, not by count: a single pod may carry
//! up to 256 KiB of annotations, so a fixed count could still overflow.
//! Every message holds at least one item, each item appears once, and the
//! stream ends after the last (none at all when there are no items).

use prost::Message;
use std::pin::Pin;
use tokio_stream::Stream;
use tonic::Status;

/// A server stream of CRI list messages.
pub type ListStream<R> = Pin<Box<dyn Stream<Item = Result<R, Status>> + Send>>;

/// The encoded size a message aims under: well below the 4 MiB default
/// receive limit of gRPC clients, and large enough that kubelet reads a
/// typical node in one or two messages.
pub const MESSAGE_BYTES: usize = 1 << 20;

/// `items` cut into messages of at most [`MESSAGE_BYTES`] (or one item, if
/// one item is larger), each made by `wrap`.
///
/// # Examples
///
/// ```
/// use cri_api::v1::{Container, StreamContainersResponse};
/// use cri_server::list_stream::batches;
///
/// let items = vec![Container::default(); 3];
/// let batches = batches(items, 1 << 20);
/// assert_eq!(batches.len(), 1);
/// assert_eq!(batches[0].len(), 3);
/// ```
pub fn batches<T: Message>(items: Vec<T>, limit: usize) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    let (mut batch, mut size) = (Vec::new(), 0usize);
    for item in items {
        // The repeated field's tag and length prefix, beside the item.
        let len = item.encoded_len() + 1 + prost::length_delimiter_len(item.encoded_len());
        if !batch.is_empty() && size + len > limit {
            out.push(std::mem::take(&mut batch));
            size = 0;
        }
        size += len;
        batch.push(item);
    }
    if !batch.is_empty() {
        out.push(batch);
    }
    out
}

/// A stream of `items` in batches, each wrapped into its response message.
pub fn stream<T, R>(items: Vec<T>, wrap: fn(Vec<T>) -> R) -> ListStream<R>
where
    T: Message + Send + 'static,
    R: Send + 'static,
{
    let messages = batches(items, MESSAGE_BYTES)
        .into_iter()
        .map(move |b| Ok(wrap(b)));
    Box::pin(tokio_stream::iter(messages))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cri_api::v1 as cri;

    fn container(annotation_bytes: usize) -> cri::Container {
        cri::Container {
            id: "c".into(),
            annotations: [("a".to_string(), "x".repeat(annotation_bytes))].into(),
            ..Default::default()
        }
    }

    #[test]
    fn every_item_once_in_order_and_no_batch_over_the_limit() {
        let items: Vec<_> = (0..100).map(|i| container(i * 100)).collect();
        let ids: Vec<_> = items.iter().map(|c| c.annotations["a"].len()).collect();
        let batches = batches(items, 64 << 10);
        assert!(batches.len() > 1);
        let mut seen = Vec::new();
        for batch in &batches {
            assert!(!batch.is_empty());
            let encoded = cri::StreamContainersResponse {
                containers: batch.clone(),
            }
            .encoded_len();
            assert!(encoded <= 64 << 10, "{encoded}");
            seen.extend(batch.iter().map(|c| c.annotations["a"].len()));
        }
        assert_eq!(seen, ids);
    }

    #[test]
    fn an_item_over_the_limit_goes_alone() {
        let batches = batches(vec![container(10), container(100_000), container(10)], 1000);
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 1]);
    }

    #[test]
    fn nothing_to_send_is_no_message() {
        assert!(batches(Vec::<cri::Container>::new(), 1000).is_empty());
    }
}
