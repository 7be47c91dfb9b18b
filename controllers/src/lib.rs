//! Pacer's controllers (deployment, placement, health, offer broker, node lifecycle, gc), each
//! leader-elected and reconciling desired against actual state through the store.
//!
//! Empty until issue 5 lands the runtime and the first controller.
