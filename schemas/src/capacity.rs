//! `Resources` and `PortRange`: amounts of cpus, memory, disk, GPUs and port ranges, as a
//! Node's capacity and allocatable and an Offer's slice use them (Mesos' scalar and range
//! resources, in Marathon's units: cpus as shares, mem and disk in MiB).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Amounts of each resource kind.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// CPU shares.
    #[serde(default, serialize_with = "crate::number::serialize")]
    pub cpus: f64,
    /// Memory in MiB.
    #[serde(default, serialize_with = "crate::number::serialize")]
    pub mem: f64,
    /// Disk in MiB.
    #[serde(default, serialize_with = "crate::number::serialize")]
    pub disk: f64,
    /// GPUs.
    #[serde(default)]
    pub gpus: i32,
    /// Host port ranges, inclusive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortRange>,
}

/// An inclusive range of host ports, `[begin, end]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PortRange {
    /// First port.
    pub begin: i32,
    /// Last port (inclusive).
    pub end: i32,
}

impl PortRange {
    /// Number of ports in the range (0 when `end < begin`).
    pub fn len(&self) -> u32 {
        u32::try_from(i64::from(self.end) - i64::from(self.begin) + 1).unwrap_or(0)
    }

    /// Whether the range holds no port.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `port` lies in the range.
    pub fn contains(&self, port: i32) -> bool {
        self.begin <= port && port <= self.end
    }
}

impl Resources {
    /// Total number of ports in all ranges.
    pub fn port_count(&self) -> u64 {
        self.ports.iter().map(|range| u64::from(range.len())).sum()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_count_inclusively() {
        let range = PortRange {
            begin: 31000,
            end: 31009,
        };
        assert_eq!(range.len(), 10);
        assert!(range.contains(31000) && range.contains(31009) && !range.contains(31010));
        assert!(PortRange { begin: 2, end: 1 }.is_empty());
        let resources = Resources {
            ports: vec![range, PortRange { begin: 80, end: 80 }],
            ..Resources::default()
        };
        assert_eq!(resources.port_count(), 11);
    }
}
