//! What CreateContainer takes from the image's configuration: entrypoint and
//! command, environment, working directory, user and stop signal; and the
//! rules that merge them with the CRI request, as kubelet and Docker define.

use serde::Deserialize;
use std::path::Path;

/// The parts of an OCI image configuration a container starts from.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ImageConfig {
    /// `Entrypoint`.
    #[serde(rename = "Entrypoint")]
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`.
    #[serde(rename = "Cmd")]
    pub cmd: Option<Vec<String>>,
    /// `Env`, as `KEY=value`.
    #[serde(rename = "Env")]
    pub env: Option<Vec<String>>,
    /// `WorkingDir`.
    #[serde(rename = "WorkingDir")]
    pub working_dir: Option<String>,
    /// `User`: `uid`, `name`, `uid:gid` or `name:group`.
    #[serde(rename = "User")]
    pub user: Option<String>,
    /// `StopSignal`, e.g. `SIGQUIT`.
    #[serde(rename = "StopSignal")]
    pub stop_signal: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ConfigFile {
    config: ImageConfig,
}

impl ImageConfig {
    /// Parses the `config` object of an image configuration JSON document.
    /// A document without one yields the empty configuration.
    pub fn from_json(json: &str) -> Result<ImageConfig, serde_json::Error> {
        if json.trim().is_empty() {
            return Ok(ImageConfig::default());
        }
        serde_json::from_str::<ConfigFile>(json).map(|f| f.config)
    }

    /// The argv: CRI `command` replaces the entrypoint (and then the image's
    /// Cmd is not used), CRI `args` replace Cmd.
    pub fn argv(&self, command: &[String], args: &[String]) -> Vec<String> {
        let (entrypoint, cmd): (Vec<String>, Vec<String>) = if !command.is_empty() {
            (command.to_vec(), args.to_vec())
        } else {
            let entrypoint = self.entrypoint.clone().unwrap_or_default();
            let cmd = if args.is_empty() {
                self.cmd.clone().unwrap_or_default()
            } else {
                args.to_vec()
            };
            (entrypoint, cmd)
        };
        entrypoint.into_iter().chain(cmd).collect()
    }

    /// The environment: the image's, overridden key by key by the request's,
    /// with a default `PATH` when neither sets one.
    pub fn env(&self, request: &[(String, String)]) -> Vec<String> {
        let mut env: Vec<(String, String)> = Vec::new();
        let mut set = |key: &str, value: &str| match env.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value.to_string(),
            None => env.push((key.to_string(), value.to_string())),
        };
        for entry in self.env.iter().flatten() {
            let (key, value) = entry.split_once('=').unwrap_or((entry, ""));
            set(key, value);
        }
        for (key, value) in request {
            set(key, value);
        }
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.push((
                "PATH".into(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            ));
        }
        env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
    }
}

/// Why a container's user could not be resolved against its image.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// A user name the image's `/etc/passwd` does not list.
    #[error("user {user:?} not found in the image's /etc/passwd")]
    UnknownUser {
        /// The name asked for.
        user: String,
    },
    /// The `/etc/passwd` entry of a user has a uid that is not a number.
    #[error("user {user:?}: bad uid {uid:?} in the image's /etc/passwd")]
    BadUid {
        /// The name asked for.
        user: String,
        /// The uid field as written.
        uid: String,
    },
    /// A group name the image's `/etc/group` does not list.
    #[error("group {group:?} not found in the image's /etc/group")]
    UnknownGroup {
        /// The name asked for.
        group: String,
    },
    /// `/etc/passwd` or `/etc/group` could not be read, or was refused.
    #[error(transparent)]
    File(#[from] crate::rootfs_file::FileError),
}

/// uid, primary gid and supplementary gids of a container's process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// The uid.
    pub uid: u32,
    /// The primary gid.
    pub gid: u32,
    /// Supplementary gids from `/etc/group`, without the primary one.
    pub additional_gids: Vec<u32>,
}

/// One line of `/etc/passwd` or `/etc/group` split on `:`; lines with fewer
/// than `min` fields are skipped, as libc does.
fn entries(text: &str, min: usize) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(move |f| f.len() >= min)
}

/// Resolves a user spec (`uid`, `name`, `uid:gid`, `name:group`) against a
/// root filesystem's `/etc/passwd` and `/etc/group`, read inside the root
/// (see [`crate::rootfs_file`]). Blocking: run it on a blocking thread.
///
/// # Errors
///
/// [`UserError`]: an unknown user or group, or a user database that is not
/// a regular file of sane size inside the image.
pub fn resolve_user(rootfs: &Path, user: &str) -> Result<ResolvedUser, UserError> {
    use crate::rootfs_file::{read_in_root, MAX_ROOTFS_FILE};
    let read = |file: &str| -> Result<String, UserError> {
        let bytes = read_in_root(rootfs, Path::new(file), MAX_ROOTFS_FILE)?;
        Ok(String::from_utf8_lossy(&bytes.unwrap_or_default()).into_owned())
    };
    let passwd = read("/etc/passwd")?;
    resolve_user_with(user, &passwd, &mut || read("/etc/group"))
}

/// [`resolve_user`] on `/etc/passwd` text; `group` loads `/etc/group` only
/// when the answer depends on it (a group name, or a named user's
/// supplementary groups). Pure apart from `group`; never panics.
///
/// # Errors
///
/// [`UserError`] for an unknown user or group, or whatever `group` returns.
///
/// # Examples
///
/// ```
/// use cri_spec::image_config::resolve_user_with;
/// let passwd = "app:x:1500:1500::/:/bin/sh\n";
/// let user = resolve_user_with("app", passwd, &mut || Ok("audio:x:29:app\n".into())).unwrap();
/// assert_eq!((user.uid, user.gid, user.additional_gids), (1500, 1500, vec![29]));
/// ```
pub fn resolve_user_with(
    user: &str,
    passwd: &str,
    group: &mut dyn FnMut() -> Result<String, UserError>,
) -> Result<ResolvedUser, UserError> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let find = |pred: &dyn Fn(&[&str]) -> bool| entries(passwd, 4).find(|f| pred(f));
    let (uid, name, mut gid) = if let Ok(uid) = user_part.parse::<u32>() {
        match find(&|f| f[2] == user_part) {
            Some(f) => (uid, f[0].to_string(), f[3].parse().unwrap_or(0)),
            None => (uid, String::new(), 0),
        }
    } else {
        let f = find(&|f| f[0] == user_part).ok_or_else(|| UserError::UnknownUser {
            user: user_part.to_string(),
        })?;
        let uid = f[2].parse().map_err(|_| UserError::BadUid {
            user: user_part.to_string(),
            uid: f[2].to_string(),
        })?;
        (uid, f[0].to_string(), f[3].parse().unwrap_or(0))
    };
    let numeric_group = group_part.and_then(|g| g.parse::<u32>().ok());
    if name.is_empty() && (group_part.is_none() || numeric_group.is_some()) {
        // Nothing left that /etc/group could answer: do not read it.
        return Ok(ResolvedUser {
            uid,
            gid: numeric_group.unwrap_or(gid),
            additional_gids: Vec::new(),
        });
    }
    let group_text = group()?;
    let groups: Vec<Vec<&str>> = entries(&group_text, 3).collect();
    if let Some(g) = group_part {
        gid = match numeric_group {
            Some(gid) => gid,
            None => groups
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| UserError::UnknownGroup {
                    group: g.to_string(),
                })?,
        };
    }
    let mut additional: Vec<u32> = if name.is_empty() {
        Vec::new()
    } else {
        groups
            .iter()
            .filter(|f| f.len() >= 4 && f[3].split(',').any(|m| m == name))
            .filter_map(|f| f[2].parse().ok())
            .collect()
    };
    let mut seen = std::collections::HashSet::from([gid]);
    additional.retain(|g| seen.insert(*g));
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids: additional,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn argv_follows_kubelet_rules() {
        let image = ImageConfig {
            entrypoint: Some(s(&["/ep"])),
            cmd: Some(s(&["c1"])),
            ..Default::default()
        };
        assert_eq!(image.argv(&[], &[]), s(&["/ep", "c1"]));
        assert_eq!(image.argv(&[], &s(&["a"])), s(&["/ep", "a"]));
        assert_eq!(image.argv(&s(&["/bin/sh"]), &[]), s(&["/bin/sh"]));
        assert_eq!(
            image.argv(&s(&["/bin/sh"]), &s(&["-c", "x"])),
            s(&["/bin/sh", "-c", "x"])
        );
    }

    #[test]
    fn env_is_merged_by_key_with_default_path() {
        let image = ImageConfig {
            env: Some(s(&["A=1", "B=2"])),
            ..Default::default()
        };
        let env = image.env(&[("B".into(), "3".into())]);
        assert_eq!(env[..2], s(&["A=1", "B=3"]));
        assert!(env[2].starts_with("PATH="));
    }

    #[test]
    fn config_json_parses_and_garbage_is_an_error() {
        let c = ImageConfig::from_json(r#"{"config":{"User":"1002","Cmd":["sh"]}}"#).unwrap();
        assert_eq!(c.user.as_deref(), Some("1002"));
        assert!(ImageConfig::from_json("{").is_err());
        assert_eq!(ImageConfig::from_json("").unwrap(), ImageConfig::default());
    }

    #[test]
    fn users_resolve_in_the_rootfs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nwww-data:x:33:33::/var/www:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nwww-data:x:33:\nextra:x:50:www-data\n",
        )
        .unwrap();
        let resolve =
            |user| resolve_user(dir.path(), user).map(|u| (u.uid, u.gid, u.additional_gids));
        assert_eq!(resolve("www-data").unwrap(), (33, 33, vec![50]));
        assert_eq!(resolve("1003:1003").unwrap(), (1003, 1003, vec![]));
        assert_eq!(resolve("www-data:root").unwrap(), (33, 0, vec![50]));
        assert_eq!(resolve("33").unwrap(), (33, 33, vec![50]));
        assert!(matches!(
            resolve_user(dir.path(), "nobody"),
            Err(UserError::UnknownUser { .. })
        ));
        assert!(matches!(
            resolve_user(dir.path(), "33:nogroup"),
            Err(UserError::UnknownGroup { .. })
        ));
    }

    #[test]
    fn group_file_is_read_only_when_it_can_change_the_answer() {
        let passwd = "app:x:1500:1500::/:/bin/sh\n";
        let mut refuse = || -> Result<String, UserError> { panic!("/etc/group read") };
        for user in ["1000", "1000:1000", "4242:7"] {
            resolve_user_with(user, passwd, &mut refuse).unwrap();
        }
        let mut calls = 0;
        let mut count = || {
            calls += 1;
            Ok(String::new())
        };
        resolve_user_with("app", passwd, &mut count).unwrap();
        resolve_user_with("1000:staff", passwd, &mut count).unwrap_err();
        assert_eq!(calls, 2);
    }

    #[test]
    fn hostile_user_databases_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/shadow"),
            "root:x:4242:4242::/:/bin/sh\n",
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc/shadow", dir.path().join("etc/passwd")).unwrap();
        // The absolute link resolves to the image's own /etc/shadow.
        assert_eq!(resolve_user(dir.path(), "root").unwrap().uid, 4242);
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("etc/group")).unwrap();
        // Numeric user and group: /etc/group is not needed, so not read.
        assert_eq!(resolve_user(dir.path(), "1000:1000").unwrap().gid, 1000);
        // /etc/group is needed for a named user, and refused.
        let err = resolve_user(dir.path(), "root").unwrap_err();
        assert!(err.to_string().contains("/etc/group"), "{err}");
        assert!(err.to_string().contains("/dev/zero"), "{err}");
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        fn field() -> impl Strategy<Value = String> {
            prop_oneof!["[0-9]{1,6}", "[a-z]{0,6}", "[0-9a-z,:\\-]{0,8}", ".{0,6}"]
        }

        fn line() -> impl Strategy<Value = String> {
            proptest::collection::vec(field(), 0..8).prop_map(|f| f.join(":"))
        }

        fn database() -> impl Strategy<Value = String> {
            proptest::collection::vec(line(), 0..8).prop_map(|l| l.join("\n"))
        }

        proptest! {
            #[test]
            fn resolving_never_panics(
                user in prop_oneof![field(), (field(), field()).prop_map(|(u, g)| format!("{u}:{g}"))],
                passwd in database(),
                group in database(),
                raw in proptest::collection::vec(any::<u8>(), 0..256),
            ) {
                let _ = resolve_user_with(&user, &passwd, &mut || Ok(group.clone()));
                let raw = String::from_utf8_lossy(&raw).into_owned();
                let _ = resolve_user_with(&user, &raw, &mut || Ok(raw.clone()));
            }

            #[test]
            fn a_numeric_user_always_keeps_its_uid(
                uid in any::<u32>(),
                gid in proptest::option::of(any::<u32>()),
                passwd in database(),
                group in database(),
            ) {
                let spec = match gid {
                    Some(g) => format!("{uid}:{g}"),
                    None => uid.to_string(),
                };
                let user = resolve_user_with(&spec, &passwd, &mut || Ok(group.clone())).unwrap();
                prop_assert_eq!(user.uid, uid);
                if let Some(g) = gid {
                    prop_assert_eq!(user.gid, g);
                }
                prop_assert!(!user.additional_gids.contains(&user.gid));
                let mut unique = user.additional_gids.clone();
                unique.sort_unstable();
                unique.dedup();
                prop_assert_eq!(unique.len(), user.additional_gids.len());
            }

            #[test]
            fn a_listed_user_resolves_to_its_entry(
                name in "[a-z][a-z0-9]{0,7}",
                uid in any::<u32>(),
                gid in any::<u32>(),
                members in proptest::collection::vec((any::<u32>(), any::<bool>()), 0..5),
            ) {
                let passwd = format!("{name}:x:{uid}:{gid}::/:/bin/sh\n");
                let group: String = members
                    .iter()
                    .enumerate()
                    .map(|(i, (g, member))| {
                        format!("g{i}:x:{g}:{}\n", if *member { name.as_str() } else { "-nobody-" })
                    })
                    .collect();
                let user = resolve_user_with(&name, &passwd, &mut || Ok(group.clone())).unwrap();
                prop_assert_eq!((user.uid, user.gid), (uid, gid));
                for gid in &user.additional_gids {
                    prop_assert!(members.iter().any(|(g, m)| *m && g == gid));
                }
                for (g, member) in &members {
                    if *member && *g != gid {
                        prop_assert!(user.additional_gids.contains(g));
                    }
                }
            }
        }
    }
}
