//! Pacer's controllers (deployment, placement, health, offer broker, node lifecycle, gc), each
//! leader-elected and reconciling desired against actual state through the store.
//!
//! - [`deployment`]: the deployment controller — App changes become versions and Deployments,
//!   rolled out under the upgrade strategy, dependencies and kill selection.
//! - [`placement`]: the pure placement core — given the cluster's nodes (or, later, resource
//!   offers) and pending instances, it decides bindings under resources, ports and every
//!   Marathon constraint.
//! - [`placement_controller`]: the loop that feeds it from the store and writes its bindings,
//!   reasons and Events in batched, fenced transactions.
//! - [`node_lifecycle`]: the node lifecycle controller — Nodes whose lease expired become
//!   unreachable, their Instances `Lost`, then replaced and expunged per `unreachableStrategy`.
//! - [`health`]: the health controller — instances whose agent-run health checks failed
//!   `maxConsecutiveFailures` times outside their grace period are decommissioned (and so
//!   replaced), with an `Unhealthy` Event.
//! - [`rounds`]: the wake/resync/deadline/debounce loop of the round-based controllers, their
//!   injected [`Clock`](rounds::Clock) and the error that stops them.
//! - [`store_source`]: the store as a source for `pacer-client`'s runtime.
//! - [`leader`]: runs a controller only while it leads its election.
//!
//! [`run`] starts every controller under its own election; `pacer server` and `pacer dev` call
//! it next to the API server.

pub mod deployment;
pub mod health;
pub mod leader;
pub mod node_lifecycle;
pub mod placement;
pub mod placement_controller;
pub mod rounds;
pub mod store_source;

use std::sync::Arc;

use pacer_store::Store;
use tokio_util::sync::CancellationToken;

pub use leader::{ElectionConfig, LeaderError, run_elected};
pub use placement_controller::{PlacementConfig, PlacementController, PlacementError};
pub use store_source::StoreSource;

/// Runs every controller on `store`, each under its own leader election as `identity` (e.g.
/// `host:pid`), until `shutdown` is cancelled. Today: the placement, node lifecycle, health and
/// deployment controllers.
pub async fn run(
    store: Arc<dyn Store>,
    identity: String,
    shutdown: CancellationToken,
) -> Result<(), LeaderError> {
    let placement = {
        let election = ElectionConfig::new(placement_controller::CONTROLLER_NAME, identity.clone());
        let controller_store = Arc::clone(&store);
        run_elected(
            Arc::clone(&store),
            election,
            shutdown.clone(),
            move |leadership, token| {
                PlacementController::new(Arc::clone(&controller_store), PlacementConfig::default())
                    .run(Some(leadership), token)
            },
        )
    };
    let node_lifecycle = {
        let election = ElectionConfig::new(node_lifecycle::CONTROLLER_NAME, identity.clone());
        let controller_store = Arc::clone(&store);
        run_elected(
            Arc::clone(&store),
            election,
            shutdown.clone(),
            move |leadership, token| {
                node_lifecycle::NodeLifecycleController::new(
                    Arc::clone(&controller_store),
                    Arc::new(node_lifecycle::SystemClock),
                    node_lifecycle::NodeLifecycleConfig::default(),
                )
                .run(Some(leadership), token)
            },
        )
    };
    let health = {
        let election = ElectionConfig::new(health::CONTROLLER_NAME, identity.clone());
        let controller_store = Arc::clone(&store);
        run_elected(
            Arc::clone(&store),
            election,
            shutdown.clone(),
            move |leadership, token| {
                health::HealthController::new(
                    Arc::clone(&controller_store),
                    Arc::new(node_lifecycle::SystemClock),
                    health::HealthConfig::default(),
                )
                .run(Some(leadership), token)
            },
        )
    };
    let deployment = {
        let election = ElectionConfig::new(deployment::CONTROLLER_NAME, identity);
        let controller_store = Arc::clone(&store);
        run_elected(store, election, shutdown, move |leadership, token| {
            deployment::DeploymentController::new(
                Arc::clone(&controller_store),
                deployment::DeploymentConfig::default(),
            )
            .run(Some(leadership), token)
        })
    };
    tokio::try_join!(placement, node_lifecycle, health, deployment).map(|_| ())
}
