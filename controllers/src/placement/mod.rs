//! The pure core of placement: which pending Instances go to which nodes, and why the others
//! cannot. No IO, no async, no store: the placement controller (and, with issue 10, the offer
//! broker's framework) builds a [`ClusterView`] and a [`PlacementRequest`] from its caches,
//! calls [`place`], and writes the resulting [`PlacementPlan`] — bindings, and reasons for the
//! instances left pending — in batched transactions.
//!
//! * [`view`]: the cluster as candidates — from nodes (direct placement) or from offers.
//! * [`request`]: pending instances and their App's [`Requirements`]; the [`Strategy`].
//! * [`resources`]: exact scalar amounts and host-port pools.
//! * [`constraints`]: Marathon's constraint operators and the semantics chosen where Pacer
//!   knows more than Marathon did.
//! * [`plan`]: bindings and Kubernetes-style reasons (`0/5 nodes available: …`).
//!
//! ```
//! use pacer_controllers::placement::{ClusterView, PlacementRequest, Strategy, place};
//! let mut view = ClusterView::from_nodes(&[], Vec::new());
//! let plan = place(&PlacementRequest::new(Strategy::Spread), &mut view);
//! assert!(plan.bindings.is_empty() && plan.unplaced.is_empty());
//! ```

pub mod constraints;
pub mod plan;
pub mod request;
pub mod resources;
mod scheduler;
pub mod view;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

pub use plan::{Binding, FailureSummary, PlacementPlan, Reason, Unplaced, UnplacedReason};
pub use request::{PendingInstance, PlacementRequest, Requirements, Strategy};
pub use resources::{PortAsk, PortPool, ResourceKind, ResourceRequest, Scalars};
pub use scheduler::place;
pub use view::{BoundInstance, Candidate, CandidateSource, ClusterView, NodeView, ObjectKey};
