//! The etcd backend of [`Store`], on the `etcd-client` crate: for `pacer server` and clusters.
//!
//! Each trait call is one etcd request on one shared gRPC channel: `get` and `list` are
//! ranges, `txn` is one etcd transaction (whose failure branch reads the compared keys, so a
//! failed compare reports what it saw without another round trip), `watch` is one watch
//! stream (plus, when it starts from a past revision, a point read sent alongside, which tells
//! at once whether that revision was compacted). Only error paths ask etcd for more: the
//! compacted revision behind [`StoreError::Expired`], the current revision behind
//! [`StoreError::FutureRevision`], and which lease of a transaction is missing.
//!
//! etcd-specific behaviour worth knowing:
//! - etcd keeps the *state* at the compacted revision: after `compact(c)`, `list` at revision
//!   `c` still works, and at `c - 1` gives [`StoreError::Expired`]. A watch needs the
//!   *changes* after its revision, so `watch(prefix, after)` is expired for every `after < c`.
//! - A watch from a revision newer than the current one waits for it, as etcd does.
//! - etcd raises a lease TTL below its minimum (1.5 election timeouts, rounded up to seconds:
//!   2 s with the default 1 s election timeout) to that minimum.
//! - With etcd authentication on, the user needs read access to the key `/` too (it is read
//!   for [`Store::current_revision`] and to learn the compacted revision).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBuilder};
use etcd_client::{
    Client, CompactionOptions, CompareOp, ConnectOptions, GetOptions, KvClient, LeaseClient,
    PutOptions, TxnOp, TxnOpResponse, WatchClient, WatchOptions, WatchResponse,
};

use crate::error::{Result, StoreError};
use crate::key::{prefix_end, validate_key, validate_prefix};
use crate::kv::{EventKind, KeyValue, LeaseId, Revision, WatchEvent, WatchStream};
use crate::list::{ContinueToken, ListOptions, ListPage};
use crate::store::Store;
use crate::txn::{Compare, Expect, Observed, Op, Txn, TxnOutcome};

/// Where to find etcd's server CA, and this client's certificate if etcd checks clients
/// (`--client-cert-auth`). All files are PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    /// The CA certificate(s) that signed etcd's server certificates (etcd's `--trusted-ca-file`
    /// on the client side).
    pub ca_pem_path: PathBuf,
    /// This client's certificate; give it together with [`EtcdTls::client_key_pem_path`].
    pub client_cert_pem_path: Option<PathBuf>,
    /// This client's private key; give it together with [`EtcdTls::client_cert_pem_path`].
    pub client_key_pem_path: Option<PathBuf>,
    /// The name to check etcd's certificate against, when it is not the endpoint's host.
    pub domain_name: Option<String>,
}

impl EtcdTls {
    /// TLS that trusts the CA in `ca_pem_path`, without a client certificate.
    pub fn new(ca_pem_path: impl Into<PathBuf>) -> Self {
        Self {
            ca_pem_path: ca_pem_path.into(),
            client_cert_pem_path: None,
            client_key_pem_path: None,
            domain_name: None,
        }
    }

    /// Adds a client certificate and its key (for etcd's `--client-cert-auth`).
    #[must_use]
    pub fn with_client_identity(
        mut self,
        cert_pem_path: impl Into<PathBuf>,
        key_pem_path: impl Into<PathBuf>,
    ) -> Self {
        self.client_cert_pem_path = Some(cert_pem_path.into());
        self.client_key_pem_path = Some(key_pem_path.into());
        self
    }
}

/// How to reach etcd.
///
/// `endpoints` are `HOST:PORT` (plain HTTP, or HTTPS when `tls` is set) or full
/// `http://HOST:PORT` / `https://HOST:PORT` URLs; an `https://` endpoint needs `tls`.
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// The members to talk to; requests are balanced over them.
    pub endpoints: Vec<String>,
    /// How long [`EtcdStore::connect`] keeps trying before it gives up.
    pub connect_timeout: Duration,
    /// How long one request may take before it fails with [`StoreError::Unavailable`].
    pub request_timeout: Duration,
    /// TLS settings; `None` for plain HTTP.
    pub tls: Option<EtcdTls>,
    /// User name and password, when etcd has authentication enabled.
    pub credentials: Option<(String, String)>,
}

impl EtcdConfig {
    /// Default of [`EtcdConfig::connect_timeout`].
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default of [`EtcdConfig::request_timeout`].
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

    /// Plain-HTTP access to `endpoints` without credentials, with the default timeouts.
    pub fn new<I, S>(endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            tls: None,
            credentials: None,
        }
    }

    /// Parses `etcd://HOST:PORT[,HOST:PORT…]` (plain HTTP; `http://` is the same) or
    /// `https://HOST:PORT[,…]` (then set [`EtcdConfig::tls`] before connecting). IPv6 hosts go
    /// in brackets (`[::1]:2379`). The error says what is wrong with the URL.
    pub fn from_url(url: &str) -> Result<Self> {
        let invalid =
            |what: String| StoreError::InvalidConfig(format!("invalid etcd URL {url:?}: {what}"));
        let (scheme, rest) = url.trim().split_once("://").ok_or_else(|| {
            invalid("expected etcd://HOST:PORT[,HOST:PORT…] (or http:// or https://)".to_owned())
        })?;
        let scheme = scheme.to_ascii_lowercase();
        let target = match scheme.as_str() {
            "etcd" | "http" => "http",
            "https" => "https",
            other => {
                return Err(invalid(format!(
                    "unknown scheme {other:?} (expected etcd, http or https)"
                )));
            }
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() {
            return Err(invalid("no endpoints after the scheme".to_owned()));
        }
        let mut endpoints = Vec::new();
        for item in rest.split(',') {
            let item = item.trim();
            // Each endpoint may repeat the scheme: `etcd://a:2379,etcd://b:2379`.
            let item = match item.split_once("://") {
                Some((again, address)) if again.eq_ignore_ascii_case(&scheme) => address,
                Some((other, _)) => {
                    return Err(invalid(format!(
                        "endpoint {item:?} has scheme {other:?}, unlike the first ({scheme:?})"
                    )));
                }
                None => item,
            };
            let item = item.strip_suffix('/').unwrap_or(item);
            check_host_port(item).map_err(invalid)?;
            endpoints.push(format!("{target}://{item}"));
        }
        Ok(Self::new(endpoints))
    }

    /// Sets [`EtcdConfig::tls`].
    #[must_use]
    pub fn with_tls(mut self, tls: EtcdTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets [`EtcdConfig::credentials`].
    #[must_use]
    pub fn with_credentials(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.credentials = Some((user.into(), password.into()));
        self
    }

    /// Sets [`EtcdConfig::connect_timeout`].
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`EtcdConfig::request_timeout`].
    #[must_use]
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }
}

impl fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("tls", &self.tls)
            .field(
                "credentials",
                &self
                    .credentials
                    .as_ref()
                    .map(|(user, _)| (user, "<redacted>")),
            )
            .finish()
    }
}

/// The etcd backend. Cheap to clone: clones share one gRPC channel.
#[derive(Clone)]
pub struct EtcdStore {
    kv: KvClient,
    watch: WatchClient,
    lease: LeaseClient,
    shared: Arc<Shared>,
}

