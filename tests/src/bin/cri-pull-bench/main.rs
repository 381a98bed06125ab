//! `cri-pull-bench`: PullImage wall time and the daemon's peak memory for
//! a large image, against the floor of fetching the same blobs from the
//! same registry in parallel with curl (issue #19). `cargo xtask bench
//! pull` pushes the images and runs it; it needs root and the fixture
//! registry.
//!
//! Each round starts a fresh daemon (an empty store), pulls the cold image
//! (every layer new), then the warm one (one layer new), and fetches the
//! cold image's blobs with curl right before: both see the same machine
//! load, and the cold/floor ratio is taken per round. Peak RSS growth is
//! the daemon's `VmHWM` after a pull minus its `VmRSS` before it, with the
//! high-water mark reset (`/proc/PID/clear_refs`) before the pull and the
//! daemon's one-time pull set-up (HTTP client, blocking threads) done by a
//! pull of a missing image first. Exits non-zero when a target is missed.
//!
//! With `--containerd IMAGE` (the cold image as the registry names it),
//! each round also times containerd pulling it ([`tests::containerd`]), and the
//! report gives the least CPU any verifying pull needs here ([`verify`]).

mod verify;

use anyhow::{bail, ensure, Context, Result};
use cri_api::v1 as cri;
use std::process::Command;
use std::time::{Duration, Instant};
use tests::daemon::Daemon;
use tests::fixtures::image_spec;

/// The cold pull may take at most this many times the floor.
const COLD_TARGET: f64 = 1.3;
/// The daemon's peak RSS may grow by at most this much during a pull.
const RSS_TARGET_KIB: u64 = 32 << 10;
/// Debug log messages that time a pull's phases.
const PHASES: [&str; 5] = [
    "resolved",
    "layer fetched and checked",
    "every layer in place",
    "documents stored",
    "pull recorded",
];

struct Options {
    cold: String,
    warm: String,
    blobs: Vec<String>,
    rounds: usize,
    /// `[image] max_concurrent_downloads` for the daemon; its default when
    /// `None`.
    downloads: Option<u32>,
    /// The cold image as the registry names it, for containerd.
    containerd: Option<String>,
}

impl Options {
    fn parse() -> Result<Options> {
        let (mut cold, mut warm, mut blobs, mut rounds) = (None, None, Vec::new(), 3);
        let (mut downloads, mut containerd) = (None, None);
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            if flag == "-h" || flag == "--help" {
                println!(
                    "usage: cri-pull-bench --cold IMAGE --warm IMAGE --blob URL... [--rounds N] [--downloads N] [--containerd IMAGE]"
                );
                std::process::exit(0);
            }
            let value = args
                .next()
                .with_context(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--cold" => cold = Some(value),
                "--warm" => warm = Some(value),
                "--blob" => blobs.push(value),
                "--rounds" => rounds = value.parse().context("--rounds: not a number")?,
                "--downloads" => {
                    downloads = Some(value.parse().context("--downloads: not a number")?)
                }
                "--containerd" => containerd = Some(value),
                other => bail!("unknown argument {other:?} (see --help)"),
            }
        }
        ensure!(rounds > 0, "--rounds must be at least 1");
        ensure!(
            !blobs.is_empty(),
            "--blob: the cold image's layer URLs, for the floor"
        );
        Ok(Options {
            cold: cold.context("--cold IMAGE is required")?,
            warm: warm.context("--warm IMAGE is required")?,
            blobs,
            rounds,
            downloads,
            containerd,
        })
    }
}

#[tokio::main]
async fn main() {
    match run().await {
        Ok(true) => {}
        Ok(false) => {
            eprintln!("cri-pull-bench: a target was missed");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("cri-pull-bench: {e:#}");
            std::process::exit(2);
        }
    }
}

/// One round's figures.
struct Round {
    floor: Duration,
    cold: Duration,
    warm: Duration,
    /// CPU time: curl's and the registry's for the floor, the daemon's and
    /// the registry's for the cold pull.
    floor_cpu: Cpu,
    cold_cpu: Cpu,
    /// Peak RSS growth during the cold and the warm pull, KiB.
    cold_rss: u64,
    warm_rss: u64,
    /// The cold pull's phase lines from the daemon's debug log.
    phases: Vec<String>,
    /// containerd's pull of the cold image and its CPU time, ms.
    containerd: Option<(Duration, u64)>,
}

