//! The CRI ImageService, over the image store.

use crate::daemon::Daemon;
use crate::error::{Error, Result};
use crate::list_stream::{self, ListStream};
use cri_api::v1 as cri;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Implements `runtime.v1.ImageService`.
pub struct ImageService {
    daemon: Arc<Daemon>,
}

impl ImageService {
    /// The images ListImages and StreamImages answer with.
    fn images(&self, filter: Option<cri::ImageFilter>) -> Result<Vec<cri::Image>, Status> {
        let wanted = filter
            .and_then(|f| f.image)
            .map(|i| i.image)
            .filter(|i| !i.is_empty());
        Ok(match wanted {
            Some(reference) => self.find(&reference)?.iter().map(cri_image).collect(),
            None => self.daemon.images.list().iter().map(cri_image).collect(),
        })
    }

    /// A service over the daemon's image store.
    pub fn new(daemon: Arc<Daemon>) -> Self {
        ImageService { daemon }
    }

    /// The image `name` names. The store knows references and full ids;
    /// crictl also hands back the short ids it prints, which (as containerd
    /// does) resolve as an unambiguous id prefix when no reference matches.
    fn find(&self, name: &str) -> Result<Option<image_store::Image>> {
        if let Some(image) = self.daemon.images.status(name)? {
            return Ok(Some(image));
        }
        let Some(prefix) = id_prefix(name) else {
            return Ok(None);
        };
        let mut matching = self
            .daemon
            .images
            .list()
            .into_iter()
            .filter(|i| i.id.starts_with(&prefix));
        match (matching.next(), matching.next()) {
            (Some(image), None) => Ok(Some(image)),
            (Some(a), Some(b)) => Err(Error::InvalidArgument(format!(
                "image id prefix {name:?} is ambiguous: {} and {} match",
                a.id, b.id
            ))),
            _ => Ok(None),
        }
    }
}

/// `sha256:<hex>` when `name` could be a shortened image id, with or without
/// the algorithm.
fn id_prefix(name: &str) -> Option<String> {
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    let is_hex = hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    (!hex.is_empty() && hex.len() <= 64 && is_hex).then(|| format!("sha256:{hex}"))
}

fn cri_image(image: &image_store::Image) -> cri::Image {
    cri::Image {
        id: image.id.clone(),
        repo_tags: image.repo_tags.clone(),
        repo_digests: image.repo_digests.clone(),
        size: image.size,
        uid: image.uid.map(|value| cri::Int64Value { value }),
        username: image.username.clone(),
        spec: Some(cri::ImageSpec {
            image: image.id.clone(),
            ..Default::default()
        }),
        pinned: false,
    }
}

/// What the signature policy said at each pull of `image` (one entry per
/// reference; `[]` when no policy checked it), as JSON like every verbose
/// info value.
fn signatures_info(image: &image_store::Image) -> String {
    serde_json::to_string(&image.evidence).unwrap_or_else(|_| "[]".to_string())
}

fn image_name(spec: Option<&cri::ImageSpec>, rpc: &str) -> Result<String> {
    spec.map(|s| s.image.clone())
        .filter(|i| !i.is_empty())
        .ok_or_else(|| Error::InvalidArgument(format!("{rpc}: image.image is required")))
}

/// What to pull for `name`: with both a tag and a digest the digest is what
/// is fetched, so the tag is dropped (as containerd's CRI does) rather than
/// recorded on content the registry's tag may no longer point at.
fn pull_name(name: &str) -> Result<String> {
    let reference: image_store::ImageReference = name.parse().map_err(image_store::Error::from)?;
    Ok(match (reference.tag(), reference.digest()) {
        (Some(_), Some(digest)) => reference.repo_digest(digest),
        _ => name.to_string(),
    })
}

fn credentials(auth: Option<cri::AuthConfig>) -> Option<image_store::Credentials> {
    auth.map(|a| image_store::Credentials {
        username: a.username,
        password: a.password,
        auth: a.auth,
        identity_token: a.identity_token,
        registry_token: a.registry_token,
    })
}

#[tonic::async_trait]
impl cri::image_service_server::ImageService for ImageService {
    async fn list_images(
        &self,
        request: Request<cri::ListImagesRequest>,
    ) -> Result<Response<cri::ListImagesResponse>, Status> {
        let images = self.images(request.into_inner().filter)?;
        Ok(Response::new(cri::ListImagesResponse { images }))
    }

