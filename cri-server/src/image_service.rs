//! The CRI ImageService, over the image store.

use crate::daemon::Daemon;
use crate::error::{Error, Result};
use k8s_cri::v1 as cri;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Implements `runtime.v1.ImageService`.
pub struct ImageService {
    daemon: Arc<Daemon>,
}

impl ImageService {
    /// A service over the daemon's image store.
    pub fn new(daemon: Arc<Daemon>) -> Self {
        ImageService { daemon }
    }
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

fn image_name(spec: Option<&cri::ImageSpec>, rpc: &str) -> Result<String> {
    spec.map(|s| s.image.clone())
        .filter(|i| !i.is_empty())
        .ok_or_else(|| Error::InvalidArgument(format!("{rpc}: image.image is required")))
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
        let wanted = request
            .into_inner()
            .filter
            .and_then(|f| f.image)
            .map(|i| i.image)
            .filter(|i| !i.is_empty());
        let images = match wanted {
            Some(reference) => self
                .daemon
                .images
                .status(&reference)
                .map_err(Error::from)?
                .iter()
                .map(cri_image)
                .collect(),
            None => self.daemon.images.list().iter().map(cri_image).collect(),
        };
        Ok(Response::new(cri::ListImagesResponse { images }))
    }

    async fn image_status(
        &self,
        request: Request<cri::ImageStatusRequest>,
    ) -> Result<Response<cri::ImageStatusResponse>, Status> {
        let request = request.into_inner();
        let name = image_name(request.image.as_ref(), "ImageStatus")?;
        // An unknown image is an empty answer, not an error (CRI).
        let image = self.daemon.images.status(&name).map_err(Error::from)?;
        let mut info = std::collections::HashMap::new();
        if request.verbose {
            if let Some(image) = &image {
                info.insert("info".to_string(), image.config_json.clone());
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
        let name = image_name(request.image.as_ref(), "PullImage")?;
        let started = std::time::Instant::now();
        let image = self
            .daemon
            .images
            .pull(&name, credentials(request.auth))
            .await
            .map_err(Error::from)?;
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
        self.daemon
            .images
            .remove(&name)
            .await
            .map_err(Error::from)?;
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
}