async fn run() -> Result<bool> {
    let o = Options::parse()?;
    // The registry's files into the page cache, outside the figures.
    let (_, bytes) = floor(&o.blobs)?;
    println!(
        "PullImage of {} ({} layers, {:.1} MiB), then {} (one layer new); {} rounds, each on a fresh daemon; {} layers at once",
        o.cold,
        o.blobs.len(),
        mib(bytes),
        o.warm,
        o.rounds,
        o.downloads.map_or("the default number of".into(), |n| n.to_string()),
    );
    println!(
        "{:>5} {:>9} {:>9} {:>7} {:>9} {:>16} {:>16}",
        "round", "floor ms", "cold ms", "ratio", "warm ms", "cold peak +MiB", "warm peak +MiB"
    );
    let mut rounds = Vec::new();
    for i in 0..o.rounds {
        let registry = Cpu::registry();
        let curl = Cpu::children();
        let (floor, _) = floor(&o.blobs)?;
        let floor_cpu = Cpu {
            client_ms: Cpu::children().client_ms.saturating_sub(curl.client_ms),
            registry_ms: Cpu::registry()
                .registry_ms
                .saturating_sub(registry.registry_ms),
        };
        let mut round = pulls(&o).await?;
        round.floor = floor;
        round.floor_cpu = floor_cpu;
        if let Some(image) = &o.containerd {
            round.containerd = Some(containerd_pull(image)?);
        }
        println!(
            "{:>5} {:>9.0} {:>9.0} {:>6.2}x {:>9.0} {:>16.1} {:>16.1}",
            i + 1,
            ms(round.floor),
            ms(round.cold),
            ratio(&round),
            ms(round.warm),
            round.cold_rss as f64 / 1024.0,
            round.warm_rss as f64 / 1024.0
        );
        rounds.push(round);
    }
    let ok = report(&rounds, bytes);
    if o.containerd.is_some() {
        report_anchor(&rounds);
    }
    report_verification(&o.blobs, &rounds)?;
    Ok(ok)
}

/// containerd's pull of `image` on a fresh containerd: wall and CPU time.
fn containerd_pull(image: &str) -> Result<(Duration, u64)> {
    let containerd = tests::containerd::Containerd::start()?;
    let before = containerd.cpu_ms();
    let took = containerd.pull(image)?;
    Ok((took, containerd.cpu_ms().saturating_sub(before)))
}

/// containerd against the floor and against us.
fn report_anchor(rounds: &[Round]) {
    let ours = median(rounds.iter().map(|r| r.cold.as_secs_f64()));
    let theirs = median(
        rounds
            .iter()
            .filter_map(|r| Some(r.containerd?.0.as_secs_f64())),
    );
    let cpu = median(rounds.iter().filter_map(|r| Some(r.containerd?.1 as f64)));
    let ratio = median(
        rounds
            .iter()
            .filter_map(|r| Some(r.containerd?.0.as_secs_f64() / r.floor.as_secs_f64().max(1e-9))),
    );
    println!(
        "  containerd 1.6 (ctr images pull, fresh root): {:.0} ms, {cpu:.0} ms CPU; {ratio:.2}x the floor; our cold pull takes {:.2} of its time",
        theirs * 1e3,
        ours / theirs.max(1e-9)
    );
}

/// The least CPU a verifying pull needs here, as a bound on the ratio.
fn report_verification(blobs: &[String], rounds: &[Round]) -> Result<()> {
    let fetched = verify::fetch(blobs)?;
    let mut hashed = 0;
    let mut times = Vec::new();
    for _ in 0..3 {
        let (took, bytes) = verify::hashing_time(&fetched)?;
        times.push(took.as_secs_f64());
        hashed = bytes;
    }
    let hashing = median(times.into_iter());
    let registry = median(rounds.iter().map(|r| r.cold_cpu.registry_ms as f64)) / 1e3;
    let floor = median(rounds.iter().map(|r| r.floor.as_secs_f64()));
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let bound = (hashing + registry) / cpus;
    println!(
        "  checking both digests (blob and diff id) alone: {:.0} ms of CPU (SHA-256 at {:.0} MiB/s); with the registry's {:.0} ms on {cpus} CPUs no verifying pull can take under {:.0} ms = {:.2}x the floor",
        hashing * 1e3,
        mib(hashed) / hashing.max(1e-9),
        registry * 1e3,
        bound * 1e3,
        bound / floor.max(1e-9)
    );
    Ok(())
}

