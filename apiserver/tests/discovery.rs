//! Discovery, health and OpenAPI shapes, as kubectl and kube-rs read them.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use axum::body::Body;
use axum::http::{Request, header};
use common::Harness;
use serde_json::{Value, json};

#[tokio::test]
async fn version_has_every_field() {
    let h = Harness::new();
    let version = h.get("/version").await.expect(200, None);
    for field in [
        "major",
        "minor",
        "gitVersion",
        "gitCommit",
        "gitTreeState",
        "buildDate",
        "goVersion",
        "compiler",
        "platform",
    ] {
        assert!(version[field].is_string(), "{field} in {version}");
    }
}

#[tokio::test]
async fn group_discovery_ignores_aggregated_accept() {
    let h = Harness::new();
    let accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
    for uri in ["/api", "/apis"] {
        let reply = h
            .send(
                Request::get(uri)
                    .header(header::ACCEPT, accept)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        reply.expect(200, None);
    }
    let api = h.get("/api").await.expect(200, None);
    assert_eq!(api["kind"], "APIVersions");
    assert_eq!(api["versions"], json!([]));
    let apis = h.get("/apis").await.expect(200, None);
    assert_eq!(apis["kind"], "APIGroupList");
    assert_eq!(
        apis["groups"],
        json!([{
            "name": "pacer.dev",
            "versions": [{"groupVersion": "pacer.dev/v1", "version": "v1"}],
            "preferredVersion": {"groupVersion": "pacer.dev/v1", "version": "v1"},
        }])
    );
    assert_eq!(
        h.get("/apis/pacer.dev").await.expect(200, None)["kind"],
        "APIGroup"
    );
}

#[tokio::test]
async fn resource_list_has_verbs_short_names_and_subresources() {
    let h = Harness::new();
    let list = h.get("/apis/pacer.dev/v1").await.expect(200, None);
    assert_eq!(list["kind"], "APIResourceList");
    assert_eq!(list["groupVersion"], "pacer.dev/v1");
    let resources = list["resources"].as_array().unwrap();
    let find = |name: &str| -> &Value {
        resources
            .iter()
            .find(|resource| resource["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    assert_eq!(
        find("apps"),
        &json!({
            "name": "apps", "singularName": "app", "namespaced": true, "kind": "App",
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            "shortNames": ["ap"], "categories": ["all"],
        })
    );
    assert_eq!(
        find("apps/status")["verbs"],
        json!(["get", "patch", "update"])
    );
    assert_eq!(
        find("apps/scale"),
        &json!({
            "name": "apps/scale", "singularName": "", "namespaced": true, "group": "autoscaling",
            "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"],
        })
    );
    assert_eq!(
        find("instances/log"),
        &json!({
            "name": "instances/log", "singularName": "", "namespaced": true, "kind": "Instance",
            "verbs": ["get"],
        })
    );
    assert!(
        resources
            .iter()
            .all(|resource| resource["name"] != "apps/log")
    );
    assert_eq!(find("nodes")["namespaced"], false);
    assert_eq!(find("instances")["shortNames"], json!(["inst"]));
    assert!(
        resources
            .iter()
            .all(|resource| resource["name"] != "events/status")
    );
}

#[tokio::test]
async fn health_probes() {
    let h = Harness::new();
    for uri in ["/healthz", "/readyz", "/livez"] {
        let reply = h.get(uri).await;
        assert_eq!(reply.status.as_u16(), 200);
        assert_eq!(&reply.body[..], b"ok");
    }
}

#[tokio::test]
async fn openapi_v2_is_protobuf_for_kubectl_and_json_for_the_rest() {
    use pacer_apiserver::openapi::gnostic;
    use prost::Message as _;

    let h = Harness::new();
    let get = |accept: Option<&'static str>| {
        let mut request = Request::get("/openapi/v2");
        if let Some(accept) = accept {
            request = request.header(header::ACCEPT, accept);
        }
        h.send(request.body(Body::empty()).unwrap())
    };
    // kubectl's Accept header: gnostic protobuf, answered with the dotted media type.
    let reply = get(Some(
        "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
    ))
    .await;
    assert_eq!(reply.status.as_u16(), 200);
    assert_eq!(
        reply.headers.get(header::CONTENT_TYPE).unwrap(),
        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    );
    let document = gnostic::Document::decode(&reply.body[..]).unwrap();
    assert_eq!(document.swagger, "2.0");
    let definitions = &document.definitions.as_ref().unwrap().additional_properties;
    let app = definitions
        .iter()
        .find(|named| named.name == "dev.pacer.v1.App")
        .and_then(|named| named.value.as_ref())
        .unwrap();
    let gvk = &app.vendor_extension[0];
    assert_eq!(gvk.name, "x-kubernetes-group-version-kind");
    let gvk: Value = serde_json::from_str(&gvk.value.as_ref().unwrap().yaml).unwrap();
    assert_eq!(
        gvk,
        json!([{"group": "pacer.dev", "version": "v1", "kind": "App"}])
    );
    let paths = &document.paths.as_ref().unwrap().path;
    let item = paths
        .iter()
        .find(|path| path.name == "/apis/pacer.dev/v1/namespaces/{namespace}/apps/{name}")
        .and_then(|path| path.value.as_ref())
        .unwrap();
    let query_names: Vec<&str> = item
        .patch
        .as_ref()
        .unwrap()
        .parameters
        .iter()
        .filter_map(|parameter| match &parameter.oneof {
            Some(gnostic::ParametersItemOneof::Parameter(gnostic::Parameter {
                oneof:
                    Some(gnostic::ParameterOneof::NonBodyParameter(gnostic::NonBodyParameter {
                        oneof: Some(gnostic::NonBodyParameterOneof::QueryParameterSubSchema(query)),
                    })),
            })) => Some(query.name.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        query_names.contains(&"dryRun") && query_names.contains(&"fieldValidation"),
        "{query_names:?}"
    );

    // The same document as JSON, for `application/json` and by default.
    for accept in [
        Some("application/json"),
        Some("application/json;q=0.9,application/com.github.proto-openapi.spec.v2@v1.0+protobuf"),
        None,
    ] {
        let json = get(accept).await.expect(200, None);
        assert_eq!(json["swagger"], "2.0", "{accept:?}");
        assert_eq!(
            json["definitions"].as_object().unwrap().len(),
            definitions.len()
        );
        assert_eq!(
            json["definitions"]["dev.pacer.v1.App"]["x-kubernetes-group-version-kind"],
            gvk
        );
    }
}

#[tokio::test]
async fn openapi_v3_document() {
    let h = Harness::new();
    let index = h.get("/openapi/v3").await.expect(200, None);
    let url = index["paths"]["apis/pacer.dev/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap();
    assert!(
        url.starts_with("/openapi/v3/apis/pacer.dev/v1?hash="),
        "{url}"
    );
    let document = h.get(url).await.expect(200, None);
    assert_eq!(document["openapi"], "3.0.0");
    let schemas = document["components"]["schemas"].as_object().unwrap();
    for kind in ["App", "Instance", "Node", "Deployment", "Offer", "Event"] {
        let schema = &schemas[&format!("dev.pacer.v1.{kind}")];
        assert_eq!(
            schema["x-kubernetes-group-version-kind"],
            json!([{"group": "pacer.dev", "version": "v1", "kind": kind}])
        );
        assert!(schema["properties"]["metadata"].is_object(), "{kind}");
    }
    // `kubectl explain app.spec` walks into the spec's documented properties.
    let spec_ref = schemas["dev.pacer.v1.App"]["properties"]["spec"]["allOf"][0]["$ref"]
        .as_str()
        .unwrap();
    let spec = &schemas[spec_ref.trim_start_matches("#/components/schemas/")];
    assert!(spec["properties"]["instances"]["description"].is_string());
    assert_eq!(
        schemas["io.k8s.api.autoscaling.v1.Scale"]["x-kubernetes-group-version-kind"],
        json!([{"group": "autoscaling", "version": "v1", "kind": "Scale"}])
    );
    // Every PATCH of an App carries its GVK and the fieldValidation and dryRun parameters.
    let paths = document["paths"].as_object().unwrap();
    let mut app_patches = 0;
    for (path, item) in paths {
        for verb in ["patch", "post", "put"] {
            let Some(operation) = item.get(verb) else {
                continue;
            };
            let parameters: Vec<&str> = operation["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|parameter| parameter["name"].as_str().unwrap())
                .collect();
            assert!(
                parameters.contains(&"fieldValidation") && parameters.contains(&"dryRun"),
                "{verb} {path}: {parameters:?}"
            );
            if verb == "patch" && operation["x-kubernetes-group-version-kind"]["kind"] == "App" {
                app_patches += 1;
            }
        }
    }
    assert_eq!(app_patches, 2, "apps/{{name}} and apps/{{name}}/status");
    assert!(paths.contains_key("/apis/pacer.dev/v1/namespaces/{namespace}/apps/{name}/scale"));
    assert!(paths.contains_key("/apis/pacer.dev/v1/apps"));
    assert!(paths.contains_key("/apis/pacer.dev/v1/nodes/{name}/status"));
}
