//! The client against a canned HTTP server: URLs, query parameters, media types, bodies,
//! Status errors, transport errors and watch streams, as the Kubernetes-style protocol has them.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use pacer_client::{
    Api, Client, Config, DeleteParams, Deleted, DynamicApi, Error, ListParams, PatchParams,
    PostParams, ResourceInfo, WatchEvent, WatchParams,
};
use pacer_schemas::status::StatusReason;
use pacer_schemas::{App, AppSpec, Node};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A request as the canned server saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A canned answer: status code and body chunks (sent chunked when there are several).
struct Answer {
    code: u16,
    chunks: Vec<String>,
}

fn answer(code: u16, body: Value) -> Answer {
    Answer {
        code,
        chunks: vec![body.to_string()],
    }
}

type Handler = Arc<dyn Fn(&Seen) -> Answer + Send + Sync>;

/// Serves `handler` on a free loopback port; returns the base URL and the requests seen.
async fn serve(
    handler: impl Fn(&Seen) -> Answer + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler: Handler = Arc::new(handler);
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0_u8; 4096];
                let head_end = loop {
                    let read = socket.read(&mut chunk).await.unwrap();
                    if read == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..read]);
                    if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                        break end;
                    }
                };
                let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
                let mut lines = head.split("\r\n");
                let mut request_line = lines.next().unwrap().split(' ');
                let method = request_line.next().unwrap().to_owned();
                let target = request_line.next().unwrap().to_owned();
                let headers: Vec<(String, String)> = lines
                    .filter_map(|line| line.split_once(": "))
                    .map(|(key, value)| (key.to_owned(), value.to_owned()))
                    .collect();
                let length: usize = headers
                    .iter()
                    .find(|(key, _)| key.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |(_, value)| value.parse().unwrap());
                let mut body = buffer[head_end + 4..].to_vec();
                while body.len() < length {
                    let read = socket.read(&mut chunk).await.unwrap();
                    body.extend_from_slice(&chunk[..read]);
                }
                let request = Seen {
                    method,
                    target,
                    headers,
                    body,
                };
                log.lock().unwrap().push(request.clone());
                let Answer { code, chunks } = handler(&request);
                let mut head = format!(
                    "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nConnection: close\r\n"
                );
                if chunks.len() == 1 {
                    head.push_str(&format!(
                        "Content-Length: {}\r\n\r\n{}",
                        chunks[0].len(),
                        chunks[0]
                    ));
                    socket.write_all(head.as_bytes()).await.unwrap();
                } else {
                    head.push_str("Transfer-Encoding: chunked\r\n\r\n");
                    socket.write_all(head.as_bytes()).await.unwrap();
                    for piece in chunks {
                        let framed = format!("{:x}\r\n{piece}\r\n", piece.len());
                        socket.write_all(framed.as_bytes()).await.unwrap();
                        socket.flush().await.unwrap();
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    socket.write_all(b"0\r\n\r\n").await.unwrap();
                }
                let _ = socket.shutdown().await;
            });
        }
    });
    (format!("http://{address}"), seen)
}

fn app_json(name: &str, resource_version: &str) -> Value {
    json!({"apiVersion": "pacer.dev/v1", "kind": "App",
           "metadata": {"name": name, "namespace": "default", "resourceVersion": resource_version},
           "spec": {"cmd": "sleep 100", "instances": 2}})
}

fn not_found(name: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": format!("apps.pacer.dev \"{name}\" not found"), "reason": "NotFound",
           "details": {"name": name, "group": "pacer.dev", "kind": "apps"}, "code": 404})
}