struct Shared {
    /// The configured endpoints, comma-separated, for errors and logs.
    endpoints: String,
    request_timeout: Duration,
    /// Granted TTLs of leases seen here, so that a keep-alive (whose first answer etcd-client
    /// keeps to itself) needs one round trip. Bounded by [`MAX_CACHED_LEASE_TTLS`].
    lease_ttls: Mutex<HashMap<i64, i64>>,
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.shared.endpoints)
            .field("request_timeout", &self.shared.request_timeout)
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects to etcd and checks that it answers, retrying with exponential backoff (each
    /// failure logged as a warning) until `config.connect_timeout`; then fails with
    /// [`StoreError::Unavailable`]. Bad configuration (TLS files, URLs) and refused credentials
    /// fail at once.
    pub async fn connect(config: EtcdConfig) -> Result<Self> {
        let urls = endpoint_urls(&config)?;
        let endpoints = config.endpoints.join(",");
        let mut options = ConnectOptions::new()
            .with_keep_alive(KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT)
            .with_tcp_keepalive(KEEP_ALIVE_INTERVAL)
            .with_connect_timeout(config.connect_timeout.min(MAX_DIAL_TIMEOUT));
        if let Some(tls) = &config.tls {
            options = options.with_tls(tls_options(tls).await?);
        }
        if let Some((user, password)) = &config.credentials {
            options = options
                .with_user(user.as_str(), password.as_str())
                .with_auto_token_refresh(true);
        }

        // Retry with backoff until the connect timeout has passed, then report
        // the last failure; sleeps are cut short at the deadline so the whole
        // budget is used however the jittered delays fall.
        let started = Instant::now();
        let deadline = started + config.connect_timeout;
        let mut delays = ExponentialBuilder::new()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(2))
            .with_jitter()
            .without_max_times()
            .build();
        let mut attempt = 0u32;
        let client = loop {
            attempt += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let probe_timeout = remaining.min(config.request_timeout).max(MIN_PROBE_TIMEOUT);
            let outcome = tokio::time::timeout(probe_timeout, async {
                let client = Client::connect(&urls, Some(options.clone())).await?;
                client
                    .kv_client()
                    .get(PROBE_KEY, Some(GetOptions::new().with_count_only()))
                    .await?;
                Ok::<_, etcd_client::Error>(client)
            })
            .await;
            let error = match outcome {
                Ok(Ok(client)) => break client,
                Ok(Err(error)) => to_store_error(&endpoints, error),
                Err(_) => unavailable(&endpoints, format!("no answer within {probe_timeout:?}")),
            };
            tracing::warn!(endpoint = %endpoints, attempt, %error, "failed to connect to etcd");
            let remaining = deadline.saturating_duration_since(Instant::now());
            if !error.is_retriable() {
                return Err(error);
            }
            if remaining.is_zero() {
                return Err(match error {
                    StoreError::Unavailable { endpoint, message } => StoreError::Unavailable {
                        endpoint,
                        message: format!(
                            "gave up connecting after {:?}: {message}",
                            started.elapsed()
                        ),
                    },
                    other => other,
                });
            }
            let delay = delays.next().unwrap_or(Duration::from_secs(2));
            tokio::time::sleep(delay.min(remaining)).await;
        };
        tracing::info!(endpoint = %endpoints, "connected to etcd");
        Ok(Self {
            kv: client
                .kv_client()
                .max_decoding_message_size(MAX_RESPONSE_BYTES),
            watch: client
                .watch_client()
                .max_decoding_message_size(MAX_RESPONSE_BYTES),
            lease: client.lease_client(),
            shared: Arc::new(Shared {
                endpoints,
                request_timeout: config.request_timeout,
                lease_ttls: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The configured endpoints, comma-separated.
    #[must_use]
    pub fn endpoints(&self) -> &str {
        &self.shared.endpoints
    }

    /// Runs one request under the request timeout.
    async fn call<T>(
        &self,
        request: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout(self.shared.request_timeout, request).await {
            Ok(result) => result.map_err(Failure::Etcd),
            Err(_) => Err(Failure::TimedOut),
        }
    }

    /// The generic mapping of a failed request.
    fn fail(&self, failure: Failure) -> StoreError {
        match failure {
            Failure::Etcd(error) => to_store_error(&self.shared.endpoints, error),
            Failure::TimedOut => unavailable(
                &self.shared.endpoints,
                format!("no answer within {:?}", self.shared.request_timeout),
            ),
        }
    }

    /// Maps a failed read at `requested` (compacted, future, or anything else).
    async fn revision_error(&self, failure: Failure, requested: Revision) -> StoreError {
        if failure.is_compacted() {
            StoreError::Expired {
                requested,
                compacted: self.compacted_revision(requested + 1).await,
            }
        } else if failure.is_future_revision() {
            match self.current_revision().await {
                Ok(current) => StoreError::FutureRevision { requested, current },
                Err(error) => error,
            }
        } else {
            self.fail(failure)
        }
    }

    /// etcd's compacted revision. No API reports it, but a watch from revision 1 is refused
    /// with it. Falls back to `fallback` (a lower bound) if etcd does not say in time.
    async fn compacted_revision(&self, fallback: Revision) -> Revision {
        let mut client = self.watch.clone();
        let timeout = self.shared.request_timeout.min(COMPACTION_NOTICE_TIMEOUT);
        let probe = async {
            let options = WatchOptions::new().with_start_revision(1);
            let mut stream = client.watch(PROBE_KEY, Some(options)).await?;
            while let Some(response) = stream.message().await? {
                if response.compact_revision() > 0 {
                    return Ok(Some(response.compact_revision()));
                }
                if response.canceled() {
                    break;
                }
            }
            Ok::<_, etcd_client::Error>(None)
        };
        match tokio::time::timeout(timeout, probe).await {
            Ok(Ok(Some(compacted))) => compacted,
            outcome => {
                tracing::debug!(
                    ?outcome,
                    fallback,
                    "etcd did not report its compacted revision"
                );
                fallback
            }
        }
    }

    /// A transaction of one write and no compare, sent as a put or a delete request.
    async fn single_write(&self, op: Op) -> Result<TxnOutcome> {
        let mut client = self.kv.clone();
        let header = match op {
            Op::Put { key, value, lease } => {
                let options = lease.map(|LeaseId(lease)| PutOptions::new().with_lease(lease));
                match self.call(client.put(key, value, options)).await {
                    Ok(mut response) => response.take_header(),
                    Err(failure) if failure.is_lease_not_found() => {
                        return Err(StoreError::LeaseNotFound(lease.unwrap_or(LeaseId(0))));
                    }
                    Err(failure) => return Err(self.fail(failure)),
                }
            }
            Op::Delete { key } => match self.call(client.delete(key, None)).await {
                Ok(mut response) => response.take_header(),
                Err(failure) => return Err(self.fail(failure)),
            },
        };
        Ok(TxnOutcome::Committed {
            revision: header_revision(header.as_ref())?,
        })
    }

    /// Which of the leases a failed transaction's puts referred to is gone.
    async fn missing_lease(&self, leases: &[i64]) -> LeaseId {
        if let [only] = leases {
            return LeaseId(*only);
        }
        for &lease in leases {
            let mut client = self.lease.clone();
            if let Ok(response) = self.call(client.time_to_live(lease, None)).await
                && response.ttl() == -1
            {
                return LeaseId(lease);
            }
        }
        LeaseId(leases.first().copied().unwrap_or_default())
    }

    fn cached_ttl(&self, lease: i64) -> Option<i64> {
        self.lease_ttls().get(&lease).copied()
    }

    fn cache_ttl(&self, lease: i64, ttl: i64) {
        let mut ttls = self.lease_ttls();
        if ttls.len() >= MAX_CACHED_LEASE_TTLS && !ttls.contains_key(&lease) {
            ttls.clear();
        }
        ttls.insert(lease, ttl);
    }

    fn forget_ttl(&self, lease: i64) {
        self.lease_ttls().remove(&lease);
    }

    fn lease_ttls(&self) -> std::sync::MutexGuard<'_, HashMap<i64, i64>> {
        self.shared
            .lease_ttls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        validate_key(key)?;
        let mut client = self.kv.clone();
        let mut response = self
            .call(client.get(key, None))
            .await
            .map_err(|failure| self.fail(failure))?;
        Ok(response.take_kvs().into_iter().next().map(owned_key_value))
    }

    async fn list(&self, prefix: &str, options: &ListOptions) -> Result<ListPage> {
        validate_prefix(prefix)?;
        let (start, revision) = match &options.continue_token {
            Some(token) => {
                let token = ContinueToken::decode(token, prefix)?;
                (token.next_key, token.revision)
            }
            None => (prefix.to_owned(), options.revision.unwrap_or(0).max(0)),
        };
        let mut range = GetOptions::new().with_range(prefix_end(prefix));
        if revision > 0 {
            range = range.with_revision(revision);
        }
        if options.limit > 0 {
            range = range.with_limit(i64::try_from(options.limit).unwrap_or(i64::MAX));
        }
        let mut client = self.kv.clone();
        let mut response = match self.call(client.get(start, Some(range))).await {
            Ok(response) => response,
            Err(failure) => return Err(self.revision_error(failure, revision).await),
        };
        // etcd's header carries the current revision, which is the read revision only when
        // none was asked for (the first page).
        let revision = if revision > 0 {
            revision
        } else {
            header_revision(response.header())?
        };
        let more = response.more();
        let items: Vec<KeyValue> = response
            .take_kvs()
            .into_iter()
            .map(owned_key_value)
            .collect();
        let continue_token = match items.last() {
            Some(last) if more => Some(ContinueToken::after(revision, &last.key).encode()),
            _ => None,
        };
        Ok(ListPage {
            items,
            revision,
            continue_token,
        })
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome> {
        txn.validate()?;
        let Txn { compares, mut ops } = txn;
        if compares.is_empty() && ops.len() == 1 {
            // One unconditional write: a plain put or delete is the same single-op transaction
            // to etcd, and etcd serves it markedly faster than a `Txn` request.
            if let Some(op) = ops.pop() {
                return self.single_write(op).await;
            }
        }
        let mut leases: Vec<i64> = Vec::new();
        let writes: Vec<TxnOp> = ops
            .into_iter()
            .map(|op| match op {
                Op::Put { key, value, lease } => {
                    let options = lease.map(|LeaseId(lease)| {
                        if !leases.contains(&lease) {
                            leases.push(lease);
                        }
                        PutOptions::new().with_lease(lease)
                    });
                    TxnOp::put(key, value, options)
                }
                Op::Delete { key } => TxnOp::delete(key, None),
            })
            .collect();
        let request = if compares.is_empty() {
            etcd_client::Txn::new().and_then(writes)
        } else {
            // On failure, read every compared key (without its value) to report what was seen.
            let (conditions, reads): (Vec<_>, Vec<_>) = compares
                .iter()
                .map(|compare| {
                    let read = GetOptions::new().with_keys_only();
                    (
                        etcd_compare(compare),
                        TxnOp::get(compare.key.as_str(), Some(read)),
                    )
                })
                .unzip();
            etcd_client::Txn::new()
                .when(conditions)
                .and_then(writes)
                .or_else(reads)
        };
        let mut client = self.kv.clone();
        let response = match self.call(client.txn(request)).await {
            Ok(response) => response,
            Err(failure) if failure.is_lease_not_found() => {
                return Err(StoreError::LeaseNotFound(self.missing_lease(&leases).await));
            }
            Err(failure) => return Err(self.fail(failure)),
        };
        let revision = header_revision(response.header())?;
        if response.succeeded() {
            return Ok(TxnOutcome::Committed { revision });
        }
        let reads = response.op_responses();
        if reads.len() != compares.len() {
            return Err(StoreError::Backend(format!(
                "etcd answered a failed transaction of {} compares with {} reads",
                compares.len(),
                reads.len()
            )));
        }
        let observed = compares
            .into_iter()
            .zip(reads)
            .map(|(compare, read)| {
                let found = match &read {
                    TxnOpResponse::Get(range) => range.kvs().first(),
                    _ => None,
                };
                Observed {
                    key: compare.key,
                    mod_revision: found.map_or(0, etcd_client::KeyValue::mod_revision),
                    create_revision: found.map_or(0, etcd_client::KeyValue::create_revision),
                }
            })
            .collect();
        Ok(TxnOutcome::CompareFailed { revision, observed })
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        validate_prefix(prefix)?;
        let after = after.max(0);
        // etcd's start revision is inclusive and it reports a compaction only when the start
        // is *below* the compacted revision; starting at `after` (and dropping the events at
        // `after` itself) makes that "the changes after `after` are gone", as the trait says.
        let mut options = WatchOptions::new()
            .with_range(prefix_end(prefix))
            .with_prev_key()
            .with_fragment();
        if after > 0 {
            options = options.with_start_revision(after);
        }
        let mut watch_client = self.watch.clone();
        let open = async {
            let mut stream = watch_client.watch(prefix, Some(options)).await?;
            let created = stream.message().await?;
            Ok::<_, etcd_client::Error>((stream, created))
        };
        // etcd tells a compacted start revision only later, on the stream, and stays silent
        // when nothing changed since; a point read at `after` tells at once. Both requests run
        // together, so this adds no latency.
        let mut kv_client = self.kv.clone();
        let check = async {
            if after > 0 {
                let read = GetOptions::new().with_revision(after).with_count_only();
                kv_client.get(prefix, Some(read)).await.map(drop)
            } else {
                Ok(())
            }
        };
        let (opened, checked) = tokio::join!(self.call(open), self.call(check));
        match checked {
            Ok(()) => {}
            Err(failure) if failure.is_compacted() => {
                let notice = match opened {
                    Ok((mut stream, created)) => compaction_notice(&mut stream, created).await,
                    Err(_) => None,
                };
                let compacted = match notice {
                    Some(compacted) => compacted,
                    None => self.compacted_revision(after + 1).await,
                };
                return Err(StoreError::Expired {
                    requested: after,
                    compacted,
                });
            }
            // A future start revision: the watch waits for it, as etcd's does.
            Err(failure) if failure.is_future_revision() => {}
            Err(failure) => return Err(self.fail(failure)),
        }
        let (stream, created) = opened.map_err(|failure| self.fail(failure))?;
        let Some(created) = created else {
            return Err(unavailable(
                &self.shared.endpoints,
                "etcd closed the watch before confirming it".to_owned(),
            ));
        };
        let mut state = WatchState {
            stream,
            pending: VecDeque::new(),
            fragments: Vec::new(),
            after,
            endpoints: self.shared.endpoints.clone(),
            finished: false,
        };
        if let Some(error) = state.absorb(&created) {
            return Err(error);
        }
        tracing::debug!(prefix, after, "watching etcd");
        Ok(Box::pin(futures::stream::unfold(
            state,
            |mut state| async move {
                let item = state.next().await?;
                Some((item, state))
            },
        )))
    }

    async fn current_revision(&self) -> Result<Revision> {
        let mut client = self.kv.clone();
        let response = self
            .call(client.get(PROBE_KEY, Some(GetOptions::new().with_count_only())))
            .await
            .map_err(|failure| self.fail(failure))?;
        header_revision(response.header())
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        if revision <= 0 {
            // Nothing is at or below revision 0.
            return Ok(());
        }
        let mut client = self.kv.clone();
        let options = CompactionOptions::new().with_physical();
        match self.call(client.compact(revision, Some(options))).await {
            Ok(_) => {
                tracing::debug!(revision, "compacted etcd");
                Ok(())
            }
            Err(failure) if failure.is_compacted() => Err(StoreError::Expired {
                requested: revision,
                compacted: self.compacted_revision(revision).await,
            }),
            Err(failure) => Err(self.revision_error(failure, revision).await),
        }
    }

    async fn lease_grant(&self, ttl_seconds: i64) -> Result<LeaseId> {
        if ttl_seconds < 1 {
            return Err(StoreError::InvalidLeaseTtl {
                ttl_seconds,
                reason: "a lease TTL must be at least 1 second",
            });
        }
        let mut client = self.lease.clone();
        let response = match self.call(client.grant(ttl_seconds, None)).await {
            Ok(response) => response,
            Err(failure) if failure.message().is_some_and(|m| m.contains(TTL_TOO_LARGE)) => {
                return Err(StoreError::InvalidLeaseTtl {
                    ttl_seconds,
                    reason: "etcd refuses a TTL this large",
                });
            }
            Err(failure) => return Err(self.fail(failure)),
        };
        if !response.error().is_empty() {
            return Err(StoreError::Backend(format!(
                "etcd refused to grant a lease: {}",
                response.error()
            )));
        }
        self.cache_ttl(response.id(), response.ttl());
        Ok(LeaseId(response.id()))
    }

    async fn lease_keep_alive(&self, lease: LeaseId) -> Result<i64> {
        let cached = self.cached_ttl(lease.0);
        let mut client = self.lease.clone();
        let renew = async {
            // etcd-client sends the first keep-alive itself and checks its answer (TTL 0: the
            // lease is gone); only its TTL is not handed out, hence the cache.
            let (mut keeper, mut answers) = client.keep_alive(lease.0).await?;
            if let Some(ttl) = cached {
                return Ok(ttl);
            }
            keeper.keep_alive().await?;
            match answers.message().await? {
                Some(answer) if answer.ttl() > 0 => Ok(answer.ttl()),
                Some(_) => Err(etcd_client::Error::LeaseKeepAliveError(
                    LEASE_KEEPER_NOT_FOUND.to_owned(),
                )),
                None => Err(etcd_client::Error::LeaseKeepAliveError(
                    "etcd closed the keep-alive stream".to_owned(),
                )),
            }
        };
        match self.call(renew).await {
            Ok(ttl) => {
                if cached.is_none() {
                    self.cache_ttl(lease.0, ttl);
                }
                Ok(ttl)
            }
            Err(failure) if failure.is_lease_not_found() => {
                self.forget_ttl(lease.0);
                Err(StoreError::LeaseNotFound(lease))
            }
            Err(failure) => Err(self.fail(failure)),
        }
    }

    async fn lease_revoke(&self, lease: LeaseId) -> Result<()> {
        let mut client = self.lease.clone();
        let outcome = self.call(client.revoke(lease.0)).await;
        self.forget_ttl(lease.0);
        match outcome {
            Ok(_) => Ok(()),
            Err(failure) if failure.is_lease_not_found() => Err(StoreError::LeaseNotFound(lease)),
            Err(failure) => Err(self.fail(failure)),
        }
    }

    async fn lease_time_to_live(&self, lease: LeaseId) -> Result<i64> {
        let mut client = self.lease.clone();
        let response = match self.call(client.time_to_live(lease.0, None)).await {
            Ok(response) => response,
            Err(failure) if failure.is_lease_not_found() => {
                return Err(StoreError::LeaseNotFound(lease));
            }
            Err(failure) => return Err(self.fail(failure)),
        };
        if response.ttl() == -1 {
            self.forget_ttl(lease.0);
            return Err(StoreError::LeaseNotFound(lease));
        }
        if response.granted_ttl() > 0 {
            self.cache_ttl(lease.0, response.granted_ttl());
        }
        Ok(response.ttl().max(0))
    }
}

/// The key read for the current revision and watched to learn the compacted revision. No
/// valid key is `/` itself, so nothing is ever written there.
const PROBE_KEY: &str = "/";

/// HTTP/2 pings on idle connections, so that a dead member is noticed (and watches on it fail)
/// within about `KEEP_ALIVE_INTERVAL + KEEP_ALIVE_TIMEOUT`. etcd accepts pings every 5 s.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest one TCP/TLS connection attempt may take.
const MAX_DIAL_TIMEOUT: Duration = Duration::from_secs(3);

/// The shortest an attempt of `connect` is given, even when the deadline is nearly reached.
const MIN_PROBE_TIMEOUT: Duration = Duration::from_millis(200);

/// The longest to wait for etcd's compaction notice on a watch (it checks every 100 ms).
const COMPACTION_NOTICE_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest response accepted: a list without a limit can be big (etcd's own limit is 2 GiB).
const MAX_RESPONSE_BYTES: usize = i32::MAX as usize;

/// Most lease TTLs remembered; past it the cache starts over (it is only an optimisation).
const MAX_CACHED_LEASE_TTLS: usize = 4096;

/// gRPC codes (tonic's `Code` as numbers, since tonic is not a direct dependency).
const CODE_CANCELLED: i32 = 1;
const CODE_UNKNOWN: i32 = 2;
const CODE_DEADLINE_EXCEEDED: i32 = 4;
const CODE_RESOURCE_EXHAUSTED: i32 = 8;
const CODE_ABORTED: i32 = 10;
const CODE_UNAVAILABLE: i32 = 14;

/// etcd's error messages (etcdserver/api/v3rpc/rpctypes) that map to typed errors.
const COMPACTED: &str = "required revision has been compacted";
const FUTURE_REVISION: &str = "required revision is a future revision";
const LEASE_NOT_FOUND: &str = "requested lease not found";
const TTL_TOO_LARGE: &str = "too large lease TTL";
/// What etcd-client says when a keep-alive is answered with TTL 0.
const LEASE_KEEPER_NOT_FOUND: &str = "lease not found";

/// A request that did not succeed.
#[derive(Debug)]
enum Failure {
    Etcd(etcd_client::Error),
    TimedOut,
}

impl Failure {
    /// etcd's gRPC error message, if etcd answered with an error.
    fn message(&self) -> Option<&str> {
        match self {
            Failure::Etcd(etcd_client::Error::GRpcStatus(status)) => Some(status.message()),
            _ => None,
        }
    }

    fn is_compacted(&self) -> bool {
        self.message()
            .is_some_and(|message| message.contains(COMPACTED))
    }

    fn is_future_revision(&self) -> bool {
        self.message()
            .is_some_and(|message| message.contains(FUTURE_REVISION))
    }

    fn is_lease_not_found(&self) -> bool {
        match self {
            Failure::Etcd(etcd_client::Error::LeaseKeepAliveError(message)) => {
                message == LEASE_KEEPER_NOT_FOUND
            }
            _ => self
                .message()
                .is_some_and(|message| message.contains(LEASE_NOT_FOUND)),
        }
    }
}

/// A watch in progress: etcd's stream, and events received but not yet handed out.
struct WatchState {
    stream: etcd_client::WatchStream,
    pending: VecDeque<WatchEvent>,
    /// Events of a fragmented response (`with_fragment`), held back until its last fragment
    /// arrives: a revision's events are handed out together or not at all, so a reader that
    /// takes what is ready never sees a part of one transaction.
    fragments: Vec<WatchEvent>,
    /// Only events after this revision are handed out.
    after: Revision,
    endpoints: String,
    /// Set once the stream failed: the error has been handed out, nothing follows.
    finished: bool,
}

impl WatchState {
    async fn next(&mut self) -> Option<Result<WatchEvent>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(event));
            }
            if self.finished {
                return None;
            }
            let error = match self.stream.message().await {
                Ok(Some(response)) => match self.absorb(&response) {
                    None => continue,
                    Some(error) => error,
                },
                Ok(None) => unavailable(&self.endpoints, "etcd closed the watch".to_owned()),
                Err(error) => to_store_error(&self.endpoints, error),
            };
            tracing::debug!(%error, after = self.after, "etcd watch ended");
            self.finished = true;
            return Some(Err(error));
        }
    }

    /// Queues a response's events, or returns why the watch ended. Fragments of a large
    /// response (`with_fragment`) arrive as consecutive responses; their events are queued
    /// together when the last one arrives. Progress notifications carry no events.
    fn absorb(&mut self, response: &WatchResponse) -> Option<StoreError> {
        if response.compact_revision() > 0 {
            return Some(StoreError::Expired {
                requested: self.after,
                compacted: response.compact_revision(),
            });
        }
        if response.canceled() {
            let reason = response.cancel_reason();
            let message = format!("etcd cancelled the watch: {reason}");
            return Some(if reason.contains("permission denied") {
                StoreError::Backend(message)
            } else {
                unavailable(&self.endpoints, message)
            });
        }
        let after = self.after;
        self.fragments.extend(
            response
                .events()
                .iter()
                .filter_map(watch_event)
                .filter(|event| event.revision() > after),
        );
        if !response.0.fragment {
            self.pending.extend(self.fragments.drain(..));
        }
        None
    }
}

/// Waits (briefly) for etcd's notice that a watch started below the compacted revision.
async fn compaction_notice(
    stream: &mut etcd_client::WatchStream,
    first: Option<WatchResponse>,
) -> Option<Revision> {
    if let Some(first) = first
        && first.compact_revision() > 0
    {
        return Some(first.compact_revision());
    }
    let wait = async {
        while let Ok(Some(response)) = stream.message().await {
            if response.compact_revision() > 0 {
                return Some(response.compact_revision());
            }
            if response.canceled() {
                return None;
            }
        }
        None
    };
    tokio::time::timeout(COMPACTION_NOTICE_TIMEOUT, wait)
        .await
        .ok()
        .flatten()
}

/// Our compare as etcd's. An absent key compares as all-zero revisions in etcd.
fn etcd_compare(compare: &Compare) -> etcd_client::Compare {
    let key = compare.key.as_str();
    match compare.expect {
        Expect::Absent => etcd_client::Compare::mod_revision(key, CompareOp::Equal, 0),
        Expect::Present => etcd_client::Compare::mod_revision(key, CompareOp::Greater, 0),
        Expect::ModRevision(revision) => {
            etcd_client::Compare::mod_revision(key, CompareOp::Equal, revision)
        }
        Expect::CreateRevision(revision) => {
            etcd_client::Compare::create_revision(key, CompareOp::Equal, revision)
        }
    }
}

/// A watch event in our terms. A delete is told apart by its version: etcd resets it to 0 on
/// deletion and it is at least 1 after any put (this also avoids `Event::event_type`, which
/// panics on an event type it does not know).
fn watch_event(event: &etcd_client::Event) -> Option<WatchEvent> {
    let kv = event.kv()?;
    let prev_kv = event.prev_kv().map(borrowed_key_value);
    if kv.version() == 0 {
        Some(WatchEvent {
            kind: EventKind::Delete,
            kv: KeyValue {
                key: key_string(kv.key().to_vec()),
                value: Vec::new(),
                create_revision: 0,
                mod_revision: kv.mod_revision(),
                version: 0,
                lease: None,
            },
            prev_kv,
        })
    } else {
        Some(WatchEvent {
            kind: EventKind::Put,
            kv: borrowed_key_value(kv),
            prev_kv,
        })
    }
}

fn owned_key_value(kv: etcd_client::KeyValue) -> KeyValue {
    let (create_revision, mod_revision, version, lease) = (
        kv.create_revision(),
        kv.mod_revision(),
        kv.version(),
        kv.lease(),
    );
    let (key, value) = kv.into_key_value();
    KeyValue {
        key: key_string(key),
        value,
        create_revision,
        mod_revision,
        version,
        lease: (lease != 0).then_some(LeaseId(lease)),
    }
}

fn borrowed_key_value(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: key_string(kv.key().to_vec()),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
        lease: (kv.lease() != 0).then_some(LeaseId(kv.lease())),
    }
}

