//! `Client`: the HTTP connection to one API server — URL building, authentication, sending
//! requests, turning non-2xx answers into `Status` errors, and reading watch streams.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{StreamExt, stream};
use pacer_schemas::LeaseFence;
use pacer_schemas::lease::{FENCE_HEADER, FenceParseError};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;

use crate::config::Config;
use crate::error::{Error, Result, status_from_body};

/// A cheap-to-clone handle on one API server.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
    /// The `Pacer-Fence` header every request of a fenced handle carries ([`Client::fenced`]).
    fence: Option<(LeaseFence, HeaderValue)>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
    namespace: String,
    request_timeout: Option<Duration>,
}

/// A request body with its media type.
pub(crate) struct Body {
    pub(crate) content_type: &'static str,
    pub(crate) bytes: Vec<u8>,
}

impl Client {
    /// Connects nothing yet: validates the server URL and builds the HTTP client.
    ///
    /// Proxies from the environment are honoured except for loopback servers, so a local
    /// `pacer dev` is reached directly even when `HTTP_PROXY` is set.
    pub fn new(config: Config) -> Result<Self> {
        let base = parse_base(&config.server)?;
        ensure_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true);
        if is_loopback(&base) {
            builder = builder.no_proxy();
        }
        let http = builder.build().map_err(Error::Build)?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base,
                token: config.token,
                namespace: config.namespace,
                request_timeout: config.request_timeout,
            }),
            fence: None,
        })
    }

    /// A handle on the same server whose requests all carry `Pacer-Fence: <fence>`: the server
    /// applies its writes only while `fence.holder` holds the Lease (409 `Conflict` naming the
    /// fence otherwise, and nothing is written). [`crate::runtime::LeaderElector`] hands
    /// its leader such a handle.
    pub fn fenced(&self, fence: &LeaseFence) -> Result<Self> {
        let wire = fence.to_string();
        LeaseFence::parse(&wire)?;
        let value = HeaderValue::from_bytes(wire.as_bytes())
            .map_err(|_| Error::InvalidFence(FenceParseError { input: wire }))?;
        Ok(Self {
            inner: Arc::clone(&self.inner),
            fence: Some((fence.clone(), value)),
        })
    }

    /// The fence of a handle from [`Client::fenced`].
    pub fn fence(&self) -> Option<&LeaseFence> {
        self.fence.as_ref().map(|(fence, _)| fence)
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &Url {
        &self.inner.base
    }

    /// The namespace from the config, for [`crate::Api::default_namespaced`].
    pub fn default_namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// `base` + `segments` (each percent-encoded) + `query`.
    pub(crate) fn url(&self, segments: &[&str], query: &[(&'static str, String)]) -> Result<Url> {
        let mut url = self.inner.base.clone();
        {
            let mut path = url.path_segments_mut().map_err(|()| Error::InvalidUrl {
                url: self.inner.base.to_string(),
                reason: "it cannot be a base URL".to_owned(),
            })?;
            path.pop_if_empty();
            path.extend(segments);
        }
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (key, value) in query {
                pairs.append_pair(key, value);
            }
        }
        Ok(url)
    }

    /// Sends a request and decodes a 2xx JSON answer into `T`.
    pub(crate) async fn send_json<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<Body>,
    ) -> Result<T> {
        let response = self
            .execute(method.clone(), url.clone(), body, true)
            .await?;
        let bytes = response.bytes().await.map_err(|source| Error::Transport {
            method: method.to_string(),
            url: url.to_string(),
            source: source.without_url(),
        })?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Decode {
            method: method.to_string(),
            url: url.to_string(),
            source,
        })
    }

    /// Encodes `value` as a JSON body of type `content_type`.
    pub(crate) fn body<B: serde::Serialize + ?Sized>(
        method: &Method,
        url: &Url,
        content_type: &'static str,
        value: &B,
    ) -> Result<Body> {
        let bytes = serde_json::to_vec(value).map_err(|source| Error::Encode {
            method: method.to_string(),
            url: url.to_string(),
            source,
        })?;
        Ok(Body {
            content_type,
            bytes,
        })
    }

    /// Starts a watch and yields the decoded newline-delimited events. The stream ends when
    /// the server closes it (e.g. at `timeoutSeconds`); a broken stream or an undecodable line
    /// yields one error and ends the stream.
    pub(crate) async fn watch_lines<T: DeserializeOwned + Send + 'static>(
        &self,
        url: Url,
    ) -> Result<BoxStream<'static, Result<T>>> {
        let response = self.execute(Method::GET, url.clone(), None, false).await?;
        let url_text = url.to_string();
        let lines = split_lines(response.bytes_stream().boxed());
        let events =
            lines.filter_map(move |line| {
                let url_text = url_text.clone();
                async move {
                    match line {
                        Ok(line) if line.iter().all(u8::is_ascii_whitespace) => None,
                        Ok(line) => Some(serde_json::from_slice::<T>(&line).map_err(|source| {
                            Error::Decode {
                                method: "WATCH".to_owned(),
                                url: url_text,
                                source,
                            }
                        })),
                        Err(source) => Some(Err(Error::Transport {
                            method: "WATCH".to_owned(),
                            url: url_text,
                            source: source.without_url(),
                        })),
                    }
                }
            });
        Ok(events.boxed())
    }

    async fn execute(
        &self,
        method: Method,
        url: Url,
        body: Option<Body>,
        with_timeout: bool,
    ) -> Result<reqwest::Response> {
        tracing::debug!(%method, %url, "request");
        let mut request = self
            .inner
            .http
            .request(method.clone(), url.clone())
            .header(ACCEPT, "application/json");
        if let Some(token) = &self.inner.token {
            request = request.bearer_auth(token);
        }
        if let Some((_, fence)) = &self.fence {
            request = request.header(FENCE_HEADER, fence.clone());
        }
        if let Some(body) = body {
            request = request
                .header(CONTENT_TYPE, body.content_type)
                .body(body.bytes);
        }
        if with_timeout && let Some(timeout) = self.inner.request_timeout {
            request = request.timeout(timeout);
        }
        let response = request.send().await.map_err(|source| Error::Transport {
            method: method.to_string(),
            url: url.to_string(),
            source: source.without_url(),
        })?;
        let code = response.status();
        if code.is_success() {
            return Ok(response);
        }
        // The body of an error is small; a failure to read it leaves an empty message.
        let bytes = response.bytes().await.unwrap_or_default();
        let status = status_from_body(code.as_u16(), &bytes);
        tracing::debug!(%method, %url, code = code.as_u16(), reason = ?status.reason, "server error");
        Err(Error::Api {
            status: Box::new(status),
            method: method.to_string(),
            url: url.to_string(),
        })
    }
}

