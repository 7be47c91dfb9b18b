//! Hollow nodes for the suites that run `pacer dev --no-agent` (placement, offers): registered
//! with the real `pacer node register-hollow` (4 CPUs, 16 GiB, ports 31000-32000 each, spread
//! over racks), so every suite measures on the same nodes.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};

/// Registers `nodes` hollow nodes over `racks` racks on the server at `base_url` with `binary`;
/// returns how long it took.
pub async fn register(
    binary: &Path,
    base_url: &str,
    nodes: usize,
    racks: usize,
) -> Result<Duration> {
    let began = Instant::now();
    let config_dir = tempfile::tempdir().context("create a directory for the CLI config")?;
    let output = tokio::process::Command::new(binary)
        .args(["node", "register-hollow", "--count"])
        .arg(nodes.to_string())
        .arg("--racks")
        .arg(racks.to_string())
        .args(["--concurrency", "32"])
        .env("PACER_SERVER", base_url)
        .env("PACER_CONFIG", config_dir.path().join("config.yaml"))
        .env("PACER_LOG", "warn")
        .output()
        .await
        .context("run pacer node register-hollow")?;
    ensure!(
        output.status.success(),
        "pacer node register-hollow failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let registered = String::from_utf8_lossy(&output.stdout).lines().count();
    ensure!(
        registered == nodes,
        "pacer node register-hollow registered {registered} nodes, not {nodes}"
    );
    Ok(began.elapsed())
}

/// Each node's `rack` attribute, from a `GET /apis/pacer.dev/v1/nodes` reply.
pub fn racks_of(node_list: &serde_json::Value) -> Result<HashMap<String, String>> {
    Ok(node_list["items"]
        .as_array()
        .context("the node list has no items")?
        .iter()
        .filter_map(|node| {
            Some((
                node["metadata"]["name"].as_str()?.to_owned(),
                node["spec"]["attributes"]["rack"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            ))
        })
        .collect())
}
