//! Which image of a multi-platform index this node runs: the host's own
//! platform first (OS, architecture and, for ARM, the variant), then the
//! operator's fallbacks in order (`[image] platforms`, e.g. `linux/386` on
//! an amd64 node), as containerd's platform matcher does.
//!
//! Variants follow the OCI image spec's conventions: arm64 without a
//! variant is `v8`; an ARM host runs images of its own variant or older
//! (`v7` runs `v6` and `v5`), never newer; amd64 micro-architecture levels
//! (`v2`…`v4`) are not assumed, only the baseline (`v1` or none).

use crate::oci::Descriptor;
use std::fmt;

/// An OS, architecture and optional variant, written `os/arch[/variant]`.
///
/// # Examples
///
/// ```
/// use image_store::platform::Platform;
///
/// let p: Platform = "linux/arm/v7".parse().unwrap();
/// assert_eq!((p.os.as_str(), p.architecture.as_str(), p.variant.as_str()), ("linux", "arm", "v7"));
/// assert_eq!(p.to_string(), "linux/arm/v7");
/// assert!("linux".parse::<Platform>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Platform {
    /// `linux`, `windows`, …
    pub os: String,
    /// `amd64`, `arm64`, `arm`, …, in Go's names (as images use them).
    pub architecture: String,
    /// `v7`, `v8`, …; empty when none is given.
    pub variant: String,
}

/// A platform that is not `os/arch[/variant]`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("platform {0:?} is not os/architecture[/variant] (e.g. linux/arm64/v8)")]
pub struct PlatformError(pub String);

impl std::str::FromStr for Platform {
    type Err = PlatformError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = text.split('/').collect();
        let valid =
            |s: &&str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        match parts.as_slice() {
            [os, arch] if valid(os) && valid(arch) => Ok(Platform::new(os, arch, "")),
            [os, arch, variant] if valid(os) && valid(arch) && valid(variant) => {
                Ok(Platform::new(os, arch, variant))
            }
            _ => Err(PlatformError(text.to_owned())),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

impl Platform {
    /// A platform of these names, lowercased as the OCI spec writes them.
    pub fn new(os: &str, architecture: &str, variant: &str) -> Self {
        Platform {
            os: os.to_ascii_lowercase(),
            architecture: architecture.to_ascii_lowercase(),
            variant: variant.to_ascii_lowercase(),
        }
    }

    /// This machine's platform, from what the daemon was compiled for.
    pub fn host() -> Self {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", ""),
            "x86" => ("386", ""),
            "aarch64" => ("arm64", "v8"),
            // Rust's `arm` target family is ARMv6 or v7; v7 is what Linux
            // distributions (and their images) mean by armhf.
            "arm" => ("arm", "v7"),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", ""),
            "loongarch64" => ("loong64", ""),
            "mips64" if cfg!(target_endian = "little") => ("mips64le", ""),
            other => (other, ""),
        };
        Platform::new(std::env::consts::OS, architecture, variant)
    }

    /// Whether an image for `image` runs on this platform.
    fn runs(&self, image: &crate::oci::Platform) -> bool {
        if !image.os.eq_ignore_ascii_case(&self.os)
            || !image.architecture.eq_ignore_ascii_case(&self.architecture)
        {
            return false;
        }
        let variant = image.variant.to_ascii_lowercase();
        match self.architecture.as_str() {
            "arm64" => variant.is_empty() || variant == "v8",
            "arm" => arm_level(&variant).is_some_and(|v| Some(v) <= arm_level(&self.variant)),
            "amd64" => variant.is_empty() || variant == "v1",
            _ => variant.is_empty() || variant == self.variant,
        }
    }
}

/// The ARM architecture level of a variant (`v7` → 7; none → 7, the
/// armhf default).
fn arm_level(variant: &str) -> Option<u8> {
    match variant {
        "" => Some(7),
        v => v.strip_prefix('v')?.parse().ok(),
    }
}

/// The platforms a node pulls, best first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformChoice {
    wanted: Vec<Platform>,
}

impl Default for PlatformChoice {
    fn default() -> Self {
        PlatformChoice::new(Vec::new())
    }
}

impl PlatformChoice {
    /// The host's platform, then `fallbacks` in order.
    pub fn new(fallbacks: Vec<Platform>) -> Self {
        let mut wanted = vec![Platform::host()];
        wanted.extend(fallbacks.into_iter().filter(|p| *p != Platform::host()));
        PlatformChoice { wanted }
    }

    /// The platforms, best first.
    pub fn wanted(&self) -> &[Platform] {
        &self.wanted
    }