/// Keys we write are UTF-8; a foreign non-UTF-8 key under a listed prefix is shown lossily
/// rather than failing the whole list.
fn key_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes)
        .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned())
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Result<Revision> {
    header
        .map(etcd_client::ResponseHeader::revision)
        .ok_or_else(|| StoreError::Backend("etcd's response has no header".to_owned()))
}

/// The generic mapping of etcd-client's errors: transport failures, timeouts and etcd's
/// "try again" answers (no leader, timeouts, too many requests) are [`StoreError::Unavailable`];
/// anything else etcd refuses is [`StoreError::Backend`].
fn to_store_error(endpoints: &str, error: etcd_client::Error) -> StoreError {
    match error {
        etcd_client::Error::GRpcStatus(status) => {
            let code = i32::from(status.code());
            let mut message = status.message().to_owned();
            if let Some(source) = std::error::Error::source(&status) {
                let cause = error_chain(source);
                if !message.contains(&cause) {
                    message = format!("{message}: {cause}");
                }
            }
            let retriable = matches!(
                code,
                CODE_CANCELLED
                    | CODE_UNKNOWN
                    | CODE_DEADLINE_EXCEEDED
                    | CODE_ABORTED
                    | CODE_UNAVAILABLE
            ) || (code == CODE_RESOURCE_EXHAUSTED
                && message.contains("too many requests"));
            if retriable {
                unavailable(endpoints, message)
            } else {
                StoreError::Backend(format!(
                    "etcd at {endpoints} refused the request ({}): {message}",
                    status.code().description()
                ))
            }
        }
        etcd_client::Error::TransportError(error) => unavailable(endpoints, error_chain(&error)),
        etcd_client::Error::IoError(error) => unavailable(endpoints, error_chain(&error)),
        etcd_client::Error::WatchError(message)
        | etcd_client::Error::LeaseKeepAliveError(message) => unavailable(endpoints, message),
        other => StoreError::Backend(format!("etcd client failed: {other}")),
    }
}

