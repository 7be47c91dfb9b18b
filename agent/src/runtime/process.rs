//! The process runtime: runs `cmd` with `/bin/sh -c` (Marathon's semantics) or `args`
//! directly, in a sandbox directory per instance under the agent's data directory (its working
//! directory, with `stdout` and `stderr` files), with Marathon's task environment, in its own
//! process group so that a kill reaches everything it started: SIGTERM to the group, SIGKILL
//! after the grace period.
//!
//! Adoption: each run writes `pacer.pid` (pid, the kernel's start time of that pid, and the
//! instance) into its sandbox. A restarted agent lists the pid files and takes over every
//! process whose pid still has the recorded start time — a recycled pid never passes for the
//! instance. It is no longer the parent, so it notices their exit by polling `/proc` and cannot
//! learn their exit code.
//!
//! Tied mode (`pacer dev`): each process gets the parent-death signal SIGKILL (set by
//! util-linux's `setpriv --pdeathsig`, which then execs the command, so the pid is the
//! command's), so the instances of a single-process dev setup end with it even when it is
//! SIGKILLed, instead of outliving it. The kernel sends that signal when the *thread* that
//! spawned the process ends: spawns happen on tokio worker threads, which live as long as the
//! runtime (a `block_in_place` in the agent's process would break this).
//!
//! Limits: on a cgroup v2 machine each instance gets a cgroup with `cpu.max` and `memory.max`
//! (best effort: a failure is logged, the instance runs); on cgroup v1 limits are not enforced,
//! which is logged once at start.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::launch::{Command, InstanceKey, Launch};
use crate::runtime::{
    Exit, ExitSender, Exited, LogOptions, LogStream, NO_LOGS, Owned, Runtime, RuntimeError,
    Started, output,
};

/// Name of the pid file in each sandbox.
pub const PID_FILE: &str = "pacer.pid";
/// The captured standard output, in the sandbox.
pub const STDOUT_FILE: &str = "stdout";
/// The captured standard error, in the sandbox.
pub const STDERR_FILE: &str = "stderr";

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// How often an adopted process (not our child) is checked for having exited.
const ADOPTED_POLL: Duration = Duration::from_millis(500);

/// What `pacer.pid` holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PidFile {
    pid: i32,
    /// Field 22 of `/proc/<pid>/stat`: clock ticks after boot when the process started.
    start_time: u64,
    namespace: String,
    name: String,
}

/// Runs instances as plain processes.
#[derive(Debug)]
pub struct ProcessRuntime {
    sandboxes: PathBuf,
    cgroup: Option<PathBuf>,
    /// Exit of each run this runtime watches, by pid.
    exits: Arc<Mutex<HashMap<i32, watch::Receiver<Option<Exit>>>>>,
    /// `setpriv`, when processes die with the agent.
    tie_with: Option<PathBuf>,
}

impl ProcessRuntime {
    /// A runtime keeping its sandboxes under `sandboxes` (created if missing). `agent_id`
    /// names the agent's cgroup on cgroup v2 machines.
    pub fn new(sandboxes: PathBuf, agent_id: &str) -> Result<Self, RuntimeError> {
        std::fs::create_dir_all(&sandboxes).map_err(|error| {
            RuntimeError::new(
                "SandboxFailed",
                format!(
                    "create the sandbox directory {}: {error}",
                    sandboxes.display()
                ),
            )
        })?;
        let cgroup = cgroup_v2_parent(agent_id);
        match &cgroup {
            Some(path) => tracing::info!(
                cgroup = %path.display(),
                "process runtime: cgroup v2: cpus and mem limits are enforced"
            ),
            None => tracing::info!(
                "process runtime: no writable cgroup v2 hierarchy (cgroup v1 or none): cpus \
                 and mem limits of processes are not enforced"
            ),
        }
        Ok(Self {
            sandboxes,
            cgroup,
            exits: Arc::new(Mutex::new(HashMap::new())),
            tie_with: None,
        })
    }

    /// Makes every process it starts die (SIGKILL) when the agent's process dies, if
    /// util-linux's `setpriv` is installed (logged either way).
    #[must_use]
    pub fn tied_to_agent(mut self) -> Self {
        self.tie_with = ["/usr/bin/setpriv", "/bin/setpriv"]
            .into_iter()
            .map(PathBuf::from)
            .find(|path| path.is_file());
        match &self.tie_with {
            Some(_) => tracing::info!("process runtime: instances end when this process ends"),
            None => tracing::info!(
                "process runtime: setpriv (util-linux) not found: instances may outlive this \
                 process"
            ),
        }
        self
    }

