//! `pacer agent`: the node agent — registers its Node, keeps its lease, runs the Instances
//! bound to it with the docker and process runtimes, until Ctrl-C or SIGTERM (its instances
//! keep running; a restarted agent adopts them). `pacer agent hollow --count N` runs N hollow
//! agents in one process for scale tests and benchmarks.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use pacer_agent::fleet::FleetOptions;
use pacer_agent::machine::{self, DEFAULT_PORTS};
use pacer_agent::{AgentOptions, DockerMode};
use pacer_schemas::capacity::Resources;
use tokio_util::sync::CancellationToken;

use crate::config::ConnectArgs;

/// Options of `pacer agent`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct AgentArgs {
    #[command(subcommand)]
    hollow: Option<AgentCommand>,
    #[command(flatten)]
    connect: ConnectArgs,
    /// The Node's name (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// A node attribute for constraints, `NAME=VALUE` (repeatable).
    #[arg(long = "attribute", value_name = "NAME=VALUE")]
    attributes: Vec<String>,
    /// Capacity instead of measuring the machine: `cpus=4,mem=8192,disk=10000,ports=31000-32000`
    /// (unnamed resources are measured).
    #[arg(long, value_name = "NAME=VALUE,…")]
    resources: Option<String>,
    /// Runtimes to offer (repeatable or comma-separated): `docker`, `process`. A runtime named
    /// here must work or the agent does not start; without this option the agent offers
    /// `process`, and `docker` too when the Docker socket answers.
    #[arg(long = "runtime", value_delimiter = ',')]
    runtimes: Vec<RuntimeName>,
    /// Where sandboxes and the agent's identity live (default: `$XDG_DATA_HOME/pacer/agent`, or
    /// `~/.local/share/pacer/agent`).
    #[arg(long, env = "PACER_AGENT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Where the agent endpoint (instance logs, proxied by the API server) listens, recorded
    /// in the Node's `status.agentAddress` (default: an ephemeral port on the local address
    /// that routes to the API server).
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
}

/// `pacer agent …` subcommands.
#[derive(Debug, clap::Subcommand)]
enum AgentCommand {
    /// Run many hollow agents (they pretend to run instances) in this process.
    Hollow(Box<HollowArgs>),
}

/// Options of `pacer agent hollow`.
#[derive(Debug, clap::Args)]
struct HollowArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// How many nodes.
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Nodes are named `<prefix>1`, `<prefix>2`, …
    #[arg(long, default_value = "hollow-")]
    name_prefix: String,
    /// An attribute every node gets, `NAME=VALUE` (repeatable).
    #[arg(long = "attribute", value_name = "NAME=VALUE")]
    attributes: Vec<String>,
    /// Capacity of each node.
    #[arg(long, default_value = "cpus=4,mem=16384,disk=100000,ports=31000-32000")]
    resources: String,
    /// Really probe hollow instances' HTTP, TCP and readiness checks, all against this
    /// `IP:PORT` (for benchmarks of health checking); by default they are reported healthy
    /// and never probed.
    #[arg(long, value_name = "IP:PORT")]
    probe_target: Option<std::net::SocketAddr>,
}

/// A runtime name on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum RuntimeName {
    /// Docker containers.
    Docker,
    /// Plain processes.
    Process,
}

pub(crate) async fn run(args: AgentArgs) -> anyhow::Result<()> {
    if let Some(AgentCommand::Hollow(hollow)) = args.hollow {
        return run_hollow(*hollow).await;
    }
    let (client, _) = args.connect.connect()?;
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => default_data_dir()?,
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("create data directory {}", data_dir.display()))?;
    let hostname = machine::hostname();
    let resources = match &args.resources {
        Some(text) => Some(machine::parse_resources(text, machine::measure(&data_dir))?),
        None => None,
    };
    let options = AgentOptions {
        node: args.name.unwrap_or_else(|| hostname.clone()),
        hostname,
        attributes: parse_attributes(&args.attributes)?,
        resources,
        data_dir,
        docker: if args.runtimes.is_empty() {
            DockerMode::IfAvailable
        } else if args.runtimes.contains(&RuntimeName::Docker) {
            DockerMode::Required
        } else {
            DockerMode::Off
        },
        process: args.runtimes.is_empty() || args.runtimes.contains(&RuntimeName::Process),
        processes_die_with_agent: false,
        listen: args.listen,
    };
    tracing::info!(node = %options.node, data_dir = %options.data_dir.display(), "pacer agent starting");
    let shutdown = CancellationToken::new();
    let signal = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            crate::server::shutdown_signal().await;
            shutdown.cancel();
        })
    };
    let result = pacer_agent::run(client, options, shutdown).await;
    signal.abort();
    result.context("run the agent")?;
    tracing::info!("stopped");
    Ok(())
}

async fn run_hollow(args: HollowArgs) -> anyhow::Result<()> {
    let (client, _) = args.connect.connect()?;
    if args.count == 0 {
        bail!("--count: must be at least 1");
    }
    let empty = Resources {
        ports: vec![DEFAULT_PORTS],
        ..Resources::default()
    };
    let options = FleetOptions {
        count: args.count,
        name_prefix: args.name_prefix,
        attributes: parse_attributes(&args.attributes)?,
        resources: machine::parse_resources(&args.resources, empty)?,
        probe_target: args.probe_target,
    };
    tracing::info!(count = options.count, prefix = %options.name_prefix, "hollow agents starting");
    let shutdown = CancellationToken::new();
    let signal = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            crate::server::shutdown_signal().await;
            shutdown.cancel();
        })
    };
    pacer_agent::fleet::run_hollow_fleet(client, options, shutdown).await;
    signal.abort();
    tracing::info!("stopped");
    Ok(())
}

/// `NAME=VALUE` pairs.
pub(crate) fn parse_attributes(attributes: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    attributes
        .iter()
        .map(|attribute| {
            attribute
                .split_once('=')
                .filter(|(name, _)| !name.is_empty())
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .with_context(|| format!("--attribute {attribute:?}: expected NAME=VALUE"))
        })
        .collect()
}

fn default_data_dir() -> anyhow::Result<PathBuf> {
    if let Some(data_home) = std::env::var_os("XDG_DATA_HOME").filter(|dir| !dir.is_empty()) {
        return Ok(PathBuf::from(data_home).join("pacer").join("agent"));
    }
    let home = std::env::var_os("HOME")
        .filter(|dir| !dir.is_empty())
        .context("find a data directory: neither --data-dir, XDG_DATA_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".local/share/pacer/agent"))
}
