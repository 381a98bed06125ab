//! The public view of a stored image, shaped for CRI's `ImageStatus` and
//! `ListImages`.

use crate::metadata::ImageRecord;

/// One stored image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// The image id: `sha256:<hex>` of its config.
    pub id: String,
    /// `name:tag` names it was pulled under.
    pub repo_tags: Vec<String>,
    /// `name@digest` names.
    pub repo_digests: Vec<String>,
    /// Bytes: config plus compressed layers.
    pub size: u64,
    /// The config's `User` when it is numeric (or `uid:gid`).
    pub uid: Option<i64>,
    /// The config's `User` when it is a name (or `name:group`); empty
    /// otherwise.
    pub username: String,
    /// The image config as JSON, for verbose status.
    pub config_json: String,
    /// What the pull-time check said, per reference pulled (empty when no
    /// check ran).
    pub evidence: Vec<crate::PullEvidence>,
}

/// Splits an image config's `User` into CRI's uid / username.
///
/// # Examples
///
/// ```
/// use image_store::image::split_user;
/// assert_eq!(split_user("1003:1003"), (Some(1003), String::new()));
/// assert_eq!(split_user("www-data:www-data"), (None, "www-data".to_string()));
/// assert_eq!(split_user(""), (None, String::new()));
/// ```
pub fn split_user(user: &str) -> (Option<i64>, String) {
    let user = user.split(':').next().unwrap_or_default();
    if user.is_empty() {
        return (None, String::new());
    }
    match user.parse::<i64>() {
        Ok(uid) => (Some(uid), String::new()),
        Err(_) => (None, user.to_string()),
    }
}

impl Image {
    pub(crate) fn from_record(record: &ImageRecord, config_json: String) -> Self {
        let (uid, username) = split_user(&crate::oci::config_user(&config_json));
        Self {
            id: record.id.to_string(),
            repo_tags: record.repo_tags.clone(),
            repo_digests: record.repo_digests.clone(),
            size: record.size,
            uid,
            username,
            config_json,
            evidence: record.evidence.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_forms() {
        assert_eq!(split_user("1002"), (Some(1002), String::new()));
        assert_eq!(split_user("www-data"), (None, "www-data".into()));
        assert_eq!(split_user("1003:1003"), (Some(1003), String::new()));
        assert_eq!(split_user("www-data:www-data"), (None, "www-data".into()));
        assert_eq!(split_user(":1"), (None, String::new()));
    }
}