/// An error and its sources, `outer: inner: innermost`.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

fn unavailable(endpoints: &str, message: String) -> StoreError {
    StoreError::Unavailable {
        endpoint: endpoints.to_owned(),
        message,
    }
}

/// The endpoints as the URLs etcd-client wants, checked against the TLS setting.
fn endpoint_urls(config: &EtcdConfig) -> Result<Vec<String>> {
    if config.endpoints.is_empty() {
        return Err(StoreError::InvalidConfig(
            "no etcd endpoints configured".to_owned(),
        ));
    }
    let secure = config.tls.is_some();
    config
        .endpoints
        .iter()
        .map(|endpoint| {
            let invalid = |what: &str| {
                StoreError::InvalidConfig(format!("invalid etcd endpoint {endpoint:?}: {what}"))
            };
            let (scheme, address) = match endpoint.split_once("://") {
                Some((scheme, address)) => (Some(scheme.to_ascii_lowercase()), address),
                None => (None, endpoint.as_str()),
            };
            check_host_port(address).map_err(|what| invalid(&what))?;
            match (scheme.as_deref(), secure) {
                (None | Some("http" | "etcd"), false) => Ok(format!("http://{address}")),
                (None | Some("https"), true) => Ok(format!("https://{address}")),
                (Some("http" | "etcd"), true) => Err(invalid(
                    "plain http, but TLS is configured (use https:// or HOST:PORT)",
                )),
                (Some("https"), false) => Err(invalid(
                    "https needs TLS settings (at least the CA) in the config",
                )),
                (Some(other), _) => Err(invalid(&format!(
                    "unknown scheme {other:?} (expected http, https or etcd)"
                ))),
            }
        })
        .collect()
}

