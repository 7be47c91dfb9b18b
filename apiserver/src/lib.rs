//! Pacer's API server: kube-style REST and watch under `/apis/pacer.dev/v1`, Marathon's `/v2`,
//! `/metrics` and the dashboard, with authentication, RBAC and admission in front of the store.
//!
//! Empty until issue 4 lands it; it will depend on `pacer-store` and `pacer-schemas`, never on
//! `pacer-controllers`.
