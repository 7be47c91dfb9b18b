//! End to end: the real `pacer dev` binary on a free port, driven by the real kubectl (1.32,
//! preinstalled at /usr/bin/kubectl) with a temporary kubeconfig and default flags (so
//! kubectl's server-side field validation and its OpenAPI v3 checks are exercised). Skips, and
//! says so, when kubectl is not installed.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const KUBECTL: &str = "/usr/bin/kubectl";

/// `pacer dev` running in the background; killed on drop if the test did not stop it.
struct Server {
    child: Child,
    address: String,
    log: PathBuf,
}

impl Server {
    fn start(dir: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        let log = dir.join("pacer.log");
        let child = Command::new(env!("CARGO_BIN_EXE_pacer"))
            .args(["dev", "--listen", &address, "--data-dir"])
            .arg(dir.join("data"))
            .env("PACER_LOG", "info,pacer_apiserver=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start pacer dev");
        let server = Self {
            child,
            address,
            log,
        };
        server.wait_healthy();
        server
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(mut stream) = TcpStream::connect(&self.address) {
                let request = format!(
                    "GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                    self.address
                );
                let mut response = String::new();
                if stream.write_all(request.as_bytes()).is_ok()
                    && stream.read_to_string(&mut response).is_ok()
                    && response.starts_with("HTTP/1.1 200")
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "pacer dev did not become healthy; log:\n{}",
            self.log_text()
        );
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for a clean exit.
    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "pacer dev exited with {status}; log:\n{}",
                    self.log_text()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "pacer dev did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process killed (and reaped) when dropped, even if the test panics.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Kubectl {
    kubeconfig: PathBuf,
    home: PathBuf,
}

impl Kubectl {
    fn new(dir: &Path, server: &Server) -> Self {
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: pacer\n  cluster:\n    server: http://{}\n\
                 contexts:\n- name: pacer\n  context:\n    cluster: pacer\n    user: anonymous\n    namespace: default\n\
                 current-context: pacer\nusers:\n- name: anonymous\n  user: {{}}\n",
                server.address
            ),
        )
        .unwrap();
        let home = dir.join("home");
        std::fs::create_dir_all(&home).unwrap();
        Self { kubeconfig, home }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(KUBECTL)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .env("HOME", &self.home)
            .env_remove("KUBECONFIG")
            .output()
            .expect("run kubectl")
    }

    /// Runs kubectl, asserts it succeeded, and returns its stdout.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "kubectl {args:?} failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
            output.status
        );
        stdout
    }

    /// Runs kubectl, asserts it failed, and returns stdout and stderr together.
    #[track_caller]
    fn fails(&self, args: &[&str]) -> String {
        let output = self.run(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            !output.status.success(),
            "kubectl {args:?} should fail:\n{text}"
        );
        text
    }
}

const MANIFEST: &str = "\
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

#[test]
fn kubectl_drives_pacer_dev() {
    if !Path::new(KUBECTL).exists() {
        eprintln!("SKIPPED kubectl_drives_pacer_dev: {KUBECTL} is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let kubectl = Kubectl::new(dir.path(), &server);
    let manifest = dir.path().join("web.yaml");
    std::fs::write(&manifest, MANIFEST).unwrap();
    let manifest = manifest.to_str().unwrap();

    // Create, read, list.
    assert_eq!(
        kubectl.ok(&["apply", "-f", manifest]).trim(),
        "app.pacer.dev/web created"
    );
    let listed = kubectl.ok(&["get", "apps"]);
    assert!(
        listed.starts_with("NAME") && listed.contains("\nweb "),
        "{listed}"
    );
    // The server's Table: per-kind columns, Age formatted server-side.
    let header: Vec<&str> = listed.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "INSTANCES", "HEALTHY", "AGE"], "{listed}");
    let web_row: Vec<&str> = listed.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(web_row[..3], ["web", "0/2", "-"], "{listed}");
    let wide = kubectl.ok(&["get", "apps", "-A", "--show-labels"]);
    assert!(
        wide.starts_with("NAMESPACE") && wide.contains("tier=front"),
        "{wide}"
    );
    assert!(kubectl.ok(&["get", "ap", "-A"]).contains("default"));
    let yaml = kubectl.ok(&["get", "app", "web", "-o", "yaml"]);
    for expected in [
        "kind: App",
        "instances: 2",
        "resourceVersion: ",
        "uid: ",
        "generation: 1",
        "kubectl.kubernetes.io/last-applied-configuration",
        "killSelection: YOUNGEST_FIRST",
    ] {
        assert!(
            yaml.contains(expected),
            "{expected:?} missing from:\n{yaml}"
        );
    }

    // Re-apply: unchanged, then a change through merge patch.
    assert_eq!(
        kubectl.ok(&["apply", "-f", manifest]).trim(),
        "app.pacer.dev/web unchanged"
    );
    std::fs::write(manifest, MANIFEST.replace("instances: 2", "instances: 3")).unwrap();
    assert_eq!(
        kubectl.ok(&["apply", "-f", manifest]).trim(),
        "app.pacer.dev/web configured"
    );
    let instances = kubectl.ok(&[
        "get",
        "app",
        "web",
        "-o",
        "jsonpath={.spec.instances} {.metadata.generation}",
    ]);
    assert_eq!(instances, "3 2");

    // Server-side validation with default flags: the unknown field is named.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        MANIFEST
            .replace("name: web", "name: bad")
            .replace("instances: 2", "replicas: 2"),
    )
    .unwrap();
    let error = kubectl.fails(&["apply", "-f", bad.to_str().unwrap()]);
    assert!(error.contains("unknown field \"spec.replicas\""), "{error}");

    // Scale subresource, explain from OpenAPI v3, server-side dry run through diff.
    assert_eq!(
        kubectl.ok(&["scale", "app", "web", "--replicas=5"]).trim(),
        "app.pacer.dev/web scaled"
    );
    let explain = kubectl.ok(&["explain", "app.spec.instances"]);
    assert!(explain.contains("Number of instances"), "{explain}");
    let diff = kubectl.run(&["diff", "-f", manifest]);
    assert_eq!(diff.status.code(), Some(1), "{diff:?}");
    assert!(String::from_utf8_lossy(&diff.stdout).contains("+  instances: 3"));
    assert!(
        kubectl
            .ok(&["get", "app", "web", "-o", "yaml"])
            .contains("instances: 5"),
        "diff is a dry run"
    );

    // A watch sees the scale and the delete.
    let mut watch = KillOnDrop(
        Command::new(KUBECTL)
            .arg("--kubeconfig")
            .arg(&kubectl.kubeconfig)
            .args(["get", "apps", "-w", "--output-watch-events"])
            .env("HOME", &kubectl.home)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start kubectl get -w"),
    );
    let stdout = watch.0.stdout.take().unwrap();
    let (lines, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let next_line = || {
        seen.recv_timeout(Duration::from_secs(10))
            .expect("a watch line")
    };
    assert!(next_line().starts_with("EVENT"));
    assert!(next_line().starts_with("ADDED"));
    kubectl.ok(&["scale", "app", "web", "--replicas=4"]);
    let modified = next_line();
    assert!(
        modified.starts_with("MODIFIED") && modified.contains(" 0/4 "),
        "{modified}"
    );

    // Delete, then it is gone.
    assert_eq!(
        kubectl.ok(&["delete", "-f", manifest]).trim(),
        "app.pacer.dev \"web\" deleted"
    );
    let gone = kubectl.fails(&["get", "app", "web"]);
    assert!(gone.contains("(NotFound)"), "{gone}");
    assert!(kubectl.ok(&["get", "apps"]).is_empty());
    assert!(next_line().starts_with("DELETED"));
    drop(watch);

    let log = server.log_text();
    server.stop();
    assert!(!log.contains("ERROR"), "errors in the server log:\n{log}");
}