    async fn image_status(
        &self,
        request: Request<cri::ImageStatusRequest>,
    ) -> Result<Response<cri::ImageStatusResponse>, Status> {
        let request = request.into_inner();
        let name = image_name(request.image.as_ref(), "ImageStatus")?;
        // An unknown image is an empty answer, not an error (CRI).
        let image = self.find(&name)?;
        let mut info = std::collections::HashMap::new();
        if request.verbose {
            if let Some(image) = &image {
                info.insert("info".to_string(), image.config_json.clone());
                info.insert("signatures".to_string(), signatures_info(image));
            }
        }
        Ok(Response::new(cri::ImageStatusResponse {
            image: image.as_ref().map(cri_image),
            info,
        }))
    }

    async fn pull_image(
        &self,
        request: Request<cri::PullImageRequest>,
    ) -> Result<Response<cri::PullImageResponse>, Status> {
        let request = request.into_inner();
        let name = pull_name(&image_name(request.image.as_ref(), "PullImage")?)?;
        let started = std::time::Instant::now();
        let daemon = Arc::clone(&self.daemon);
        let image_name = name.clone();
        // To its end whatever the client does: a pull cut short halfway
        // would be repeated from scratch by kubelet's retry.
        let image = crate::runtime_service::run_to_end(async move {
            crate::fault::point("pull_image.started");
            let in_flight = daemon.metrics.pull_in_flight();
            let pulled = daemon
                .images
                .pull(&image_name, credentials(request.auth))
                .await;
            drop(in_flight);
            daemon.metrics.image_pull(pulled.is_ok(), started.elapsed());
            // A pull is a burst the idle daemon never repeats: give back
            // what it left in the allocator.
            crate::memory::release_free().await;
            Ok(pulled?)
        })
        .await?;
        tracing::info!(image = %name, id = %image.id, elapsed = ?started.elapsed(), "pulled");
        Ok(Response::new(cri::PullImageResponse {
            image_ref: image.id,
        }))
    }

    async fn remove_image(
        &self,
        request: Request<cri::RemoveImageRequest>,
    ) -> Result<Response<cri::RemoveImageResponse>, Status> {
        let name = image_name(request.get_ref().image.as_ref(), "RemoveImage")?;
        // Absent is Ok (CRI): removal is idempotent.
        if let Some(image) = self.find(&name)? {
            self.daemon
                .images
                .remove(&image.id)
                .await
                .map_err(Error::from)?;
        }
        Ok(Response::new(cri::RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _request: Request<cri::ImageFsInfoRequest>,
    ) -> Result<Response<cri::ImageFsInfoResponse>, Status> {
        let usage = self.daemon.images.fs_info().await.map_err(Error::from)?;
        let now = sandbox_core::timestamp::now();
        let fs = cri::FilesystemUsage {
            timestamp: now,
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: usage.mountpoint.to_string_lossy().into_owned(),
            }),
            used_bytes: Some(cri::UInt64Value {
                value: usage.used_bytes,
            }),
            inodes_used: Some(cri::UInt64Value {
                value: usage.inodes_used,
            }),
        };
        Ok(Response::new(cri::ImageFsInfoResponse {
            image_filesystems: vec![fs.clone()],
            container_filesystems: vec![fs],
        }))
    }

    type StreamImagesStream = ListStream<cri::StreamImagesResponse>;

    async fn stream_images(
        &self,
        request: Request<cri::StreamImagesRequest>,
    ) -> Result<Response<Self::StreamImagesStream>, Status> {
        let images = self.images(request.into_inner().filter)?;
        Ok(Response::new(list_stream::stream(images, |images| {
            cri::StreamImagesResponse { images }
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pull_by_tag_and_digest_drops_the_tag() {
        let digest = format!("sha256:{}", "0".repeat(64));
        assert_eq!(
            pull_name(&format!("example.com/app:v1@{digest}")).unwrap(),
            format!("example.com/app@{digest}")
        );
        for kept in [
            "example.com/app:v1",
            "busybox",
            &format!("busybox@{digest}"),
        ] {
            assert_eq!(pull_name(kept).unwrap(), kept);
        }
        assert!(matches!(
            pull_name("Bad Reference"),
            Err(Error::Image(image_store::Error::Reference(_)))
        ));
    }

    #[test]
    fn short_ids_with_or_without_the_algorithm_are_id_prefixes() {
        assert_eq!(
            id_prefix("d83910303d06b").as_deref(),
            Some("sha256:d83910303d06b")
        );
        assert_eq!(
            id_prefix("sha256:d83910303d06b").as_deref(),
            Some("sha256:d83910303d06b")
        );
        let full = "a".repeat(64);
        assert_eq!(id_prefix(&full), Some(format!("sha256:{full}")));
        for not_an_id in [
            "",
            "sha256:",
            "busybox",
            "D839",
            &"a".repeat(65),
            "sha256:x",
        ] {
            assert_eq!(id_prefix(not_an_id), None, "{not_an_id:?}");
        }
    }
}