#[tokio::test]
async fn typed_crud_speaks_the_kubernetes_protocol() {
    let (server, seen) = serve(|request| match (request.method.as_str(), request.target.as_str()) {
        ("GET", "/apis/pacer.dev/v1/namespaces/default/apps/web") => answer(200, app_json("web", "7")),
        ("GET", "/apis/pacer.dev/v1/namespaces/default/apps/gone") => answer(404, not_found("gone")),
        ("GET", target) if target.starts_with("/apis/pacer.dev/v1/namespaces/default/apps?") => answer(
            200,
            json!({"apiVersion": "pacer.dev/v1", "kind": "AppList",
                   "metadata": {"resourceVersion": "9"}, "items": [app_json("web", "7")]}),
        ),
        ("POST", _) => {
            let mut created = request.json();
            created["metadata"]["resourceVersion"] = json!("10");
            answer(201, created)
        }
        ("PATCH", _) => answer(200, app_json("web", "11")),
        ("PUT", _) => answer(
            409,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict",
                   "code": 409, "message": "Operation cannot be fulfilled on apps.pacer.dev \"web\": the object has been modified; please apply your changes to the latest version and try again"}),
        ),
        ("DELETE", _) => answer(200, json!({"kind": "Status", "apiVersion": "v1", "status": "Success"})),
        _ => answer(404, json!({})),
    })
    .await;
    let client = Client::new(Config::new(&server).with_token("s3cret")).unwrap();
    let apps: Api<App> = Api::namespaced(client.clone(), "default");

    let web = apps.get("web").await.unwrap();
    assert_eq!(web.spec.instances, Some(2));
    assert_eq!(web.metadata.resource_version.as_deref(), Some("7"));
    assert_eq!(apps.get_opt("gone").await.unwrap(), None);
    let error = apps.get("gone").await.unwrap_err();
    assert!(error.is_not_found());
    assert_eq!(
        error.to_string(),
        "Error from server (NotFound): apps.pacer.dev \"gone\" not found"
    );

    let list = apps
        .list(
            &ListParams::default()
                .labels("app=web,tier in (a,b)")
                .limit(10),
        )
        .await
        .unwrap();
    assert_eq!(list.metadata.resource_version.as_deref(), Some("9"));
    assert_eq!(list.items.len(), 1);

    let new = App::new(
        "default",
        "api",
        AppSpec {
            cmd: Some("serve".into()),
            ..AppSpec::default()
        },
    );
    let created = apps
        .create(
            &PostParams::default().dry_run(true).field_manager("pacer"),
            &new,
        )
        .await
        .unwrap();
    assert_eq!(created.metadata.resource_version.as_deref(), Some("10"));

    apps.patch_merge(
        "web",
        &PatchParams::default(),
        &json!({"spec": {"instances": 3}}),
    )
    .await
    .unwrap();
    let conflict = apps
        .replace(&PostParams::default(), &web)
        .await
        .unwrap_err();
    assert!(conflict.is_conflict());
    assert_eq!(conflict.reason(), Some(&StatusReason::Conflict));
    let deleted = apps
        .delete("web", &DeleteParams::default().dry_run(true))
        .await
        .unwrap();
    assert!(matches!(deleted, Deleted::Status(_)));

    let seen = seen.lock().unwrap().clone();
    let targets: Vec<String> = seen
        .iter()
        .map(|r| format!("{} {}", r.method, r.target))
        .collect();
    assert_eq!(
        targets,
        [
            "GET /apis/pacer.dev/v1/namespaces/default/apps/web",
            "GET /apis/pacer.dev/v1/namespaces/default/apps/gone",
            "GET /apis/pacer.dev/v1/namespaces/default/apps/gone",
            "GET /apis/pacer.dev/v1/namespaces/default/apps?labelSelector=app%3Dweb%2Ctier+in+%28a%2Cb%29&limit=10",
            "POST /apis/pacer.dev/v1/namespaces/default/apps?dryRun=All&fieldManager=pacer",
            "PATCH /apis/pacer.dev/v1/namespaces/default/apps/web",
            "PUT /apis/pacer.dev/v1/namespaces/default/apps/web",
            "DELETE /apis/pacer.dev/v1/namespaces/default/apps/web?dryRun=All",
        ]
    );
    assert!(
        seen.iter()
            .all(|r| r.header("authorization") == Some("Bearer s3cret"))
    );
    assert_eq!(seen[4].header("content-type"), Some("application/json"));
    assert_eq!(seen[4].json()["spec"]["cmd"], "serve");
    assert_eq!(
        seen[5].header("content-type"),
        Some("application/merge-patch+json")
    );
    assert_eq!(seen[5].json(), json!({"spec": {"instances": 3}}));
    assert_eq!(seen[6].json()["metadata"]["resourceVersion"], "7");
    assert_eq!(seen[7].json()["dryRun"], json!(["All"]));
}

#[tokio::test]
async fn cluster_scoped_and_dynamic_apis_build_their_urls() {
    let (server, seen) = serve(|request| {
        answer(
            200,
            json!({"apiVersion": "pacer.dev/v1", "kind": "List", "metadata": {"resourceVersion": "3"},
                   "items": [{"metadata": {"name": request.target.clone()}}]}),
        )
    })
    .await;
    let client = Client::new(Config::new(&server)).unwrap();
    let nodes: Api<Node> = Api::namespaced(client.clone(), "ignored");
    nodes.list(&ListParams::default()).await.unwrap();
    let all_apps = DynamicApi::all(client.clone(), *ResourceInfo::resolve("ap").unwrap());
    all_apps.list(&ListParams::default()).await.unwrap();
    let error = all_apps.get("web").await.unwrap_err();
    assert!(matches!(error, Error::NamespaceRequired { .. }), "{error}");
    let instances = DynamicApi::namespaced(client, *ResourceInfo::resolve("inst").unwrap(), "prod");
    let list = instances
        .list(&ListParams::default().fields("metadata.name=a"))
        .await
        .unwrap();
    assert_eq!(list.metadata.resource_version.as_deref(), Some("3"));

    let targets: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.target.clone())
        .collect();
    assert_eq!(
        targets,
        [
            "/apis/pacer.dev/v1/nodes",
            "/apis/pacer.dev/v1/apps",
            "/apis/pacer.dev/v1/namespaces/prod/instances?fieldSelector=metadata.name%3Da",
        ]
    );
}

