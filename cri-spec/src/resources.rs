//! CRI cgroup resources → the OCI runtime spec's, checked on the way: a
//! negative value is refused naming its field instead of reaching the kernel.

use cri_api::v1 as cri;
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxHugepageLimitBuilder, LinuxMemoryBuilder, LinuxResources,
    LinuxResourcesBuilder,
};

/// Why CRI resources cannot become cgroup limits.
#[derive(Debug, thiserror::Error)]
pub enum ResourcesError {
    /// A field holds a value the kernel would refuse or misread.
    #[error("resources.{field} is invalid ({value})")]
    Invalid {
        /// The CRI field, e.g. `cpu_shares`.
        field: &'static str,
        /// Its value.
        value: i64,
    },
    /// The OCI builder refused the limits.
    #[error("resources: {0}")]
    Oci(#[from] oci_spec::OciSpecError),
}

/// Converts `r`; zero means "not set", as in CRI.
pub fn to_oci(r: &cri::LinuxContainerResources) -> Result<LinuxResources, ResourcesError> {
    let non_negative = |value: i64, field: &'static str| {
        if value < 0 {
            Err(ResourcesError::Invalid { field, value })
        } else {
            Ok(value)
        }
    };
    let shares = non_negative(r.cpu_shares, "cpu_shares")?;
    let period = non_negative(r.cpu_period, "cpu_period")?;
    // -1 is the kernel's "no limit" for quota; anything below is nonsense.
    if r.cpu_quota < -1 {
        return Err(ResourcesError::Invalid {
            field: "cpu_quota",
            value: r.cpu_quota,
        });
    }
    let memory = non_negative(r.memory_limit_in_bytes, "memory_limit_in_bytes")?;
    let swap = r.memory_swap_limit_in_bytes;
    if swap < -1 {
        return Err(ResourcesError::Invalid {
            field: "memory_swap_limit_in_bytes",
            value: swap,
        });
    }

    let mut cpu = LinuxCpuBuilder::default();
    if shares > 0 {
        cpu = cpu.shares(shares as u64);
    }
    if period > 0 {
        cpu = cpu.period(period as u64);
    }
    if r.cpu_quota != 0 {
        cpu = cpu.quota(r.cpu_quota);
    }
    if !r.cpuset_cpus.is_empty() {
        cpu = cpu.cpus(r.cpuset_cpus.clone());
    }
    if !r.cpuset_mems.is_empty() {
        cpu = cpu.mems(r.cpuset_mems.clone());
    }
    let mut builder = LinuxResourcesBuilder::default()
        .cpu(cpu.build()?)
        .devices(Vec::new());
    if memory > 0 || swap != 0 {
        let mut m = LinuxMemoryBuilder::default();
        if memory > 0 {
            m = m.limit(memory);
        }
        if swap != 0 {
            m = m.swap(swap);
        }
        builder = builder.memory(m.build()?);
    }
    if !r.hugepage_limits.is_empty() {
        let limits = r
            .hugepage_limits
            .iter()
            .map(|h| {
                LinuxHugepageLimitBuilder::default()
                    .page_size(h.page_size.clone())
                    .limit(h.limit as i64)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        builder = builder.hugepage_limits(limits);
    }
    if !r.unified.is_empty() {
        builder = builder.unified(r.unified.clone());
    }
    Ok(builder.build()?)
}

/// What the container record keeps of `r` (for ContainerStatus).
pub fn to_record(r: &cri::LinuxContainerResources) -> sandbox_core::Resources {
    sandbox_core::Resources {
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares,
        memory_limit_in_bytes: r.memory_limit_in_bytes,
        memory_swap_limit_in_bytes: r.memory_swap_limit_in_bytes,
        oom_score_adj: r.oom_score_adj,
        cpuset_cpus: r.cpuset_cpus.clone(),
        cpuset_mems: r.cpuset_mems.clone(),
    }
}

/// A record's resources as CRI reports them in ContainerStatus.
pub fn to_cri(r: &sandbox_core::Resources) -> cri::ContainerResources {
    cri::ContainerResources {
        linux: Some(cri::LinuxContainerResources {
            cpu_period: r.cpu_period,
            cpu_quota: r.cpu_quota,
            cpu_shares: r.cpu_shares,
            memory_limit_in_bytes: r.memory_limit_in_bytes,
            memory_swap_limit_in_bytes: r.memory_swap_limit_in_bytes,
            oom_score_adj: r.oom_score_adj,
            cpuset_cpus: r.cpuset_cpus.clone(),
            cpuset_mems: r.cpuset_mems.clone(),
            ..Default::default()
        }),
        windows: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_over_and_zero_means_unset() {
        let r = cri::LinuxContainerResources {
            cpu_shares: 512,
            cpu_quota: 50_000,
            cpu_period: 100_000,
            memory_limit_in_bytes: 64 << 20,
            cpuset_cpus: "0".into(),
            ..Default::default()
        };
        let oci = to_oci(&r).unwrap();
        let cpu = oci.cpu().as_ref().unwrap();
        assert_eq!(cpu.shares(), Some(512));
        assert_eq!(cpu.quota(), Some(50_000));
        assert_eq!(cpu.cpus().as_deref(), Some("0"));
        assert_eq!(oci.memory().as_ref().unwrap().limit(), Some(64 << 20));
        let empty = to_oci(&cri::LinuxContainerResources::default()).unwrap();
        assert!(empty.memory().is_none());
        assert_eq!(empty.cpu().as_ref().unwrap().shares(), None);
    }

    #[test]
    fn negative_values_are_refused_naming_the_field() {
        let r = cri::LinuxContainerResources {
            memory_limit_in_bytes: -5,
            ..Default::default()
        };
        assert!(to_oci(&r)
            .unwrap_err()
            .to_string()
            .contains("memory_limit_in_bytes"));
    }
}
