//! Runs a controller only while it leads: [`run_elected`] campaigns for
//! `/elections/<controller>/` on its own store lease (kept alive by a [`LeaseKeeper`]), runs the
//! controller with the [`Leadership`] (whose fencing compare the controller adds to its writes)
//! and a cancellation token, stops it at once when the lease is lost or on shutdown, and then
//! campaigns again. Any number of replicas may run it; one leads at a time, and a deposed
//! leader's fenced writes fail even before it notices.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use pacer_store::{Election, Leadership, LeaseId, LeaseKeeper, Store, StoreError};
use tokio_util::sync::CancellationToken;

/// How a controller is elected.
#[derive(Clone, Debug)]
#[must_use]
pub struct ElectionConfig {
    /// The controller's name; the election lives under `/elections/<name>/`.
    pub name: String,
    /// Who this candidate is (stored as the election key's value, e.g. `host:pid`).
    pub identity: String,
    /// TTL of the leader's lease, in seconds: a dead leader is replaced within about this long.
    pub ttl_seconds: i64,
    /// Pause before campaigning again after an error or a lost leadership.
    pub retry: Duration,
}

impl ElectionConfig {
    /// An election for controller `name`, as `identity`, with a 5 s lease and a 1 s retry.
    pub fn new(name: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            identity: identity.into(),
            ttl_seconds: 5,
            retry: Duration::from_secs(1),
        }
    }

    /// Sets the lease TTL in seconds.
    pub fn ttl_seconds(mut self, ttl_seconds: i64) -> Self {
        self.ttl_seconds = ttl_seconds;
        self
    }

    /// Sets the pause before campaigning again.
    pub fn retry(mut self, retry: Duration) -> Self {
        self.retry = retry;
        self
    }

    /// The election's key prefix, `/elections/<name>/`.
    pub fn prefix(&self) -> String {
        format!("/elections/{}/", self.name)
    }
}

/// Why [`run_elected`] could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The election prefix is not a valid store prefix (a bad controller name).
    #[error("invalid election for controller {name:?}: {source}")]
    InvalidElection {
        /// The controller name.
        name: String,
        /// The store's complaint.
        #[source]
        source: StoreError,
    },
}

/// How one term of leadership ended.
enum Term<E> {
    Shutdown,
    LeaseLost,
    Ended(Result<(), E>),
}

/// Runs `controller` whenever this candidate leads the election `config.name`, until
/// `shutdown` is cancelled.
///
/// Each term: grant a lease of `config.ttl_seconds`, keep it alive, campaign, then call
/// `controller(leadership, token)` and poll the future it returns until it ends, the lease is
/// lost ([`LeaseKeeper::lost`]) or `shutdown` fires — in the last two cases the future is
/// dropped at once (its `token` is cancelled too). The lease is then revoked, so another
/// replica takes over without waiting for the TTL, and after `config.retry` this candidate
/// campaigns again. Store errors are logged and retried; only an invalid election name is an
/// error.
pub async fn run_elected<F, Fut, E>(
    store: Arc<dyn Store>,
    config: ElectionConfig,
    shutdown: CancellationToken,
    mut controller: F,
) -> Result<(), LeaderError>
where
    F: FnMut(Arc<Leadership>, CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    let election = Election::new(Arc::clone(&store), config.prefix()).map_err(|source| {
        LeaderError::InvalidElection {
            name: config.name.clone(),
            source,
        }
    })?;
    let name = config.name.as_str();
    // `pacer_controller_leader` and `pacer_controller_errors_total` of this controller.
    let metrics = crate::controller_metrics::series(name);
    metrics.leader.set(0);
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let granted = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            granted = store.lease_grant(config.ttl_seconds) => granted,
        };
        let lease = match granted {
            Ok(lease) => lease,
            Err(error) => {
                tracing::warn!(controller = name, %error, "cannot grant an election lease; retrying");
                pause(config.retry, &shutdown).await;
                continue;
            }
        };
        let keeper = LeaseKeeper::start(Arc::clone(&store), lease, config.ttl_seconds);
        let campaign = tokio::select! {
            () = shutdown.cancelled() => {
                revoke(store.as_ref(), lease, name).await;
                return Ok(());
            }
            () = keeper.lost() => None,
            won = election.campaign(lease, config.identity.clone().into_bytes()) => match won {
                Ok(leadership) => Some(leadership),
                Err(error) => {
                    tracing::warn!(controller = name, %lease, %error, "campaign failed; retrying");
                    None
                }
            },
        };
        let Some(leadership) = campaign else {
            keeper.stop();
            revoke(store.as_ref(), lease, name).await;
            pause(config.retry, &shutdown).await;
            continue;
        };
        tracing::info!(controller = name, %lease, identity = %config.identity, "leading");
        metrics.leader.set(1);
        let token = shutdown.child_token();
        let term = {
            let run = crate::controller_metrics::scope(
                name,
                controller(Arc::new(leadership), token.clone()),
            );
            tokio::pin!(run);
            tokio::select! {
                () = shutdown.cancelled() => Term::Shutdown,
                () = keeper.lost() => Term::LeaseLost,
                result = &mut run => Term::Ended(result),
            }
            // The controller's future is dropped here: it stops at once.
        };
        token.cancel();
        metrics.leader.set(0);
        // A replica that does not lead has no work waiting.
        metrics.queue_depth.set(0);
        keeper.stop();
        revoke(store.as_ref(), lease, name).await;
        match term {
            Term::Shutdown => {
                tracing::info!(controller = name, "shutting down; leadership given up");
                return Ok(());
            }
            Term::LeaseLost => {
                tracing::warn!(controller = name, %lease, "leadership lost: the lease ended; stopped")
            }
            Term::Ended(Ok(())) => tracing::info!(controller = name, "controller ended"),
            Term::Ended(Err(error)) => {
                metrics.errors.inc();
                tracing::warn!(controller = name, %error, "controller failed; campaigning again")
            }
        }
        pause(config.retry, &shutdown).await;
    }
}

