//! A node's worth at once (issue #20): `pods` pods of two busybox
//! containers each, built by 4 clients in parallel, ListContainerStats over
//! all of them (kubelet's every 10–15 s), then all torn down by 4 clients;
//! against our daemon and containerd alike, through their CRI sockets.

use crate::lifecycle::{pod, timed};
use crate::stats::Samples;
use anyhow::{Context, Result};
use cri_api::v1 as cri;
use cri_api::v1::runtime_service_client::RuntimeServiceClient;
use std::path::Path;
use std::time::{Duration, Instant};
use tests::fixtures::{container_config, BUSYBOX};

/// How many ListContainerStats calls are timed at full scale.
const STATS_CALLS: usize = 20;

/// What one runtime did at scale.
#[derive(Default)]
pub struct ScaleRun {
    /// Wall time to run every pod and start its containers.
    pub build: Duration,
    /// Wall time to stop and remove every pod.
    pub teardown: Duration,
    /// Per-call latencies.
    pub run_pod: Samples,
    pub stop_pod: Samples,
    pub remove_pod: Samples,
    pub list_stats: Samples,
    /// Containers ListContainerStats reported.
    pub containers: usize,
}

/// Where a runtime records the teardown's work it finishes after its
/// calls return.
pub struct Owed {
    /// A record per CNI attachment not yet released, by pod id (our
    /// `root/cni`): a removal's CNI DEL may run after RemovePodSandbox.
    pub attachments: std::path::PathBuf,
    /// A directory per deleted container whose cgroups are not yet removed
    /// (our `state/retired/runc`).
    pub retired: std::path::PathBuf,
}

/// How long a teardown may wait for a runtime's background network
/// releases and cgroup removals once its calls have returned.
const RELEASE_WAIT: Duration = Duration::from_secs(120);

/// Builds `pods` pods with `workers` clients, times ListContainerStats,
/// tears everything down; `tag` names the pods.
///
/// `owed` names where a runtime that finishes work after its calls return
/// records that work, so that the teardown ends only when it is done and
/// work moved off the request path still counts. containerd's is done by
/// the time its calls return (`None`).
pub async fn run(
    socket: &Path,
    logs: &Path,
    tag: &str,
    pods: usize,
    workers: usize,
    owed: Option<&Owed>,
) -> Result<ScaleRun> {
    let mut out = ScaleRun::default();
    let started = Instant::now();
    let (logs, tag) = (logs.to_path_buf(), tag.to_string());
    let built = in_parallel(socket, workers, pods, move |mut rt, i| {
        let logs = logs.clone();
        let name = format!("scale-{tag}-{i}");
        async move {
            let mut run_pod = Samples::default();
            let config = pod(&name, &logs, false);
            let (ran, _) = timed(
                "RunPodSandbox",
                &mut run_pod,
                rt.run_pod_sandbox(cri::RunPodSandboxRequest {
                    config: Some(config.clone()),
                    runtime_handler: String::new(),
                }),
            )
            .await?;
            for c in ["a", "b"] {
                let created = rt
                    .create_container(cri::CreateContainerRequest {
                        pod_sandbox_id: ran.pod_sandbox_id.clone(),
                        config: Some(container_config(c, BUSYBOX, &["sleep", "3600"])),
                        sandbox_config: Some(config.clone()),
                    })
                    .await
                    .context("CreateContainer")?
                    .into_inner();
                rt.start_container(cri::StartContainerRequest {
                    container_id: created.container_id,
                })
                .await
                .context("StartContainer")?;
            }
            Ok((ran.pod_sandbox_id, run_pod))
        }
    })
    .await?;
    out.build = started.elapsed();
    let ids: std::sync::Arc<Vec<String>> =
        std::sync::Arc::new(built.iter().map(|(id, _)| id.clone()).collect());
    for (_, samples) in &built {
        out.run_pod.extend(samples);
    }
    list_stats(socket, &mut out).await?;
    let started = Instant::now();
    let count = ids.len();
    let torn_ids = std::sync::Arc::clone(&ids);
    let torn = in_parallel(socket, workers, count, move |mut rt, i| {
        let id = ids[i].clone();
        async move {
            let (mut stop, mut remove) = (Samples::default(), Samples::default());
            let stop_req = cri::StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            };
            timed("StopPodSandbox", &mut stop, rt.stop_pod_sandbox(stop_req)).await?;
            let remove_req = cri::RemovePodSandboxRequest { pod_sandbox_id: id };
            timed(
                "RemovePodSandbox",
                &mut remove,
                rt.remove_pod_sandbox(remove_req),
            )
            .await?;
            Ok((stop, remove))
        }
    })
    .await?;
    if let Some(owed) = owed {
        wait_released(&owed.attachments, &torn_ids).await?;
        wait_released(&owed.retired, &[]).await?;
    }
    out.teardown = started.elapsed();
    for (stop, remove) in &torn {
        out.stop_pod.extend(stop);
        out.remove_pod.extend(remove);
    }
    Ok(out)
}

/// ListContainerStats over everything, once to warm up, then timed.
async fn list_stats(socket: &Path, out: &mut ScaleRun) -> Result<()> {
    let mut rt = RuntimeServiceClient::new(tests::daemon::channel(socket).await);
    let request = || cri::ListContainerStatsRequest { filter: None };
    out.containers = rt
        .list_container_stats(request())
        .await
        .context("ListContainerStats")?
        .into_inner()
        .stats
        .len();
    for _ in 0..STATS_CALLS {
        timed(
            "ListContainerStats",
            &mut out.list_stats,
            rt.list_container_stats(request()),
        )
        .await?;
    }
    Ok(())
}

