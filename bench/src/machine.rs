//! What machine a benchmark ran on (best effort, from `/proc` where there is one), so that
//! results files from different runs can be told apart.

use serde::Serialize;

/// The machine's description in the results.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPUs this process may use (`nproc`).
    pub nproc: usize,
    /// CPU model, from `/proc/cpuinfo`.
    pub cpu_model: Option<String>,
    /// Total memory in bytes, from `/proc/meminfo`.
    pub memory_bytes: Option<u64>,
    /// Kernel release.
    pub kernel: Option<String>,
    /// 1-, 5- and 15-minute load averages when the run started: a busy machine explains noisy
    /// figures.
    pub load_average: Option<[f64; 3]>,
    /// Operating system and architecture this binary was built for.
    pub target: String,
}

impl Machine {
    /// Describes this machine.
    pub fn describe() -> Self {
        Self {
            nproc: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            cpu_model: read("/proc/cpuinfo").and_then(|text| {
                text.lines()
                    .find(|line| line.starts_with("model name"))
                    .and_then(|line| line.split_once(':'))
                    .map(|(_, model)| model.trim().to_owned())
            }),
            memory_bytes: read("/proc/meminfo").and_then(|text| {
                let line = text.lines().find(|line| line.starts_with("MemTotal:"))?;
                let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
                Some(kib * 1024)
            }),
            kernel: read("/proc/sys/kernel/osrelease").map(|text| text.trim().to_owned()),
            load_average: read("/proc/loadavg").and_then(|text| {
                let mut fields = text.split_whitespace().map(str::parse::<f64>);
                Some([
                    fields.next()?.ok()?,
                    fields.next()?.ok()?,
                    fields.next()?.ok()?,
                ])
            }),
            target: format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
        }
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}
