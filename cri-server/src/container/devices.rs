//! CRI devices → OCI device nodes plus the device-cgroup rules that let the
//! container use them.

use k8s_cri::v1 as cri;
use nix::sys::stat::{major, minor, stat, SFlag};
use oci_spec::runtime::{
    LinuxDevice, LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
};

/// A device node for the container and the rule that allows it.
pub fn to_oci(device: &cri::Device) -> Result<(LinuxDevice, LinuxDeviceCgroup), String> {
    if !device.container_path.starts_with('/') {
        return Err(format!(
            "device container_path {:?} is not absolute",
            device.container_path
        ));
    }
    let permissions = if device.permissions.is_empty() {
        "rwm".to_string()
    } else {
        device.permissions.clone()
    };
    if !permissions.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(format!(
            "device {}: permissions {:?} are not a combination of r, w and m",
            device.host_path, device.permissions
        ));
    }
    let st =
        stat(device.host_path.as_str()).map_err(|e| format!("device {}: {e}", device.host_path))?;
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    let typ = if kind == SFlag::S_IFCHR {
        LinuxDeviceType::C
    } else if kind == SFlag::S_IFBLK {
        LinuxDeviceType::B
    } else {
        return Err(format!(
            "device {} is not a character or block device",
            device.host_path
        ));
    };
    let (maj, min) = (major(st.st_rdev) as i64, minor(st.st_rdev) as i64);
    let err = |e: oci_spec::OciSpecError| format!("device {}: {e}", device.host_path);
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
            .contains("not a character or block device"));
        let perms = cri::Device {
            container_path: "/dev/x".into(),
            host_path: "/dev/null".into(),
            permissions: "rwx".into(),
        };
        assert!(to_oci(&perms).unwrap_err().contains("permissions"));
    }
}
