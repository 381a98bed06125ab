//! CRI devices → OCI device nodes plus the device-cgroup rules that let the
//! container use them.

use cri_api::v1 as cri;
use nix::sys::stat::{major, minor, stat, SFlag};
use oci_spec::runtime::{
    LinuxDevice, LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
};

/// Why a CRI device cannot be given to a container.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The path inside the container is relative.
    #[error("device container_path {0:?} is not absolute")]
    RelativePath(String),
    /// The permissions are not a combination of `r`, `w` and `m`.
    #[error("device {host_path}: permissions {permissions:?} are not a combination of r, w and m")]
    Permissions {
        /// The device on the host.
        host_path: String,
        /// The permissions asked for.
        permissions: String,
    },
    /// The host path cannot be examined.
    #[error("device {host_path}: {source}")]
    Stat {
        /// The device on the host.
        host_path: String,
        /// Why.
        source: nix::Error,
    },
    /// The host path is not a device node.
    #[error("device {0} is not a character or block device")]
    NotADevice(String),
    /// The OCI builder refused the node or the rule.
    #[error("device {host_path}: {source}")]
    Oci {
        /// The device on the host.
        host_path: String,
        /// Why.
        source: oci_spec::OciSpecError,
    },
}

/// A device node for the container and the rule that allows it.
pub fn to_oci(device: &cri::Device) -> Result<(LinuxDevice, LinuxDeviceCgroup), DeviceError> {
    if !device.container_path.starts_with('/') {
        return Err(DeviceError::RelativePath(device.container_path.clone()));
    }
    let permissions = if device.permissions.is_empty() {
        "rwm".to_string()
    } else {
        device.permissions.clone()
    };
    if !permissions.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(DeviceError::Permissions {
            host_path: device.host_path.clone(),
            permissions: device.permissions.clone(),
        });
    }
    let st = stat(device.host_path.as_str()).map_err(|source| DeviceError::Stat {
        host_path: device.host_path.clone(),
        source,
    })?;
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    let typ = if kind == SFlag::S_IFCHR {
        LinuxDeviceType::C
    } else if kind == SFlag::S_IFBLK {
        LinuxDeviceType::B
    } else {
        return Err(DeviceError::NotADevice(device.host_path.clone()));
    };
    let (maj, min) = (major(st.st_rdev) as i64, minor(st.st_rdev) as i64);
    let err = |source| DeviceError::Oci {
        host_path: device.host_path.clone(),
        source,
    };
    let node = LinuxDeviceBuilder::default()
        .path(&device.container_path)
        .typ(typ)
        .major(maj)
        .minor(min)
        .file_mode(st.st_mode & 0o777)
        .uid(0u32)
        .gid(0u32)
        .build()
        .map_err(err)?;
    let rule = LinuxDeviceCgroupBuilder::default()
        .allow(true)
        .typ(typ)
        .major(maj)
        .minor(min)
        .access(permissions)
        .build()
        .map_err(err)?;
    Ok((node, rule))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_null_becomes_a_char_device_with_a_rule() {
        let (node, rule) = to_oci(&cri::Device {
            container_path: "/dev/mynull".into(),
            host_path: "/dev/null".into(),
            permissions: "rw".into(),
        })
        .unwrap();
        assert_eq!(node.typ(), LinuxDeviceType::C);
        assert_eq!((node.major(), node.minor()), (1, 3));
        assert_eq!(rule.access().as_deref(), Some("rw"));
    }

    #[test]
    fn bad_devices_are_refused() {
        let file = cri::Device {
            container_path: "/dev/x".into(),
            host_path: "/etc/hostname".into(),
            permissions: String::new(),
        };
        assert!(to_oci(&file)
            .unwrap_err()
            .to_string()
            .contains("not a character or block device"));
        let perms = cri::Device {
            container_path: "/dev/x".into(),
            host_path: "/dev/null".into(),
            permissions: "rwx".into(),
        };
        assert!(to_oci(&perms)
            .unwrap_err()
            .to_string()
            .contains("permissions"));
    }
}
