//! Processes an end-to-end test starts besides the server: a guard that kills (and reaps) a
//! child when dropped, so a failing test leaves nothing running; `pacer agent …` processes
//! logging to a file; and a check whether a pid still runs.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::PACER;

/// A child process killed (SIGKILL) and reaped when dropped, even if the test panics.
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    /// Kills the process now and reaps it (a no-op if it already ended).
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `pacer agent <args>` process (`PACER_LOG=info`, its config file in `scratch`) with its
/// stdout and stderr in `scratch/<log_name>`, killed on drop.
pub struct AgentProcess {
    process: KillOnDrop,
    log: PathBuf,
}

impl AgentProcess {
    /// Starts `pacer agent <args>`.
    pub fn start(args: &[&str], scratch: &Path, log_name: &str) -> Self {
        let log = scratch.join(log_name);
        let file = File::create(&log).unwrap();
        let child = Command::new(PACER)
            .arg("agent")
            .args(args)
            .env("PACER_LOG", "info")
            .env("NO_COLOR", "1")
            .env("PACER_CONFIG", scratch.join("config.yaml"))
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start pacer agent");
        Self {
            process: KillOnDrop(child),
            log,
        }
    }

    /// The agent's stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the agent with SIGKILL (no shutdown) and reaps it.
    pub fn sigkill(&mut self) {
        self.process.0.kill().unwrap();
        self.process.0.wait().unwrap();
    }

    /// Fails when the agent logged any `ERROR` line.
    #[track_caller]
    pub fn assert_no_errors(&self) {
        let log = self.log();
        let errors: Vec<&str> = log
            .lines()
            .filter(|line| line.split_whitespace().nth(1) == Some("ERROR"))
            .collect();
        assert!(errors.is_empty(), "ERROR lines in the agent log:\n{log}");
    }
}

/// Whether process `pid` runs: it exists and is neither a zombie nor dead.
pub fn process_alive(pid: impl std::fmt::Display) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')').is_some_and(|(_, rest)| {
            !matches!(rest.trim_start().chars().next(), Some('Z' | 'X') | None)
        })
    })
}
