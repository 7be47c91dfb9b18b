//! End to end with an old kubectl: the real `pacer dev` binary on a free port, driven by
//! kubectl 1.20 (Debian's `kubernetes-client`, which `hack/install-deps.sh` unpacks into
//! `target/tools/kubectl-1.20/` — it conflicts with the preinstalled kubectl 1.32, so it is
//! never installed) with a temporary kubeconfig and default flags.
//!
//! kubectl 1.20 differs from 1.32 where it matters here: it validates client-side against the
//! *protobuf* `/openapi/v2` (no OpenAPI v3, no `fieldValidation`), its `explain` reads only that
//! document, and its `diff` first checks there that the kind's PATCH takes `dryRun`.
//!
//! Where the binary is: `$PACER_KUBECTL_1_20` if set, else
//! `${PACER_TOOLS_DIR:-<workspace>/target/tools}/kubectl-1.20/usr/bin/kubectl`. When it is
//! missing the test fails on CI (`CI` set: install-deps provides it) and skips loudly elsewhere.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::Server;
use support::kubectl::Kubectl;

/// Where kubectl 1.20 is, if anywhere.
fn kubectl_1_20() -> Option<PathBuf> {
    let path = match std::env::var_os("PACER_KUBECTL_1_20").filter(|path| !path.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => std::env::var_os("PACER_TOOLS_DIR")
            .filter(|dir| !dir.is_empty())
            .map_or_else(
                || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tools"),
                PathBuf::from,
            )
            .join("kubectl-1.20/usr/bin/kubectl"),
    };
    if path.is_file() {
        return Some(path);
    }
    let on_ci = std::env::var_os("CI").is_some_and(|ci| !ci.is_empty());
    assert!(
        !on_ci,
        "kubectl 1.20 is missing at {} and CI is set: hack/install-deps.sh provides it \
         (or set PACER_KUBECTL_1_20)",
        path.display()
    );
    eprintln!(
        "\n\
         ******************************************************************************\n\
         SKIPPED kubectl_1_20_drives_pacer_dev: kubectl 1.20 is not at {}\n\
         run hack/install-deps.sh (or set PACER_KUBECTL_1_20) to run this test\n\
         ******************************************************************************\n",
        path.display()
    );
    None
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
fn kubectl_1_20_drives_pacer_dev() {
    let Some(binary) = kubectl_1_20() else {
        return;
    };
    let version = Command::new(&binary)
        .args(["version", "--client", "--short"])
        .output()
        .expect("run kubectl 1.20 version");
    let version = String::from_utf8_lossy(&version.stdout);
    assert!(version.contains("v1.20."), "not kubectl 1.20: {version}");

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&["dev", "--data-dir", data.to_str().unwrap()]);
    let kubectl = Kubectl::new(binary, "kubectl 1.20", dir.path(), &server);
    let manifest = dir.path().join("web.yaml");
    std::fs::write(&manifest, MANIFEST).unwrap();
    let manifest = manifest.to_str().unwrap();

    // Create (default flags: client-side validation against the protobuf /openapi/v2, which
    // has no App schema, so kubectl skips it), read, list.
    assert_eq!(
        kubectl.ok(&["apply", "-f", manifest]).trim(),
        "app.pacer.dev/web created"
    );
    let listed = kubectl.ok(&["get", "apps"]);
    assert!(
        listed.starts_with("NAME") && listed.contains("\nweb "),
        "{listed}"
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
    ] {
        assert!(
            yaml.contains(expected),
            "{expected:?} missing from:\n{yaml}"
        );
    }

    // Re-apply: unchanged, then a change through kubectl's three-way merge patch.
    assert_eq!(
        kubectl.ok(&["apply", "-f", manifest]).trim(),
        "app.pacer.dev/web unchanged"
    );
    std::fs::write(manifest, MANIFEST.replace("instances: 2", "instances: 3")).unwrap();
    assert_eq!(
        kubectl.ok(&["apply", "-f", manifest]).trim(),
        "app.pacer.dev/web configured"
    );
    assert_eq!(
        kubectl.ok(&[
            "get",
            "app",
            "web",
            "-o",
            "jsonpath={.spec.instances} {.metadata.generation}",
        ]),
        "3 2"
    );

    // kubectl 1.20 sends no fieldValidation; the server's strict default still names the
    // unknown field.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        MANIFEST
            .replace("name: web", "name: bad")
            .replace("instances: 2", "replicas: 2"),
    )
    .unwrap();
    let error = kubectl.exits(1, &["apply", "-f", bad.to_str().unwrap()]);
    assert!(error.contains("unknown field \"spec.replicas\""), "{error}");

    // The scale subresource.
    assert_eq!(
        kubectl.ok(&["scale", "app", "web", "--replicas=5"]).trim(),
        "app.pacer.dev/web scaled"
    );
    assert_eq!(
        kubectl.ok(&["get", "app", "web", "-o", "jsonpath={.spec.instances}"]),
        "5"
    );

    // FIXME(kubectl ≤1.26 explain): kubectl 1.20 explains only from the protobuf
    // /openapi/v2, which Pacer serves empty; it needs a real v2 document with the App schema
    // (kubectl ≥1.27 uses /openapi/v3 and works, see kubectl.rs).
    let explain = kubectl.exits(1, &["explain", "app.spec.instances"]);
    assert!(
        explain.contains("couldn't find resource for \"pacer.dev/v1, Kind=App\""),
        "{explain}"
    );

    // FIXME(kubectl ≤1.26 diff): kubectl 1.20's DryRunVerifier looks in the protobuf
    // /openapi/v2 for a dryRun parameter on App's PATCH (or for an App CRD) before it sends
    // the dry-run patch; with the empty document it refuses (exit 2, not 1 = "differences").
    let diff = kubectl.exits(2, &["diff", "-f", manifest]);
    assert!(diff.contains("doesn't support dry-run"), "{diff}");
    assert_eq!(
        kubectl.ok(&["get", "app", "web", "-o", "jsonpath={.spec.instances}"]),
        "5",
        "nothing was written by the refused diff"
    );

    // Delete, then it is gone.
    assert_eq!(
        kubectl.ok(&["delete", "-f", manifest]).trim(),
        "app.pacer.dev \"web\" deleted"
    );
    let gone = kubectl.exits(1, &["get", "app", "web"]);
    assert!(gone.contains("(NotFound)"), "{gone}");
    assert!(kubectl.ok(&["get", "apps"]).is_empty());

    server.assert_no_unexpected_errors(&[]);
    let status = server.terminate();
    assert!(status.success(), "pacer dev exited with {status}");
}
