//! Amounts of resources as placement counts them: scalar resources in exact integer
//! milli-units, and host ports as a pool of free ranges.
//!
//! Scalars are converted once from the API's `f64` (cpus as shares, mem and disk in MiB) to
//! thousandths, so that adding and subtracting thousands of allocations never drifts and a
//! node that is exactly full is full (`0.1 + 0.2` fits in `0.3`). Marathon's smallest `cpus` is
//! 0.001, so nothing meaningful is lost.

use std::fmt;

use pacer_schemas::AppSpec;
use pacer_schemas::capacity::{PortRange, Resources};

/// Highest valid port number.
const MAX_PORT: u32 = 65_535;

/// Converts an API amount to thousandths (negative, NaN and infinite amounts count as 0).
fn milli(value: f64) -> i64 {
    if value.is_finite() && value > 0.0 {
        // Saturating float-to-int conversion; amounts beyond i64 are not meaningful.
        #[allow(clippy::cast_possible_truncation)]
        let scaled = (value * 1000.0).round() as i64;
        scaled
    } else {
        0
    }
}

/// A kind of resource, as named in reasons (`insufficient mem`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    /// CPU shares.
    Cpus,
    /// Memory.
    Mem,
    /// Disk.
    Disk,
    /// GPUs.
    Gpus,
    /// Number of free host ports.
    Ports,
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cpus => "cpus",
            Self::Mem => "mem",
            Self::Disk => "disk",
            Self::Gpus => "gpus",
            Self::Ports => "ports",
        })
    }
}

/// Scalar resources in exact integer units: thousandths of a CPU share, thousandths of a MiB
/// of memory and of disk, and whole GPUs. Amounts may go negative when a node is overcommitted
/// (e.g. its allocatable shrank under running instances); then nothing more fits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Scalars {
    /// Thousandths of a CPU share.
    pub cpus: i64,
    /// Thousandths of a MiB of memory.
    pub mem: i64,
    /// Thousandths of a MiB of disk.
    pub disk: i64,
    /// Whole GPUs.
    pub gpus: i64,
}

impl Scalars {
    /// From API amounts (cpus in shares, mem and disk in MiB).
    pub fn new(cpus: f64, mem: f64, disk: f64, gpus: i32) -> Self {
        Self {
            cpus: milli(cpus),
            mem: milli(mem),
            disk: milli(disk),
            gpus: i64::from(gpus.max(0)),
        }
    }

    /// The scalar part of a node's or offer's [`Resources`].
    pub fn from_resources(resources: &Resources) -> Self {
        Self::new(
            resources.cpus,
            resources.mem,
            resources.disk,
            resources.gpus,
        )
    }

    /// What one instance of `spec` uses, with Marathon's defaults for absent fields (1 cpu,
    /// 128 MiB, no disk, no GPU).
    pub fn from_spec(spec: &AppSpec) -> Self {
        use pacer_schemas::defaults::{CPUS, DISK, GPUS, MEM};
        Self::new(
            spec.cpus.unwrap_or(CPUS),
            spec.mem.unwrap_or(MEM),
            spec.disk.unwrap_or(DISK),
            spec.gpus.unwrap_or(GPUS),
        )
    }

    /// The first resource of which `self` (as a request) needs more than `free` has, in the
    /// order cpus, mem, disk, gpus; `None` when it fits.
    pub fn shortage(&self, free: &Scalars) -> Option<ResourceKind> {
        if self.cpus > free.cpus {
            Some(ResourceKind::Cpus)
        } else if self.mem > free.mem {
            Some(ResourceKind::Mem)
        } else if self.disk > free.disk {
            Some(ResourceKind::Disk)
        } else if self.gpus > free.gpus {
            Some(ResourceKind::Gpus)
        } else {
            None
        }
    }

    /// Whether `self` (as a request) fits in `free`.
    pub fn fits_in(&self, free: &Scalars) -> bool {
        self.shortage(free).is_none()
    }

    /// Component-wise sum.
    pub fn plus(&self, other: &Scalars) -> Scalars {
        Scalars {
            cpus: self.cpus.saturating_add(other.cpus),
            mem: self.mem.saturating_add(other.mem),
            disk: self.disk.saturating_add(other.disk),
            gpus: self.gpus.saturating_add(other.gpus),
        }
    }

    /// Component-wise difference.
    pub fn minus(&self, other: &Scalars) -> Scalars {
        Scalars {
            cpus: self.cpus.saturating_sub(other.cpus),
            mem: self.mem.saturating_sub(other.mem),
            disk: self.disk.saturating_sub(other.disk),
            gpus: self.gpus.saturating_sub(other.gpus),
        }
    }
}

/// One host port an instance needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PortAsk {
    /// Any free port of the node (the lowest free one is taken, for determinism).
    Any,
    /// Exactly this port (`requirePorts`, or a fixed `hostPort` in a port mapping).
    Fixed(u32),
}

/// What one instance needs from a node: scalars and host ports, in the App's port order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceRequest {
    /// cpus, mem, disk, gpus.
    pub scalars: Scalars,
    /// One entry per host port, in the order the App declares its ports.
    pub ports: Vec<PortAsk>,
}

