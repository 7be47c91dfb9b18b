//! Pacer's node agent: registers a Node, runs the Instances bound to it (docker, process or
//! hollow runtime), probes their health and reports status over the HTTP API only.
//!
//! Empty until issue 7.
