//! `Table` output through the router (no socket): what `kubectl get` asks for with
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`, on GET, LIST and WATCH.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use axum::body::Body;
use axum::http::{Request, header};
use common::{Harness, apps, rv};
use serde_json::{Value, json};

const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

fn get_table(uri: &str) -> Request<Body> {
    Request::builder()
        .uri(uri)
        .header(header::ACCEPT, TABLE)
        .body(Body::empty())
        .unwrap()
}

fn column_names(table: &Value) -> Vec<String> {
    table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|column| column["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn lists_and_objects_as_tables() {
    let h = Harness::new();
    let web = h
        .create_app("default", "web", json!({"spec": {"instances": 3}}))
        .await;
    h.create_app("default", "db", json!({})).await;

    let list = h.send(get_table(&apps("default"))).await.expect(200, None);
    assert_eq!(list["kind"], "Table");
    assert_eq!(list["apiVersion"], "meta.k8s.io/v1");
    assert!(list["metadata"]["resourceVersion"].as_str().is_some());
    assert_eq!(column_names(&list), ["Name", "Instances", "Healthy", "Age"]);
    let rows = list["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let web_row = rows.iter().find(|row| row["cells"][0] == "web").unwrap();
    assert_eq!(web_row["cells"][1], "0/3");
    assert_eq!(web_row["cells"][2], "-");
    let age = web_row["cells"][3].as_str().unwrap();
    assert!(age.ends_with('s'), "{age}");
    assert_eq!(web_row["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(web_row["object"]["metadata"]["namespace"], "default");
    assert_eq!(web_row["object"]["metadata"]["uid"], web["metadata"]["uid"]);

    // Selectors still apply; one object is a one-row table.
    let selected = h
        .send(get_table(&format!(
            "{}?fieldSelector=metadata.name=db",
            apps("default")
        )))
        .await
        .expect(200, None);
    assert_eq!(selected["rows"].as_array().unwrap().len(), 1);
    let one = h
        .send(get_table(&format!("{}/web", apps("default"))))
        .await
        .expect(200, None);
    assert_eq!(one["kind"], "Table");
    assert_eq!(one["rows"][0]["cells"][0], "web");
    assert_eq!(one["metadata"]["resourceVersion"], rv(&web));

    // Other kinds: their own columns.
    let nodes = h
        .send(get_table("/apis/pacer.dev/v1/nodes"))
        .await
        .expect(200, None);
    assert_eq!(
        column_names(&nodes),
        ["Name", "Status", "CPUs", "Mem", "Age"]
    );
    let instances = h
        .send(get_table("/apis/pacer.dev/v1/namespaces/default/instances"))
        .await
        .expect(200, None);
    assert_eq!(
        column_names(&instances),
        ["Name", "App", "Node", "Phase", "Age"]
    );
    let deployments = h
        .send(get_table("/apis/pacer.dev/v1/deployments"))
        .await
        .expect(200, None);
    assert_eq!(
        column_names(&deployments),
        ["Name", "App", "Action", "Phase", "Progress", "Age"]
    );

    // Plain JSON without the header.
    let plain = h.get(&apps("default")).await.expect(200, None);
    assert_eq!(plain["kind"], "AppList");
}

#[tokio::test]
async fn watch_events_carry_one_row_tables() {
    let h = Harness::new();
    h.create_app("default", "web", json!({})).await;
    let mut watch = h
        .watch_request(get_table(&format!("{}?watch=1", apps("default"))))
        .await;
    let first = watch.next().await.unwrap();
    assert_eq!(first["type"], "ADDED");
    assert_eq!(first["object"]["kind"], "Table");
    assert_eq!(
        column_names(&first["object"]),
        ["Name", "Instances", "Healthy", "Age"]
    );
    assert_eq!(first["object"]["rows"][0]["cells"][1], "0/1");
    h.merge_patch(
        &format!("{}/web", apps("default")),
        &json!({"spec": {"instances": 2}}),
    )
    .await
    .expect(200, None);
    let second = watch.next().await.unwrap();
    assert_eq!(second["type"], "MODIFIED");
    assert_eq!(second["object"]["columnDefinitions"], json!([]));
    assert_eq!(second["object"]["rows"][0]["cells"][1], "0/2");
    assert!(
        second["object"]["metadata"]["resourceVersion"]
            .as_str()
            .is_some()
    );
}
