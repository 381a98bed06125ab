//! The CRI ImageService: pulling, listing and removing images.
//!
//! Every RPC answers `Unimplemented` until the image store is wired in.

use k8s_cri::v1 as cri;
use tonic::{Request, Response, Status};

/// Implements `runtime.v1.ImageService`.
#[derive(Default)]
pub struct ImageService;

fn unimplemented(rpc: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not implemented yet"))
}

#[tonic::async_trait]
impl cri::image_service_server::ImageService for ImageService {
    async fn list_images(
        &self,
        _r: Request<cri::ListImagesRequest>,
    ) -> Result<Response<cri::ListImagesResponse>, Status> {
        Err(unimplemented("ListImages"))
    }

    async fn image_status(
        &self,
        _r: Request<cri::ImageStatusRequest>,
    ) -> Result<Response<cri::ImageStatusResponse>, Status> {
        Err(unimplemented("ImageStatus"))
    }

    async fn pull_image(
        &self,
        _r: Request<cri::PullImageRequest>,
    ) -> Result<Response<cri::PullImageResponse>, Status> {
        Err(unimplemented("PullImage"))
    }

    async fn remove_image(
        &self,
        _r: Request<cri::RemoveImageRequest>,
    ) -> Result<Response<cri::RemoveImageResponse>, Status> {
        Err(unimplemented("RemoveImage"))
    }

    async fn image_fs_info(
        &self,
        _r: Request<cri::ImageFsInfoRequest>,
    ) -> Result<Response<cri::ImageFsInfoResponse>, Status> {
        Err(unimplemented("ImageFsInfo"))
    }
}
