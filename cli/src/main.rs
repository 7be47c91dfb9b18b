//! `pacer`: the one binary. Only this crate wires the library crates together into
//! processes (`pacer dev`, and later `server` and `agent`) and hosts the client commands.

mod agent;
mod apply;
mod config;
mod delete;
mod describe;
mod dev;
mod diff;
mod get;
mod logs;
mod manifest;
mod merge;
mod metrics_push;
mod node;
mod output;
mod queue;
mod rollout;
mod server;
mod table;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// mimalloc rather than glibc's malloc: the control plane allocates and frees many small
/// objects on several threads (decoded objects, watch events, transactions), and glibc's
/// allocator took about a quarter of its CPU in the placement benchmark's profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Pacer: Marathon's features as a Kubernetes-style declarative orchestrator.
#[derive(Debug, Parser)]
#[command(name = "pacer", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run everything in one process on the embedded, durable store.
    Dev(dev::DevArgs),
    /// Run the API server (and, later, the controllers) on an etcd cluster.
    Server(server::ServerArgs),
    /// Run the node agent (or, with `hollow`, many hollow agents).
    Agent(agent::AgentArgs),
    /// Create or update objects from manifests (files, directories, `-`).
    Apply(apply::ApplyArgs),
    /// Show what `apply` would change, as a unified diff (exit 1 when something differs).
    Diff(diff::DiffArgs),
    /// List objects of a kind, or show some by name.
    Get(get::GetArgs),
    /// Show one object in detail, with its conditions and events.
    Describe(describe::DescribeArgs),
    /// Delete objects by name, selector or manifest.
    Delete(delete::DeleteArgs),
    /// Manage the client config file: contexts with server, namespace and token.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Node commands: cordon, drain and uncordon nodes; register hollow nodes (no agent).
    #[command(subcommand)]
    Node(node::NodeCommand),
    /// An App's rollouts: version history, undo, rolling restart.
    #[command(subcommand)]
    Rollout(rollout::RolloutCommand),
    /// The launch queue: reset an App's launch backoff (`pacer get queue` lists it).
    #[command(subcommand)]
    Queue(queue::QueueCommand),
    /// Print (or follow with -f) the stdout and stderr of an instance, or of every instance
    /// of an App.
    Logs(logs::LogsArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("PACER_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if !matches!(
        cli.command,
        Command::Dev(_) | Command::Server(_) | Command::Agent(_)
    ) {
        // A client command whose reader went away (`pacer get instances | head`) ends as other
        // Unix tools do, instead of panicking in `println!`. Long-running processes keep Rust's
        // ignored SIGPIPE.
        sigpipe::reset();
    }
    match cli.command {
        Command::Dev(args) => dev::run(args).await,
        Command::Server(args) => server::run(args).await,
        Command::Agent(args) => agent::run(args).await,
        Command::Apply(args) => output::finish(apply::run(args).await),
        Command::Diff(args) => output::finish(diff::run(args).await),
        Command::Get(args) if queue::is_queue(&args.resource) => {
            output::finish(queue::get(args).await)
        }
        Command::Get(args) => output::finish(get::run(args).await),
        Command::Describe(args) => output::finish(describe::run(args).await),
        Command::Delete(args) => output::finish(delete::run(args).await),
        Command::Config(command) => output::finish(config::run(command)),
        Command::Node(command) => output::finish(node::run(command).await),
        Command::Rollout(command) => output::finish(rollout::run(command).await),
        Command::Queue(command) => output::finish(queue::run(command).await),
        Command::Logs(args) => output::finish(logs::run(args).await),
    }
}