    /// The sandbox directory of an instance.
    pub fn sandbox(&self, key: &InstanceKey) -> PathBuf {
        self.sandboxes.join(&key.namespace).join(&key.name)
    }

    fn exits(&self) -> std::sync::MutexGuard<'_, HashMap<i32, watch::Receiver<Option<Exit>>>> {
        lock(&self.exits)
    }

    /// Watches an adopted process (not our child) until its pid no longer has `start_time`.
    fn watch_adopted(&self, key: InstanceKey, pid: i32, start_time: u64, sender: ExitSender) {
        let (exit_tx, exit_rx) = watch::channel(None);
        self.exits().insert(pid, exit_rx);
        let table = Arc::clone(&self.exits);
        tokio::spawn(async move {
            while process_alive(pid, start_time) {
                tokio::time::sleep(ADOPTED_POLL).await;
            }
            let exit = Exit {
                code: None,
                message: "exited while adopted by a restarted agent (not its child: the exit \
                          code is unknown)"
                    .to_owned(),
            };
            let _ = exit_tx.send(Some(exit.clone()));
            lock(&table).remove(&pid);
            let _ = sender.send(Exited {
                key,
                runtime_id: pid.to_string(),
                exit,
            });
        });
    }

    fn read_pid_file(&self, key: &InstanceKey) -> Option<PidFile> {
        let text = std::fs::read_to_string(self.sandbox(key).join(PID_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn limit(&self, launch: &Launch, pid: u32) {
        let Some(parent) = &self.cgroup else {
            return;
        };
        let group = parent.join(format!("{}.{}", launch.key.namespace, launch.key.name));
        let cpu_max = format!(
            "{} 100000",
            ((launch.cpus * 100_000.0).ceil() as u64).max(1000)
        );
        let memory_max = ((launch.mem * 1024.0 * 1024.0).ceil() as u64).to_string();
        let result = std::fs::create_dir_all(&group)
            .and_then(|()| std::fs::write(group.join("cpu.max"), &cpu_max))
            .and_then(|()| std::fs::write(group.join("memory.max"), &memory_max))
            .and_then(|()| std::fs::write(group.join("cgroup.procs"), pid.to_string()));
        if let Err(error) = result {
            tracing::warn!(
                instance = %launch.key,
                cgroup = %group.display(),
                %error,
                "process runtime: cannot apply cgroup limits; the instance runs without them"
            );
        }
    }
}

#[async_trait]
impl Runtime for ProcessRuntime {
    fn name(&self) -> &'static str {
        "process"
    }

    async fn start(&self, launch: &Launch, exits: &ExitSender) -> Result<Started, RuntimeError> {
        let sandbox = self.sandbox(&launch.key);
        let failed = |what: &str, error: std::io::Error| {
            RuntimeError::new(
                "SandboxFailed",
                format!("{what} in sandbox {}: {error}", sandbox.display()),
            )
        };
        std::fs::create_dir_all(&sandbox).map_err(|error| failed("create the directory", error))?;
        let stdout =
            open_log(&sandbox.join(STDOUT_FILE)).map_err(|error| failed("open stdout", error))?;
        let stderr =
            open_log(&sandbox.join(STDERR_FILE)).map_err(|error| failed("open stderr", error))?;
        let mut argv: Vec<std::ffi::OsString> = match &launch.command {
            Command::Shell(cmd) => vec!["/bin/sh".into(), "-c".into(), cmd.into()],
            Command::Argv(args) if !args.is_empty() => args.iter().map(Into::into).collect(),
            Command::Argv(_) => {
                return Err(RuntimeError::new(
                    "StartFailed",
                    "spec.template.args: empty",
                ));
            }
            Command::ImageDefault => {
                return Err(RuntimeError::new(
                    "StartFailed",
                    "the process runtime needs cmd or args",
                ));
            }
        };
        if let Some(setpriv) = &self.tie_with {
            let mut tied: Vec<std::ffi::OsString> = vec![
                setpriv.into(),
                "--pdeathsig".into(),
                "KILL".into(),
                "--".into(),
            ];
            tied.append(&mut argv);
            argv = tied;
        }
        let mut command = tokio::process::Command::new(&argv[0]);
        command.args(&argv[1..]);
        command
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
            )
            .envs(&launch.env)
            .env("MESOS_SANDBOX", &sandbox)
            .current_dir(&sandbox)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0)
            .kill_on_drop(false);
        let mut child = command.spawn().map_err(|error| {
            RuntimeError::new(
                "StartFailed",
                format!("start {:?}: {error}", launch.command),
            )
        })?;
        let Some(pid) = child.id() else {
            return Err(RuntimeError::new(
                "StartFailed",
                "the process exited before its pid could be read",
            ));
        };
        let pid_i32 = i32::try_from(pid)
            .map_err(|_| RuntimeError::new("StartFailed", format!("pid {pid} out of range")))?;
        self.limit(launch, pid);
        let start_time = process_start_time(pid_i32).unwrap_or(0);
        let record = PidFile {
            pid: pid_i32,
            start_time,
            namespace: launch.key.namespace.clone(),
            name: launch.key.name.clone(),
        };
        write_atomically(
            &sandbox.join(PID_FILE),
            &serde_json::to_vec(&record).unwrap_or_default(),
        )
        .map_err(|error| failed("write the pid file", error))?;
        let (exit_tx, exit_rx) = watch::channel(None);
        self.exits().insert(pid_i32, exit_rx);
        let table = Arc::clone(&self.exits);
        let key = launch.key.clone();
        let sender = exits.clone();
        tokio::spawn(async move {
            let exit = match child.wait().await {
                Ok(status) => exit_of(status),
                Err(error) => Exit {
                    code: None,
                    message: format!("waiting for the process failed: {error}"),
                },
            };
            let _ = exit_tx.send(Some(exit.clone()));
            lock(&table).remove(&pid_i32);
            let _ = sender.send(Exited {
                key,
                runtime_id: pid_i32.to_string(),
                exit,
            });
        });
        tracing::info!(instance = %launch.key, pid, sandbox = %sandbox.display(), "process started");
        Ok(Started {
            runtime_id: pid.to_string(),
        })
    }

    async fn stop(
        &self,
        key: &InstanceKey,
        runtime_id: &str,
        grace: Duration,
    ) -> Result<(), RuntimeError> {
        let Ok(pid) = runtime_id.parse::<i32>() else {
            return Ok(());
        };
        let Some(record) = self.read_pid_file(key).filter(|record| record.pid == pid) else {
            return Ok(());
        };
        let mut exit = self.exits().get(&pid).cloned();
        let gone = |exit: &Option<watch::Receiver<Option<Exit>>>| match exit {
            Some(receiver) => receiver.borrow().is_some(),
            None => !process_alive(pid, record.start_time),
        };
        if gone(&exit) {
            signal_group(pid, Signal::SIGKILL);
            return Ok(());
        }
        tracing::info!(instance = %key, pid, grace_seconds = grace.as_secs_f64(), "SIGTERM to the process group");
        signal_group(pid, Signal::SIGTERM);
        if !wait_gone(&mut exit, pid, record.start_time, grace).await {
            tracing::info!(instance = %key, pid, "still running after the grace period: SIGKILL");
        }
        // Also reaches anything the process left behind in its group.
        signal_group(pid, Signal::SIGKILL);
        if !wait_gone(&mut exit, pid, record.start_time, Duration::from_secs(10)).await {
            return Err(RuntimeError::new(
                "KillFailed",
                format!("process {pid} still runs 10 s after SIGKILL"),
            ));
        }
        Ok(())
    }

    async fn remove(&self, key: &InstanceKey, runtime_id: &str) -> Result<(), RuntimeError> {
        let path = self.sandbox(key).join(PID_FILE);
        match self.read_pid_file(key) {
            Some(record) if record.pid.to_string() != runtime_id => return Ok(()),
            Some(record) => {
                // The leader has ended; whatever it left running in its group goes too (the
                // kernel does not reuse a pid while it names a live process group).
                signal_group(record.pid, Signal::SIGKILL);
            }
            None => {}
        }
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(RuntimeError::new(
                "RemoveFailed",
                format!("remove {}: {error}", path.display()),
            )),
        }
    }

    async fn list(&self, exits: &ExitSender) -> Result<Vec<Owned>, RuntimeError> {
        let mut owned = Vec::new();
        for pid_file in pid_files(&self.sandboxes) {
            let Ok(text) = std::fs::read_to_string(&pid_file) else {
                continue;
            };
            let record: PidFile = match serde_json::from_str(&text) {
                Ok(record) => record,
                Err(error) => {
                    tracing::warn!(file = %pid_file.display(), %error, "unreadable pid file: ignored");
                    continue;
                }
            };
            let key = InstanceKey::new(record.namespace.clone(), record.name.clone());
            let tracked = self.exits().get(&record.pid).cloned();
            let exit = match tracked {
                Some(receiver) => receiver.borrow().clone(),
                None if process_alive(record.pid, record.start_time) => {
                    tracing::info!(instance = %key, pid = record.pid, "adopted a running process");
                    self.watch_adopted(key.clone(), record.pid, record.start_time, exits.clone());
                    None
                }
                None => Some(Exit {
                    code: None,
                    message: "exited while the agent was down (exit code unknown)".to_owned(),
                }),
            };
            owned.push(Owned {
                key,
                runtime_id: record.pid.to_string(),
                exit,
            });
        }
        Ok(owned)
    }

    async fn logs(
        &self,
        key: &InstanceKey,
        options: LogOptions,
    ) -> Result<LogStream, RuntimeError> {
        let sandbox = self.sandbox(key);
        if !sandbox.join(STDOUT_FILE).is_file() {
            return Err(RuntimeError::new(
                NO_LOGS,
                format!("no sandbox of {key} on this node"),
            ));
        }
        // Following ends once the run is over: its pid file is gone (released) or its pid no
        // longer names the process that started.
        let pid_file = sandbox.join(PID_FILE);
        let ended: output::Ended = Arc::new(move || {
            std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|text| serde_json::from_str::<PidFile>(&text).ok())
                .is_none_or(|record| !process_alive(record.pid, record.start_time))
        });
        let paths = [sandbox.join(STDOUT_FILE), sandbox.join(STDERR_FILE)];
        output::stream_files(&paths, options, ended).map_err(|error| {
            RuntimeError::new(
                "LogsFailed",
                format!("read the output of {key} in {}: {error}", sandbox.display()),
            )
        })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Inserts and removes only: a panic elsewhere cannot leave the map half-changed.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Waits up to `limit` for the process to be gone; whether it is.