impl ResourceRequest {
    /// The resources one instance of `spec` needs.
    ///
    /// Host ports follow Marathon: under host networking one port per `portDefinitions` entry
    /// (or deprecated `ports`, or the single default port when neither is given), each any free
    /// port unless `requirePorts` is true, in which case a non-zero `port` is required as the
    /// host port (0 still means any). Under container networking one port per port mapping
    /// that has a `hostPort`: 0 picks a free one, any other value is required as is; mappings
    /// without `hostPort` need no host port.
    pub fn from_spec(spec: &AppSpec) -> Self {
        let ports = if spec.uses_host_networking() {
            let require = spec.require_ports.unwrap_or(false);
            let ask = |port: i32| match u32::try_from(port) {
                Ok(port) if require && port > 0 => PortAsk::Fixed(port),
                _ => PortAsk::Any,
            };
            match (&spec.port_definitions, &spec.ports) {
                (Some(definitions), _) => definitions
                    .iter()
                    .map(|definition| ask(definition.port.unwrap_or(0)))
                    .collect(),
                (None, Some(ports)) => ports.iter().map(|port| ask(*port)).collect(),
                (None, None) => vec![PortAsk::Any],
            }
        } else {
            spec.port_mappings()
                .unwrap_or_default()
                .iter()
                .filter_map(|mapping| mapping.host_port)
                .map(|port| match u32::try_from(port) {
                    Ok(port) if port > 0 => PortAsk::Fixed(port),
                    _ => PortAsk::Any,
                })
                .collect()
        };
        Self {
            scalars: Scalars::from_spec(spec),
            ports,
        }
    }
}

/// Why a port request cannot be served by a pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortShortage {
    /// Fewer free ports than asked for.
    TooFew,
    /// A required port is not free here (taken, outside the ranges, or asked for twice).
    Taken,
}

/// Free host ports of a node or offer: sorted, disjoint, inclusive ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortPool {
    ranges: Vec<(u32, u32)>,
    free: u64,
}

impl PortPool {
    /// A pool of the given ranges (overlaps merged; ports outside 1..=65535 ignored).
    pub fn from_ranges(ranges: &[PortRange]) -> Self {
        let mut clamped: Vec<(u32, u32)> = ranges
            .iter()
            .filter_map(|range| {
                let begin = u32::try_from(range.begin.max(1)).ok()?;
                let end = u32::try_from(range.end).ok()?.min(MAX_PORT);
                (begin <= end).then_some((begin, end))
            })
            .collect();
        clamped.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(clamped.len());
        for (begin, end) in clamped {
            match merged.last_mut() {
                Some(last) if begin <= last.1.saturating_add(1) => last.1 = last.1.max(end),
                _ => merged.push((begin, end)),
            }
        }
        let free = merged
            .iter()
            .map(|(begin, end)| u64::from(end - begin) + 1)
            .sum();
        Self {
            ranges: merged,
            free,
        }
    }

    /// Number of free ports.
    pub fn free_count(&self) -> u64 {
        self.free
    }

    /// The free ports as ranges.
    pub fn ranges(&self) -> Vec<PortRange> {
        self.ranges
            .iter()
            .map(|&(begin, end)| PortRange {
                // Ports are at most 65535, so they fit.
                begin: i32::try_from(begin).unwrap_or(i32::MAX),
                end: i32::try_from(end).unwrap_or(i32::MAX),
            })
            .collect()
    }

    /// Whether `port` is free.
    pub fn contains(&self, port: u32) -> bool {
        let at = self.ranges.partition_point(|&(_, end)| end < port);
        self.ranges.get(at).is_some_and(|&(begin, _)| begin <= port)
    }

    /// Takes `port` out of the pool; false if it was not free.
    pub fn remove(&mut self, port: u32) -> bool {
        let at = self.ranges.partition_point(|&(_, end)| end < port);
        let Some(&(begin, end)) = self.ranges.get(at) else {
            return false;
        };
        if port < begin {
            return false;
        }
        match (port == begin, port == end) {
            (true, true) => {
                self.ranges.remove(at);
            }
            (true, false) => self.ranges[at].0 = port + 1,
            (false, true) => self.ranges[at].1 = port - 1,
            (false, false) => {
                self.ranges[at].1 = port - 1;
                self.ranges.insert(at + 1, (port + 1, end));
            }
        }
        self.free -= 1;
        true
    }

    /// Whether `asks` can be served, and if not, why.
    pub fn check(&self, asks: &[PortAsk]) -> Result<(), PortShortage> {
        if asks.is_empty() {
            return Ok(());
        }
        if asks.len() as u64 > self.free {
            return Err(PortShortage::TooFew);
        }
        for (index, ask) in asks.iter().enumerate() {
            if let PortAsk::Fixed(port) = *ask
                && (!self.contains(port) || asks[..index].contains(ask))
            {
                return Err(PortShortage::Taken);
            }
        }
        Ok(())
    }

    /// Takes the ports `asks` needs: required ones first, then the lowest free ports for the
    /// rest. Returns them in the order of `asks`, or `None` (pool unchanged) if they cannot
    /// all be served.
    pub fn allocate(&mut self, asks: &[PortAsk]) -> Option<Vec<u32>> {
        self.check(asks).ok()?;
        let mut ports = vec![0; asks.len()];
        for (slot, ask) in ports.iter_mut().zip(asks) {
            if let PortAsk::Fixed(port) = *ask {
                self.remove(port);
                *slot = port;
            }
        }
        for (slot, ask) in ports.iter_mut().zip(asks) {
            if *ask == PortAsk::Any {
                let &(lowest, _) = self.ranges.first()?;
                self.remove(lowest);
                *slot = lowest;
            }
        }
        Some(ports)
    }
}