/// Runs `job(client, i)` for every `i` below `count`, `workers` at once,
/// each worker on a connection of its own; the results in order of `i`.
pub async fn in_parallel<T, F, Fut>(
    socket: &Path,
    workers: usize,
    count: usize,
    job: F,
) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(RuntimeServiceClient<tonic::transport::Channel>, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<T>> + Send,
{
    let mut tasks = Vec::new();
    for w in 0..workers {
        let rt = RuntimeServiceClient::new(tests::daemon::channel(socket).await);
        let job = job.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = Vec::new();
            for i in (w..count).step_by(workers) {
                done.push((i, job(rt.clone(), i).await?));
            }
            Ok::<_, anyhow::Error>(done)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.context("worker panicked")??);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, t)| t).collect())
}

/// Our figures at scale beside containerd's, with the targets; true when
/// every target that could be judged is met.
pub fn report(
    pods: usize,
    ours: &ScaleRun,
    theirs: Option<&ScaleRun>,
    floor: Option<crate::scale_floor::FloorScale>,
) -> bool {
    println!("\n{pods} pods x 2 containers, 4 clients at once:");
    println!("  {:<34} {:>10} {:>11}", "", "ours", "containerd");
    let row = |name: &str, f: &dyn Fn(&ScaleRun) -> f64| {
        let theirs = theirs.map_or("-".to_string(), |t| format!("{:.1}", f(t)));
        println!("  {name:<34} {:>10.1} {theirs:>11}", f(ours));
    };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    row("build, wall (ms)", &|r| ms(r.build));
    row("teardown, wall (ms)", &|r| ms(r.teardown));
    if let Some(f) = floor {
        println!(
            "  {:<34} {:>10.1} (build) {:.1} (teardown)",
            "floor: bare runc + CNI, wall (ms)",
            ms(f.build),
            ms(f.teardown)
        );
    }
    row("RunPodSandbox p50 (ms)", &|r| ms(r.run_pod.p50()));
    row("RunPodSandbox p99 (ms)", &|r| {
        ms(r.run_pod.percentile(99.0))
    });
    row("StopPodSandbox p50 (ms)", &|r| ms(r.stop_pod.p50()));
    row("StopPodSandbox p99 (ms)", &|r| {
        ms(r.stop_pod.percentile(99.0))
    });
    row("RemovePodSandbox p50 (ms)", &|r| ms(r.remove_pod.p50()));
    row("ListContainerStats p50 (ms)", &|r| ms(r.list_stats.p50()));
    row("  over containers", &|r| r.containers as f64);
    let mut passed = true;
    let mut judge = |what: String, ok: bool| {
        passed &= ok;
        println!("  {what} {}", crate::verdict(ok));
    };
    let stats = ms(ours.list_stats.p50());
    judge(
        format!("ListContainerStats p50 {stats:.1} ms (target <= {STATS_TARGET_MS} ms)"),
        stats <= STATS_TARGET_MS,
    );
    let spread =
        ours.stop_pod.percentile(99.0).as_secs_f64() / ours.stop_pod.p50().as_secs_f64().max(1e-9);
    judge(
        format!("StopPodSandbox p99 / p50 {spread:.2}x (target <= {STOP_SPREAD_TARGET}x)"),
        spread <= STOP_SPREAD_TARGET,
    );
    if let Some(t) = theirs {
        let build = ours.build.as_secs_f64() / t.build.as_secs_f64().max(1e-9);
        judge(
            format!("build / containerd's {build:.2}x (target <= {BUILD_TARGET}x)"),
            build <= BUILD_TARGET,
        );
        let teardown = ours.teardown.as_secs_f64() / t.teardown.as_secs_f64().max(1e-9);
        judge(
            format!("teardown / containerd's {teardown:.2}x (target <= {TEARDOWN_TARGET}x)"),
            teardown <= TEARDOWN_TARGET,
        );
        if let Some(f) = floor {
            floor_report(ours, t, f);
        }
    }
    passed
}

/// Where the floor puts the build and teardown targets: `floor /
/// containerd` is the lowest ratio a runtime on runc and these CNI plugins
/// could reach here (informational).
fn floor_report(ours: &ScaleRun, theirs: &ScaleRun, floor: crate::scale_floor::FloorScale) {
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    for (what, ours, theirs, floor, target) in [
        ("build", ours.build, theirs.build, floor.build, BUILD_TARGET),
        (
            "teardown",
            ours.teardown,
            theirs.teardown,
            floor.teardown,
            TEARDOWN_TARGET,
        ),
    ] {
        println!(
            "  {what}: ours / floor {:.2}x, containerd / floor {:.2}x; floor / containerd {:.2}x \
             (the lowest reachable ratio; target <= {target}x)",
            ratio(ours, floor),
            ratio(theirs, floor),
            ratio(floor, theirs)
        );
    }
}

/// ListContainerStats over the whole node may take at most this long.
const STATS_TARGET_MS: f64 = 10.0;
/// StopPodSandbox's p99 may be at most this many times its p50.
const STOP_SPREAD_TARGET: f64 = 2.0;
/// Our build and teardown wall times per containerd's.
const BUILD_TARGET: f64 = 0.45;
const TEARDOWN_TARGET: f64 = 0.3;

/// Waits until `dir` (a runtime's record of work owed, one entry per pod
/// or container id) holds none of `ids`, or nothing at all when `ids` is
/// empty.
async fn wait_released(dir: &Path, ids: &[String]) -> Result<()> {
    let deadline = Instant::now() + RELEASE_WAIT;
    loop {
        let left = match ids {
            [] => std::fs::read_dir(dir).map_or(0, |d| d.count()),
            ids => ids.iter().filter(|id| dir.join(id).exists()).count(),
        };
        if left == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{left} entries of owed work still in {} after {RELEASE_WAIT:?}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