/// Checks `HOST:PORT` (IPv6 hosts in brackets); the error says what is wrong.
fn check_host_port(address: &str) -> Result<(), String> {
    if address.is_empty() {
        return Err("an endpoint is empty (a stray comma?)".to_owned());
    }
    if address.contains('@') {
        return Err(format!(
            "endpoint {address:?} carries credentials; set them in the config instead"
        ));
    }
    if address.contains(['/', '?', '#']) {
        return Err(format!(
            "endpoint {address:?} has a path, query or fragment; expected HOST:PORT"
        ));
    }
    let (host, port) = if let Some(bracketed) = address.strip_prefix('[') {
        let (host, rest) = bracketed
            .split_once(']')
            .ok_or_else(|| format!("endpoint {address:?} has an unclosed '['"))?;
        let port = rest
            .strip_prefix(':')
            .ok_or_else(|| format!("endpoint {address:?} has no port; expected HOST:PORT"))?;
        (host, port)
    } else {
        let (host, port) = address
            .rsplit_once(':')
            .ok_or_else(|| format!("endpoint {address:?} has no port; expected HOST:PORT"))?;
        if host.contains(':') {
            return Err(format!(
                "endpoint {address:?}: an IPv6 host goes in brackets, as in [::1]:2379"
            ));
        }
        (host, port)
    };
    if host.is_empty() {
        return Err(format!("endpoint {address:?} has no host"));
    }
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(()),
        _ => Err(format!(
            "endpoint {address:?} has an invalid port {port:?} (expected 1-65535)"
        )),
    }
}

