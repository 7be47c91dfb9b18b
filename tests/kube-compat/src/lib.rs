//! `pacer-kube-compat` (dev only, not published): kube-rs against Pacer. The crate has no code
//! of its own; its test, `tests/kube_rs.rs`, starts the real `pacer dev` and drives it with a
//! typed `#[derive(CustomResource)]` App through `kube::Api` and `kube::runtime::watcher`, as a
//! controller author's program would. It lives in its own crate so that kube and k8s-openapi
//! are compiled only for this test, not for every crate's tests.