/// Ends the lease (and with it the election key) so the next candidate leads at once.
async fn revoke(store: &dyn Store, lease: LeaseId, name: &str) {
    match store.lease_revoke(lease).await {
        Ok(()) | Err(StoreError::LeaseNotFound(_)) => {}
        Err(error) => {
            tracing::warn!(controller = name, %lease, %error, "cannot revoke the election lease; it will expire")
        }
    }
}

async fn pause(duration: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = tokio::time::sleep(duration) => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use pacer_store::embedded::EmbeddedStore;
    use pacer_store::{ListOptions, Txn};

    use super::*;

    #[tokio::test]
    async fn one_leader_at_a_time_and_a_successor_after_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).unwrap());
        let leading = Arc::new(AtomicUsize::new(0));
        let terms = Arc::new(AtomicUsize::new(0));
        let mut replicas = Vec::new();
        for replica in 0..2 {
            let shutdown = CancellationToken::new();
            let config = ElectionConfig::new("test", format!("replica-{replica}"))
                .retry(Duration::from_millis(50));
            let (leading, terms, store2) =
                (Arc::clone(&leading), Arc::clone(&terms), Arc::clone(&store));
            let task = tokio::spawn(run_elected(
                Arc::clone(&store),
                config,
                shutdown.clone(),
                move |leadership: Arc<Leadership>, token: CancellationToken| {
                    let (leading, terms, store) = (
                        Arc::clone(&leading),
                        Arc::clone(&terms),
                        Arc::clone(&store2),
                    );
                    async move {
                        assert_eq!(leading.fetch_add(1, Ordering::SeqCst), 0, "two leaders");
                        terms.fetch_add(1, Ordering::SeqCst);
                        // A fenced write succeeds while leading.
                        let outcome = leadership
                            .fenced_txn(Txn::new().put("/test/written", "x"))
                            .await
                            .unwrap();
                        assert!(outcome.committed());
                        let _ = store;
                        struct Done(Arc<AtomicUsize>);
                        impl Drop for Done {
                            fn drop(&mut self) {
                                self.0.fetch_sub(1, Ordering::SeqCst);
                            }
                        }
                        let _done = Done(leading);
                        token.cancelled().await;
                        Ok::<(), StoreError>(())
                    }
                },
            ));
            replicas.push((shutdown, task));
        }
        let wait_terms = |n: usize| {
            let terms = Arc::clone(&terms);
            async move {
                tokio::time::timeout(Duration::from_secs(20), async {
                    while terms.load(Ordering::SeqCst) < n {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                })
                .await
                .expect("a leader in time");
            }
        };
        wait_terms(1).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(terms.load(Ordering::SeqCst), 1, "only one replica leads");
        // Stop whichever leads: the other takes over without waiting for the TTL.
        let leader = Election::new(Arc::clone(&store), "/elections/test/")
            .unwrap()
            .leader()
            .await
            .unwrap()
            .expect("a leader key");
        let index = usize::from(leader.value == b"replica-1");
        let (shutdown, task) = replicas.remove(index);
        shutdown.cancel();
        task.await.unwrap().unwrap();
        wait_terms(2).await;
        let (shutdown, task) = replicas.remove(0);
        shutdown.cancel();
        task.await.unwrap().unwrap();
        let keys = store
            .list("/elections/test/", &ListOptions::default())
            .await
            .unwrap();
        assert!(keys.items.is_empty(), "leases revoked on shutdown");
    }
}
