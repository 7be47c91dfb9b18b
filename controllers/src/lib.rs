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
//! - [`offers`]: the offer broker — free node resources become `Offer`s for registered
//!   `Framework`s in Dominant Resource Fairness order; accept = bind in one transaction.
//! - [`event_gc`]: deletes Events an hour (the configured TTL) after their last occurrence.
//! - [`rounds`]: the wake/resync/deadline/debounce loop of the round-based controllers, their
//!   injected [`Clock`](rounds::Clock) and the error that stops them.
//! - [`informers`]: one shared watch + cache per kind for every controller of a process, with
//!   change notices and the revision each cache has applied.
//! - [`instance_census`]: the cluster-wide instance gauges of `/metrics`.
//! - [`store_source`]: the store as a source for `pacer-client`'s runtime.
//! - [`leader`]: runs a controller only while it leads its election.
//!
//! [`run`] starts every controller under its own election, all reading through one
//! [`Informers`], and the instance census beside them; `pacer server` and `pacer dev` call it
//! next to the API server.

pub mod controller_metrics;
pub mod deployment;
pub mod event_gc;
pub mod events;
pub mod health;
pub mod informers;
pub mod instance_census;
pub mod leader;
pub mod node_lifecycle;
pub mod offers;
pub mod placement;
pub mod placement_controller;
pub mod rounds;
pub mod store_source;

use std::sync::Arc;

use pacer_store::Store;
use tokio_util::sync::CancellationToken;

pub use informers::{Informer, Informers, InformersConfig};
pub use leader::{ElectionConfig, LeaderError, run_elected};
pub use placement_controller::{PlacementConfig, PlacementController, PlacementError};
pub use store_source::StoreSource;

/// What a process tunes of the controllers that [`run`] starts (the rest keep their defaults).
#[derive(Debug, Clone, Default)]
pub struct ControllersConfig {
    /// The Event garbage collector (`pacer server|dev --event-ttl`).
    pub event_gc: event_gc::EventGcConfig,
}

/// Runs every controller on `store`, each under its own leader election as `identity` (e.g.
/// `host:pid`), until `shutdown` is cancelled: the placement, node lifecycle, health and
/// deployment controllers, the Event GC and the offer broker; and, without an election, the
/// [`instance_census`]. They share one [`Informers`]: one watch and cache per kind for the
/// whole process, kept across leadership terms.
pub async fn run(
    store: Arc<dyn Store>,
    identity: String,
    config: ControllersConfig,
    shutdown: CancellationToken,
) -> Result<(), LeaderError> {
    let informers = Informers::new(Arc::clone(&store));
    let census = {
        let (informers, stop) = (informers.clone(), shutdown.clone());
        async move {
            instance_census::run(informers, stop).await;
            Ok::<(), LeaderError>(())
        }
    };
    // The store, election and shutdown token of one controller's `run_elected`; the store is
    // also what the controller itself writes.
    let elect = |name: &str| {
        (
            Arc::clone(&store),
            ElectionConfig::new(name, identity.clone()),
            shutdown.clone(),
        )
    };
    let (own, election, stop) = elect(placement_controller::CONTROLLER_NAME);
    let shared = informers.clone();
    let placement = run_elected(
        Arc::clone(&own),
        election,
        stop,
        move |leadership, token| {
            PlacementController::new(Arc::clone(&own), shared.clone(), PlacementConfig::default())
                .run(Some(leadership), token)
        },
    );
    let (own, election, stop) = elect(node_lifecycle::CONTROLLER_NAME);
    let shared = informers.clone();
    let node_lifecycle = run_elected(
        Arc::clone(&own),
        election,
        stop,
        move |leadership, token| {
            node_lifecycle::NodeLifecycleController::new(
                Arc::clone(&own),
                shared.clone(),
                Arc::new(node_lifecycle::SystemClock),
                node_lifecycle::NodeLifecycleConfig::default(),
            )
            .run(Some(leadership), token)
        },
    );
    let (own, election, stop) = elect(health::CONTROLLER_NAME);
    let shared = informers.clone();
    let health = run_elected(
        Arc::clone(&own),
        election,
        stop,
        move |leadership, token| {
            health::HealthController::new(
                Arc::clone(&own),
                shared.clone(),
                Arc::new(node_lifecycle::SystemClock),
                health::HealthConfig::default(),
            )
            .run(Some(leadership), token)
        },
    );
    let (own, election, stop) = elect(deployment::CONTROLLER_NAME);
    let shared = informers.clone();
    let deployment = run_elected(
        Arc::clone(&own),
        election,
        stop,
        move |leadership, token| {
            deployment::DeploymentController::new(
                Arc::clone(&own),
                shared.clone(),
                deployment::DeploymentConfig::default(),
            )
            .run(Some(leadership), token)
        },
    );
    let (own, election, stop) = elect(event_gc::CONTROLLER_NAME);
    let event_gc = run_elected(
        Arc::clone(&own),
        election,
        stop,
        move |leadership, token| {
            event_gc::EventGcController::new(
                Arc::clone(&own),
                Arc::new(node_lifecycle::SystemClock),
                config.event_gc.clone(),
            )
            .run(Some(leadership), token)
        },
    );
    let (own, election, stop) = elect(offers::CONTROLLER_NAME);
    let shared = informers.clone();
    let offer_broker = run_elected(
        Arc::clone(&own),
        election,
        stop,
        move |leadership, token| {
            offers::OfferBroker::new(
                Arc::clone(&own),
                shared.clone(),
                Arc::new(node_lifecycle::SystemClock),
                offers::OfferBrokerConfig::default(),
            )
            .run(Some(leadership), token)
        },
    );
    tokio::try_join!(
        census,
        placement,
        node_lifecycle,
        health,
        deployment,
        event_gc,
        offer_broker
    )
    .map(|_| ())
}
