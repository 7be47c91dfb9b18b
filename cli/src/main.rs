//! `pacer`: the one binary. Wires the crates together into processes (`dev`, and later
//! `server`, `agent`) and hosts the client commands.

fn main() {}
