//! `cri-chaos`: a kubelet-like workload against the real daemon while it is
//! cancelled, raced and killed, checked after every cycle against the
//! kernel rather than the daemon's word. Run by `cargo xtask chaos`, which
//! builds the daemon with its fault points.
//!
//! Each cycle runs two pods (runc; every fourth cycle one on runsc) with a
//! long-running and an exiting container, an exec, and teardown, while:
//! - calls get random short deadlines and are retried, as kubelet does;
//! - the daemon is killed with SIGKILL at a random moment, or at a named
//!   fault point (`cri_server::fault::POINTS`), and restarted;
//! - two identical RunPodSandbox calls race.
//!
//! Like kubelet after a crash, an `AlreadyExists ... as <id>` is adopted:
//! kubelet would find that pod or container in its listing.
//! Invariants: every pod and container the workload holds is listed exactly
//! once, nothing else is; once all are removed, no monitor, mount, pin,
//! runtime container, cgroup, IP allocation or iptables rule of theirs is
//! left (`tests::leaks`).

use cri_api::v1 as cri;
use std::collections::HashSet;
use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;
use tests::daemon::Daemon;
use tests::fixtures::{
    container_config, pod_config, with_kubelet_namespaces, with_user_namespace, BUSYBOX,
};
use tonic::{Code, Status};

/// The longest a call may go unanswered: far beyond any verb's own time,
/// pulls included, on this harness's small images.
const CALL_LIMIT: Duration = Duration::from_secs(120);

/// The daemon's fault points (`cri_server::fault::POINTS`, which this crate
/// cannot import: it does not depend on the daemon's library).
const FAULT_POINTS: &[&str] = &[
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

#[derive(Default)]
struct Stats {
    cycles: u32,
    kills: u32,
    fault_kills: u32,
    cancellations: u32,
    races: u32,
    violations: Vec<String>,
}

/// A small deterministic generator: a seed reproduces a run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, in_: u64) -> bool {
        self.below(in_) == 0
    }
}

struct Chaos {
    daemon: Daemon,
    rng: Rng,
    stats: Stats,
    /// Every pod and container id ever made.
    ever: HashSet<String>,
    /// The fault point armed in the running daemon.
    armed: Option<&'static str>,
    /// Whether a random kill was sent since the last restart.
    killed: bool,
    /// A fault point to arm in every cycle (`--fault`), to test one spot.
    always: Option<&'static str>,
}

/// A pod the workload holds, with its containers.
struct Pod {
    id: String,
    containers: Vec<String>,
    sleeper: String,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let mut cycles = 100;
    // Process ids repeat on fresh machines; the clock does not.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut seed = (now ^ std::process::id() as u64) | 1;
    let mut fault = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        let number: Option<u64> = value.as_deref().and_then(|v| v.parse().ok());
        match (arg.as_str(), number) {
            ("--cycles", Some(n)) => cycles = n as u32,
            ("--seed", Some(s)) => seed = s | 1,
            ("--fault", _) if FAULT_POINTS.contains(&value.as_deref().unwrap_or("")) => {
                fault = FAULT_POINTS
                    .iter()
                    .copied()
                    .find(|p| Some(*p) == value.as_deref())
            }
            _ => {
                eprintln!("usage: cri-chaos [--cycles N] [--seed S] [--fault POINT]");
                eprintln!("fault points: {}", FAULT_POINTS.join(", "));
                return ExitCode::from(2);
            }
        }
    }
    eprintln!("cri-chaos: {cycles} cycles, seed {seed}");
    let daemon = Daemon::start("[runtime]\nunclaimed_creation_grace_seconds = 2\n").await;
    let mut chaos = Chaos {
        daemon,
        rng: Rng(seed),
        stats: Stats::default(),
        ever: HashSet::new(),
        armed: None,
        killed: false,
        always: fault,
    };
    let _ = chaos
        .call(|(_, mut images)| async move {
            images
                .pull_image(cri::PullImageRequest {
                    image: tests::fixtures::image_spec(BUSYBOX),
                    ..Default::default()
                })
                .await
                .map(|_| ())
        })
        .await;
    for cycle in 0..cycles {
        chaos.cycle(cycle).await;
    }
    chaos.report();
    if chaos.stats.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

type Clients = (
    cri::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>,
    cri::image_service_client::ImageServiceClient<tonic::transport::Channel>,
);