/// Prints the medians and the verdicts; true when every target is met.
fn report(rounds: &[Round], bytes: u64) -> bool {
    let cold = median(rounds.iter().map(|r| r.cold.as_secs_f64()));
    let floor = median(rounds.iter().map(|r| r.floor.as_secs_f64()));
    let warm = median(rounds.iter().map(|r| r.warm.as_secs_f64()));
    let cold_ratio = median(rounds.iter().map(ratio));
    let peak = rounds
        .iter()
        .map(|r| r.cold_rss.max(r.warm_rss))
        .max()
        .unwrap_or(0);
    let (ok_time, ok_rss) = (cold_ratio <= COLD_TARGET, peak <= RSS_TARGET_KIB);
    println!("\nmedians over {} rounds:", rounds.len());
    println!(
        "  cold pull:  {:>7.0} ms  {:>6.0} MiB/s",
        cold * 1e3,
        mib(bytes) / cold
    );
    println!(
        "  floor:      {:>7.0} ms  {:>6.0} MiB/s  (curl, every blob at once)",
        floor * 1e3,
        mib(bytes) / floor
    );
    println!(
        "  cold / floor: {cold_ratio:.2}x (median of the rounds' ratios; target <= {COLD_TARGET}x) {}",
        verdict(ok_time)
    );
    println!(
        "  warm pull:  {:>7.0} ms  (one new layer; {:.2} of the cold pull)",
        warm * 1e3,
        warm / cold
    );
    println!(
        "  peak RSS growth: {:.1} MiB (largest of any pull; target <= {} MiB) {}",
        peak as f64 / 1024.0,
        RSS_TARGET_KIB >> 10,
        verdict(ok_rss)
    );
    let cpu = |f: fn(&Round) -> u64| median(rounds.iter().map(|r| f(r) as f64));
    println!(
        "  CPU time (median): cold pull {:.0} ms in the daemon + {:.0} ms in the registry; floor {:.0} ms in curl + {:.0} ms in the registry",
        cpu(|r| r.cold_cpu.client_ms),
        cpu(|r| r.cold_cpu.registry_ms),
        cpu(|r| r.floor_cpu.client_ms),
        cpu(|r| r.floor_cpu.registry_ms),
    );
    if let Some(last) = rounds.last() {
        println!("\nthe last cold pull's phases (daemon debug log):");
        for line in &last.phases {
            println!("  {line}");
        }
    }
    ok_time && ok_rss
}

/// Fetches every blob at once with curl to /dev/null: the time and the
/// bytes.
fn floor(blobs: &[String]) -> Result<(Duration, u64)> {
    let mut curl = Command::new("curl");
    curl.args(["-sS", "--fail", "--parallel", "--parallel-immediate"])
        .args(["--parallel-max", "64", "-w", "%{size_download}\\n"]);
    for url in blobs {
        curl.args(["-o", "/dev/null", url]);
    }
    let start = Instant::now();
    let out = curl.output().context("running curl")?;
    let took = start.elapsed();
    ensure!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .sum();
    Ok((took, bytes))
}

/// A fresh daemon's cold and warm pulls.
async fn pulls(o: &Options) -> Result<Round> {
    let config = o
        .downloads
        .map(|n| format!("[image]\nmax_concurrent_downloads = {n}\n"))
        .unwrap_or_default();
    let mut daemon = Daemon::start(&config).await;
    let result = measure(&daemon, o).await;
    let phases = daemon
        .log()
        .lines()
        .filter(|l| l.contains(&o.cold) && PHASES.iter().any(|p| l.contains(p)))
        .map(|l| {
            l.split_once(" DEBUG ")
                .map_or(l, |(_, rest)| rest)
                .to_string()
        })
        .collect();
    daemon.terminate().await;
    let (cold, warm, cold_rss, warm_rss, cold_cpu) = result?;
    Ok(Round {
        floor: Duration::ZERO,
        cold,
        warm,
        floor_cpu: Cpu::default(),
        cold_cpu,
        cold_rss,
        warm_rss,
        phases,
        containerd: None,
    })
}

