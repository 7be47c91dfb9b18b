//! A complete controller to copy: every App without a `team` label gets `team: unknown`.
//!
//! It watches Apps over the HTTP API (list, then `?watch=true`, resuming and relisting on its
//! own), keeps them in a cache, and reconciles each one: if the label is missing it sends a
//! JSON merge patch that adds it. Reconcile is idempotent, so resyncs and repeated events are
//! harmless; failures are retried with per-key exponential backoff; Ctrl-C stops it cleanly.
//!
//! Run as many copies as you like: they elect a leader on the Lease `label-defaulter` (a
//! [`LeaderElector`]), only the leader runs the controller, and its patches carry the lease's
//! fence (`Pacer-Fence`), so a copy that lost leadership cannot write any more — not even a
//! patch it had already started. When the leader stops, another copy takes over within the
//! lease duration (at once when it stopped cleanly and released the lease).
//!
//! Run it against a local control plane:
//!
//! ```text
//! pacer dev                                                # terminal 1: API on 127.0.0.1:8080
//! cargo run -p pacer-client --example label_defaulter      # terminal 2
//! pacer apply -f manifests/examples/web.yaml               # terminal 3: an App without `team`
//! pacer get apps -o yaml                                   # … now labelled team: unknown
//! ```
//!
//! Environment: `PACER_SERVER` (default `http://127.0.0.1:8080`), `PACER_NAMESPACE` (default:
//! every namespace), `PACER_TOKEN` (bearer token, if the server wants one),
//! `PACER_LEASE_NAMESPACE` (where the election Lease lives, default `default`),
//! `PACER_IDENTITY` (this copy's name in the election, default `<host>-<pid>`), `RUST_LOG`
//! (default `info`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use pacer_client::runtime::{
    Action, ApiSource, Controller, ControllerConfig, ElectionConfig, LeaderElector, ObjectRef,
};
use pacer_client::{Api, Client, Config, DEFAULT_SERVER, PatchParams};
use pacer_schemas::App;
use tokio_util::sync::CancellationToken;

/// The label this controller maintains, and the value it fills in.
const LABEL: &str = "team";
const DEFAULT_TEAM: &str = "unknown";
/// Recorded by the server as the writer of the label.
const FIELD_MANAGER: &str = "label-defaulter";

/// What every reconcile needs: the client to write with (the leader's fenced client).
struct Context {
    client: Client,
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
enum ReconcileError {
    /// The patch was refused or could not be sent.
    #[error("patch the labels of {object}: {source}")]
    Patch {
        object: ObjectRef,
        #[source]
        source: pacer_client::Error,
    },
}

/// Makes sure `app` has the label. Level-triggered: it looks only at the object as it is now.
async fn reconcile(app: Arc<App>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let has_label = app
        .metadata
        .labels
        .as_ref()
        .is_some_and(|labels| labels.contains_key(LABEL));
    if !has_label {
        let object = ObjectRef::from_obj(&*app);
        let api: Api<App> = Api::namespaced(ctx.client.clone(), app.metadata.namespace_str());
        let patch = serde_json::json!({
            "metadata": { "labels": BTreeMap::from([(LABEL, DEFAULT_TEAM)]) }
        });
        let params = PatchParams::default().field_manager(FIELD_MANAGER);
        match api
            .patch_merge(app.metadata.name_str(), &params, &patch)
            .await
        {
            Ok(_) => tracing::info!(%object, "labelled {LABEL}={DEFAULT_TEAM}"),
            // Deleted meanwhile: nothing left to do.
            Err(error) if error.is_not_found() => {}
            Err(source) => return Err(ReconcileError::Patch { object, source }),
        }
    }
    // Check again now and then, even without events: cheap insurance against missed changes.
    Ok(Action::requeue(Duration::from_secs(600)))
}

/// Failed reconciles retry after the key's exponential backoff.
fn error_policy(_app: Arc<App>, _error: &ReconcileError, _ctx: Arc<Context>) -> Action {
    Action::backoff()
}

/// `<host>-<pid>`: unique per running copy.
fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}-{}", std::process::id())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let server = std::env::var("PACER_SERVER").unwrap_or_else(|_| DEFAULT_SERVER.to_owned());
    let mut config = Config::new(server).with_user_agent(FIELD_MANAGER);
    if let Ok(token) = std::env::var("PACER_TOKEN") {
        config = config.with_token(token);
    }
    let client = Client::new(config)?;
    let apps: Api<App> = match std::env::var("PACER_NAMESPACE") {
        Ok(namespace) => Api::namespaced(client.clone(), &namespace),
        Err(_) => Api::all(client.clone()),
    };

    let shutdown = CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            if let Err(error) = tokio::signal::ctrl_c().await {
                tracing::error!(%error, "cannot listen for Ctrl-C; stop with SIGTERM");
                return;
            }
            tracing::info!("Ctrl-C: stopping");
            shutdown.cancel();
        }
    });

    // Only the leader runs the controller, and it writes through the fenced client.
    let identity = std::env::var("PACER_IDENTITY").unwrap_or_else(|_| default_identity());
    let lease_namespace =
        std::env::var("PACER_LEASE_NAMESPACE").unwrap_or_else(|_| "default".to_owned());
    let election = ElectionConfig::new(lease_namespace, FIELD_MANAGER, identity);
    let elector = LeaderElector::new(client, election)?;
    elector
        .run(shutdown, |leader| {
            let apps = apps.clone();
            async move {
                let controller = Controller::new(ApiSource::new(apps), ControllerConfig::default())
                    .shutdown_on(leader.token());
                let metrics = controller.metrics();
                let context = Arc::new(Context {
                    client: leader.client().clone(),
                });
                controller.run(reconcile, error_policy, context).await;
                let metrics = metrics.snapshot();
                tracing::info!(
                    reconciles = metrics.reconciles,
                    failures = metrics.failures,
                    "controller stopped"
                );
            }
        })
        .await;
    Ok(())
}
