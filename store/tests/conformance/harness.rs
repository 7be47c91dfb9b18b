//! Starting a store per case (a fresh tempdir, or a fresh throwaway etcd), running the case
//! under a generous timeout, and the small helpers every case shares.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use pacer_store::embedded::EmbeddedStore;
use pacer_store::etcd::{EtcdConfig, EtcdStore};
use pacer_store::{Revision, Store, StoreError, WatchEvent, WatchStream};
use pacer_testkit::EtcdServer;

/// The longest a single case may run: only there to turn a hang into a failure.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(180);

/// The longest to wait for one watch event (or for a condition to become true).
pub const WAIT: Duration = Duration::from_secs(30);

/// Which backend a case runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `EmbeddedStore` in a fresh temporary directory.
    Embedded,
    /// `EtcdStore` against a fresh throwaway etcd.
    Etcd,
}

/// A running store and whatever keeps it alive (its directory or its etcd process).
pub struct Fixture {
    /// The store under test.
    pub store: Arc<dyn Store>,
    // Dropped after `store` (fields drop in declaration order).
    _keep: Keep,
}

enum Keep {
    Dir(#[allow(dead_code)] tempfile::TempDir),
    Etcd(#[allow(dead_code)] EtcdServer),
}

impl Fixture {
    /// Starts a fresh, empty store of `backend`. Fails (never skips) if etcd cannot start.
    pub async fn start(backend: Backend) -> Result<Self> {
        match backend {
            Backend::Embedded => {
                let dir = tempfile::tempdir().context("create a tempdir")?;
                let store = open_embedded(&store_path(dir.path()))?;
                Ok(Self {
                    store,
                    _keep: Keep::Dir(dir),
                })
            }
            Backend::Etcd => {
                let server = tokio::task::spawn_blocking(EtcdServer::start)
                    .await
                    .context("join the etcd starter")?
                    .context("start a throwaway etcd (is etcd installed? CI installs it)")?;
                let config = EtcdConfig::new(vec![server.endpoint()]);
                let store = tokio::time::timeout(WAIT, EtcdStore::connect(config))
                    .await
                    .context("connecting to the throwaway etcd timed out")?
                    .with_context(|| format!("connect to etcd at {}", server.endpoint()))?;
                Ok(Self {
                    store: Arc::new(store),
                    _keep: Keep::Etcd(server),
                })
            }
        }
    }
}

/// Where the embedded store of a case lives inside its directory.
pub fn store_path(dir: &Path) -> PathBuf {
    dir.join("store.redb")
}

/// Opens the embedded store at `path` (inside a tokio runtime).
pub fn open_embedded(path: &Path) -> Result<Arc<dyn Store>> {
    let store = EmbeddedStore::open(path)
        .with_context(|| format!("open the embedded store at {}", path.display()))?;
    Ok(Arc::new(store))
}

/// Runs one case against a fresh store of `backend`.
pub async fn run<F, Fut>(backend: Backend, case: F) -> Result<()>
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let fixture = Fixture::start(backend).await?;
    let outcome = tokio::time::timeout(CASE_TIMEOUT, case(Arc::clone(&fixture.store))).await;
    drop(fixture);
    match outcome {
        Ok(result) => result.with_context(|| format!("on the {backend:?} backend")),
        Err(_) => bail!("case did not finish within {CASE_TIMEOUT:?} on the {backend:?} backend"),
    }
}

/// Bytes of a string (values in the cases are mostly text, for readable failures).
pub fn b(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

/// Asserts that `$result` is an `Err` matching `$pattern` (with an optional guard).
macro_rules! assert_err {
    ($result:expr, $pattern:pat $(if $guard:expr)? $(,)?) => {
        match $result {
            Err($pattern) $(if $guard)? => {}
            other => panic!(
                "expected Err({}), got {:?} (at {}:{})",
                stringify!($pattern $(if $guard)?),
                other,
                file!(),
                line!()
            ),
        }
    };
}
pub(crate) use assert_err;

/// The next event of a watch, failing if it ends, errs, or nothing arrives within [`WAIT`].
pub async fn next_event(stream: &mut WatchStream) -> Result<WatchEvent> {
    match tokio::time::timeout(WAIT, stream.next()).await {
        Ok(Some(Ok(event))) => Ok(event),
        Ok(Some(Err(error))) => bail!("the watch failed: {error:?}"),
        Ok(None) => bail!("the watch ended"),
        Err(_) => bail!("no watch event within {WAIT:?}"),
    }
}

/// The next `count` events of a watch.
pub async fn next_events(stream: &mut WatchStream, count: usize) -> Result<Vec<WatchEvent>> {
    let mut events = Vec::with_capacity(count);
    for index in 0..count {
        events.push(
            next_event(stream)
                .await
                .with_context(|| format!("waiting for event {} of {count}", index + 1))?,
        );
    }
    Ok(events)
}

/// Fails if the watch yields anything within a short while. Only ever passes wrongly (an
/// event arriving later goes unseen), never fails wrongly: use it to catch duplicates.
pub async fn assert_quiet(stream: &mut WatchStream) -> Result<()> {
    match tokio::time::timeout(Duration::from_millis(300), stream.next()).await {
        Err(_) => Ok(()),
        Ok(item) => bail!("expected no watch event, got {item:?}"),
    }
}

/// Checks that watching `prefix` after `after` fails with `Expired`, either at once or as the
/// stream's first item; returns the reported compacted revision.
pub async fn expect_watch_expired(
    store: &dyn Store,
    prefix: &str,
    after: Revision,
) -> Result<Revision> {
    let mut stream = match store.watch(prefix, after).await {
        Err(StoreError::Expired { compacted, .. }) => return Ok(compacted),
        Err(error) => bail!("watch({prefix:?}, {after}): expected Expired, got {error:?}"),
        Ok(stream) => stream,
    };
    match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
        Ok(Some(Err(StoreError::Expired { compacted, .. }))) => Ok(compacted),
        Ok(other) => bail!("watch({prefix:?}, {after}): expected an Expired item, got {other:?}"),
        Err(_) => bail!(
            "watch({prefix:?}, {after}) from a compacted revision neither failed nor reported Expired"
        ),
    }
}

/// Polls `check` every 100 ms until it returns true, failing after `deadline`.
pub async fn eventually<F, Fut>(what: &str, deadline: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if check().await? {
            return Ok(());
        }
        if start.elapsed() > deadline {
            bail!("{what}: not true after {deadline:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
