//! Keeping a lease alive in the background, and learning when it is lost.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::StoreError;
use crate::kv::LeaseId;
use crate::store::Store;

/// A background task that renews a lease every third of its TTL until dropped or stopped.
///
/// If the lease is found gone (expired or revoked), [`LeaseKeeper::lost`] resolves: whoever
/// relied on it (a leader, an agent's node registration) must stop acting on it.
#[derive(Debug)]
pub struct LeaseKeeper {
    lease: LeaseId,
    cancel: CancellationToken,
    alive: watch::Receiver<bool>,
}

impl LeaseKeeper {
    /// Starts renewing `lease`, whose TTL is `ttl_seconds`.
    pub fn start(store: Arc<dyn Store>, lease: LeaseId, ttl_seconds: i64) -> Self {
        let cancel = CancellationToken::new();
        let (alive_tx, alive) = watch::channel(true);
        let period = Duration::from_millis((ttl_seconds.max(1) as u64 * 1000) / 3);
        let task_cancel = cancel.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = task_cancel.cancelled() => return,
                    _ = ticker.tick() => {}
                }
                match store.lease_keep_alive(lease).await {
                    Ok(_) => {}
                    Err(StoreError::LeaseNotFound(_)) => {
                        tracing::warn!(%lease, "lease lost: it expired or was revoked");
                        let _ = alive_tx.send(false);
                        return;
                    }
                    Err(error) => {
                        // Keep trying: the lease may still be alive once the store answers.
                        tracing::warn!(%lease, %error, "lease keep-alive failed; retrying");
                    }
                }
            }
        });
        Self {
            lease,
            cancel,
            alive,
        }
    }

    /// The lease being kept alive.
    #[must_use]
    pub fn lease(&self) -> LeaseId {
        self.lease
    }

    /// Resolves once the lease is known to be gone.
    pub async fn lost(&self) {
        let mut alive = self.alive.clone();
        // An error means the task ended without reporting a loss (it was stopped): wait forever.
        if alive.wait_for(|alive| !*alive).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Stops renewing (the lease then runs out on its own unless revoked).
    pub fn stop(&self) {
        self.cancel.cancel();
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
