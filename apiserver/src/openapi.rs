//! OpenAPI for kubectl and other tools, generated once (on the first request, or at startup
//! through [`build`]) from the schemars schemas of `pacer-schemas` and the kinds registry, so
//! every registered kind appears in both versions:
//!
//! - `/openapi/v3` (index) and `/openapi/v3/apis/pacer.dev/v1` (the group's document): kubectl
//!   ≥ 1.27 validates server-side when a kind's PATCH operation has a `fieldValidation`
//!   parameter, and `kubectl explain app.spec` reads the doc comments from it.
//! - `/openapi/v2`, the same document as Swagger 2.0 (see `v2`), served as gnostic protobuf
//!   (see `gnostic`) to kubectl — which only ever asks for that — and as JSON to clients asking
//!   for `application/json`. kubectl ≤ 1.26 validates client-side, explains, and decides that
//!   `diff`/`--dry-run=server` are supported (a `dryRun` parameter on the kind's PATCH) from it.
//!
//! The JSON Schema 2020-12 output of schemars is adapted to OpenAPI 3.0 as Kubernetes writes
//! it: `$defs` become `components.schemas` named `dev.pacer.v1.<Name>`, a `$ref` with siblings
//! is wrapped in `allOf`, and `const` becomes a one-value `enum`.

pub mod gnostic;
mod v2;

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pacer_schemas::{API_VERSION, GROUP, Scale, Status, VERSION};
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::kinds::{KINDS, KindDef};

/// Prefix of the component names of Pacer's types.
const PREFIX: &str = "dev.pacer.v1";
const STATUS_SCHEMA: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const SCALE_SCHEMA: &str = "io.k8s.api.autoscaling.v1.Scale";

/// Where the group's document is served.
pub const GROUP_PATH: &str = "/openapi/v3/apis/pacer.dev/v1";

/// Every served OpenAPI body, encoded once.
struct Documents {
    /// The OpenAPI 3.0 group document, JSON.
    v3: Bytes,
    /// Hash of `v3`, for the index's `serverRelativeURL`.
    v3_hash: String,
    /// The Swagger 2.0 document, JSON.
    v2_json: Bytes,
    /// The Swagger 2.0 document as gnostic protobuf, or why it could not be encoded (a bug
    /// the unit tests catch; the endpoint then answers 500 with the reason).
    v2_protobuf: Result<Bytes, String>,
}

static DOCUMENTS: LazyLock<Documents> = LazyLock::new(|| {
    let v3_document = document();
    let v3 = serde_json::to_vec(&v3_document).unwrap_or_default();
    let v3_hash = format!("{:016X}", fnv1a(&v3));
    let v2_document = v2::document(&v3_document);
    let v2_json = serde_json::to_vec(&v2_document).unwrap_or_default();
    let v2_protobuf = gnostic::encode(&v2_document)
        .map(|encoded| Bytes::from(prost::Message::encode_to_vec(&encoded)))
        .map_err(|error| format!("encode /openapi/v2 as protobuf: {error}"));
    if let Err(error) = &v2_protobuf {
        tracing::error!(%error, "cannot serve /openapi/v2 as protobuf");
    }
    Documents {
        v3: Bytes::from(v3),
        v3_hash,
        v2_json: Bytes::from(v2_json),
        v2_protobuf,
    }
});

/// Builds and encodes every OpenAPI document now (they are built once, on first use
/// otherwise), so that the first kubectl request does not pay for it.
pub fn build() {
    LazyLock::force(&DOCUMENTS);
}

