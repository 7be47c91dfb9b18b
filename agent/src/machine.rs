//! What the node has: CPUs (`available_parallelism`), memory (`/proc/meminfo`), disk (statvfs
//! of the agent's data directory), its host name, and the host port range instances get
//! (Mesos' default `31000-32000`) — or what `--resources cpus=…,mem=…,disk=…,ports=…` says
//! instead.

use std::path::Path;

use pacer_schemas::capacity::{PortRange, Resources};

/// Mesos' default host port range for tasks.
pub const DEFAULT_PORTS: PortRange = PortRange {
    begin: 31000,
    end: 32000,
};

/// A `--resources` value that does not parse.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("--resources {input:?}: {problem}")]
pub struct ResourcesError {
    input: String,
    problem: String,
}

/// The machine's resources, measured.
pub fn measure(data_dir: &Path) -> Resources {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| mem_total_mib(&text))
        .unwrap_or(0.0);
    let disk = nix::sys::statvfs::statvfs(data_dir)
        .map(|stat| {
            (stat.blocks_available() as f64) * (stat.fragment_size() as f64) / (1024.0 * 1024.0)
        })
        .unwrap_or(0.0)
        .floor();
    Resources {
        cpus: cpus as f64,
        mem,
        disk,
        gpus: 0,
        ports: vec![DEFAULT_PORTS],
    }
}

/// `MemTotal` of `/proc/meminfo`, in MiB.
fn mem_total_mib(meminfo: &str) -> Option<f64> {
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some((kib / 1024.0).floor())
}

/// The machine's host name (`localhost` if it cannot be read).
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Applies `cpus=4,mem=8192,disk=10000,gpus=0,ports=31000-32000` over `measured`: what the
/// text names replaces the measured value.
pub fn parse_resources(text: &str, measured: Resources) -> Result<Resources, ResourcesError> {
    let error = |problem: String| ResourcesError {
        input: text.to_owned(),
        problem,
    };
    let mut resources = measured;
    for item in text
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let (name, value) = item
            .split_once('=')
            .ok_or_else(|| error(format!("{item:?}: expected NAME=VALUE")))?;
        let number = || {
            value
                .parse::<f64>()
                .ok()
                .filter(|number| number.is_finite() && *number >= 0.0)
                .ok_or_else(|| error(format!("{name}: {value:?} is not a non-negative number")))
        };
        match name {
            "cpus" => resources.cpus = number()?,
            "mem" => resources.mem = number()?,
            "disk" => resources.disk = number()?,
            "gpus" => {
                resources.gpus = value
                    .parse()
                    .ok()
                    .filter(|gpus: &i32| *gpus >= 0)
                    .ok_or_else(|| error(format!("gpus: {value:?} is not a count")))?;
            }
            "ports" => {
                let (begin, end) = value.split_once('-').unwrap_or((value, value));
                let port = |text: &str| {
                    text.parse::<i32>()
                        .ok()
                        .filter(|port| (1..=65535).contains(port))
                        .ok_or_else(|| error(format!("ports: {text:?} is not a port")))
                };
                let (begin, end) = (port(begin)?, port(end)?);
                if end < begin {
                    return Err(error(format!("ports: {value:?}: end before begin")));
                }
                resources.ports = vec![PortRange { begin, end }];
            }
            other => {
                return Err(error(format!(
                    "unknown resource {other:?} (known: cpus, mem, disk, gpus, ports)"
                )));
            }
        }
    }
    Ok(resources)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_and_measurement() {
        assert_eq!(
            mem_total_mib("MemTotal:       24684000 kB\nMemFree: 1 kB\n"),
            Some(24105.0)
        );
        assert_eq!(mem_total_mib("nothing"), None);
        let measured = measure(Path::new("/"));
        assert!(measured.cpus >= 1.0 && measured.mem > 0.0, "{measured:?}");
        assert!(!hostname().is_empty());
    }

    #[test]
    fn resources_override_measurements() {
        let measured = Resources {
            cpus: 2.0,
            mem: 1000.0,
            disk: 5.0,
            gpus: 0,
            ports: vec![DEFAULT_PORTS],
        };
        let given =
            parse_resources("cpus=8, mem=4096,ports=20000-20100", measured.clone()).unwrap();
        assert_eq!(given.cpus, 8.0);
        assert_eq!(given.mem, 4096.0);
        assert_eq!(given.disk, 5.0);
        assert_eq!(
            given.ports,
            vec![PortRange {
                begin: 20000,
                end: 20100
            }]
        );
        for (bad, fragment) in [
            ("cpus", "expected NAME=VALUE"),
            ("cpus=-1", "not a non-negative number"),
            ("ram=1", "unknown resource \"ram\""),
            ("ports=5-1", "end before begin"),
            ("ports=0-10", "not a port"),
        ] {
            let error = parse_resources(bad, measured.clone())
                .unwrap_err()
                .to_string();
            assert!(error.contains(fragment), "{bad}: {error}");
        }
    }
}
