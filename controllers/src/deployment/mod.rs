//! The deployment controller: turns every change of an App (create, update, scale, restart,
//! delete) into an `AppVersion` and a `Deployment`, and drives the App's Instances to it
//! without downtime, as Marathon's deployments do.
//!
//! * [`rolling`]: the pure rolling step — desired count, version and upgrade strategy, and the
//!   Instances as they are → how many to start, which to kill, whether the App converged.
//! * [`backoff`]: launch backoff per App (Marathon's `RateLimiter`): delays after failures,
//!   kept in `status.launchDelay` so a new leader honours them, and when they reset.
//! * [`canary`]: `upgradeStrategy.canary` — the rolling step capped to `N` new instances,
//!   paused until `pacer rollout promote` sets `pacer.dev/promoted` on the Deployment.
//! * [`auto_revert`]: when a deployment failed (no progress within
//!   `progressDeadlineSeconds`, or with `autoRevert` a new instance failing) and whether it
//!   rolls back automatically.
//! * [`dependencies`]: start after dependencies are healthy, stop dependents first, fail on
//!   cycles.
//! * [`objects`]: the Instances, AppVersions and Deployments it writes, and how it reads
//!   Instances (healthy capacity, contract point 5).
//! * [`writes`]: batched, fenced transactions of units that commit together.
//! * [`controller`]: the loop that ties them to the store.
//!
//! How users ask for things: change the App (`pacer apply`, `kubectl apply|edit|scale`) for an
//! update or a scale; set the annotation `pacer.dev/restartedAt` to a new value for a rolling
//! restart (`pacer rollout restart APP` does); delete the App to stop it (the
//! `pacer.dev/deployment-controller` finalizer keeps it until its Instances are gone). While a
//! Deployment runs for an App, the API server refuses other changes of that App with 409 unless
//! `?force=true`; a forced change supersedes (cancels) the running Deployment. Deleting a
//! running Deployment rolls its App back (Marathon's `DELETE /v2/deployments/{id}`); a forced
//! delete only drops it.

pub mod auto_revert;
pub mod backoff;
pub mod canary;
pub mod controller;
pub mod dependencies;
pub mod objects;
pub mod rolling;
pub mod writes;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;

pub use controller::{
    CONTROLLER_NAME, DeploymentConfig, DeploymentController, DeploymentError, FINALIZER,
};
pub use rolling::{InstanceState, Progress, StepPlan, Strategy, plan_step};