/// The media type kubectl asks `/openapi/v2` for (with `@`), and the one answered (with `.`,
/// as Kubernetes does: kubectl 1.20's media type parser rejects the `@` form in a response).
const PROTOBUF_ACCEPT_MARKER: &str = "com.github.proto-openapi.spec.v2";
const PROTOBUF_CONTENT_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// `GET /openapi/v2`: gnostic protobuf when the `Accept` header asks for it before any JSON
/// type (kubectl), otherwise JSON.
pub async fn v2(headers: HeaderMap) -> Response {
    let documents = &*DOCUMENTS;
    if !wants_v2_protobuf(&headers) {
        return bytes_response(documents.v2_json.clone(), "application/json");
    }
    match &documents.v2_protobuf {
        Ok(body) => bytes_response(body.clone(), PROTOBUF_CONTENT_TYPE),
        Err(reason) => ApiError::Internal(reason.clone()).into_response(),
    }
}

/// Whether the first media range of `Accept` that Pacer can serve is the protobuf one
/// (`*/*`, `application/*` and `application/json` mean JSON; no `Accept` means JSON).
fn wants_v2_protobuf(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|range| range.split(';').next().unwrap_or("").trim())
        .find_map(|media| {
            if media.contains(PROTOBUF_ACCEPT_MARKER) && media.ends_with("+protobuf") {
                Some(true)
            } else if matches!(media, "application/json" | "application/*" | "*/*") {
                Some(false)
            } else {
                None
            }
        })
        .unwrap_or(false)
}

fn bytes_response(body: Bytes, content_type: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// `GET /openapi/v3`: the index of group documents.
pub async fn v3_index() -> Response {
    let index = json!({"paths": {
        "apis/pacer.dev/v1": {"serverRelativeURL": format!("{GROUP_PATH}?hash={}", DOCUMENTS.v3_hash)}
    }});
    crate::rest::json_response(StatusCode::OK, &index, &[])
}

/// `GET /openapi/v3/apis/pacer.dev/v1`: the group's document.
pub async fn v3_group() -> Response {
    bytes_response(DOCUMENTS.v3.clone(), "application/json")
}

/// The OpenAPI 3.0 document of `pacer.dev/v1`.
pub fn document() -> Value {
    let mut components = Components::default();
    for kind in &KINDS {
        components.add(&format!("{PREFIX}.{}", kind.kind), kind.schema());
        components.insert(format!("{PREFIX}.{}", kind.list_kind), list_schema(kind));
    }
    components.add(
        STATUS_SCHEMA,
        with_gvk(
            pacer_schemas::schema::schema_for::<Status>(),
            "",
            "v1",
            "Status",
        ),
    );
    components.add(
        SCALE_SCHEMA,
        with_gvk(
            pacer_schemas::schema::schema_for::<Scale>(),
            "autoscaling",
            "v1",
            "Scale",
        ),
    );
    let mut paths = Map::new();
    for kind in &KINDS {
        add_paths(&mut paths, kind);
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Pacer", "version": VERSION},
        "paths": paths,
        "components": {"schemas": components.schemas},
    })
}

/// `components.schemas` being built, with the raw definitions behind each name so that two
/// different types with one name get distinct names.
#[derive(Default)]
struct Components {
    schemas: Map<String, Value>,
    raw: HashMap<String, Value>,
}

impl Components {
    /// Adds a top-level schema under `name` and its `$defs` under `dev.pacer.v1.<Def>`.
    fn add(&mut self, name: &str, mut schema: Value) {
        let defs = schema
            .as_object_mut()
            .and_then(|object| {
                object.remove("$schema");
                object.remove("$defs")
            })
            .and_then(|defs| match defs {
                Value::Object(defs) => Some(defs),
                _ => None,
            })
            .unwrap_or_default();
        let owner = name.rsplit('.').next().unwrap_or(name);
        let mut mapping = HashMap::new();
        for (def, raw) in &defs {
            let mut component = format!("{PREFIX}.{def}");
            if self.raw.get(&component).is_some_and(|seen| seen != raw) {
                component = format!("{PREFIX}.{owner}{def}");
            }
            self.raw.insert(component.clone(), raw.clone());
            mapping.insert(
                format!("#/$defs/{def}"),
                format!("#/components/schemas/{component}"),
            );
        }
        for (def, mut raw) in defs {
            convert(&mut raw, &mapping);
            if let Some(target) = mapping.get(&format!("#/$defs/{def}")) {
                let component = target
                    .trim_start_matches("#/components/schemas/")
                    .to_owned();
                self.schemas.insert(component, raw);
            }
        }
        convert(&mut schema, &mapping);
        self.schemas.insert(name.to_owned(), schema);
    }

