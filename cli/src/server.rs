//! `pacer server`: the control plane on an etcd cluster — the API server and the controllers
//! (deployment, placement, node lifecycle, health), each controller under its own leader
//! election. Run several replicas against one etcd for HA: they share nothing but the store.
//! `--no-controllers` makes an API-only replica (as kube-apiserver without a
//! controller-manager), for scaling the API separately from the controllers.
//!
//! Also home of what `pacer dev` and `pacer server` share: binding the listener, serving until
//! Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pacer_apiserver::{ApiConfig, ApiState};
use pacer_controllers::ControllersConfig;
use pacer_controllers::event_gc::EventGcConfig;
use pacer_store::Store;
use pacer_store::etcd::{EtcdConfig, EtcdStore};

/// Options of `pacer server`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServerArgs {
    /// The etcd cluster: `etcd://HOST:PORT[,HOST:PORT…]`.
    #[arg(long, env = "PACER_STORE")]
    store: String,
    /// The address the API server listens on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    controllers: ControllerArgs,
    #[command(flatten)]
    metrics: crate::metrics_push::MetricsArgs,
}

/// The controller flags shared by `pacer server` and `pacer dev`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ControllerArgs {
    /// Serve the API only; run no controllers in this process.
    #[arg(long)]
    no_controllers: bool,
    /// How long an Event is kept after its last occurrence (e.g. 1h, 30m).
    #[arg(long, default_value = "1h", value_parser = parse_event_ttl)]
    event_ttl: Duration,
}

impl ControllerArgs {
    /// The controllers' configuration, or `None` with `--no-controllers`.
    pub(crate) fn config(&self) -> Option<ControllersConfig> {
        (!self.no_controllers).then(|| ControllersConfig {
            event_gc: EventGcConfig::default().with_ttl(self.event_ttl),
        })
    }
}

/// A positive duration (`crate::node::parse_duration`'s forms).
fn parse_event_ttl(text: &str) -> Result<Duration, String> {
    let ttl = crate::node::parse_duration(text)?;
    if ttl.is_zero() {
        return Err("the Event TTL must be positive".to_owned());
    }
    Ok(ttl)
}

pub(crate) async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let config = EtcdConfig::from_url(&args.store).context("read --store")?;
    let store = EtcdStore::connect(config)
        .await
        .with_context(|| format!("connect to etcd at {}", args.store))?;
    tracing::info!(
        endpoints = store.endpoints(),
        "pacer server: connected to etcd"
    );
    serve_api(
        Arc::new(store),
        args.listen,
        args.controllers.config(),
        args.metrics.push_config(),
    )
    .await
}

/// Serves the API on `listen` over `store`, and (with a `controllers` configuration) runs the
/// controllers, each under its own leader election, and the instance census beside them (on
/// the controllers' shared informers: see `pacer_controllers::run`), until
/// Ctrl-C or SIGTERM. Every store call is timed for `/metrics`, which `push` also sends to
/// StatsD/Graphite.
pub(crate) async fn serve_api(
    store: Arc<dyn Store>,
    listen: SocketAddr,
    controllers: Option<ControllersConfig>,
    push: pacer_metrics::push::PushConfig,
) -> anyhow::Result<()> {
    let store = pacer_metrics::InstrumentedStore::wrap(store);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listen on {listen}"))?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let identity = format!("{}:{listen}", std::process::id());
    let pusher = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { pacer_metrics::push::run(pacer_metrics::global(), push, shutdown).await }
    });
    let controllers = if let Some(config) = controllers {
        tokio::spawn(pacer_controllers::run(
            Arc::clone(&store),
            identity,
            config,
            shutdown.clone(),
        ))
    } else {
        tracing::info!("controllers disabled (--no-controllers): serving the API only");
        tokio::spawn(async { Ok::<(), pacer_controllers::LeaderError>(()) })
    };
    let state = ApiState::new(store, ApiConfig::default());
    let signal = {
        let shutdown = shutdown.clone();
        async move {
            shutdown_signal().await;
            shutdown.cancel();
        }
    };
    let served = pacer_apiserver::serve(listener, state, signal)
        .await
        .context("serve the API");
    shutdown.cancel();
    match controllers.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::error!(%error, "controllers failed"),
        Err(error) => tracing::error!(%error, "controllers task failed"),
    }
    let _ = pusher.await;
    served?;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("Ctrl-C: shutting down"),
        () = terminate => tracing::info!("SIGTERM: shutting down"),
    }
}
