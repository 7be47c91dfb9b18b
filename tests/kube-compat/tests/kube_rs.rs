//! kube-rs against the real `pacer dev`: a typed `#[derive(CustomResource)]` App (group
//! `pacer.dev`, version `v1`, namespaced) driven through `kube::Api` — list, create, merge
//! patch, get, delete — while a raw `Api::watch` and a `kube::runtime::watcher` both follow
//! along and must see the App added, modified and deleted.
//!
//! The `pacer` binary: `$PACER_BIN` if set; otherwise the test builds it first with the same
//! cargo and target directory as itself (a no-op when it is fresh, as under
//! `cargo test --workspace`) and runs `<target>/<profile>/pacer`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt as _, TryStreamExt as _};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::watcher;
use kube::{Client, Config, CustomResource, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;

/// Pacer's App, with the fields this program uses (the server's defaults fill the rest, and
/// unknown fields in its answers are ignored).
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "pacer.dev",
    version = "v1",
    kind = "App",
    namespaced,
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct AppSpec {
    /// The command, for a plain-process app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<String>,
    /// How many instances to run.
    pub instances: u32,
    /// CPU shares per instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Memory per instance, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem: Option<f64>,
}

/// How long a watch event may take to arrive.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// `pacer dev` on a free port with a throwaway data directory; killed on drop.
struct Dev {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl Dev {
    fn start() -> Self {
        let binary = pacer_binary();
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.path().join("dev.log")).unwrap();
        let child = Command::new(&binary)
            .args([
                "dev",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(dir.path().join("data"))
            .env("PACER_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("start {}: {error}", binary.display()));
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dev.log")).unwrap_or_default()
    }

    async fn wait_ready(&mut self, client: &Client) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("pacer dev exited with {status}:\n{}", self.log());
            }
            if client.apiserver_version().await.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "pacer dev did not answer /version within 60s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `pacer` binary: `$PACER_BIN`, or the workspace's, built first (see the module docs).
fn pacer_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("PACER_BIN").filter(|path| !path.is_empty()) {
        return PathBuf::from(path);
    }
    // This test runs from <target>/<profile>/deps/.
    let me = std::env::current_exe().unwrap();
    let profile_dir = me.parent().and_then(Path::parent).unwrap();
    let target_dir = profile_dir.parent().unwrap();
    let profile = profile_dir.file_name().unwrap().to_str().unwrap();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--quiet", "-p", "pacer", "--bin", "pacer"])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    match profile {
        "debug" => {}
        "release" => {
            build.arg("--release");
        }
        other => {
            build.args(["--profile", other]);
        }
    }
    let status = build.status().expect("run cargo build -p pacer");
    assert!(status.success(), "cargo build -p pacer failed: {status}");
    let binary = profile_dir.join(format!("pacer{}", std::env::consts::EXE_SUFFIX));
    assert!(binary.is_file(), "{} was not built", binary.display());
    binary
}

/// Waits for the next item from `events` that `matches` accepts, skipping others.
async fn next_matching<T: std::fmt::Debug>(
    events: &mut mpsc::UnboundedReceiver<T>,
    what: &str,
    matches: impl Fn(&T) -> bool,
) -> T {
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    let mut skipped = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(event)) if matches(&event) => return event,
            Ok(Some(event)) => skipped.push(event),
            Ok(None) => panic!("the stream ended while waiting for {what}; saw {skipped:#?}"),
            Err(_) => panic!("no {what} within {EVENT_TIMEOUT:?}; saw {skipped:#?}"),
        }
    }
}

