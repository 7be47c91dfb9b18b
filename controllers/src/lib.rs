//! Pacer's controllers (deployment, placement, health, offer broker, node lifecycle, gc), each
//! leader-elected and reconciling desired against actual state through the store.
//!
//! - [`placement`]: the pure placement core — given the cluster's nodes (or, later, resource
//!   offers) and pending instances, it decides bindings under resources, ports and every
//!   Marathon constraint.
//! - [`placement_controller`]: the loop that feeds it from the store and writes its bindings,
//!   reasons and Events in batched, fenced transactions.
//! - [`store_source`]: the store as a source for `pacer-client`'s runtime.
//! - [`leader`]: runs a controller only while it leads its election.
//!
//! [`run`] starts every controller under its own election; `pacer server` and `pacer dev` call
//! it next to the API server.

pub mod leader;
pub mod placement;
pub mod placement_controller;
pub mod store_source;

use std::sync::Arc;

use pacer_store::Store;
use tokio_util::sync::CancellationToken;

pub use leader::{ElectionConfig, LeaderError, run_elected};
pub use placement_controller::{PlacementConfig, PlacementController, PlacementError};
pub use store_source::StoreSource;

/// Runs every controller on `store`, each under its own leader election as `identity` (e.g.
/// `host:pid`), until `shutdown` is cancelled. Today: the placement controller.
pub async fn run(
    store: Arc<dyn Store>,
    identity: String,
    shutdown: CancellationToken,
) -> Result<(), LeaderError> {
    let election = ElectionConfig::new(placement_controller::CONTROLLER_NAME, identity);
    let controller_store = Arc::clone(&store);
    run_elected(store, election, shutdown, move |leadership, token| {
        PlacementController::new(Arc::clone(&controller_store), PlacementConfig::default())
            .run(Some(leadership), token)
    })
    .await
}
