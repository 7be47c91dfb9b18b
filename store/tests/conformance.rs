//! The store conformance suite: one set of cases, run against both `Store` backends.
//!
//! Every case in [`conformance_cases!`] becomes two tests, `embedded_<case>` (a fresh
//! `EmbeddedStore` in its own tempdir) and `etcd_<case>` (a fresh throwaway etcd of its own, so
//! revisions, leases and compaction never interfere). Revisions are only ever asserted relative
//! to what the store returned. etcd must be installed: if it cannot start, the etcd tests fail.
//!
//! The cases live in `tests/conformance/`, one file per area; `harness.rs` starts the stores.
//! Durability across `kill -9` and reopening only applies to the embedded store.
//!
//! Run: `cargo test -p pacer-store --test conformance` (add `embedded_` or `etcd_` to pick one
//! backend).

#![allow(clippy::unwrap_used)]

#[path = "conformance/compaction.rs"]
mod compaction;
#[path = "conformance/concurrency.rs"]
mod concurrency;
#[path = "conformance/durability.rs"]
mod durability;
#[path = "conformance/election.rs"]
mod election;
#[path = "conformance/harness.rs"]
mod harness;
#[path = "conformance/input.rs"]
mod input;
#[path = "conformance/kv.rs"]
mod kv;
#[path = "conformance/lease.rs"]
mod lease;
#[path = "conformance/list.rs"]
mod list;
#[path = "conformance/txn.rs"]
mod txn;
#[path = "conformance/watch.rs"]
mod watch;

use harness::Backend;

/// Generates `embedded_<case>` and `etcd_<case>` for each `case => embedded_name, etcd_name;`.
macro_rules! conformance_cases {
    ($($case:path => $embedded:ident, $etcd:ident;)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $embedded() -> anyhow::Result<()> {
                harness::run(Backend::Embedded, $case).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $etcd() -> anyhow::Result<()> {
                harness::run(Backend::Etcd, $case).await
            }
        )*
    };
}

conformance_cases! {
    // Single keys.
    kv::get_and_key_value_fields => embedded_get_and_key_value_fields, etcd_get_and_key_value_fields;
    kv::create_update_delete_conflicts => embedded_create_update_delete_conflicts, etcd_create_update_delete_conflicts;
    // Bad input.
    input::value_size_limit => embedded_value_size_limit, etcd_value_size_limit;
    input::invalid_keys => embedded_invalid_keys, etcd_invalid_keys;
    input::unknown_leases_and_bad_ttls => embedded_unknown_leases_and_bad_ttls, etcd_unknown_leases_and_bad_ttls;
    // Lists.
    list::list_prefix_and_order => embedded_list_prefix_and_order, etcd_list_prefix_and_order;
    list::list_pagination_consistent_under_writes => embedded_list_pagination_consistent_under_writes, etcd_list_pagination_consistent_under_writes;
    list::list_invalid_continue => embedded_list_invalid_continue, etcd_list_invalid_continue;
    list::list_at_old_revision => embedded_list_at_old_revision, etcd_list_at_old_revision;
    // Transactions.
    txn::txn_max_ops_atomic => embedded_txn_max_ops_atomic, etcd_txn_max_ops_atomic;
    txn::txn_compare_failed_writes_nothing => embedded_txn_compare_failed_writes_nothing, etcd_txn_compare_failed_writes_nothing;
    txn::txn_limits_and_noops => embedded_txn_limits_and_noops, etcd_txn_limits_and_noops;
    txn::txn_create_revision_fencing => embedded_txn_create_revision_fencing, etcd_txn_create_revision_fencing;
    // Watches.
    watch::watch_replay_then_live => embedded_watch_replay_then_live, etcd_watch_replay_then_live;
    watch::watch_resume_no_gaps => embedded_watch_resume_no_gaps, etcd_watch_resume_no_gaps;
    watch::watch_deletes_and_txn_order => embedded_watch_deletes_and_txn_order, etcd_watch_deletes_and_txn_order;
    watch::watch_from_now => embedded_watch_from_now, etcd_watch_from_now;
    watch::watch_hands_out_a_revision_whole => embedded_watch_hands_out_a_revision_whole, etcd_watch_hands_out_a_revision_whole;
    // Compaction.
    compaction::compaction => embedded_compaction, etcd_compaction;
    // Leases.
    lease::lease_grant_and_ttl => embedded_lease_grant_and_ttl, etcd_lease_grant_and_ttl;
    lease::lease_expiry_deletes_keys => embedded_lease_expiry_deletes_keys, etcd_lease_expiry_deletes_keys;
    lease::lease_revoke => embedded_lease_revoke, etcd_lease_revoke;
    lease::lease_keep_alive_and_keeper => embedded_lease_keep_alive_and_keeper, etcd_lease_keep_alive_and_keeper;
    // Leader election.
    election::election_resign => embedded_election_resign, etcd_election_resign;
    election::election_lease_revoked => embedded_election_lease_revoked, etcd_election_lease_revoked;
    // Concurrency.
    concurrency::cas_race_one_winner => embedded_cas_race_one_winner, etcd_cas_race_one_winner;
    concurrency::cas_counter_no_lost_updates => embedded_cas_counter_no_lost_updates, etcd_cas_counter_no_lost_updates;
    concurrency::watch_10k_concurrent_writes => embedded_watch_10k_concurrent_writes, etcd_watch_10k_concurrent_writes;
}

// Durability: embedded only.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_durability_kill_9() -> anyhow::Result<()> {
    tokio::time::timeout(
        harness::CASE_TIMEOUT,
        durability::kill_9_keeps_acknowledged_writes(),
    )
    .await
    .map_err(|_| anyhow::anyhow!("timed out"))?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_durability_reopen() -> anyhow::Result<()> {
    tokio::time::timeout(harness::CASE_TIMEOUT, durability::reopen_keeps_state())
        .await
        .map_err(|_| anyhow::anyhow!("timed out"))?
}

/// Not a test of its own: the child process of `embedded_durability_kill_9`, which re-runs
/// this binary with `--exact embedded_durability_child_writer`. Returns at once otherwise.
#[test]
fn embedded_durability_child_writer() -> anyhow::Result<()> {
    match std::env::var_os(durability::CHILD_ENV) {
        Some(path) => durability::child_writer(std::path::Path::new(&path)),
        None => Ok(()),
    }
}
