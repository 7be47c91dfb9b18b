//! Test harness: the API router over an embedded store in a temp dir, driven with `oneshot`
//! (no socket), plus helpers to send requests and read watch streams.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

pub mod marathon;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use futures::StreamExt;
use pacer_apiserver::{ApiConfig, ApiState, router};
use pacer_store::Store;
use pacer_store::embedded::EmbeddedStore;
use serde_json::{Value, json};
use tower::ServiceExt;

pub struct Harness {
    _dir: tempfile::TempDir,
    pub store: Arc<EmbeddedStore>,
    pub state: ApiState,
    router: Router,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "not JSON ({error}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts the status code and, for errors, the Status reason; returns the JSON body.
    #[track_caller]
    pub fn expect(&self, code: u16, reason: Option<&str>) -> Value {
        let body = self.json();
        assert_eq!(
            self.status.as_u16(),
            code,
            "unexpected status; body: {body:#}"
        );
        if let Some(reason) = reason {
            assert_eq!(body["kind"], "Status", "{body:#}");
            assert_eq!(body["reason"], reason, "{body:#}");
            assert_eq!(body["code"], code, "{body:#}");
        }
        assert_eq!(
            self.headers.get(header::CONTENT_TYPE).unwrap(),
            "application/json",
            "content type"
        );
        body
    }

    pub fn warnings(&self) -> Vec<String> {
        self.headers
            .get_all(header::WARNING)
            .iter()
            .map(|value| value.to_str().unwrap().to_owned())
            .collect()
    }
}

impl Harness {
    pub fn new() -> Self {
        Self::with_config(ApiConfig::default())
    }

    pub fn with_config(config: ApiConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).unwrap());
        let state = ApiState::new(store.clone() as Arc<dyn Store>, config);
        let router = router(state.clone());
        Self {
            _dir: dir,
            store,
            state,
            router,
        }
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        content_type: Option<&str>,
        body: impl Into<Body>,
    ) -> Reply {
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(content_type) = content_type {
            builder = builder.header(header::CONTENT_TYPE, content_type);
        }
        self.send(builder.body(body.into()).unwrap()).await
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.call(Method::GET, uri, None, Body::empty()).await
    }

    pub async fn post(&self, uri: &str, body: &Value) -> Reply {
        self.call(
            Method::POST,
            uri,
            Some("application/json"),
            body.to_string(),
        )
        .await
    }

    pub async fn put(&self, uri: &str, body: &Value) -> Reply {
        self.call(Method::PUT, uri, Some("application/json"), body.to_string())
            .await
    }

    pub async fn merge_patch(&self, uri: &str, body: &Value) -> Reply {
        self.call(
            Method::PATCH,
            uri,
            Some("application/merge-patch+json"),
            body.to_string(),
        )
        .await
    }

    pub async fn delete(&self, uri: &str, body: Option<&Value>) -> Reply {
        match body {
            Some(body) => {
                self.call(
                    Method::DELETE,
                    uri,
                    Some("application/json"),
                    body.to_string(),
                )
                .await
            }
            None => self.call(Method::DELETE, uri, None, Body::empty()).await,
        }
    }

    /// The store's current revision.
    pub async fn revision(&self) -> i64 {
        self.store.current_revision().await.unwrap()
    }

    /// Creates an App (201) and returns it.
    pub async fn create_app(&self, namespace: &str, name: &str, extra: Value) -> Value {
        let mut app = app(namespace, name);
        json_patch::merge(&mut app, &extra);
        self.post(&apps(namespace), &app).await.expect(201, None)
    }

    /// Opens a watch and returns a reader of its frames.
    pub async fn watch(&self, uri: &str) -> WatchReader {
        let request = Request::builder().uri(uri).body(Body::empty()).unwrap();
        self.watch_request(request).await
    }

    /// Opens a watch with a request of the caller's (e.g. with an `Accept` header).
    pub async fn watch_request(&self, request: Request<Body>) -> WatchReader {
        let response = self.router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE).unwrap(),
            "application/json"
        );
        WatchReader {
            stream: response.into_body().into_data_stream().boxed(),
            buffer: Vec::new(),
        }
    }
}

pub struct WatchReader {
    stream: futures::stream::BoxStream<'static, Result<Bytes, axum::Error>>,
    buffer: Vec<u8>,
}

impl WatchReader {
    /// The next frame, `None` at the end of the stream; panics after 10 s without one.
    pub async fn next(&mut self) -> Option<Value> {
        self.next_within(Duration::from_secs(10))
            .await
            .expect("no watch frame within 10 s")
    }

    /// The next frame within `wait`: `Err(())` on timeout, `Ok(None)` at the end.
    pub async fn next_within(&mut self, wait: Duration) -> Result<Option<Value>, ()> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(position) = self.buffer.iter().position(|byte| *byte == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=position).collect();
                return Ok(Some(
                    serde_json::from_slice(&line[..line.len() - 1]).unwrap(),
                ));
            }
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return Err(()),
                Ok(None) => {
                    assert!(self.buffer.is_empty(), "partial frame at the end");
                    return Ok(None);
                }
                Ok(Some(chunk)) => self.buffer.extend_from_slice(&chunk.unwrap()),
            }
        }
    }

    /// The next frame's `(type, name, resourceVersion)`.
    pub async fn next_event(&mut self) -> (String, String, String) {
        let frame = self.next().await.expect("watch ended");
        summary(&frame)
    }
}

pub fn summary(frame: &Value) -> (String, String, String) {
    (
        frame["type"].as_str().unwrap().to_owned(),
        frame["object"]["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        frame["object"]["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
    )
}

pub fn app(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "pacer.dev/v1",
        "kind": "App",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"cmd": "sleep 1000"},
    })
}

pub fn apps(namespace: &str) -> String {
    format!("/apis/pacer.dev/v1/namespaces/{namespace}/apps")
}

pub fn app_url(namespace: &str, name: &str) -> String {
    format!("/apis/pacer.dev/v1/namespaces/{namespace}/apps/{name}")
}

pub fn rv(object: &Value) -> String {
    object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}