fn parse_base(server: &str) -> Result<Url> {
    let invalid = |reason: String| Error::InvalidUrl {
        url: server.to_owned(),
        reason,
    };
    let url = Url::parse(server).map_err(|error| invalid(error.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "the scheme must be http or https, not {:?}",
            url.scheme()
        )));
    }
    if url.cannot_be_a_base() || url.host().is_none() {
        return Err(invalid("it has no host".to_owned()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("it may not have a query or fragment".to_owned()));
    }
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    match url.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// reqwest is built without a bundled crypto provider (no aws-lc, so no cmake); install ring
/// as the process default unless the program chose one.
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: a provider is installed either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Splits a byte stream into `\n`-terminated lines (the last one may lack the `\n`).
fn split_lines<B, E>(
    chunks: BoxStream<'static, std::result::Result<B, E>>,
) -> impl futures::Stream<Item = std::result::Result<Vec<u8>, E>> + Send + 'static
where
    B: AsRef<[u8]> + Send + 'static,
    E: Send + 'static,
{
    struct State<S> {
        chunks: S,
        buffer: Vec<u8>,
        done: bool,
    }
    let state = State {
        chunks,
        buffer: Vec::new(),
        done: false,
    };
    stream::unfold(state, |mut state| async move {
        loop {
            if let Some(end) = state.buffer.iter().position(|byte| *byte == b'\n') {
                let line: Vec<u8> = state.buffer.drain(..=end).collect();
                return Some((Ok(line), state));
            }
            if state.done {
                if state.buffer.is_empty() {
                    return None;
                }
                let rest = std::mem::take(&mut state.buffer);
                return Some((Ok(rest), state));
            }
            match state.chunks.next().await {
                Some(Ok(chunk)) => state.buffer.extend_from_slice(chunk.as_ref()),
                Some(Err(error)) => {
                    state.done = true;
                    state.buffer.clear();
                    return Some((Err(error), state));
                }
                None => state.done = true,
            }
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_built_from_segments() {
        let client = Client::new(Config::new("http://127.0.0.1:8080")).unwrap();
        let url = client
            .url(
                &["apis", "pacer.dev", "v1", "namespaces", "default", "apps"],
                &[("labelSelector", "a in (b,c)".to_owned())],
            )
            .unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8080/apis/pacer.dev/v1/namespaces/default/apps?labelSelector=a+in+%28b%2Cc%29"
        );
        let prefixed = Client::new(Config::new("https://example.invalid/pacer/")).unwrap();
        assert_eq!(
            prefixed.url(&["apis", "x y"], &[]).unwrap().as_str(),
            "https://example.invalid/pacer/apis/x%20y"
        );
    }

    #[test]
    fn bad_server_urls_are_rejected() {
        for bad in [
            "127.0.0.1:8080",
            "ftp://host/",
            "http://host/?a=b",
            "not a url",
        ] {
            let error = Client::new(Config::new(bad)).unwrap_err();
            assert!(matches!(error, Error::InvalidUrl { .. }), "{bad}: {error}");
        }
        assert!(is_loopback(&Url::parse("http://[::1]:80").unwrap()));
        assert!(is_loopback(&Url::parse("http://localhost:80").unwrap()));
        assert!(!is_loopback(&Url::parse("http://10.0.0.1:80").unwrap()));
    }

    #[tokio::test]
    async fn lines_are_split_across_chunks() {
        let chunks: Vec<std::result::Result<&'static [u8], ()>> =
            vec![Ok(b"{\"a\":1}\n{\"b\""), Ok(b":2}\n\n{\"c\":3}")];
        let lines: Vec<_> = split_lines(stream::iter(chunks).boxed()).collect().await;
        let lines: Vec<Vec<u8>> = lines.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            lines,
            vec![
                b"{\"a\":1}\n".to_vec(),
                b"{\"b\":2}\n".to_vec(),
                b"\n".to_vec(),
                b"{\"c\":3}".to_vec()
            ]
        );
    }
}
