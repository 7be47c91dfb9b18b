//! Placement tests: every constraint operator from Marathon's documentation examples,
//! resources and ports, reasons, batches, offers, and the 10,000-instance scenario.

mod batch;
mod constraints;
mod resources;
mod scale;
