//! Pacer's controllers (deployment, placement, health, offer broker, node lifecycle, gc), each
//! leader-elected and reconciling desired against actual state through the store.
//!
//! Today this crate holds the pure placement core ([`placement`]): given the cluster's nodes
//! (or, later, resource offers) and pending instances, it decides bindings under resources,
//! ports and every Marathon constraint. The reconcile loops that feed it and write its
//! bindings come with the controller runtime (issue 5).

pub mod placement;
