//! `cri-server`: the CRI v1 daemon's command line.

use clap::{CommandFactory, Parser, Subcommand};
use cri_server::config::{Config, ConfigSources};
use cri_server::log_level::LogLevel;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::reload::Handle;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry};

/// The version and the git revision it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("CRI_SERVER_GIT_REVISION"),
    ")"
);

/// A Kubernetes CRI v1 runtime that decides per pod whether it is trusted and
/// runs it on runc or on a sandboxing runtime (gVisor's runsc).
#[derive(Parser)]
#[command(name = "cri-server", version = VERSION)]
struct Cli {
    /// The main configuration file [default: /etc/cri-server/config.toml;
    /// when that is absent, the embedded default].
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// The drop-in directory: every `*.toml` in it, in lexical order, laid
    /// over the main file [default: `config.d` beside the main file].
    #[arg(long, global = true)]
    config_dir: Option<PathBuf>,
    /// Log level or tracing filter (error, warn, info, debug, trace)
    /// [default: the configuration's `log_level`, else info].
    #[arg(long, global = true)]
    log_level: Option<String>,
    /// Log line format: `text` for people (coloured only on a terminal),
    /// `json` (one object per line) for log shippers.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

/// How log lines are written to stderr.
#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Print the effective configuration (main file and drop-ins over the
    /// embedded default) as TOML and exit.
    Config {
        /// Instead, list each key with the file that set it.
        #[arg(long)]
        sources: bool,
    },
    /// Ask the running daemon to reload its configuration (SIGHUP to the pid
    /// in its state directory).
    Reload,
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Completions { shell }) => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "cri-server", &mut script);
            return out(&String::from_utf8_lossy(&script));
        }
        Some(Command::Man) => {
            let mut page = Vec::new();
            // Section 8: system administration commands (daemons).
            let man = clap_mangen::Man::new(Cli::command()).section("8");
            return match man.render(&mut page) {
                Ok(()) => out(&String::from_utf8_lossy(&page)),
                Err(e) => fail(format!("writing the man page: {e}")),
            };
        }
        _ => {}
    }
    let handle = match init_logs(&cli) {
        Ok(handle) => handle,
        Err(message) => return fail(message),
    };
    let sources = ConfigSources::new(cli.config.clone(), cli.config_dir.clone());
    let layered = match Config::load_layered(&sources) {
        Ok(layered) => layered,
        Err(e) => return fail(e.to_string()),
    };
    // The flag, else the configuration (checked at load), else info.
    let start_up = cli
        .log_level
        .clone()
        .or_else(|| Some(layered.config.log_level.clone()).filter(|l| !l.is_empty()))
        .unwrap_or_else(|| "info".into());
    let log_level = LogLevel::new(handle, &start_up);
    if let Err(e) = log_level.set(&start_up) {
        return fail(e.to_string());
    }
    match cli.command {
        Some(Command::Config { sources: false }) => out(&layered.config.to_toml()),
        Some(Command::Config { sources: true }) => {
            let lines: String = layered
                .sources
                .iter()
                .map(|(key, file)| format!("{key} = {file}\n"))
                .collect();
            out(&lines)
        }
        Some(Command::Reload) => match cri_server::reload::signal_running(&layered.config) {
            Ok(pid) => out(&format!("sent SIGHUP to cri-server (pid {pid})\n")),
            Err(e) => fail(e.to_string()),
        },
        _ => run(layered.config, sources, log_level),
    }
}

/// Sets up logging to stderr as the flags ask, at `--log-level` (or info
/// until the configuration is read); returns the handle that changes the
/// level later.
fn init_logs(cli: &Cli) -> Result<Handle<EnvFilter, Registry>, String> {
    let level = cli.log_level.as_deref().unwrap_or("info");
    let filter = EnvFilter::try_new(level).map_err(|e| format!("--log-level {level:?}: {e}"))?;
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    match cli.log_format {
        // Escapes only where a terminal renders them: in a file, a pipe or
        // journald they are noise.
        LogFormat::Text => registry
            .with(logs.with_ansi(std::io::stderr().is_terminal()))
            .init(),
        LogFormat::Json => registry.with(logs.json().flatten_event(true)).init(),
    }
    Ok(handle)
}

/// Runs the daemon until it is told to stop.
fn run(config: Config, sources: ConfigSources, log_level: LogLevel) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(worker_threads())
        .on_thread_park(prompt_wake_ups)
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(format!("starting the async runtime: {e}")),
    };
    match runtime.block_on(cri_server::server::serve(config, sources, log_level)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e.to_string()),
    }
}

/// Async workers: two per CPU, not tokio's one. An event (a monitor
/// reporting an exit, a client's request) waits until some worker polls
/// the reactor, and on a node busy tearing pods down a worker is often
/// preempted, or has handed its core to another thread for a record's
/// fsync (`block_in_place`) that is not yet running. With one worker per
/// CPU, the time from a monitor's report to the daemon's watcher seeing it
/// was p50 1.7–3.4 and p99 11–20 ms at 110 pods (the monitor itself
/// reports within 0.1 ms of the reap); with two, p50 0.5–0.9 and p99
/// 4–11 ms. The extra workers cost a thread each and idle when there
/// is nothing to do.
fn worker_threads() -> usize {
    2 * cri_server::daemon::cpus()
}

/// Asks, once per worker thread, for the short scheduler slice of
/// [`oci_shim::latency`]: request handling is short bursts between waits,
/// and a verb's latency is a chain of its tasks' wake-ups. Only workers
/// park, so the blocking pool (a pull's decompression) keeps the default
/// slice; what a worker starts does not inherit it.
fn prompt_wake_ups() {
    thread_local! {
        static ASKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if ASKED.replace(true) {
        return;
    }
    if let Err(e) = oci_shim::latency::request_slice(oci_shim::latency::WAKE_UP_SLICE) {
        tracing::debug!(error = %e, "asking for a short scheduler slice");
    }
}

/// Writes `text` to stdout; a closed pipe (`| head`) is not an error worth
/// a panic.
fn out(text: &str) -> ExitCode {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => fail(format!("writing to stdout: {e}")),
    }
}

fn fail(message: String) -> ExitCode {
    eprintln!("cri-server: {message}");
    ExitCode::FAILURE
}
