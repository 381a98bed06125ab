//! Serving CRI over the unix socket until SIGTERM or SIGINT; SIGHUP
//! reloads the configuration (`crate::reload`).

use crate::config::{Config, ConfigSources};
use crate::image_service::ImageService;
use crate::metrics::endpoint::MetricsEndpoint;
use crate::metrics::rpc::RpcMetricsLayer;
use crate::metrics::server::{MetricsError, MetricsServer};
use crate::opener::StartError;
use crate::otel::layer::SpanLayer;
use crate::otel::{Tracing, TracingError};
use crate::runtime_service::RuntimeService;
use crate::socket;
use crate::systemd::Notifier;
use cri_api::v1::image_service_server::ImageServiceServer;
use cri_api::v1::runtime_service_server::RuntimeServiceServer;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio_stream::wrappers::UnixListenerStream;
use tower_http::classify::GrpcFailureClass;

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The socket could not be bound.
    #[error(transparent)]
    Socket(#[from] socket::SocketError),
    /// The daemon's state could not be prepared or restored.
    #[error(transparent)]
    Start(#[from] StartError),
    /// A signal handler could not be installed.
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The metrics endpoint could not start.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// The OTLP exporter could not start.
    #[error(transparent)]
    Tracing(#[from] TracingError),
}

/// Puts `state` where [`crate::state_dir`] says, logging where it went.
fn prepare_state(config: &Config) -> Result<crate::state_dir::StateDir, StartError> {
    let prepared = crate::state_dir::prepare(&config.state, config.state_tmpfs)
        .map_err(|e| StartError::new(config.state.display(), e))?;
    match &prepared {
        crate::state_dir::StateDir::Disk(why) => {
            tracing::info!(state = %config.state.display(), why, "state stays on disk")
        }
        kind => tracing::debug!(state = %config.state.display(), ?kind, "state on a tmpfs"),
    }
    Ok(prepared)
}

/// Serves the RuntimeService and ImageService on `config.socket`, and the
/// daemon's metrics on `config.metrics.address` when one is set; a span of
/// each call goes to `config.tracing.endpoint` when one is set.
///
/// Returns after SIGTERM or SIGINT once in-flight requests have finished.
/// Containers are not touched on the way out: they outlive the daemon.
/// SIGHUP reads `sources` again and puts what can change live in force
/// ([`crate::reload`]); the daemon's pid is in `<state>/cri-server.pid`
/// meanwhile, for `cri-server reload`.
pub async fn serve(
    config: Config,
    sources: ConfigSources,
    log_level: crate::log_level::LogLevel,
) -> Result<(), ServeError> {
    // Bound first: a taken metrics port must not leave a socket file behind.
    let metrics_server = match config.metrics.socket_addr() {
        Some(address) => Some(MetricsServer::bind(address).await?),
        None => None,
    };
    // Before the socket too: nothing to clean up if it fails.
    let tracing = Tracing::start(&config.tracing)?;
    // Before the socket, which may live under `state` (the default does).
    let state = prepare_state(&config)?;
    // A start that fails takes back the tmpfs it mounted: nothing lived in it.
    let undo = || crate::state_dir::undo(&config.state, &state);
    let listener = match socket::bind(&config.socket).await {
        Ok(listener) => listener,
        Err(e) => {
            undo();
            return Err(e.into());
        }
    };
    let opened = match crate::opener::open(config.clone()).await {
        Ok(opened) => opened,
        Err(e) => {
            // Nothing serves it: a socket left behind would look like a
            // crashed daemon's.
            let _ = std::fs::remove_file(&config.socket);
            undo();
            return Err(e.into());
        }
    };
    let daemon = opened.daemon;
    // Handled, so a SIGHUP no longer kills the daemon (its default action).
    let hangups = signal(SignalKind::hangup()).map_err(ServeError::Signals)?;
    let metrics = MetricsEndpoint::serve(config.metrics.socket_addr(), metrics_server, &daemon);
    let reloader = crate::reload::Reloader::new(
        sources,
        config.clone(),
        Arc::clone(&daemon),
        (opened.signatures, metrics, log_level),
    );
    let reloader = tokio::spawn(crate::reload::on_hangup(reloader, hangups));
    let pid_file = crate::reload::pid_file(&config);
    if let Err(e) = crate::reload::write_pid_file(&pid_file) {
        tracing::warn!(file = %pid_file.display(), error = %e, "cannot write the pid file: `cri-server reload` will not find the daemon");
    }
    let backend = crate::stream_backend::DaemonBackend::new(Arc::clone(&daemon));
    daemon.streaming.spawn(Arc::new(backend));
    let sweeper = crate::watch::sweep_unclaimed(&daemon);
    let trimmer = crate::memory::spawn_idle_trimmer(Duration::from_secs(5));
    let mut term = signal(SignalKind::terminate()).map_err(ServeError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Signals)?;
    let notifier = Notifier::from_env();
    let watchdog = notifier
        .watchdog_interval(None)
        .map(|interval| notifier.spawn_watchdog(interval));
    let shutdown = {
        let notifier = notifier.clone();
        async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = int.recv() => tracing::info!("SIGINT: shutting down"),
            }
            notifier.stopping();
        }
    };
    tracing::info!(socket = %config.socket.display(), "serving CRI v1");
    // State is restored and the socket accepts (connections made now wait
    // in its backlog until the server below takes them).
    notifier.ready();
    let socket_path = config.socket.clone();
    let result = tonic::transport::Server::builder()
        // Every request is logged: its method (the span), how long it took
        // and how it ended. The ids it names are logged by its handler.
        .layer(
            tower_http::trace::TraceLayer::new_for_grpc()
                .make_span_with(|request: &tonic::codegen::http::Request<_>| {
                    tracing::info_span!("rpc", method = %request.uri().path())
                })
                .on_response(
                    |_: &tonic::codegen::http::Response<_>, latency: Duration, _: &tracing::Span| {
                        crate::memory::note_call();
                        tracing::info!(latency_us = latency.as_micros() as u64, "ok");
                    },
                )
                .on_failure(|failure: GrpcFailureClass, latency: Duration, _: &tracing::Span| {
                    crate::memory::note_call();
                    tracing::warn!(latency_us = latency.as_micros() as u64, %failure, "failed");
                }),
        )
        // Requests, errors and latency by method and code, for /metrics.
        .layer(RpcMetricsLayer::new(daemon.metrics.rpc.clone()))
        // A span per call, when [tracing] is on.
        .layer(SpanLayer::new(tracing.as_ref().map(Tracing::tracer)))
        .add_service(RuntimeServiceServer::new(RuntimeService::new(Arc::clone(
            &daemon,
        ))))
        .add_service(ImageServiceServer::new(ImageService::new(Arc::clone(
            &daemon,
        ))))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await;
    finish_verbs().await;
    // The reloader owns the metrics endpoint: aborted, it closes it.
    for task in watchdog.into_iter().chain([sweeper, reloader, trimmer]) {
        task.abort();
    }
    // A socket file left behind would look like a crashed daemon's; remove it.
    let _ = std::fs::remove_file(&socket_path);
    let _ = std::fs::remove_file(&pid_file);
    if let Some(tracing) = tracing {
        tracing.shutdown().await;
    }
    result.map_err(ServeError::from)
}

/// How long a graceful shutdown waits for verbs still running.
const VERB_GRACE: Duration = Duration::from_secs(30);

/// Lets the verbs still running (their callers may have given up) finish:
/// dropped halfway, a StopPodSandbox would kill its CNI plugins mid-DEL and
/// leave their iptables rules behind for good.
async fn finish_verbs() {
    let running = crate::in_flight::VERBS.count();
    if running == 0 {
        return;
    }
    tracing::info!(running, "waiting for verbs still running before exiting");
    if !crate::in_flight::VERBS.wait_idle(VERB_GRACE).await {
        tracing::warn!(
            running = crate::in_flight::VERBS.count(),
            grace = ?VERB_GRACE,
            "exiting with verbs still running"
        );
    }
}
