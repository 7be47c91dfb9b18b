//! A kubectl binary aimed at a [`Server`] through its own temporary kubeconfig (namespace
//! `default`) and `HOME` (so its discovery cache is fresh).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::Server;

/// App `web` in the manifest form the kubectl tests apply (two instances, label
/// `tier: front`); tests change `instances: 2` to apply an update.
pub const WEB_MANIFEST: &str = "\
apiVersion: pacer.dev/v1
kind: App
metadata:
  name: web
  labels:
    tier: front
spec:
  cmd: python3 -m http.server $PORT0
  instances: 2
  cpus: 0.25
  mem: 64
";

/// What `kubectl get app web -o yaml` shows after [`WEB_MANIFEST`] was first applied
/// client-side.
pub const WEB_APPLIED_YAML: &[&str] = &[
    "kind: App",
    "instances: 2",
    "resourceVersion: ",
    "uid: ",
    "generation: 1",
    "kubectl.kubernetes.io/last-applied-configuration",
];

/// One kubectl binary with its own kubeconfig and `HOME`.
pub struct Kubectl {
    binary: PathBuf,
    /// How failure messages name it (`kubectl`, `kubectl 1.20`).
    name: String,
    kubeconfig: PathBuf,
    home: PathBuf,
}

impl Kubectl {
    /// Writes a kubeconfig for `server` and a fresh `HOME` into `dir`.
    pub fn new(binary: impl Into<PathBuf>, name: &str, dir: &Path, server: &Server) -> Self {
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: pacer\n  cluster:\n    server: {}\n\
                 contexts:\n- name: pacer\n  context:\n    cluster: pacer\n    user: anonymous\n    namespace: default\n\
                 current-context: pacer\nusers:\n- name: anonymous\n  user: {{}}\n",
                server.url
            ),
        )
        .unwrap();
        let home = dir.join("home");
        std::fs::create_dir_all(&home).unwrap();
        Self {
            binary: binary.into(),
            name: name.to_owned(),
            kubeconfig,
            home,
        }
    }

    /// A kubectl command with this kubeconfig and `HOME` (for spawning, e.g. a watch).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .env("HOME", &self.home)
            .env_remove("KUBECONFIG");
        command
    }

    /// Runs kubectl and returns what it printed and how it exited.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .output()
            .unwrap_or_else(|error| panic!("run {}: {error}", self.name))
    }

    /// Runs kubectl, asserts it succeeded, and returns its stdout.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{} {args:?} failed ({}):\nstdout: {stdout}\nstderr: {}",
            self.name,
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// Runs kubectl, asserts it failed, and returns stdout and stderr together.
    #[track_caller]
    pub fn fails(&self, args: &[&str]) -> String {
        let output = self.run(args);
        let text = combined(&output);
        assert!(
            !output.status.success(),
            "{} {args:?} should fail:\n{text}",
            self.name
        );
        text
    }

    /// Runs kubectl, asserts it exited with `code`, and returns stdout and stderr together.
    #[track_caller]
    pub fn exits(&self, code: i32, args: &[&str]) -> String {
        let output = self.run(args);
        let text = combined(&output);
        assert_eq!(
            output.status.code(),
            Some(code),
            "{} {args:?} should exit with {code}:\n{text}",
            self.name
        );
        text
    }
}

/// Standard output followed by standard error.
fn combined(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