async fn wait_gone(
    exit: &mut Option<watch::Receiver<Option<Exit>>>,
    pid: i32,
    start_time: u64,
    limit: Duration,
) -> bool {
    match exit {
        Some(receiver) => tokio::time::timeout(limit, receiver.wait_for(Option::is_some))
            .await
            .is_ok(),
        None => {
            let deadline = tokio::time::Instant::now() + limit;
            loop {
                if !process_alive(pid, start_time) {
                    return true;
                }
                if tokio::time::Instant::now() >= deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Signals the process group `pgid` (ours are their own group leaders); an empty group is
/// not an error.
fn signal_group(pgid: i32, signal: Signal) {
    match killpg(Pid::from_raw(pgid), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(error) => tracing::warn!(pgid, ?signal, %error, "cannot signal the process group"),
    }
}

fn exit_of(status: std::process::ExitStatus) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => Exit {
            code: Some(code),
            message: format!("exited with code {code}"),
        },
        (None, Some(signal)) => Exit {
            code: Some(128 + signal),
            message: format!(
                "killed by signal {}",
                Signal::try_from(signal).map_or_else(|_| signal.to_string(), |s| s.to_string())
            ),
        },
        (None, None) => Exit {
            code: None,
            message: "ended without exit code or signal".to_owned(),
        },
    }
}

/// The start time (field 22 of `/proc/<pid>/stat`) of a live, non-zombie process.
fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

/// Field 22 (`starttime`) of a `/proc/<pid>/stat` line, `None` for a zombie or dead process.
fn parse_stat(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may contain spaces and ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // fields[0] is field 3 (state); field 22 is fields[19].
    match fields.first() {
        Some(&"Z" | &"X" | &"x") | None => None,
        Some(_) => fields.get(19)?.parse().ok(),
    }
}

/// Whether `pid` still is the process that started at `start_time`.
fn process_alive(pid: i32, start_time: u64) -> bool {
    process_start_time(pid).is_some_and(|now| now == start_time)
}

fn open_log(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)
}

/// `<sandboxes>/<namespace>/<name>/pacer.pid` files.
fn pid_files(sandboxes: &Path) -> Vec<PathBuf> {
    let Ok(namespaces) = std::fs::read_dir(sandboxes) else {
        return Vec::new();
    };
    namespaces
        .flatten()
        .filter_map(|namespace| std::fs::read_dir(namespace.path()).ok())
        .flat_map(|instances| instances.flatten())
        .map(|instance| instance.path().join(PID_FILE))
        .filter(|path| path.is_file())
        .collect()
}

/// The agent's cgroup (`/sys/fs/cgroup/pacer/<agent id>`) when the machine runs cgroup v2 with
/// the cpu and memory controllers and we may create groups; `None` otherwise.
fn cgroup_v2_parent(agent_id: &str) -> Option<PathBuf> {
    let root = Path::new(CGROUP_ROOT);
    let controllers = std::fs::read_to_string(root.join("cgroup.controllers")).ok()?;
    if !(controllers.contains("cpu") && controllers.contains("memory")) {
        return None;
    }
    let pacer = root.join("pacer");
    std::fs::create_dir_all(&pacer).ok()?;
    std::fs::write(root.join("cgroup.subtree_control"), "+cpu +memory").ok()?;
    std::fs::write(pacer.join("cgroup.subtree_control"), "+cpu +memory").ok()?;
    let parent = pacer.join(agent_id);
    std::fs::create_dir_all(&parent).ok()?;
    std::fs::write(parent.join("cgroup.subtree_control"), "+cpu +memory").ok()?;
    Some(parent)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn launch(name: &str, cmd: &str) -> Launch {
        Launch {
            key: InstanceKey::new("default", name),
            app: "app".into(),
            command: Command::Shell(cmd.into()),
            image: None,
            host_network: true,
            env: std::collections::BTreeMap::from([("GREETING".to_owned(), "hi".to_owned())]),
            ports: Vec::new(),
            cpus: 0.1,
            mem: 32.0,
            kill_grace: Duration::from_secs(5),
            labels: std::collections::BTreeMap::new(),
        }
    }

    #[tokio::test]
    async fn runs_in_a_sandbox_is_adopted_by_a_new_runtime_and_killed_as_a_group() {
        let dir = tempfile::tempdir().unwrap();
        let sandboxes = dir.path().join("sandboxes");
        let (exits, mut exited) = tokio::sync::mpsc::unbounded_channel();
        let first = ProcessRuntime::new(sandboxes.clone(), "test").unwrap();
        // A child that ignores SIGTERM keeps the group alive past the grace period.
        let launch = launch("sleeper", "echo $GREETING; trap '' TERM; sleep 300 & wait");
        let started = first.start(&launch, &exits).await.unwrap();
        let sandbox = first.sandbox(&launch.key);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(sandbox.join(STDOUT_FILE)).unwrap() != "hi\n" {
            assert!(tokio::time::Instant::now() < deadline, "no output");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // A new runtime over the same sandboxes (a restarted agent) adopts the process.
        let second = ProcessRuntime::new(sandboxes, "test").unwrap();
        let (adopted_exits, mut adopted_exited) = tokio::sync::mpsc::unbounded_channel();
        let owned = second.list(&adopted_exits).await.unwrap();
        assert_eq!(owned.len(), 1, "{owned:?}");
        assert_eq!(owned[0].runtime_id, started.runtime_id);
        assert!(owned[0].exit.is_none());

        second
            .stop(&launch.key, &started.runtime_id, Duration::from_millis(300))
            .await
            .unwrap();
        let pid: i32 = started.runtime_id.parse().unwrap();
        assert!(process_start_time(pid).is_none(), "the leader survived");
        let adopted_exit = adopted_exited.recv().await.unwrap();
        assert_eq!(adopted_exit.exit.code, None, "{adopted_exit:?}");
        let child_exit = exited.recv().await.unwrap();
        assert_eq!(child_exit.exit.code, Some(128 + 9), "{child_exit:?}");
        second
            .remove(&launch.key, &started.runtime_id)
            .await
            .unwrap();
        assert!(!sandbox.join(PID_FILE).exists());
        assert!(second.list(&adopted_exits).await.unwrap().is_empty());
    }

    #[test]
    fn stat_lines_give_start_times_of_live_processes() {
        let line = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_stat(line), Some(987_654));
        let zombie = "1234 (x) Z 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 0 0";
        assert_eq!(parse_stat(zombie), None);
        assert_eq!(parse_stat("garbage"), None);
        let own = process_start_time(i32::try_from(std::process::id()).unwrap());
        assert!(own.is_some());
        assert!(process_alive(
            i32::try_from(std::process::id()).unwrap(),
            own.unwrap()
        ));
        assert!(!process_alive(
            i32::try_from(std::process::id()).unwrap(),
            own.unwrap() + 1
        ));
    }
}
