//! What CreateContainer takes from the image's configuration: entrypoint and
//! command, environment, working directory, user and stop signal; and the
//! rules that merge them with the CRI request, as kubelet and Docker define.

use serde::Deserialize;

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
    pub fn from_json(json: &str) -> Result<ImageConfig, String> {
        if json.trim().is_empty() {
            return Ok(ImageConfig::default());
        }
        serde_json::from_str::<ConfigFile>(json)
            .map(|f| f.config)
            .map_err(|e| format!("image configuration: {e}"))
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

/// Resolves a user spec (`uid`, `name`, `uid:gid`, `name:group`) against a
/// root filesystem's `/etc/passwd` and `/etc/group`, returning uid, gid and
/// the supplementary groups `/etc/group` gives that user.
pub fn resolve_user(rootfs: &std::path::Path, user: &str) -> Result<(u32, u32, Vec<u32>), String> {
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    let group = std::fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd_entry = |pred: &dyn Fn(&[&str]) -> bool| {
        passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() >= 4 && pred(f))
    };
    let (uid, name, mut gid) = if let Ok(uid) = user_part.parse::<u32>() {
        match passwd_entry(&|f| f[2] == user_part) {
            Some(f) => (uid, f[0].to_string(), f[3].parse().unwrap_or(0)),
            None => (uid, String::new(), 0),
        }
    } else {
        let f = passwd_entry(&|f| f[0] == user_part)
            .ok_or_else(|| format!("user {user_part:?} not found in the image's /etc/passwd"))?;
        let uid = f[2]
            .parse()
            .map_err(|_| format!("user {user_part:?}: bad uid {:?} in /etc/passwd", f[2]))?;
        (uid, f[0].to_string(), f[3].parse().unwrap_or(0))
    };
    let groups: Vec<Vec<&str>> = group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 3)
        .collect();
    if let Some(g) = group_part {
        gid = match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| format!("group {g:?} not found in the image's /etc/group"))?,
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
    additional.retain(|g| *g != gid);
    additional.dedup();
    Ok((uid, gid, additional))
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
        assert_eq!(
            resolve_user(dir.path(), "www-data").unwrap(),
            (33, 33, vec![50])
        );
        assert_eq!(
            resolve_user(dir.path(), "1003:1003").unwrap(),
            (1003, 1003, vec![])
        );
        assert_eq!(
            resolve_user(dir.path(), "www-data:root").unwrap(),
            (33, 0, vec![50])
        );
        assert_eq!(resolve_user(dir.path(), "33").unwrap(), (33, 33, vec![50]));
        assert!(resolve_user(dir.path(), "nobody").is_err());
    }
}