/// Reads the PEM files of `tls` into etcd-client's (tonic's) TLS settings.
async fn tls_options(tls: &EtcdTls) -> Result<etcd_client::TlsOptions> {
    async fn read(what: &str, path: &Path) -> Result<Vec<u8>> {
        tokio::fs::read(path).await.map_err(|error| {
            StoreError::InvalidConfig(format!(
                "failed to read the etcd {what} {}: {error}",
                path.display()
            ))
        })
    }
    let ca = read("CA certificate", &tls.ca_pem_path).await?;
    let mut options =
        etcd_client::TlsOptions::new().ca_certificate(etcd_client::Certificate::from_pem(ca));
    match (&tls.client_cert_pem_path, &tls.client_key_pem_path) {
        (Some(cert), Some(key)) => {
            let cert = read("client certificate", cert).await?;
            let key = read("client key", key).await?;
            options = options.identity(etcd_client::Identity::from_pem(cert, key));
        }
        (None, None) => {}
        _ => {
            return Err(StoreError::InvalidConfig(
                "etcd TLS: a client certificate and its key must be given together".to_owned(),
            ));
        }
    }
    if let Some(domain) = &tls.domain_name {
        options = options.domain_name(domain.clone());
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_url(url: &str, expected: Result<&[&str], &str>) {
        match (EtcdConfig::from_url(url), expected) {
            (Ok(config), Ok(endpoints)) => assert_eq!(config.endpoints, endpoints, "{url}"),
            (Err(StoreError::InvalidConfig(message)), Err(fragment)) => assert!(
                message.contains(fragment),
                "{url}: error {message:?} does not mention {fragment:?}"
            ),
            (outcome, expected) => panic!("{url}: got {outcome:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn parses_urls() {
        check_url("etcd://127.0.0.1:2379", Ok(&["http://127.0.0.1:2379"]));
        check_url(
            "etcd://a:2379,b:22379, c.example:32379/",
            Ok(&["http://a:2379", "http://b:22379", "http://c.example:32379"]),
        );
        check_url("http://a:1,http://b:2", Ok(&["http://a:1", "http://b:2"]));
        check_url("https://etcd-0:2379", Ok(&["https://etcd-0:2379"]));
        check_url("ETCD://[::1]:2379", Ok(&["http://[::1]:2379"]));
        check_url("127.0.0.1:2379", Err("expected etcd://HOST:PORT"));
        check_url("redis://a:1", Err("unknown scheme \"redis\""));
        check_url("etcd://", Err("no endpoints"));
        check_url("etcd://a", Err("has no port"));
        check_url("etcd://a:", Err("invalid port"));
        check_url("etcd://a:99999", Err("invalid port"));
        check_url("etcd://a:0", Err("invalid port"));
        check_url("etcd://:2379", Err("has no host"));
        check_url("etcd://a:1,,b:2", Err("stray comma"));
        check_url("etcd://a:1,https://b:2", Err("unlike the first"));
        check_url("etcd://a:1/v3", Err("path"));
        check_url("etcd://user:pw@a:1", Err("credentials"));
        check_url("etcd://::1:2379", Err("brackets"));
        check_url("etcd://[::1", Err("unclosed"));
    }

    #[test]
    fn endpoints_follow_the_tls_setting() {
        let plain = EtcdConfig::new(["a:1", "http://b:2", "etcd://c:3"]);
        assert_eq!(
            endpoint_urls(&plain).ok(),
            Some(vec![
                "http://a:1".to_owned(),
                "http://b:2".to_owned(),
                "http://c:3".to_owned()
            ])
        );
        let secure = EtcdConfig::new(["a:1", "https://b:2"]).with_tls(EtcdTls::new("/ca.pem"));
        assert_eq!(
            endpoint_urls(&secure).ok(),
            Some(vec!["https://a:1".to_owned(), "https://b:2".to_owned()])
        );
        assert!(endpoint_urls(&EtcdConfig::new(["https://a:1"])).is_err());
        assert!(
            endpoint_urls(&EtcdConfig::new(["http://a:1"]).with_tls(EtcdTls::new("/c"))).is_err()
        );
        assert!(endpoint_urls(&EtcdConfig::new(Vec::<String>::new())).is_err());
    }

    #[test]
    fn debug_hides_the_password() {
        let config = EtcdConfig::new(["a:1"]).with_credentials("root", "s3cret");
        let shown = format!("{config:?}");
        assert!(
            shown.contains("root") && !shown.contains("s3cret"),
            "{shown}"
        );
    }

    // Against a real, throwaway etcd (the testkit's: 1 s minimum lease TTL).

    use futures::StreamExt;
    use pacer_testkit::EtcdServer;

    async fn start_etcd() -> EtcdServer {
        tokio::task::spawn_blocking(EtcdServer::start)
            .await
            .expect("join the etcd starter")
            .expect("start a throwaway etcd (run hack/install-deps.sh)")
    }

    async fn start() -> (EtcdServer, EtcdStore) {
        let server = start_etcd().await;
        let store = EtcdStore::connect(EtcdConfig::new([server.endpoint()]))
            .await
            .expect("connect to the throwaway etcd");
        (server, store)
    }

    async fn next(stream: &mut WatchStream) -> Option<Result<WatchEvent>> {
        tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("a watch item within 10 s")
    }

    #[tokio::test]
    async fn reads_writes_and_lists_in_pages_at_one_revision() {
        let (_server, store) = start().await;
        assert_eq!(store.get("/a/missing").await.expect("get"), None);
        let mut revisions = Vec::new();
        for name in ["k1", "k2", "k3", "k4", "k5"] {
            let key = format!("/a/{name}");
            revisions.push(store.create(&key, name.into(), None).await.expect("create"));
        }
        store
            .create("/b/other", b"x".to_vec(), None)
            .await
            .expect("create");
        let got = store.get("/a/k2").await.expect("get").expect("present");
        assert_eq!(
            (
                got.value.as_slice(),
                got.create_revision,
                got.mod_revision,
                got.version,
                got.lease
            ),
            (&b"k2"[..], revisions[1], revisions[1], 1, None)
        );
        assert!(matches!(
            store.create("/a/k1", Vec::new(), None).await,
            Err(StoreError::AlreadyExists { .. })
        ));
        assert!(matches!(
            store.update("/a/k1", Vec::new(), revisions[0] - 1, None).await,
            Err(StoreError::Conflict { expected, actual, .. })
                if expected == revisions[0] - 1 && actual == revisions[0]
        ));
        assert!(matches!(
            store.delete("/a/nope", 3).await,
            Err(StoreError::NotFound { .. })
        ));

        let options = ListOptions {
            limit: 2,
            ..ListOptions::default()
        };
        let first = store.list("/a/", &options).await.expect("page 1");
        let at = first.revision;
        assert_eq!(at, store.current_revision().await.expect("revision"));
        assert_eq!(keys(&first), ["/a/k1", "/a/k2"]);
        // Writes between pages are not seen by later pages.
        store.delete("/a/k3", revisions[2]).await.expect("delete");
        store
            .create("/a/k6", Vec::new(), None)
            .await
            .expect("create");
        let mut token = first.continue_token.clone();
        let mut rest = Vec::new();
        while let Some(continue_token) = token {
            let page = store
                .list(
                    "/a/",
                    &ListOptions {
                        limit: 2,
                        continue_token: Some(continue_token),
                        revision: None,
                    },
                )
                .await
                .expect("next page");
            assert_eq!(page.revision, at);
            rest.extend(keys(&page));
            token = page.continue_token;
        }
        assert_eq!(rest, ["/a/k3", "/a/k4", "/a/k5"]);
        let all = store
            .list("/a/", &ListOptions::default())
            .await
            .expect("list");
        assert_eq!(keys(&all), ["/a/k1", "/a/k2", "/a/k4", "/a/k5", "/a/k6"]);
        assert_eq!(all.continue_token, None);
        let old = ListOptions {
            revision: Some(at),
            ..ListOptions::default()
        };
        assert_eq!(keys(&store.list("/a/", &old).await.expect("list")).len(), 5);
        assert!(matches!(
            store
                .list(
                    "/b/",
                    &ListOptions {
                        continue_token: first.continue_token,
                        ..ListOptions::default()
                    }
                )
                .await,
            Err(StoreError::InvalidContinue(_))
        ));
        let everything = store
            .list("/", &ListOptions::default())
            .await
            .expect("list");
        assert_eq!(everything.items.len(), 6);
    }

    fn keys(page: &ListPage) -> Vec<String> {
        page.items.iter().map(|kv| kv.key.clone()).collect()
    }

    #[tokio::test]
    async fn transactions_report_what_failed() {
        let (_server, store) = start().await;
        let r1 = store
            .create("/t/a", b"1".to_vec(), None)
            .await
            .expect("create");
        let txn = Txn::new()
            .when("/t/a", Expect::Present)
            .when("/t/a", Expect::CreateRevision(r1))
            .when("/t/b", Expect::Absent)
            .put("/t/b", "2")
            .delete("/t/a");
        let Ok(TxnOutcome::Committed { revision: r2 }) = store.txn(txn).await else {
            panic!("the transaction commits");
        };
        assert_eq!(r2, r1 + 1);
        let txn = Txn::new()
            .when("/t/b", Expect::ModRevision(r2))
            .when("/t/a", Expect::Present)
            .put("/t/c", "3");
        assert_eq!(
            store.txn(txn).await.expect("txn"),
            TxnOutcome::CompareFailed {
                revision: r2,
                observed: vec![
                    Observed {
                        key: "/t/b".into(),
                        mod_revision: r2,
                        create_revision: r2
                    },
                    Observed {
                        key: "/t/a".into(),
                        mod_revision: 0,
                        create_revision: 0
                    },
                ],
            }
        );
        assert_eq!(store.get("/t/c").await.expect("get"), None);
        // Deleting nothing commits without a new revision.
        assert_eq!(
            store.txn(Txn::new().delete("/t/none")).await.expect("txn"),
            TxnOutcome::Committed { revision: r2 }
        );
        // Unknown leases, alone or beside a live one.
        let live = store.lease_grant(60).await.expect("grant");
        let gone = LeaseId(0x7fff_0000_1234);
        assert!(matches!(
            store.create("/t/l", Vec::new(), Some(gone)).await,
            Err(StoreError::LeaseNotFound(id)) if id == gone
        ));
        // (A lone unconditional write goes to etcd as a plain put or delete.)
        assert!(matches!(
            store.txn(Txn::new().put_with_lease("/t/l", "x", Some(gone))).await,
            Err(StoreError::LeaseNotFound(id)) if id == gone
        ));
        let Ok(TxnOutcome::Committed { revision: r3 }) = store
            .txn(Txn::new().put_with_lease("/t/l", "x", Some(live)))
            .await
        else {
            panic!("a lone put commits");
        };
        assert_eq!(r3, r2 + 1);
        let put = store.get("/t/l").await.expect("get").expect("present");
        assert_eq!((put.mod_revision, put.lease), (r3, Some(live)));
        assert_eq!(
            store.txn(Txn::new().delete("/t/l")).await.expect("txn"),
            TxnOutcome::Committed { revision: r3 + 1 }
        );
        let txn = Txn::new()
            .put_with_lease("/t/l1", "x", Some(live))
            .put_with_lease("/t/l2", "y", Some(gone));
        assert!(matches!(
            store.txn(txn).await,
            Err(StoreError::LeaseNotFound(id)) if id == gone
        ));
        assert!(matches!(
            store.txn(Txn::new().put("/bad//key", "v")).await,
            Err(StoreError::InvalidKey { .. })
        ));
        // The largest value, in the largest transaction we accept, fits in the testkit's etcd.
        let big = vec![7u8; crate::key::MAX_VALUE_BYTES];
        let filler_size =
            crate::key::MAX_TXN_BYTES - big.len() - "/t/big".len() - "/t/filler".len();
        let txn = Txn::new()
            .when("/t/big", Expect::Absent)
            .put("/t/big", big.clone())
            .put("/t/filler", vec![8u8; filler_size]);
        assert!(
            store
                .txn(txn)
                .await
                .expect("the largest transaction")
                .committed(),
            "the largest transaction commits"
        );
        assert_eq!(
            store.get("/t/big").await.expect("get").map(|kv| kv.value),
            Some(big)
        );
    }

    #[tokio::test]
    async fn watches_replay_then_follow() {
        let (_server, store) = start().await;
        let r1 = store
            .create("/w/a", b"1".to_vec(), None)
            .await
            .expect("create");
        let r2 = store
            .update("/w/a", b"2".to_vec(), r1, None)
            .await
            .expect("update");
        store
            .create("/x/other", b"x".to_vec(), None)
            .await
            .expect("create");
        let r3 = store.delete("/w/a", r2).await.expect("delete");

        let mut from_r1 = store.watch("/w/", r1).await.expect("watch");
        let update = next(&mut from_r1).await.expect("item").expect("event");
        assert_eq!((update.kind, update.revision()), (EventKind::Put, r2));
        assert_eq!(update.kv.value, b"2");
        assert_eq!(update.prev_kv.as_ref().map(|kv| kv.mod_revision), Some(r1));
        let delete = next(&mut from_r1).await.expect("item").expect("event");
        assert_eq!(delete.kind, EventKind::Delete);
        assert_eq!(
            delete.kv,
            KeyValue {
                key: "/w/a".into(),
                value: Vec::new(),
                create_revision: 0,
                mod_revision: r3,
                version: 0,
                lease: None
            }
        );
        assert_eq!(delete.prev_kv.map(|kv| kv.value), Some(b"2".to_vec()));

        let mut from_now = store.watch("/w/", 0).await.expect("watch");
        let txn = Txn::new()
            .put("/w/b", "b")
            .put("/w/c", "c")
            .put("/x/no", "n");
        let Ok(TxnOutcome::Committed { revision: r4 }) = store.txn(txn).await else {
            panic!("the transaction commits");
        };
        for stream in [&mut from_r1, &mut from_now] {
            for key in ["/w/b", "/w/c"] {
                let event = next(stream).await.expect("item").expect("event");
                assert_eq!((event.kv.key.as_str(), event.revision()), (key, r4));
                assert_eq!((event.kv.version, event.prev_kv), (1, None));
            }
        }
        // A watch from the current revision sees nothing old.
        let mut quiet = store.watch("/w/", r4).await.expect("watch");
        assert!(
            tokio::time::timeout(Duration::from_millis(300), quiet.next())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn compaction_expires_old_revisions() {
        let (_server, store) = start().await;
        let mut revision = 0;
        for index in 0..5 {
            revision = store
                .create(&format!("/c/{index}"), Vec::new(), None)
                .await
                .expect("create");
        }
        let compacted = revision - 1;
        store.compact(compacted).await.expect("compact");

        let at = |revision| ListOptions {
            revision: Some(revision),
            ..ListOptions::default()
        };
        assert!(matches!(
            store.list("/c/", &at(compacted - 1)).await,
            Err(StoreError::Expired { requested, compacted: c })
                if requested == compacted - 1 && c == compacted
        ));
        // etcd keeps the state at the compacted revision itself.
        assert_eq!(
            store
                .list("/c/", &at(compacted))
                .await
                .expect("list")
                .items
                .len(),
            4
        );
        assert!(matches!(
            store.list("/c/", &at(revision + 10)).await,
            Err(StoreError::FutureRevision { requested, current })
                if requested == revision + 10 && current == revision
        ));
        for after in [1, compacted - 1] {
            assert!(matches!(
                store.watch("/c/", after).await,
                Err(StoreError::Expired { requested, compacted: c })
                    if requested == after && c == compacted
            ));
        }
        let mut from_compacted = store.watch("/c/", compacted).await.expect("watch");
        let event = next(&mut from_compacted)
            .await
            .expect("item")
            .expect("event");
        assert_eq!(event.revision(), revision);
        assert!(matches!(
            store.compact(compacted).await,
            Err(StoreError::Expired { compacted: c, .. }) if c == compacted
        ));
        assert!(matches!(
            store.compact(revision + 5).await,
            Err(StoreError::FutureRevision { current, .. }) if current == revision
        ));
    }

    #[tokio::test]
    async fn leases_grant_renew_and_end() {
        let (server, store) = start().await;
        assert!(matches!(
            store.lease_grant(0).await,
            Err(StoreError::InvalidLeaseTtl { ttl_seconds: 0, .. })
        ));
        let lease = store.lease_grant(5).await.expect("grant");
        assert_eq!(store.lease_keep_alive(lease).await.expect("keep alive"), 5);
        let left = store.lease_time_to_live(lease).await.expect("ttl");
        assert!((1..=5).contains(&left), "{left}");
        // A second client, which never saw the grant, renews as well.
        let other = EtcdStore::connect(EtcdConfig::new([server.endpoint()]))
            .await
            .expect("connect");
        assert_eq!(other.lease_keep_alive(lease).await.expect("keep alive"), 5);

        store
            .create("/l/k", Vec::new(), Some(lease))
            .await
            .expect("create");
        let mut watch = store.watch("/l/", 0).await.expect("watch");
        store.lease_revoke(lease).await.expect("revoke");
        let event = next(&mut watch).await.expect("item").expect("event");
        assert_eq!(
            (event.kind, event.kv.key.as_str()),
            (EventKind::Delete, "/l/k")
        );
        assert_eq!(store.get("/l/k").await.expect("get"), None);
        for store in [&store, &other] {
            assert!(matches!(
                store.lease_keep_alive(lease).await,
                Err(StoreError::LeaseNotFound(id)) if id == lease
            ));
            assert!(matches!(
                store.lease_time_to_live(lease).await,
                Err(StoreError::LeaseNotFound(id)) if id == lease
            ));
        }
        assert!(matches!(
            store.lease_revoke(lease).await,
            Err(StoreError::LeaseNotFound(id)) if id == lease
        ));

        // An expiring lease takes its keys with it.
        let short = store.lease_grant(1).await.expect("grant");
        store
            .create("/l/short", Vec::new(), Some(short))
            .await
            .expect("create");
        let event = next(&mut watch).await.expect("item").expect("event");
        assert_eq!(
            (event.kind, event.kv.key.as_str()),
            (EventKind::Put, "/l/short")
        );
        let event = next(&mut watch).await.expect("item").expect("event");
        assert_eq!(
            (event.kind, event.kv.key.as_str()),
            (EventKind::Delete, "/l/short")
        );
        assert!(matches!(
            store.lease_keep_alive(short).await,
            Err(StoreError::LeaseNotFound(_))
        ));
    }

    #[tokio::test]
    async fn connect_gives_up_with_unavailable() {
        // A port nothing listens on: bind one, then let it go.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let endpoint = format!("127.0.0.1:{port}");
        let config =
            EtcdConfig::new([endpoint.clone()]).with_connect_timeout(Duration::from_millis(1500));
        let started = Instant::now();
        let outcome = EtcdStore::connect(config).await;
        let waited = started.elapsed();
        assert!(
            matches!(&outcome, Err(StoreError::Unavailable { endpoint: e, .. }) if *e == endpoint),
            "{outcome:?}"
        );
        assert!(
            waited >= Duration::from_millis(1000) && waited < Duration::from_secs(4),
            "{waited:?}"
        );
    }

    #[tokio::test]
    async fn a_dead_etcd_fails_requests_and_ends_watches() {
        let mut server = start_etcd().await;
        let config =
            EtcdConfig::new([server.endpoint()]).with_request_timeout(Duration::from_secs(2));
        let store = EtcdStore::connect(config).await.expect("connect");
        let mut watch = store.watch("/d/", 0).await.expect("watch");
        store
            .create("/d/a", Vec::new(), None)
            .await
            .expect("create");
        assert!(matches!(next(&mut watch).await, Some(Ok(_))));

        server.kill();
        assert!(matches!(
            next(&mut watch).await,
            Some(Err(StoreError::Unavailable { .. }))
        ));
        assert!(
            next(&mut watch).await.is_none(),
            "the watch ends after its error"
        );
        let started = Instant::now();
        let outcome = store.get("/d/a").await;
        assert!(
            matches!(&outcome, Err(StoreError::Unavailable { endpoint, .. }) if *endpoint == server.endpoint()),
            "{outcome:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(4));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn recovers_when_etcd_comes_back() {
        let mut server = start_etcd().await;
        let config =
            EtcdConfig::new([server.endpoint()]).with_request_timeout(Duration::from_secs(2));
        let store = EtcdStore::connect(config).await.expect("connect");
        let r1 = store
            .create("/r/a", b"1".to_vec(), None)
            .await
            .expect("create");

        server.kill();
        assert!(matches!(
            store.get("/r/a").await,
            Err(StoreError::Unavailable { .. })
        ));
        tokio::task::block_in_place(|| server.restart()).expect("restart etcd");

        let deadline = Instant::now() + Duration::from_secs(20);
        let got = loop {
            match store.get("/r/a").await {
                Ok(got) => break got,
                Err(error) if error.is_retriable() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("etcd is back but the store still fails: {error:?}"),
            }
        };
        assert_eq!(got.map(|kv| kv.mod_revision), Some(r1));
        let mut watch = store.watch("/r/", r1 - 1).await.expect("watch");
        let event = next(&mut watch).await.expect("item").expect("event");
        assert_eq!(event.revision(), r1);
    }

    /// A CA, a server certificate for 127.0.0.1 and a client certificate, in `dir`, made with
    /// the openssl command; `None` if openssl is not installed.
    fn make_certificates(dir: &std::path::Path) -> Option<()> {
        let openssl = |args: &[&str]| {
            let status = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
            match status {
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
                Err(error) => panic!("openssl failed to run: {error}"),
                Ok(status) => {
                    assert!(status.success(), "openssl {args:?} failed");
                    Some(())
                }
            }
        };
        let key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509", "-days", "2", "-subj", "/CN=pacer-test-ca"][..],
                &key,
                &["-keyout", "ca.key", "-out", "ca.pem"],
                &["-addext", "basicConstraints=critical,CA:TRUE"],
                &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            ]
            .concat(),
        )?;
        for (name, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
            let extensions = format!(
                "subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\nbasicConstraints=CA:FALSE\n"
            );
            std::fs::write(dir.join(format!("{name}.ext")), extensions).expect("write extensions");
            let (key_file, csr, pem) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
            );
            openssl(
                &[
                    &["req", "-subj", "/CN=127.0.0.1"][..],
                    &key,
                    &["-keyout", &key_file, "-out", &csr],
                ]
                .concat(),
            )?;
            let ext = format!("{name}.ext");
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &pem,
                "-extfile",
                &ext,
            ])?;
        }
        Some(())
    }

    #[tokio::test]
    async fn speaks_tls_with_client_certificates() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        if make_certificates(dir.path()).is_none() {
            eprintln!("SKIPPED: openssl is not installed, so no certificates for the TLS test");
            return;
        }
        let path = |name: &str| dir.path().join(name);
        let tls = pacer_testkit::EtcdServerTls {
            cert_pem: path("server.pem"),
            key_pem: path("server.key"),
            client_ca_pem: Some(path("ca.pem")),
        };
        let server = tokio::task::spawn_blocking(move || EtcdServer::start_tls(tls))
            .await
            .expect("join the etcd starter")
            .expect("start etcd with TLS");
        assert!(server.url().starts_with("https://"));

        let config = EtcdConfig::from_url(&server.url())
            .expect("the testkit's URL parses")
            .with_tls(
                EtcdTls::new(path("ca.pem"))
                    .with_client_identity(path("client.pem"), path("client.key")),
            );
        let store = EtcdStore::connect(config).await.expect("connect over TLS");
        let revision = store
            .create("/tls/k", b"v".to_vec(), None)
            .await
            .expect("create");
        let got = store.get("/tls/k").await.expect("get").expect("present");
        assert_eq!((got.value, got.mod_revision), (b"v".to_vec(), revision));

        // Without a client certificate etcd refuses us; connect gives up in time.
        let config = EtcdConfig::new([server.endpoint()])
            .with_tls(EtcdTls::new(path("ca.pem")))
            .with_connect_timeout(Duration::from_secs(1));
        assert!(matches!(
            EtcdStore::connect(config).await,
            Err(StoreError::Unavailable { .. })
        ));
        // A client key without its certificate is a configuration error, reported at once.
        let mut half = EtcdTls::new(path("ca.pem"));
        half.client_key_pem_path = Some(path("client.key"));
        assert!(matches!(
            EtcdStore::connect(EtcdConfig::new([server.endpoint()]).with_tls(half)).await,
            Err(StoreError::InvalidConfig(message)) if message.contains("together")
        ));
        let missing = EtcdTls::new(path("nope.pem"));
        assert!(matches!(
            EtcdStore::connect(EtcdConfig::new([server.endpoint()]).with_tls(missing)).await,
            Err(StoreError::InvalidConfig(message)) if message.contains("nope.pem")
        ));
    }

    #[tokio::test]
    async fn authenticates_with_credentials() {
        let server = start_etcd().await;
        let etcdctl = |args: &[&str]| {
            std::process::Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints={}", server.endpoint()))
                .args(args)
                .output()
        };
        match etcdctl(&["user", "add", "root:s3cret"]) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("SKIPPED: etcdctl is not installed (run hack/install-deps.sh)");
                return;
            }
            outcome => assert!(outcome.expect("etcdctl runs").status.success()),
        }
        let enabled = etcdctl(&["auth", "enable"]).expect("etcdctl runs");
        assert!(enabled.status.success(), "{enabled:?}");

        let connect = |credentials: Option<(&str, &str)>| {
            let mut config = EtcdConfig::new([server.endpoint()]);
            if let Some((user, password)) = credentials {
                config = config.with_credentials(user, password);
            }
            EtcdStore::connect(config)
        };
        // Refusals are not retried until the connect timeout: they fail at once.
        let started = Instant::now();
        assert!(matches!(
            connect(Some(("root", "wrong"))).await,
            Err(StoreError::Backend(message)) if message.contains("authentication failed")
        ));
        assert!(matches!(connect(None).await, Err(StoreError::Backend(_))));
        assert!(started.elapsed() < Duration::from_secs(5));

        let store = connect(Some(("root", "s3cret")))
            .await
            .expect("connect as root");
        let revision = store
            .create("/auth/k", b"v".to_vec(), None)
            .await
            .expect("create");
        assert_eq!(store.current_revision().await.expect("revision"), revision);
        let mut watch = store.watch("/auth/", revision - 1).await.expect("watch");
        let event = next(&mut watch).await.expect("item").expect("event");
        assert_eq!(event.revision(), revision);
    }
}