    fn insert(&mut self, name: String, schema: Value) {
        self.schemas.insert(name, schema);
    }
}

/// Adapts a JSON Schema 2020-12 node (recursively) to OpenAPI 3.0.
fn convert(node: &mut Value, mapping: &HashMap<String, String>) {
    match node {
        Value::Object(object) => {
            if let Some(Value::String(reference)) = object.get_mut("$ref")
                && let Some(target) = mapping.get(reference.as_str())
            {
                target.clone_into(reference);
            }
            if let Some(constant) = object.remove("const") {
                object.insert("enum".to_owned(), Value::Array(vec![constant]));
            }
            if object.len() > 1
                && let Some(reference) = object.remove("$ref")
            {
                object.insert("allOf".to_owned(), json!([{"$ref": reference}]));
            }
            for (key, child) in object.iter_mut() {
                // `default`, `enum` and `example` hold data, not schemas.
                if !matches!(key.as_str(), "default" | "enum" | "example" | "examples") {
                    convert(child, mapping);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                convert(item, mapping);
            }
        }
        _ => {}
    }
}

fn with_gvk(mut schema: Value, group: &str, version: &str, kind: &str) -> Value {
    schema["x-kubernetes-group-version-kind"] =
        json!([{"group": group, "version": version, "kind": kind}]);
    schema
}

fn list_schema(kind: &KindDef) -> Value {
    json!({
        "description": format!("A list of {}.", kind.plural),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string", "description": "pacer.dev/v1"},
            "kind": {"type": "string", "description": kind.list_kind},
            "metadata": {"type": "object", "description": "resourceVersion and continue token of the list."},
            "items": {"type": "array", "items": {"$ref": schema_ref(&format!("{PREFIX}.{}", kind.kind))}},
        },
        "x-kubernetes-group-version-kind": [{"group": GROUP, "version": VERSION, "kind": kind.list_kind}],
    })
}

fn schema_ref(name: &str) -> String {
    format!("#/components/schemas/{name}")
}