impl Chaos {
    /// One cycle: arm or schedule a kill, run the workload, check, tear
    /// down, check again.
    async fn cycle(&mut self, cycle: u32) {
        self.stats.cycles += 1;
        if let Some(point) = self.always {
            self.restart_with(Some(point)).await;
        } else if self.rng.chance(3) {
            let point = FAULT_POINTS[self.rng.below(FAULT_POINTS.len() as u64) as usize];
            self.restart_with(Some(point)).await;
        }
        let killer = self.rng.chance(3).then(|| self.rng.below(1500));
        let killer = killer.map(|after| {
            let pid = self.daemon.pid() as i32;
            self.killed = true;
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(after)).await;
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            })
        });
        // A pull of a present image still goes through PullImage's path.
        let _ = self
            .call(|(_, mut images)| async move {
                images
                    .pull_image(cri::PullImageRequest {
                        image: tests::fixtures::image_spec(BUSYBOX),
                        ..Default::default()
                    })
                    .await
                    .map(|_| ())
            })
            .await;
        let mut pods = Vec::new();
        for n in 0..2 {
            let handler = if cycle % 4 == 3 && n == 1 {
                "runsc"
            } else {
                ""
            };
            pods.push(self.pod(&format!("chaos-{cycle}-{n}"), handler).await);
        }
        if let Some(killer) = killer {
            let _ = killer.await;
        }
        self.check_listing(cycle, &pods).await;
        for pod in pods.iter().filter(|p| !p.id.is_empty()) {
            self.remove(&pod.id).await;
        }
        self.check_nothing_left(cycle).await;
        eprintln!(
            "cycle {cycle}: {} kills, {} at fault points, {} cancellations, {} races, {} violations",
            self.stats.kills,
            self.stats.fault_kills,
            self.stats.cancellations,
            self.stats.races,
            self.stats.violations.len()
        );
    }

    /// Runs `call` until it succeeds: after a cancellation, after the
    /// daemon died (it is restarted), and through `AlreadyExists ... as
    /// <id>`, which is the caller's to adopt.
    async fn call<T, F, Fut>(&mut self, mut call: F) -> Result<T, String>
    where
        F: FnMut(Clients) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        for _ in 0..50 {
            let socket = self.daemon.socket();
            let attempt = async {
                let channel = tests::daemon::try_channel(&socket).await.ok()?;
                let clients = (
                    cri::runtime_service_client::RuntimeServiceClient::new(channel.clone()),
                    cri::image_service_client::ImageServiceClient::new(channel),
                );
                Some(call(clients).await)
            };
            let answer = match tokio::time::timeout(CALL_LIMIT, attempt).await {
                Ok(answer) => answer,
                // A daemon killed under a call left the client waiting with
                // no connection (seen once in CI: the run hung until its
                // limit). A dead daemon is revived; a live one that never
                // answered is what this harness looks for.
                Err(_) if self.daemon.has_exited() => None,
                Err(_) => {
                    self.violate(format!("a call got no answer in {CALL_LIMIT:?}"));
                    return Err(String::new());
                }
            };
            let Some(answer) = answer else {
                self.revive().await;
                continue;
            };
            match answer {
                Ok(value) => return Ok(value),
                Err(status) if status.code() == Code::AlreadyExists => {
                    return Err(status.message().to_string())
                }
                Err(status) => {
                    if self.daemon.has_exited() {
                        self.revive().await;
                    } else if !matches!(
                        status.code(),
                        Code::DeadlineExceeded
                            | Code::Cancelled
                            | Code::Unavailable
                            | Code::Unknown
                    ) {
                        // A refusal a kubelet could not get past: recorded,
                        // and the call given up.
                        self.violate(format!("refused: {status}"));
                        return Err(String::new());
                    }
                }
            }
        }
        self.violate("a call never succeeded in 50 tries".into());
        Err(String::new())
    }

    /// A deadline for the next call: often too short (counted), else none.
    fn deadline(&mut self) -> Option<Duration> {
        self.rng.chance(2).then(|| {
            self.stats.cancellations += 1;
            Duration::from_millis(5 + self.rng.below(60))
        })
    }

    /// Makes a pod with a sleeper and an exiting container, and execs in
    /// the sleeper.
    async fn pod(&mut self, name: &str, handler: &str) -> Pod {
        // Half as crictl and critest send them (a PID namespace shared by
        // the pod: an infra container), half as kubelet does (none: pins);
        // on runc, a third of either with a user namespace of its own.
        let mut config = if self.rng.chance(2) {
            with_kubelet_namespaces(pod_config(name), false)
        } else {
            pod_config(name)
        };
        if handler != "runsc" && self.rng.chance(3) {
            config = with_user_namespace(config, 2_000_000);
        }
        let run = cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.into(),
        };
        let race = self.rng.chance(5);
        let id = self.run_pod(&run, race).await;
        if id.is_empty() {
            return Pod {
                id,
                containers: Vec::new(),
                sleeper: String::new(),
            };
        }
        self.ever.insert(id.clone());
        let mut pod = Pod {
            id: id.clone(),
            containers: Vec::new(),
            sleeper: String::new(),
        };
        for (name, argv) in [
            ("sleeper", vec!["sleep", "600"]),
            ("exiter", vec!["sh", "-c", "echo out; exit 3"]),
        ] {
            let create = cri::CreateContainerRequest {
                pod_sandbox_id: id.clone(),
                config: Some(container_config(name, BUSYBOX, &argv)),
                sandbox_config: Some(config.clone()),
            };
            let container = self.create(&create).await;
            if container.is_empty() {
                continue;
            }
            self.ever.insert(container.clone());
            self.start(&container).await;
            pod.containers.push(container.clone());
            if name == "sleeper" {
                pod.sleeper = container;
            }
        }
        if !pod.sleeper.is_empty() {
            self.exec(&pod.sleeper).await;
        }
        pod
    }

    async fn run_pod(&mut self, run: &cri::RunPodSandboxRequest, race: bool) -> String {
        if race {
            self.stats.races += 1;
            let channel = tests::daemon::try_channel(&self.daemon.socket()).await;
            if let Ok(channel) = channel {
                let mut a = cri::runtime_service_client::RuntimeServiceClient::new(channel.clone());
                let mut b = cri::runtime_service_client::RuntimeServiceClient::new(channel);
                let (x, y) = tokio::join!(
                    a.run_pod_sandbox(run.clone()),
                    b.run_pod_sandbox(run.clone())
                );
                if let (Ok(x), Ok(y)) = (&x, &y) {
                    let (x, y) = (&x.get_ref().pod_sandbox_id, &y.get_ref().pod_sandbox_id);
                    if x != y {
                        self.violate(format!("a same-name race made two pods: {x} and {y}"));
                    }
                }
            }
        }
        let first_deadline = self.deadline();
        let mut deadline = first_deadline;
        let made = self
            .call(|(mut rt, _)| {
                let run = run.clone();
                let this_deadline = deadline.take();
                async move { rt.run_pod_sandbox(timed(run, this_deadline)).await }
            })
            .await;
        match made {
            Ok(answer) => answer.into_inner().pod_sandbox_id,
            Err(already) => adopt(&already).unwrap_or_default(),
        }
    }

    async fn create(&mut self, create: &cri::CreateContainerRequest) -> String {
        let mut deadline = self.deadline();
        let made = self
            .call(|(mut rt, _)| {
                let create = create.clone();
                let this_deadline = deadline.take();
                async move { rt.create_container(timed(create, this_deadline)).await }
            })
            .await;
        match made {
            Ok(answer) => answer.into_inner().container_id,
            Err(already) => adopt(&already).unwrap_or_default(),
        }
    }

    async fn start(&mut self, id: &str) {
        let _ = self
            .call(|(mut rt, _)| {
                let container_id = id.to_string();
                async move {
                    match rt
                        .start_container(cri::StartContainerRequest { container_id })
                        .await
                    {
                        // Started before a crash cut the answer: done.
                        Err(s) if s.code() == Code::FailedPrecondition => Ok(()),
                        other => other.map(|_| ()),
                    }
                }
            })
            .await;
    }

    async fn exec(&mut self, id: &str) {
        let answer = self
            .call(|(mut rt, _)| {
                let container_id = id.to_string();
                async move {
                    rt.exec_sync(cri::ExecSyncRequest {
                        container_id,
                        cmd: vec!["echo".into(), "chaos".into()],
                        timeout: 10,
                    })
                    .await
                }
            })
            .await;
        if let Ok(answer) = answer {
            let answer = answer.into_inner();
            if answer.stdout != b"chaos\n" {
                self.violate(format!("exec in {id} answered {answer:?}"));
            }
        }
    }

    async fn remove(&mut self, id: &str) {
        let _ = self
            .call(|(mut rt, _)| {
                let pod_sandbox_id = id.to_string();
                async move {
                    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
                        pod_sandbox_id: pod_sandbox_id.clone(),
                    })
                    .await?;
                    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id })
                        .await
                        .map(|_| ())
                }
            })
            .await;
    }

    /// Every pod and container held is listed exactly once, the sleepers
    /// run, and nothing else is listed.
    async fn check_listing(&mut self, cycle: u32, pods: &[Pod]) {
        let listed = self
            .call(|(mut rt, _)| async move {
                let pods = rt
                    .list_pod_sandbox(cri::ListPodSandboxRequest::default())
                    .await?
                    .into_inner()
                    .items;
                let containers = rt
                    .list_containers(cri::ListContainersRequest::default())
                    .await?
                    .into_inner()
                    .containers;
                Ok((pods, containers))
            })
            .await;
        let Ok((listed_pods, listed_containers)) = listed else {
            return;
        };
        // A pod or container given up after a refusal (already a
        // violation) has no id.
        let held_pods: Vec<&str> = pods
            .iter()
            .map(|p| p.id.as_str())
            .filter(|id| !id.is_empty())
            .collect();
        let held_containers: Vec<&str> = pods
            .iter()
            .flat_map(|p| p.containers.iter().map(String::as_str))
            .collect();
        let listed_pod_ids: Vec<&str> = listed_pods.iter().map(|p| p.id.as_str()).collect();
        let listed_ids: Vec<&str> = listed_containers.iter().map(|c| c.id.as_str()).collect();
        for (what, held, listed) in [
            ("pod", &held_pods, &listed_pod_ids),
            ("container", &held_containers, &listed_ids),
        ] {
            for id in held.iter() {
                let n = listed.iter().filter(|l| *l == id).count();
                if n != 1 {
                    self.violate(format!("cycle {cycle}: {what} {id} listed {n} times"));
                }
            }
            for id in listed.iter().filter(|l| !held.contains(l)) {
                self.violate(format!("cycle {cycle}: {what} {id} listed but never made"));
            }
        }
        for pod in pods.iter().filter(|p| !p.sleeper.is_empty()) {
            let running = listed_containers.iter().any(|c| {
                c.id == pod.sleeper && c.state == cri::ContainerState::ContainerRunning as i32
            });
            if !running {
                self.violate(format!(
                    "cycle {cycle}: sleeper {} is not running",
                    pod.sleeper
                ));
            }
        }
    }

    /// After removing everything: nothing listed, nothing on the machine.
    async fn check_nothing_left(&mut self, cycle: u32) {
        let dir = self.daemon.dir().to_path_buf();
        let mut leaks = Vec::new();
        // Removal is asynchronous in places (monitors exit, the kernel
        // tears down): give it a few seconds.
        for _ in 0..100 {
            leaks = tests::leaks::find(&dir, &HashSet::new(), &self.ever);
            if leaks.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for leak in leaks {
            self.violate(format!("cycle {cycle}: left behind: {leak}"));
        }
        let listed = self
            .call(|(mut rt, _)| async move {
                Ok(rt
                    .list_pod_sandbox(cri::ListPodSandboxRequest::default())
                    .await?
                    .into_inner()
                    .items
                    .len())
            })
            .await
            .unwrap_or(0);
        if listed != 0 {
            self.violate(format!(
                "cycle {cycle}: {listed} pods listed after removing all"
            ));
        }
    }

    /// The daemon died (a kill, or a fault point): start it again, disarmed.
    async fn revive(&mut self) {
        if !self.daemon.has_exited() {
            // Not dead: the socket was briefly unreachable.
            tokio::time::sleep(Duration::from_millis(50)).await;
            return;
        }
        if self.armed.is_some() && self.daemon.log().contains("fault point reached") {
            self.stats.fault_kills += 1;
        } else if self.killed {
            self.stats.kills += 1;
        }
        self.restart_with(None).await;
    }

    /// Restarts the daemon with `fault` armed.
    async fn restart_with(&mut self, fault: Option<&'static str>) {
        self.daemon.reap();
        self.daemon.arm_fault(fault);
        self.armed = fault;
        self.killed = false;
        self.daemon.restart().await;
    }

    fn violate(&mut self, what: String) {
        eprintln!("VIOLATION: {what}");
        self.stats.violations.push(what);
    }

    fn report(&self) {
        let s = &self.stats;
        println!("| cycles | kills | at fault points | cancellations | races | violations |");
        println!("|---|---|---|---|---|---|");
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            s.cycles,
            s.kills,
            s.fault_kills,
            s.cancellations,
            s.races,
            s.violations.len()
        );
        for v in &s.violations {
            println!("- {v}");
        }
    }
}

/// `message` with a `grpc-timeout` of `deadline`, if any, as kubelet sends.
fn timed<T>(message: T, deadline: Option<Duration>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(deadline) = deadline {
        request.set_timeout(deadline);
    }
    request
}

/// The id an `AlreadyExists ... as <id>` names: what kubelet would find.
fn adopt(message: &str) -> Option<String> {
    message
        .rsplit(" as ")
        .next()
        .map(|id| id.trim().to_string())
        .filter(|id| id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()))
}
