//! Named fault points for the chaos test (`cargo xtask chaos`).
//!
//! Built with the `fault-points` feature, reaching the point named by the
//! environment variable `CRI_SERVER_FAULT` kills the daemon with SIGKILL,
//! exactly there, as a crash would: the chaos test then restarts it and
//! checks, against the kernel, that nothing was lost or leaked. Without the
//! feature (every normal build), [`point`] compiles to nothing.

/// Every fault point, for the chaos driver's choice.
pub const POINTS: &[&str] = &[
    "run_pod_sandbox.netns_pinned",
    "run_pod_sandbox.infra_started",
    "run_pod_sandbox.before_record",
    "create_container.rootfs_mounted",
    "create_container.before_record",
    "start_container.started",
    "stop_pod_sandbox.before_cni_del",
    "remove_pod_sandbox.before_record_removed",
    "runtime_delete.cgroups_owed",
    "pull_image.started",
];

/// Dies here if this is the armed fault point.
#[inline]
pub fn point(name: &'static str) {
    #[cfg(feature = "fault-points")]
    if std::env::var("CRI_SERVER_FAULT").is_ok_and(|armed| armed == name) {
        tracing::warn!(point = name, "fault point reached: dying as a crash would");
        // SAFETY: a signal to ourselves.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
    debug_assert!(
        POINTS.contains(&name),
        "fault point {name} is not in POINTS"
    );
}
