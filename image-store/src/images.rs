//! [`ContainerImages`]: what a container runtime asks of its image store, as
//! a trait, so that the runtime's verbs can be tested with a double instead
//! of a store on disk, a registry and overlay mounts.
//!
//! [`ImageStore`] is the real thing. With the `mock` feature,
//! `MockContainerImages` (mockall) stands in for it in other crates' tests.

use crate::{Credentials, FsUsage, Image, ImageStore, Result, RootFs, RootFsIdmap};
use async_trait::async_trait;

/// Images pulled, looked up and removed, and the root filesystems of the
/// containers made from them.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait ContainerImages: Send + Sync {
    /// Pulls `reference` (see [`ImageStore::pull`]).
    async fn pull(&self, reference: &str, credentials: Option<Credentials>) -> Result<Image>;
    /// The image a reference or id names, if it is stored.
    fn status(&self, reference_or_id: &str) -> Result<Option<Image>>;
    /// Every stored image.
    fn list(&self) -> Vec<Image>;
    /// Removes an image (refused while a container uses it).
    async fn remove(&self, reference_or_id: &str) -> Result<()>;
    /// What the store uses on its filesystem.
    async fn fs_info(&self) -> Result<FsUsage>;
    /// Bytes pulled from registries so far, for metrics.
    fn bytes_pulled(&self) -> u64;
    /// Mounts container `container_id`'s root filesystem from `image_id`.
    async fn create_rootfs(
        &self,
        image_id: &str,
        container_id: &str,
        readonly: bool,
    ) -> Result<RootFs>;
    /// [`ContainerImages::create_rootfs`] for a container in a user
    /// namespace, its layers shown through `idmap`'s mapping.
    async fn create_rootfs_mapped(
        &self,
        image_id: &str,
        container_id: &str,
        readonly: bool,
        idmap: RootFsIdmap,
    ) -> Result<RootFs>;
    /// Unmounts and removes container `container_id`'s root filesystem;
    /// nothing to remove is not an error.
    async fn remove_rootfs(&self, container_id: &str) -> Result<()>;
    /// The ids of every container that has a root filesystem.
    async fn root_filesystems(&self) -> Result<Vec<String>>;
    /// Bytes and inodes of container `container_id`'s writable layer.
    async fn writable_layer_usage(&self, container_id: &str) -> Result<Option<(u64, u64)>>;
    /// [`ContainerImages::writable_layer_usage`] of each of `ids`, in order,
    /// in one blocking pass; `None` for one without a root filesystem.
    async fn writable_layer_usages(&self, ids: Vec<String>) -> Result<Vec<Option<(u64, u64)>>>;
}

#[async_trait]
impl ContainerImages for ImageStore {
    async fn pull(&self, reference: &str, credentials: Option<Credentials>) -> Result<Image> {
        ImageStore::pull(self, reference, credentials).await
    }
    fn status(&self, reference_or_id: &str) -> Result<Option<Image>> {
        ImageStore::status(self, reference_or_id)
    }
    fn list(&self) -> Vec<Image> {
        ImageStore::list(self)
    }
    async fn remove(&self, reference_or_id: &str) -> Result<()> {
        ImageStore::remove(self, reference_or_id).await
    }
    async fn fs_info(&self) -> Result<FsUsage> {
        ImageStore::fs_info(self).await
    }
    fn bytes_pulled(&self) -> u64 {
        ImageStore::bytes_pulled(self)
    }
    async fn create_rootfs(
        &self,
        image_id: &str,
        container_id: &str,
        readonly: bool,
    ) -> Result<RootFs> {
        ImageStore::create_rootfs(self, image_id, container_id, readonly).await
    }
    async fn create_rootfs_mapped(
        &self,
        image_id: &str,
        container_id: &str,
        readonly: bool,
        idmap: RootFsIdmap,
    ) -> Result<RootFs> {
        ImageStore::create_rootfs_mapped(self, image_id, container_id, readonly, Some(idmap)).await
    }
    async fn remove_rootfs(&self, container_id: &str) -> Result<()> {
        ImageStore::remove_rootfs(self, container_id).await
    }
    async fn root_filesystems(&self) -> Result<Vec<String>> {
        ImageStore::root_filesystems(self).await
    }
    async fn writable_layer_usage(&self, container_id: &str) -> Result<Option<(u64, u64)>> {
        ImageStore::writable_layer_usage(self, container_id).await
    }
    async fn writable_layer_usages(&self, ids: Vec<String>) -> Result<Vec<Option<(u64, u64)>>> {
        ImageStore::writable_layer_usages(self, ids).await
    }
}