/// CPU time (user and system), in ms: a client's and the registry's.
#[derive(Clone, Copy, Default)]
struct Cpu {
    client_ms: u64,
    registry_ms: u64,
}

impl Cpu {
    /// The CPU time of this process's waited-for children (curl).
    fn children() -> Cpu {
        Cpu {
            client_ms: stat_ms("/proc/self/stat", 15),
            registry_ms: 0,
        }
    }

    /// The fixture registry's CPU time so far (0 when it is not found).
    fn registry() -> Cpu {
        let pid = std::fs::read_dir("/proc").ok().and_then(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .find(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/comm"))
                        .is_ok_and(|c| c.trim_end() == "docker-registry")
                })
        });
        Cpu {
            client_ms: 0,
            registry_ms: pid.map_or(0, |pid| stat_ms(&format!("/proc/{pid}/stat"), 13)),
        }
    }

    /// A process's own CPU time so far.
    fn of(pid: u32) -> u64 {
        stat_ms(&format!("/proc/{pid}/stat"), 13)
    }
}

/// The sum of two clock-tick fields of a `/proc/…/stat` file (`first` and
/// the next, numbered from 0 as the pid), in ms: utime+stime at 13,
/// cutime+cstime at 15. Clock ticks are USER_HZ, 100 on Linux.
fn stat_ms(path: &str, first: usize) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // The command name may hold spaces; fields count from after it.
    let fields: Vec<&str> = text
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let field = |i: usize| fields.get(i - 2).and_then(|v| v.parse::<u64>().ok());
    (field(first).unwrap_or(0) + field(first + 1).unwrap_or(0)) * 10
}

async fn measure(daemon: &Daemon, o: &Options) -> Result<(Duration, Duration, u64, u64, Cpu)> {
    let mut images = daemon.images().await;
    let missing = "registry.k8s.io/bench/no-such-image:latest";
    let warm_up = pull(&mut images, missing).await;
    ensure!(warm_up.is_err(), "{missing} exists");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = daemon.pid();
    let mut measured = Vec::new();
    let mut cold_cpu = Cpu::default();
    for image in [&o.cold, &o.warm] {
        let before = status_kib(pid, "VmRSS:")?;
        reset_peak(pid)?;
        let (daemon_cpu, registry_cpu) = (Cpu::of(pid), Cpu::registry().registry_ms);
        let start = Instant::now();
        pull(&mut images, image)
            .await
            .with_context(|| format!("PullImage {image}\n{}", tail(&daemon.log(), 20)))?;
        let took = start.elapsed();
        let peak = status_kib(pid, "VmHWM:")?;
        if measured.is_empty() {
            cold_cpu = Cpu {
                client_ms: Cpu::of(pid).saturating_sub(daemon_cpu),
                registry_ms: Cpu::registry().registry_ms.saturating_sub(registry_cpu),
            };
        }
        measured.push((took, peak.saturating_sub(before)));
    }
    let ((cold, cold_rss), (warm, warm_rss)) = (measured[0], measured[1]);
    Ok((cold, warm, cold_rss, warm_rss, cold_cpu))
}

async fn pull(
    images: &mut cri::image_service_client::ImageServiceClient<tonic::transport::Channel>,
    image: &str,
) -> Result<String> {
    let answer = images
        .pull_image(cri::PullImageRequest {
            image: image_spec(image),
            ..Default::default()
        })
        .await?;
    Ok(answer.into_inner().image_ref)
}

/// Sets the process's peak RSS (`VmHWM`) back to its current RSS.
fn reset_peak(pid: u32) -> Result<()> {
    let path = format!("/proc/{pid}/clear_refs");
    std::fs::write(&path, "5").with_context(|| format!("write {path}"))
}

/// A `kB` field of `/proc/PID/status`.
fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("{path}: no {field}"))
}

fn ratio(round: &Round) -> f64 {
    round.cold.as_secs_f64() / round.floor.as_secs_f64().max(1e-9)
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}

fn tail(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}
