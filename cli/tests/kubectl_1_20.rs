//! End to end with an old kubectl: the real `pacer dev` binary on a free port, driven by
//! kubectl 1.20 (Debian's `kubernetes-client`, which `hack/install-deps.sh` unpacks into
//! `target/tools/kubectl-1.20/` — it conflicts with the preinstalled kubectl 1.32, so it is
//! never installed) with a temporary kubeconfig and default flags.
//!
//! kubectl 1.20 differs from 1.32 where it matters here: it validates client-side against the
//! *protobuf* `/openapi/v2` (no OpenAPI v3, no `fieldValidation`), its `explain` reads only that
//! document, and its `diff` (like every `--dry-run=server`) first checks there that the kind's
//! PATCH takes `dryRun`. Pacer serves that document generated from the same schemas as
//! `/openapi/v3`, so all of this works with default flags.
//!
//! Where the binary is: `$PACER_KUBECTL_1_20` if set, else
//! `${PACER_TOOLS_DIR:-<workspace>/target/tools}/kubectl-1.20/usr/bin/kubectl`. When it is
//! missing the test fails on CI (`CI` set: install-deps provides it) and skips loudly elsewhere.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::kubectl::{Kubectl, WEB_APPLIED_YAML, WEB_MANIFEST};
use support::{HollowFleet, Server, assert_contains_all};

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
    // The API and controllers without a local agent; hollow agents let each deployment finish
    // (a running deployment locks its App against other changes, as Marathon does).
    let mut server = Server::dev();
    let _fleet = HollowFleet::start(&server, 2);
    let kubectl = Kubectl::new(binary, "kubectl 1.20", dir.path(), &server);
    let manifest = dir.path().join("web.yaml");
    std::fs::write(&manifest, WEB_MANIFEST).unwrap();
    let manifest = manifest.to_str().unwrap();

    // Create (default flags: client-side validation against the App schema of the protobuf
    // /openapi/v2), read, list.
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
    assert_contains_all(&yaml, WEB_APPLIED_YAML);
    server.rolled_out("default", "web");

    // Re-apply: unchanged, then a change through kubectl's three-way merge patch.
    assert_eq!(
        kubectl.ok(&["apply", "-f", manifest]).trim(),
        "app.pacer.dev/web unchanged"
    );
    std::fs::write(
        manifest,
        WEB_MANIFEST.replace("instances: 2", "instances: 3"),
    )
    .unwrap();
    assert_eq!(
        kubectl.ok(&["apply", "-f", manifest]).trim(),
        "app.pacer.dev/web configured"
    );
    server.rolled_out("default", "web");
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

    // Client-side validation against the v2 schema names an unknown field and a wrong type,
    // and nothing is sent: neither object exists afterwards.
    for (name, from, to, expected) in [
        (
            "bad",
            "instances: 2",
            "replicas: 2",
            "ValidationError(App.spec): unknown field \"replicas\" in dev.pacer.v1.AppSpec",
        ),
        (
            "typed",
            "instances: 2",
            "instances: two",
            "ValidationError(App.spec.instances): invalid type for \
             dev.pacer.v1.AppSpec.instances: got \"string\", expected \"integer\"",
        ),
    ] {
        let bad = dir.path().join(format!("{name}.yaml"));
        std::fs::write(
            &bad,
            WEB_MANIFEST
                .replace("name: web", &format!("name: {name}"))
                .replace(from, to),
        )
        .unwrap();
        let error = kubectl.exits(1, &["apply", "-f", bad.to_str().unwrap()]);
        assert!(
            error.contains(expected) && error.contains("error validating data"),
            "{error}"
        );
        let missing = kubectl.exits(1, &["get", "app", name]);
        assert!(missing.contains("(NotFound)"), "{missing}");
    }
    // With validation off, the server's strict default still names the unknown field
    // (kubectl 1.20 sends no fieldValidation).
    let bad = dir.path().join("bad.yaml");
    let error = kubectl.exits(
        1,
        &["apply", "--validate=false", "-f", bad.to_str().unwrap()],
    );
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
    server.rolled_out("default", "web");

    // explain reads the protobuf /openapi/v2: the kind, a nested object and a field, each
    // with the descriptions from the schemas' doc comments.
    let explained = kubectl.ok(&["explain", "app"]);
    assert_contains_all(
        &explained,
        &[
            "KIND:     App",
            "VERSION:  pacer.dev/v1",
            "A long-running application",
            "spec\t<Object>",
            "The desired state, in Marathon's app definition fields.",
        ],
    );
    let container = kubectl.ok(&["explain", "app.spec.container"]);
    assert_contains_all(
        &container,
        &[
            "RESOURCE: container <Object>",
            "Docker image, port mappings and volumes.",
            "docker\t<Object>",
            "portMappings\t<[]Object>",
        ],
    );
    let instances = kubectl.ok(&["explain", "app.spec.instances"]);
    assert!(
        instances.contains("FIELD:    instances <integer>")
            && instances.contains("Number of instances to keep running"),
        "{instances}"
    );

    // diff: kubectl 1.20's DryRunVerifier finds `dryRun` on App's PATCH in /openapi/v2, then
    // sends a dry-run patch; exit 1 means "differences", shown as a unified diff. Nothing is
    // written, and the manifest last applied shows no difference (exit 0).
    std::fs::write(
        manifest,
        WEB_MANIFEST.replace("instances: 2", "instances: 5"),
    )
    .unwrap();
    assert_eq!(
        kubectl.ok(&["apply", "-f", manifest]).trim(),
        "app.pacer.dev/web configured"
    );
    server.rolled_out("default", "web");
    assert_eq!(kubectl.ok(&["diff", "-f", manifest]), "");
    std::fs::write(
        manifest,
        WEB_MANIFEST.replace("instances: 2", "instances: 7"),
    )
    .unwrap();
    let diff = kubectl.exits(1, &["diff", "-f", manifest]);
    assert!(
        diff.contains("-  instances: 5") && diff.contains("+  instances: 7"),
        "{diff}"
    );
    assert_eq!(
        kubectl.ok(&["get", "app", "web", "-o", "jsonpath={.spec.instances}"]),
        "5",
        "nothing was written by the diff"
    );
    // --dry-run=server passes the same check.
    assert_eq!(
        kubectl
            .ok(&["apply", "--dry-run=server", "-f", manifest])
            .trim(),
        "app.pacer.dev/web configured (server dry run)"
    );
    assert_eq!(
        kubectl.ok(&["get", "app", "web", "-o", "jsonpath={.spec.instances}"]),
        "5"
    );

    // Delete, then it is gone.
    server.rolled_out("default", "web");
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