/// The paths of one kind: collection, item, and subresources.
fn add_paths(paths: &mut Map<String, Value>, kind: &KindDef) {
    let object = format!("{PREFIX}.{}", kind.kind);
    let list = format!("{PREFIX}.{}", kind.list_kind);
    let gvk = json!({"group": GROUP, "version": VERSION, "kind": kind.kind});
    let scope = if kind.namespaced { "Namespaced" } else { "" };
    let base = if kind.namespaced {
        format!(
            "/apis/{API_VERSION}/namespaces/{{namespace}}/{}",
            kind.plural
        )
    } else {
        format!("/apis/{API_VERSION}/{}", kind.plural)
    };
    let namespace_param = kind.namespaced.then(|| {
        path_param(
            "namespace",
            "object name and auth scope, such as for teams and projects",
        )
    });
    let name_param = path_param("name", &format!("name of the {}", kind.kind));
    let op = |verb: &str, action: &str, id: &str| Operation {
        verb: verb.to_owned(),
        action: action.to_owned(),
        id: id.to_owned(),
        gvk: gvk.clone(),
    };
    let kind_name = kind.kind;
    paths.insert(
        base.clone(),
        path_item(
            namespace_param.iter().cloned().collect(),
            vec![
                op("get", "list", &format!("list{scope}{kind_name}")).build(&list, &[], None),
                op("post", "post", &format!("create{scope}{kind_name}")).build(
                    &object,
                    &WRITE_PARAMS,
                    Some(&object),
                ),
                op(
                    "delete",
                    "deletecollection",
                    &format!("deleteCollection{scope}{kind_name}"),
                )
                .build(&list, &["dryRun"], None),
            ],
        ),
    );
    let item = format!("{base}/{{name}}");
    let item_params: Vec<Value> = namespace_param
        .iter()
        .cloned()
        .chain([name_param])
        .collect();
    paths.insert(
        item.clone(),
        path_item(
            item_params.clone(),
            vec![
                op("get", "get", &format!("read{scope}{kind_name}")).build(&object, &[], None),
                op("put", "put", &format!("replace{scope}{kind_name}")).build(
                    &object,
                    &WRITE_PARAMS,
                    Some(&object),
                ),
                op("patch", "patch", &format!("patch{scope}{kind_name}")).build(
                    &object,
                    &PATCH_PARAMS,
                    Some(PATCH_BODY),
                ),
                op("delete", "delete", &format!("delete{scope}{kind_name}")).build(
                    &object,
                    &["dryRun"],
                    None,
                ),
            ],
        ),
    );
    if kind.status_subresource {
        paths.insert(
            format!("{item}/status"),
            path_item(
                item_params.clone(),
                vec![
                    op("get", "get", &format!("read{scope}{kind_name}Status")).build(
                        &object,
                        &[],
                        None,
                    ),
                    op("put", "put", &format!("replace{scope}{kind_name}Status")).build(
                        &object,
                        &WRITE_PARAMS,
                        Some(&object),
                    ),
                    op("patch", "patch", &format!("patch{scope}{kind_name}Status")).build(
                        &object,
                        &PATCH_PARAMS,
                        Some(PATCH_BODY),
                    ),
                ],
            ),
        );
    }
    if kind.scale.is_some() {
        let scale_gvk = json!({"group": "autoscaling", "version": "v1", "kind": "Scale"});
        let scale_op = |verb: &str, action: &str, id: &str| Operation {
            verb: verb.to_owned(),
            action: action.to_owned(),
            id: id.to_owned(),
            gvk: scale_gvk.clone(),
        };
        paths.insert(
            format!("{item}/scale"),
            path_item(
                item_params,
                vec![
                    scale_op("get", "get", &format!("read{scope}{kind_name}Scale")).build(
                        SCALE_SCHEMA,
                        &[],
                        None,
                    ),
                    scale_op("put", "put", &format!("replace{scope}{kind_name}Scale")).build(
                        SCALE_SCHEMA,
                        &WRITE_PARAMS,
                        Some(SCALE_SCHEMA),
                    ),
                    scale_op("patch", "patch", &format!("patch{scope}{kind_name}Scale")).build(
                        SCALE_SCHEMA,
                        &PATCH_PARAMS,
                        Some(PATCH_BODY),
                    ),
                ],
            ),
        );
    }
    if kind.namespaced {
        paths.insert(
            format!("/apis/{API_VERSION}/{}", kind.plural),
            path_item(
                Vec::new(),
                vec![
                    op("get", "list", &format!("list{kind_name}ForAllNamespaces")).build(
                        &list,
                        &[],
                        None,
                    ),
                ],
            ),
        );
    }
}

/// Query parameters of POST and PUT.
const WRITE_PARAMS: [&str; 3] = ["dryRun", "fieldManager", "fieldValidation"];
/// Query parameters of PATCH.
const PATCH_PARAMS: [&str; 4] = ["dryRun", "fieldManager", "fieldValidation", "force"];
/// Marks a PATCH request body.
const PATCH_BODY: &str = "<patch>";

struct Operation {
    verb: String,
    action: String,
    id: String,
    gvk: Value,
}