fn instances(app: &App) -> u32 {
    app.spec.instances
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_drives_pacer_dev() {
    // No TLS here (plain http), but kube's client stack wants a process-wide provider: ring,
    // as pacer-client uses (no aws-lc, so no cmake).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut dev = Dev::start();
    let mut config = Config::new(dev.url.parse().unwrap());
    config.default_namespace = "default".to_owned();
    let client = Client::try_from(config).unwrap();
    dev.wait_ready(&client).await;
    let version = client.apiserver_version().await.unwrap();
    assert!(!version.git_version.is_empty(), "{version:?}");

    let apps: Api<App> = Api::default_namespaced(client.clone());

    // Api::list on an empty namespace: no items, but a resourceVersion to watch from.
    let listed = apps.list(&ListParams::default()).await.unwrap();
    assert!(listed.items.is_empty(), "{listed:?}");
    let list_rv = listed.metadata.resource_version.clone().unwrap();
    assert!(!list_rv.is_empty());

    // A raw watch from the list's resourceVersion.
    let (raw_tx, mut raw) = mpsc::unbounded_channel();
    let mut raw_stream = apps
        .watch(&WatchParams::default().timeout(60), &list_rv)
        .await
        .unwrap()
        .boxed();
    let raw_task = tokio::spawn(async move {
        while let Some(event) = raw_stream.try_next().await.unwrap() {
            if raw_tx.send(event).is_err() {
                break;
            }
        }
    });

    // kube::runtime::watcher: list then watch, with its own bookkeeping.
    let (runtime_tx, mut runtime) = mpsc::unbounded_channel();
    let mut watcher_stream = watcher(apps.clone(), watcher::Config::default()).boxed();
    let watcher_task = tokio::spawn(async move {
        while let Some(event) = watcher_stream.next().await {
            if runtime_tx.send(event).is_err() {
                break;
            }
        }
    });
    next_matching(&mut runtime, "the watcher's InitDone", |event| {
        matches!(event, Ok(watcher::Event::InitDone))
    })
    .await
    .unwrap();

    // Api::create.
    let app = App::new(
        "kube-web",
        AppSpec {
            cmd: Some("python3 -m http.server $PORT0".to_owned()),
            instances: 2,
            cpus: Some(0.25),
            mem: Some(64.0),
        },
    );
    let created = apps.create(&PostParams::default(), &app).await.unwrap();
    assert_eq!(created.name_any(), "kube-web");
    assert_eq!(created.namespace().as_deref(), Some("default"));
    assert!(created.uid().is_some(), "{created:?}");
    assert!(created.resource_version().is_some(), "{created:?}");
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(created.spec, app.spec);

    // Creating it again is a 409 AlreadyExists Status, as kube-rs expects.
    match apps.create(&PostParams::default(), &app).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 409, "{status:?}");
            assert_eq!(status.reason, "AlreadyExists", "{status:?}");
        }
        other => panic!("a second create should conflict: {other:?}"),
    }

    // Api::list sees it.
    let listed = apps.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        listed
            .items
            .iter()
            .map(ResourceExt::name_any)
            .collect::<Vec<_>>(),
        ["kube-web"]
    );

    // Api::patch with a JSON merge patch: spec changes, generation bumps.
    let patched = apps
        .patch(
            "kube-web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"instances": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.spec.instances, 3);
    assert_eq!(patched.metadata.generation, Some(2));
    assert_ne!(patched.resource_version(), created.resource_version());
    assert_eq!(apps.get("kube-web").await.unwrap().spec.instances, 3);

    // Api::delete, then it is gone.
    apps.delete("kube-web", &DeleteParams::default())
        .await
        .unwrap();
    assert!(apps.get_opt("kube-web").await.unwrap().is_none());

    // The raw watch saw ADDED, MODIFIED and DELETED, in order.
    let added = next_matching(&mut raw, "ADDED", |event| {
        matches!(event, WatchEvent::Added(_))
    })
    .await;
    let WatchEvent::Added(added) = added else {
        unreachable!()
    };
    assert_eq!(
        (added.name_any(), instances(&added)),
        ("kube-web".into(), 2)
    );
    let modified = next_matching(&mut raw, "MODIFIED", |event| {
        matches!(event, WatchEvent::Modified(_))
    })
    .await;
    let WatchEvent::Modified(modified) = modified else {
        unreachable!()
    };
    assert_eq!(instances(&modified), 3);
    assert_eq!(modified.resource_version(), patched.resource_version());
    next_matching(
        &mut raw,
        "DELETED",
        |event| matches!(event, WatchEvent::Deleted(app) if app.name_any() == "kube-web"),
    )
    .await;

    // So did the runtime watcher: applied (added, then modified), then deleted.
    next_matching(
        &mut runtime,
        "the watcher's Apply of the new App",
        |event| matches!(event, Ok(watcher::Event::Apply(app)) if instances(app) == 2),
    )
    .await
    .unwrap();
    next_matching(
        &mut runtime,
        "the watcher's Apply of the patch",
        |event| matches!(event, Ok(watcher::Event::Apply(app)) if instances(app) == 3),
    )
    .await
    .unwrap();
    next_matching(
        &mut runtime,
        "the watcher's Delete",
        |event| matches!(event, Ok(watcher::Event::Delete(app)) if app.name_any() == "kube-web"),
    )
    .await
    .unwrap();

    raw_task.abort();
    watcher_task.abort();
    let log = dev.log();
    assert!(
        !log.lines().any(|line| line.contains(" ERROR ")),
        "errors in the server log:\n{log}"
    );
}