    /// The index entry to pull: the first wanted platform some entry runs
    /// on; among entries for one platform, the newest ARM variant.
    pub fn choose<'a>(&self, entries: &'a [Descriptor]) -> Option<&'a Descriptor> {
        self.wanted.iter().find_map(|wanted| {
            entries
                .iter()
                .filter(|d| d.platform.as_ref().is_some_and(|p| wanted.runs(p)))
                .max_by_key(|d| {
                    d.platform
                        .as_ref()
                        .and_then(|p| arm_level(&p.variant.to_ascii_lowercase()))
                })
        })
    }

    /// What an index offers, for the error when nothing matches.
    pub fn offered(entries: &[Descriptor]) -> Vec<String> {
        let mut offered: Vec<String> = entries
            .iter()
            .filter_map(|d| d.platform.as_ref())
            .map(|p| Platform::new(&p.os, &p.architecture, &p.variant).to_string())
            .collect();
        offered.sort();
        offered.dedup();
        offered
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci;

    fn entry(os: &str, arch: &str, variant: &str, n: u8) -> Descriptor {
        Descriptor {
            media_type: oci::OCI_MANIFEST.into(),
            digest: format!("sha256:{}", format!("{n:02x}").repeat(32))
                .parse()
                .unwrap(),
            size: 1,
            platform: Some(oci::Platform {
                os: os.into(),
                architecture: arch.into(),
                variant: variant.into(),
            }),
        }
    }

    fn choice(host: &str, fallbacks: &[&str]) -> PlatformChoice {
        let mut wanted = vec![host.parse().unwrap()];
        wanted.extend(fallbacks.iter().map(|f| f.parse().unwrap()));
        PlatformChoice { wanted }
    }

    #[test]
    fn the_host_first_then_fallbacks_in_order() {
        let index = [
            entry("linux", "386", "", 1),
            entry("linux", "arm64", "v8", 2),
            entry("linux", "amd64", "", 3),
            entry("windows", "amd64", "", 4),
        ];
        let amd64 = choice("linux/amd64", &["linux/386"]);
        assert_eq!(amd64.choose(&index), Some(&index[2]));
        assert_eq!(amd64.choose(&index[..2]), Some(&index[0]), "fallback");
        assert_eq!(amd64.choose(&index[3..]), None, "windows never");
        assert_eq!(
            choice("linux/arm64/v8", &[]).choose(&index),
            Some(&index[1])
        );
    }

    #[test]
    fn arm_runs_its_own_variant_or_older_and_prefers_the_newest() {
        let index = [
            entry("linux", "arm", "v5", 1),
            entry("linux", "arm", "v7", 2),
            entry("linux", "arm", "v6", 3),
            entry("linux", "arm", "v8", 4),
        ];
        assert_eq!(choice("linux/arm/v7", &[]).choose(&index), Some(&index[1]));
        assert_eq!(choice("linux/arm/v6", &[]).choose(&index), Some(&index[2]));
        assert_eq!(choice("linux/arm/v5", &[]).choose(&index[1..]), None);
        // arm64 images without a variant are v8.
        let arm64 = [entry("linux", "arm64", "", 5)];
        assert_eq!(
            choice("linux/arm64/v8", &[]).choose(&arm64),
            Some(&arm64[0])
        );
    }

    #[test]
    fn amd64_levels_above_the_baseline_are_not_assumed() {
        let index = [
            entry("linux", "amd64", "v3", 1),
            entry("linux", "amd64", "v1", 2),
        ];
        assert_eq!(choice("linux/amd64", &[]).choose(&index), Some(&index[1]));
        assert_eq!(choice("linux/amd64", &[]).choose(&index[..1]), None);
    }

    #[test]
    fn what_an_index_offers_is_listed_once_each() {
        let index = [
            entry("linux", "arm", "v7", 1),
            entry("linux", "arm", "v7", 2),
            entry("linux", "s390x", "", 3),
        ];
        assert_eq!(
            PlatformChoice::offered(&index),
            ["linux/arm/v7", "linux/s390x"]
        );
    }

    #[test]
    fn the_host_is_known() {
        let host = Platform::host();
        assert_eq!(host.os, "linux");
        assert!(!host.architecture.is_empty());
        if cfg!(target_arch = "x86_64") {
            assert_eq!(host.to_string(), "linux/amd64");
        }
    }

    #[test]
    fn hostile_platform_strings_are_refused() {
        for bad in [
            "",
            "linux",
            "linux/",
            "/amd64",
            "linux/amd64/v8/x",
            "linux/../etc",
            "linux/amd 64",
        ] {
            assert!(bad.parse::<Platform>().is_err(), "{bad:?}");
        }
    }
}