impl Operation {
    /// `(verb, operation)`; `response` names the component returned, `body` the request body's
    /// component (or [`PATCH_BODY`]).
    fn build(self, response: &str, query: &[&str], body: Option<&str>) -> (String, Value) {
        let mut operation = json!({
            "operationId": format!("{}PacerDevV1", self.id),
            "tags": ["pacerDev_v1"],
            "parameters": query.iter().map(|name| query_param(name)).collect::<Vec<_>>(),
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": schema_ref(response)}}}},
                "401": {"description": "Unauthorized"},
            },
            "x-kubernetes-action": self.action,
            "x-kubernetes-group-version-kind": self.gvk,
        });
        if self.verb == "post" {
            operation["responses"]["201"] = json!({"description": "Created", "content": {"application/json": {"schema": {"$ref": schema_ref(response)}}}});
        }
        match body {
            Some(PATCH_BODY) => {
                let schema = json!({"type": "object"});
                operation["requestBody"] = json!({"required": true, "content": {
                    "application/merge-patch+json": {"schema": schema},
                    "application/json-patch+json": {"schema": schema},
                    "application/apply-patch+yaml": {"schema": schema},
                }});
            }
            Some(component) => {
                operation["requestBody"] = json!({"required": true, "content": {
                    "application/json": {"schema": {"$ref": schema_ref(component)}},
                    "application/yaml": {"schema": {"$ref": schema_ref(component)}},
                }});
            }
            None => {}
        }
        (self.verb, operation)
    }
}

fn path_item(parameters: Vec<Value>, operations: Vec<(String, Value)>) -> Value {
    let mut item = Map::new();
    for (verb, operation) in operations {
        item.insert(verb, operation);
    }
    if !parameters.is_empty() {
        item.insert("parameters".to_owned(), Value::Array(parameters));
    }
    Value::Object(item)
}

fn path_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description,
           "schema": {"type": "string", "uniqueItems": true}})
}

