//! `pacer dev`: the single-machine mode. Opens the embedded store in a data directory and runs
//! the control plane on it in one process: the API server on `--listen`, the controllers
//! (today placement) and one node agent (unless `--no-agent`), until Ctrl-C or SIGTERM. The
//! agent talks to the API over HTTP like any other agent; its node is named after the host
//! (`--node-name` to change it), it runs processes always and Docker containers when the Docker
//! socket answers, and keeps its sandboxes in `<data dir>/agent`. Its processes end with
//! `pacer dev` (even on SIGKILL): one process is the whole setup. Containers are stopped by
//! nothing but the agent, so they outlive a killed `pacer dev` and are adopted when it starts
//! again on the same data directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use pacer_store::Store;
use pacer_store::embedded::EmbeddedStore;
use tokio_util::sync::CancellationToken;

/// Options of `pacer dev`.
#[derive(Debug, clap::Args)]
pub(crate) struct DevArgs {
    /// Where the embedded store keeps its data (default: `$XDG_DATA_HOME/pacer/dev`, or
    /// `~/.local/share/pacer/dev`).
    #[arg(long, env = "PACER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The address the API server listens on (Marathon's port by default).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Name of the local agent's Node (default: the host name).
    #[arg(long)]
    node_name: Option<String>,
    /// Run no local agent (the control plane only).
    #[arg(long)]
    no_agent: bool,
    #[command(flatten)]
    controllers: crate::server::ControllerArgs,
    #[command(flatten)]
    metrics: crate::metrics_push::MetricsArgs,
}

pub(crate) async fn run(args: DevArgs) -> anyhow::Result<()> {
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => default_data_dir()?,
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("create data directory {}", data_dir.display()))?;
    let path = data_dir.join("store.redb");
    let store = EmbeddedStore::open(&path)
        .with_context(|| format!("open embedded store {}", path.display()))?;
    let revision = store
        .current_revision()
        .await
        .context("read the store's revision")?;
    tracing::info!(
        store = %path.display(),
        revision,
        "pacer dev: embedded store open"
    );
    let agent_shutdown = CancellationToken::new();
    let agent = if args.no_agent {
        None
    } else {
        Some(start_local_agent(
            args.listen,
            data_dir.join("agent"),
            args.node_name,
            agent_shutdown.clone(),
        )?)
    };
    // The agent stops on the signal itself: its watch would otherwise hold the API server's
    // graceful shutdown open.
    let signal = {
        let agent_shutdown = agent_shutdown.clone();
        tokio::spawn(async move {
            crate::server::shutdown_signal().await;
            agent_shutdown.cancel();
        })
    };
    let served = crate::server::serve_api(
        Arc::new(store),
        args.listen,
        args.controllers.config(),
        args.metrics.push_config(),
    )
    .await;
    agent_shutdown.cancel();
    signal.abort();
    if let Some(agent) = agent {
        match agent.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(error = %format!("{error:#}"), "local agent failed"),
            Err(error) => tracing::error!(%error, "local agent task failed"),
        }
    }
    served
}

/// Starts the in-process agent, talking to this process's API at `listen` over HTTP.
fn start_local_agent(
    listen: SocketAddr,
    data_dir: PathBuf,
    node_name: Option<String>,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<Result<(), pacer_agent::AgentError>>> {
    let mut address = listen;
    if address.ip().is_unspecified() {
        address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let config = pacer_client::Config::new(format!("http://{address}"))
        .with_user_agent(format!("pacer-agent/{}", env!("CARGO_PKG_VERSION")));
    let client = pacer_client::Client::new(config).context("build the local agent's client")?;
    let hostname = pacer_agent::machine::hostname();
    let options = pacer_agent::AgentOptions {
        node: node_name.unwrap_or_else(|| hostname.clone()),
        hostname,
        attributes: std::collections::BTreeMap::new(),
        resources: None,
        data_dir,
        docker: pacer_agent::DockerMode::IfAvailable,
        process: true,
        processes_die_with_agent: true,
        listen: None,
    };
    tracing::info!(node = %options.node, "pacer dev: starting the local agent");
    Ok(tokio::spawn(pacer_agent::run(client, options, shutdown)))
}

fn default_data_dir() -> anyhow::Result<PathBuf> {
    if let Some(data_home) = std::env::var_os("XDG_DATA_HOME").filter(|dir| !dir.is_empty()) {
        return Ok(PathBuf::from(data_home).join("pacer").join("dev"));
    }
    let home = std::env::var_os("HOME")
        .filter(|dir| !dir.is_empty())
        .context("find a data directory: neither --data-dir, XDG_DATA_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".local/share/pacer/dev"))
}