#[test]
fn kubectl_server_side_apply() {
    if !Path::new(KUBECTL).exists() {
        eprintln!("SKIPPED kubectl_server_side_apply: {KUBECTL} is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let kubectl = Kubectl::new(dir.path(), &server);
    let manifest = dir.path().join("web.yaml");
    std::fs::write(&manifest, MANIFEST).unwrap();
    let manifest = manifest.to_str().unwrap();
    let version = || {
        kubectl.ok(&[
            "get",
            "app",
            "web",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
    };

    // Upsert, then an unchanged re-apply writes nothing.
    assert_eq!(
        kubectl
            .ok(&["apply", "--server-side", "-f", manifest])
            .trim(),
        "app.pacer.dev/web serverside-applied"
    );
    let first = version();
    kubectl.ok(&["apply", "--server-side", "-f", manifest]);
    assert_eq!(version(), first, "an unchanged apply must not write");
    let yaml = kubectl.ok(&["get", "app", "web", "-o", "yaml", "--show-managed-fields"]);
    for expected in [
        "manager: kubectl",
        "operation: Apply",
        "fieldsType: FieldsV1",
        "f:instances: {}",
        "f:tier: {}",
    ] {
        assert!(
            yaml.contains(expected),
            "{expected:?} missing from:\n{yaml}"
        );
    }

    // Another manager changing an owned field conflicts; kubectl explains how to force.
    let other = dir.path().join("other.yaml");
    std::fs::write(
        &other,
        "apiVersion: pacer.dev/v1\nkind: App\nmetadata:\n  name: web\nspec:\n  instances: 4\n",
    )
    .unwrap();
    let other = other.to_str().unwrap();
    let error = kubectl.fails(&["apply", "--server-side", "--field-manager=ops", "-f", other]);
    assert!(
        error.contains("Apply failed with 1 conflict: conflict with \"kubectl\"")
            && error.contains(".spec.instances")
            && error.contains("--force-conflicts"),
        "{error}"
    );
    assert_eq!(version(), first, "a conflict writes nothing");

    // --force-conflicts takes the field; then kubectl's own apply conflicts with ops.
    kubectl.ok(&[
        "apply",
        "--server-side",
        "--field-manager=ops",
        "--force-conflicts",
        "-f",
        other,
    ]);
    assert_eq!(
        kubectl.ok(&["get", "app", "web", "-o", "jsonpath={.spec.instances}"]),
        "4"
    );
    let error = kubectl.fails(&["apply", "--server-side", "-f", manifest]);
    assert!(error.contains("conflict with \"ops\""), "{error}");

    // Dropping a field from kubectl's configuration removes it (nobody else owns the label).
    std::fs::write(
        manifest,
        MANIFEST
            .replace("  labels:\n    tier: front\n", "")
            .replace("instances: 2", "instances: 4"),
    )
    .unwrap();
    kubectl.ok(&["apply", "--server-side", "-f", manifest]);
    assert_eq!(
        kubectl.ok(&["get", "app", "web", "-o", "jsonpath={.metadata.labels}"]),
        ""
    );
    // A server-side dry run through diff leaves the object alone.
    std::fs::write(manifest, MANIFEST.replace("instances: 2", "instances: 4")).unwrap();
    let diff = kubectl.run(&["diff", "--server-side", "-f", manifest]);
    assert_eq!(diff.status.code(), Some(1), "{diff:?}");
    assert!(String::from_utf8_lossy(&diff.stdout).contains("+    tier: front"));

    let log = server.log_text();
    server.stop();
    assert!(!log.contains("ERROR"), "errors in the server log:\n{log}");
}