fn query_param(name: &str) -> Value {
    let (description, schema) = match name {
        "dryRun" => (
            "When present, indicates that modifications should not be persisted. The only valid value is All.",
            json!({"type": "string", "uniqueItems": true}),
        ),
        "fieldManager" => (
            "A name associated with the actor or entity that is making these changes.",
            json!({"type": "string", "uniqueItems": true}),
        ),
        "fieldValidation" => (
            "How to treat unknown fields: Ignore, Warn or Strict (the default on this server).",
            json!({"type": "string", "uniqueItems": true}),
        ),
        _ => (
            "Force is going to \"force\" Apply requests.",
            json!({"type": "boolean", "uniqueItems": true}),
        ),
    };
    json!({"name": name, "in": "query", "description": description, "schema": schema})
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn refs(node: &Value, out: &mut Vec<String>) {
        match node {
            Value::Object(object) => {
                if let Some(Value::String(reference)) = object.get("$ref") {
                    out.push(reference.clone());
                }
                object.values().for_each(|child| refs(child, out));
            }
            Value::Array(items) => items.iter().for_each(|child| refs(child, out)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves_and_no_json_schema_2020_keywords_remain() {
        let document = document();
        let schemas = document["components"]["schemas"].as_object().unwrap();
        let mut found = Vec::new();
        refs(&document, &mut found);
        assert!(!found.is_empty());
        for reference in found {
            let name = reference.strip_prefix("#/components/schemas/").unwrap();
            assert!(schemas.contains_key(name), "dangling {reference}");
        }
        let text = serde_json::to_string(&document).unwrap();
        for keyword in ["\"$defs\"", "\"const\"", "\"$schema\""] {
            assert!(!text.contains(keyword), "{keyword} left in the document");
        }
        assert_eq!(
            schemas["dev.pacer.v1.App"]["x-kubernetes-group-version-kind"],
            json!([{"group": "pacer.dev", "version": "v1", "kind": "App"}])
        );
    }

    #[test]
    fn patch_operations_carry_gvk_and_field_validation() {
        let document = document();
        let patch =
            &document["paths"]["/apis/pacer.dev/v1/namespaces/{namespace}/apps/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({"group": "pacer.dev", "version": "v1", "kind": "App"})
        );
        let names: Vec<&str> = patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|param| param["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"fieldValidation") && names.contains(&"dryRun"));
        assert!(document["paths"]["/apis/pacer.dev/v1/nodes/{name}"]["patch"].is_object());
    }

    /// What kubectl's v2 parser (kube-openapi `proto`) rejects, which would break every
    /// kubectl ≤ 1.26 command: dangling references, arrays without one item schema, primitive
    /// types other than string/number/integer/boolean.
    fn check_parsable(node: &Value, definitions: &Map<String, Value>, path: &str) {
        let object = node.as_object().unwrap();
        if let Some(reference) = object.get("$ref") {
            let name = reference.as_str().unwrap().strip_prefix("#/definitions/");
            assert!(
                name.is_some_and(|name| definitions.contains_key(name)),
                "{path}: dangling {reference}"
            );
            return;
        }
        match object.get("type").map(|type_| type_.as_str().unwrap()) {
            Some("array") => {
                let items = object.get("items");
                assert!(items.is_some_and(Value::is_object), "{path}: array items");
                check_parsable(&object["items"], definitions, &format!("{path}[]"));
            }
            Some("object") | None => {
                for (name, property) in object
                    .get("properties")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                {
                    check_parsable(property, definitions, &format!("{path}.{name}"));
                }
                if let Some(additional) = object
                    .get("additionalProperties")
                    .filter(|additional| additional.is_object())
                {
                    check_parsable(additional, definitions, &format!("{path}.*"));
                }
            }
            Some(primitive) => assert!(
                ["string", "number", "integer", "boolean"].contains(&primitive),
                "{path}: type {primitive}"
            ),
        }
    }

    #[test]
    fn v2_describes_every_kind_for_kubectl_1_20() {
        let v2 = v2::document(&document());
        let definitions = v2["definitions"].as_object().unwrap();
        for (name, definition) in definitions {
            check_parsable(definition, definitions, name);
        }
        for kind in &KINDS {
            let definition = &definitions[&format!("{PREFIX}.{}", kind.kind)];
            assert_eq!(
                definition["x-kubernetes-group-version-kind"],
                json!([{"group": GROUP, "version": VERSION, "kind": kind.kind}]),
                "{}",
                kind.kind
            );
            assert!(
                definition["properties"]["metadata"]["$ref"].is_string(),
                "{}",
                kind.kind
            );
        }
        // kubectl's DryRunVerifier takes the first path whose PATCH carries the kind's GVK:
        // every such PATCH must take dryRun (and fieldValidation, for newer kubectl).
        let mut patches = 0;
        for (path, item) in v2["paths"].as_object().unwrap() {
            let Some(patch) = item.get("patch") else {
                continue;
            };
            patches += 1;
            assert!(patch["x-kubernetes-group-version-kind"]["kind"].is_string());
            let names: Vec<&str> = patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|parameter| parameter["name"].as_str().unwrap())
                .collect();
            assert!(
                names.contains(&"dryRun") && names.contains(&"fieldValidation"),
                "{path}: {names:?}"
            );
            assert_eq!(patch["parameters"][0]["in"], "body", "{path}");
        }
        assert!(patches >= KINDS.len());
        let encoded = gnostic::encode(&v2).unwrap();
        assert_eq!(
            encoded.definitions.unwrap().additional_properties.len(),
            definitions.len()
        );
        assert!(DOCUMENTS.v2_protobuf.is_ok());
    }

    #[test]
    fn v2_media_type_follows_the_accept_header() {
        let accept = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT, HeaderValue::from_static(value));
            wants_v2_protobuf(&headers)
        };
        assert!(accept(
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
        ));
        assert!(accept(
            "application/com.github.proto-openapi.spec.v2.v1.0+protobuf, application/json"
        ));
        assert!(!accept("application/json"));
        assert!(!accept("*/*"));
        assert!(!accept("text/html, application/*;q=0.8"));
        assert!(!wants_v2_protobuf(&HeaderMap::new()));
    }
}