#[tokio::test]
async fn list_all_follows_continue_tokens() {
    let (server, _) = serve(|request| {
        if request.target.contains("continue=page2") {
            answer(200, json!({"metadata": {"resourceVersion": "5"}, "items": [app_json("b", "4")]}))
        } else {
            answer(
                200,
                json!({"metadata": {"resourceVersion": "5", "continue": "page2"}, "items": [app_json("a", "3")]}),
            )
        }
    })
    .await;
    let apps: Api<App> = Api::namespaced(Client::new(Config::new(&server)).unwrap(), "default");
    let all = apps
        .list_all(&ListParams::default().limit(1))
        .await
        .unwrap();
    let names: Vec<&str> = all
        .items
        .iter()
        .map(|app| app.metadata.name_str())
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(all.metadata.continue_token, None);
}

#[tokio::test]
async fn watch_yields_newline_delimited_events() {
    let (server, seen) = serve(|_| {
        let added = json!({"type": "ADDED", "object": app_json("web", "12")}).to_string();
        let modified = json!({"type": "MODIFIED", "object": app_json("web", "13")}).to_string();
        let bookmark = json!({"type": "BOOKMARK", "object": {"apiVersion": "pacer.dev/v1", "kind": "App", "metadata": {"resourceVersion": "14"}}}).to_string();
        let expired = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired", "code": 410, "message": "too old resource version"}}).to_string();
        // Split one event across chunks and put two in another.
        let (head, tail) = modified.split_at(20);
        Answer {
            code: 200,
            chunks: vec![
                format!("{added}\n{}", head),
                format!("{tail}\n"),
                format!("{bookmark}\n{expired}\n"),
            ],
        }
    })
    .await;
    let apps: Api<App> = Api::namespaced(Client::new(Config::new(&server)).unwrap(), "default");
    let events: Vec<_> = apps
        .watch(&WatchParams::default().labels("app=web").timeout(30), "11")
        .await
        .unwrap()
        .collect()
        .await;
    let events: Vec<WatchEvent<App>> = events.into_iter().map(Result::unwrap).collect();
    let types: Vec<&str> = events.iter().map(WatchEvent::type_name).collect();
    assert_eq!(types, ["ADDED", "MODIFIED", "BOOKMARK", "ERROR"]);
    assert_eq!(
        events[1]
            .object()
            .unwrap()
            .metadata
            .resource_version
            .as_deref(),
        Some("13")
    );
    let WatchEvent::Error(status) = &events[3] else {
        panic!("not an error")
    };
    assert_eq!(status.code, Some(410));
    assert_eq!(
        seen.lock().unwrap()[0].target,
        "/apis/pacer.dev/v1/namespaces/default/apps?watch=true&resourceVersion=11&labelSelector=app%3Dweb&timeoutSeconds=30&allowWatchBookmarks=true"
    );
}

#[tokio::test]
async fn non_status_errors_and_transport_failures_are_reported() {
    let (server, _) = serve(|_| Answer {
        code: 502,
        chunks: vec!["bad gateway".to_owned()],
    })
    .await;
    let apps: Api<App> = Api::namespaced(Client::new(Config::new(&server)).unwrap(), "default");
    let error = apps.get("web").await.unwrap_err();
    assert_eq!(error.code(), Some(502));
    assert_eq!(
        error.to_string(),
        "Error from server (InternalError): bad gateway"
    );

    // A port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let apps: Api<App> = Api::namespaced(
        Client::new(Config::new(format!("http://127.0.0.1:{port}"))).unwrap(),
        "default",
    );
    let error = apps.get("web").await.unwrap_err();
    assert!(matches!(error, Error::Transport { .. }), "{error}");
    assert!(error.is_connect());
    assert_eq!(
        error.to_string(),
        format!("GET http://127.0.0.1:{port}/apis/pacer.dev/v1/namespaces/default/apps/web failed")
    );
    let source = std::error::Error::source(&error).unwrap().to_string();
    assert!(
        !source.contains("127.0.0.1"),
        "the URL is said once: {source}"
    );
}
