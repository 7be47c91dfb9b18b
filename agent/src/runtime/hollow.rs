//! The hollow runtime: pretends to run instances. `start` succeeds at once and holds nothing
//! but an entry in a map, `stop` forgets it, nothing ever exits by itself. One per hollow
//! node, cheap enough that one process hosts thousands of hollow agents for scale tests and
//! benchmarks of the control plane.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;

use crate::launch::{InstanceKey, Launch};
use crate::runtime::{
    ExitSender, LogOptions, LogStream, NO_LOGS, Owned, Runtime, RuntimeError, Started,
};

/// Runs nothing, remembers what it "runs".
#[derive(Debug, Default)]
pub struct HollowRuntime {
    running: Mutex<HashMap<InstanceKey, String>>,
}

impl HollowRuntime {
    /// An empty hollow runtime.
    pub fn new() -> Self {
        Self::default()
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<InstanceKey, String>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts
        // and removes), so a poisoned lock is still usable.
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl Runtime for HollowRuntime {
    fn name(&self) -> &'static str {
        "hollow"
    }

    async fn start(&self, launch: &Launch, _exits: &ExitSender) -> Result<Started, RuntimeError> {
        let runtime_id = format!("hollow-{}", uuid::Uuid::new_v4().simple());
        self.running()
            .insert(launch.key.clone(), runtime_id.clone());
        Ok(Started { runtime_id })
    }

    async fn stop(
        &self,
        key: &InstanceKey,
        _runtime_id: &str,
        _grace: Duration,
    ) -> Result<(), RuntimeError> {
        self.running().remove(key);
        Ok(())
    }

    async fn remove(&self, key: &InstanceKey, _runtime_id: &str) -> Result<(), RuntimeError> {
        self.running().remove(key);
        Ok(())
    }

    async fn list(&self, _exits: &ExitSender) -> Result<Vec<Owned>, RuntimeError> {
        Ok(self
            .running()
            .iter()
            .map(|(key, runtime_id)| Owned {
                key: key.clone(),
                runtime_id: runtime_id.clone(),
                exit: None,
            })
            .collect())
    }

    /// A hollow instance runs nothing and writes nothing: its log is one synthetic line
    /// saying so (also when following: there is nothing to wait for).
    async fn logs(
        &self,
        key: &InstanceKey,
        options: LogOptions,
    ) -> Result<LogStream, RuntimeError> {
        let Some(runtime_id) = self.running().get(key).cloned() else {
            return Err(RuntimeError::new(
                NO_LOGS,
                format!("hollow instance {key} does not run here"),
            ));
        };
        let line = if options.tail_lines == Some(0) {
            Vec::new()
        } else {
            format!("hollow instance {key} ({runtime_id}): the hollow runtime runs nothing, so there is no output\n")
                .into_bytes()
        };
        Ok(futures::stream::once(async move { Ok(line) }).boxed())
    }
}
