//! `pacer dev`: the single-machine mode. Opens the embedded store in a data directory and runs
//! the control plane on it in one process: the API server on `--listen` and the controllers
//! (today placement), until Ctrl-C or SIGTERM. The local agent joins it later (issue 7).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use pacer_store::Store;
use pacer_store::embedded::EmbeddedStore;

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
    crate::server::serve_api(Arc::new(store), args.listen).await
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
