//! Pacer's client: a typed HTTP client and the watcher/reflector/controller runtime that both
//! Pacer's own controllers and users' controllers run on.
//!
//! Empty until issue 5; it must never depend on a server crate.
