//! The systems under test, behind one interface: the bare `etcd-client` (the baseline) and the
//! two `Store` backends. Each scenario drives all three through the same calls, so the only
//! difference between the figures is the code under test.

use std::sync::Arc;

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use etcd_client::{Client, TxnOp, WatchOptions};
use futures::stream::{BoxStream, StreamExt as _};
use pacer_store::{Revision, Store, Txn, TxnOutcome};
use serde::Serialize;

/// Which system a figure belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// The bare `etcd-client`, straight to etcd: the baseline.
    EtcdClient,
    /// The bare `etcd-client` sending single puts as one-put transactions (the `Txn` RPC): a
    /// diagnostic beside the baseline, showing what etcd's `Txn` costs over its `Put`.
    EtcdClientTxn,
    /// The bare `etcd-client` watching with `prev_kv`, as a `Store` must (its events carry the
    /// previous value): a diagnostic beside the baseline, showing what `prev_kv` costs etcd.
    EtcdClientPrevKv,
    /// `pacer_store::etcd::EtcdStore` against the same etcd.
    Etcd,
    /// `pacer_store::embedded::EmbeddedStore` in this process.
    Embedded,
}

impl Backend {
    /// Name in the table.
    pub fn label(self) -> &'static str {
        match self {
            Backend::EtcdClient => "etcd-client (bare)",
            Backend::EtcdClientTxn => "etcd-client txn(put)",
            Backend::EtcdClientPrevKv => "etcd-client +prev_kv",
            Backend::Etcd => "etcd backend",
            Backend::Embedded => "embedded backend",
        }
    }

    /// Short name used in keys and in the JSON results.
    pub fn id(self) -> &'static str {
        match self {
            Backend::EtcdClient => "etcd_client",
            Backend::EtcdClientTxn => "etcd_client_txn",
            Backend::EtcdClientPrevKv => "etcd_client_prev_kv",
            Backend::Etcd => "etcd",
            Backend::Embedded => "embedded",
        }
    }
}

/// A system under test; cheap to clone (clones share the connection or the database).
#[derive(Clone)]
pub enum Target {
    /// The bare etcd client. Clones share it and its one gRPC channel; each call clones only
    /// the service client it needs (etcd-client's calls take `&mut self`).
    Bare {
        /// The client.
        client: Arc<Client>,
        /// How it is used.
        flavor: BareFlavor,
    },
    /// A `Store` backend.
    Store(Arc<dyn Store>),
}

/// How the bare client makes its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareFlavor {
    /// The plainest requests: `Put` for single puts, watches without `prev_kv`.
    Plain,
    /// Single puts as one-put `Txn` requests.
    PutAsTxn,
    /// Watches with `prev_kv`.
    WatchPrevKv,
}

/// Watched values in the order the watch delivered them (one batch per message received).
pub type ValueStream = BoxStream<'static, Result<Vec<Vec<u8>>>>;

impl Target {
    /// Writes one key unconditionally: a plain `put` on the bare client, a one-put
    /// transaction on a `Store` (the trait's only write primitive).
    pub async fn put(&self, key: String, value: Vec<u8>) -> Result<()> {
        match self {
            Target::Bare {
                client,
                flavor: BareFlavor::Plain | BareFlavor::WatchPrevKv,
            } => {
                client.kv_client().put(key, value, None).await?;
            }
            Target::Bare {
                client,
                flavor: BareFlavor::PutAsTxn,
            } => {
                let put = etcd_client::Txn::new().and_then([TxnOp::put(key, value, None)]);
                let response = client.kv_client().txn(put).await?;
                ensure!(
                    response.succeeded(),
                    "an unconditional transaction did not succeed"
                );
            }
            Target::Store(store) => {
                committed(store.txn(Txn::new().put(key, value)).await?)?;
            }
        }
        Ok(())
    }

    /// Writes all `kvs` in one unconditional transaction.
    pub async fn put_all(&self, kvs: Vec<(String, Vec<u8>)>) -> Result<()> {
        match self {
            Target::Bare { client, .. } => {
                let ops: Vec<TxnOp> = kvs
                    .into_iter()
                    .map(|(key, value)| TxnOp::put(key, value, None))
                    .collect();
                let response = client
                    .kv_client()
                    .txn(etcd_client::Txn::new().and_then(ops))
                    .await?;
                ensure!(
                    response.succeeded(),
                    "an unconditional transaction did not succeed"
                );
            }
            Target::Store(store) => {
                let txn = kvs
                    .into_iter()
                    .fold(Txn::new(), |txn, (key, value)| txn.put(key, value));
                committed(store.txn(txn).await?)?;
            }
        }
        Ok(())
    }

    /// The current revision.
    pub async fn current_revision(&self) -> Result<Revision> {
        match self {
            Target::Bare { client, .. } => {
                let status = client.maintenance_client().status().await?;
                let header = status
                    .header()
                    .context("etcd's status response has no header")?;
                Ok(header.revision())
            }
            Target::Store(store) => Ok(store.current_revision().await?),
        }
    }

    /// Watches every key under `prefix` changed after revision `after`; returns once the
    /// watch is established, so writes made after this returns are all delivered.
    pub async fn watch(&self, prefix: &str, after: Revision) -> Result<ValueStream> {
        match self {
            Target::Bare { client, flavor } => {
                let mut options = WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(after + 1);
                if *flavor == BareFlavor::WatchPrevKv {
                    options = options.with_prev_key();
                }
                let mut stream = client.watch_client().watch(prefix, Some(options)).await?;
                // The first message confirms the watch; events may already ride on it.
                let first = stream
                    .message()
                    .await?
                    .context("etcd closed the watch before confirming it")?;
                ensure!(
                    first.created(),
                    "etcd's first watch response is not `created`"
                );
                let first_values = watch_values(&first)?;
                let rest = stream.map(|message| watch_values(&message?));
                Ok(futures::stream::iter([Ok(first_values)])
                    .chain(rest)
                    .boxed())
            }
            Target::Store(store) => {
                let stream = store.watch(prefix, after).await?;
                Ok(stream
                    .map(|event| -> Result<Vec<Vec<u8>>> { Ok(vec![event?.kv.value]) })
                    .boxed())
            }
        }
    }

    /// Removes every key under `prefix` (to clean up an etcd the benchmark was given).
    pub async fn delete_prefix(&self, prefix: &str) -> Result<()> {
        match self {
            Target::Bare { client, .. } => {
                client
                    .kv_client()
                    .delete(
                        prefix,
                        Some(etcd_client::DeleteOptions::new().with_prefix()),
                    )
                    .await?;
                Ok(())
            }
            Target::Store(_) => bail!("delete_prefix is only used on the bare client"),
        }
    }
}

fn committed(outcome: TxnOutcome) -> Result<()> {
    match outcome {
        TxnOutcome::Committed { .. } => Ok(()),
        TxnOutcome::CompareFailed { .. } => Err(anyhow!(
            "a transaction without compares reported a failed compare"
        )),
    }
}

fn watch_values(response: &etcd_client::WatchResponse) -> Result<Vec<Vec<u8>>> {
    if response.canceled() {
        bail!(
            "etcd cancelled the watch (compact revision {}): {}",
            response.compact_revision(),
            response.cancel_reason()
        );
    }
    Ok(response
        .events()
        .iter()
        .filter_map(|event| event.kv().map(|kv| kv.value().to_vec()))
        .collect())
}
