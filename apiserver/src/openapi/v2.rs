//! The Swagger 2.0 document of `/openapi/v2`, derived from the OpenAPI 3.0 document of
//! `/openapi/v3` (itself generated from the schemars schemas), so both always describe the
//! same kinds, fields and operations. kubectl ≤ 1.26 reads it (as protobuf, see `gnostic`):
//! client-side validation and `explain` look definitions up by their
//! `x-kubernetes-group-version-kind`, and `diff`/`--dry-run=server` require a `dryRun` query
//! parameter on the kind's PATCH operation.
//!
//! The conversion is what Kubernetes' own v2 output looks like and what kubectl's v2 parser
//! (kube-openapi `proto`) accepts: references point at `#/definitions/…`; a reference wrapped
//! in a one-element `allOf` becomes a plain `$ref` beside its description; `anyOf`/`oneOf` of
//! constants become one `enum`, and other unions are left untyped (any value is valid, as for
//! an `x-kubernetes-int-or-string`); request bodies become `in: body` parameters, and media
//! types move to `consumes`/`produces`.

use serde_json::{Map, Value, json};

const V3_REF: &str = "#/components/schemas/";
const V2_REF: &str = "#/definitions/";

/// Swagger 2.0 schema keywords copied as they are (after their subschemas are converted).
const PLAIN_KEYWORDS: [&str; 20] = [
    "description",
    "title",
    "format",
    "default",
    "enum",
    "example",
    "required",
    "minimum",
    "maximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
    "readOnly",
    "discriminator",
];

/// The Swagger 2.0 document equivalent to the OpenAPI 3.0 document `v3`.
pub fn document(v3: &Value) -> Value {
    let definitions: Map<String, Value> = v3
        .pointer("/components/schemas")
        .and_then(Value::as_object)
        .map(|schemas| {
            schemas
                .iter()
                .map(|(name, node)| (name.clone(), schema(node)))
                .collect()
        })
        .unwrap_or_default();
    let paths: Map<String, Value> = v3
        .get("paths")
        .and_then(Value::as_object)
        .map(|paths| {
            paths
                .iter()
                .map(|(path, item)| (path.clone(), path_item(item)))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "swagger": "2.0",
        "info": v3.get("info").cloned().unwrap_or_else(|| json!({})),
        "paths": paths,
        "definitions": definitions,
    })
}

/// One schema (recursively).
fn schema(node: &Value) -> Value {
    let Value::Object(object) = node else {
        // `true` (anything) as a schema: no constraint.
        return json!({});
    };
    let mut out = Map::new();
    for (key, value) in object {
        match key.as_str() {
            "$ref" => {
                out.insert(key.clone(), reference(value));
            }
            "allOf" => match value.as_array().map(Vec::as_slice) {
                Some([single])
                    if single.as_object().is_some_and(|only| {
                        only.len() == 1 && only.get("$ref").is_some_and(Value::is_string)
                    }) =>
                {
                    out.insert("$ref".to_owned(), reference(&single["$ref"]));
                }
                Some(many) => {
                    out.insert(key.clone(), Value::Array(many.iter().map(schema).collect()));
                }
                None => {}
            },
            "anyOf" | "oneOf" => {
                if let Some((values, type_)) = constants(value) {
                    out.insert("enum".to_owned(), Value::Array(values));
                    if let Some(type_) = type_ {
                        out.entry("type").or_insert(type_);
                    }
                }
            }
            "type" => {
                if let Some(type_) = single_type(value) {
                    out.insert(key.clone(), type_);
                }
            }
            "properties" => {
                let properties = value
                    .as_object()
                    .map(|properties| {
                        properties
                            .iter()
                            .map(|(name, property)| (name.clone(), schema(property)))
                            .collect::<Map<_, _>>()
                    })
                    .unwrap_or_default();
                out.insert(key.clone(), Value::Object(properties));
            }
            "additionalProperties" => {
                let converted = match value {
                    Value::Bool(_) => value.clone(),
                    other => schema(other),
                };
                out.insert(key.clone(), converted);
            }
            "items" => {
                out.insert(key.clone(), schema(value));
            }
            "exclusiveMinimum" | "exclusiveMaximum" => {
                // JSON Schema 2020-12 gives the bound itself; Swagger 2.0 a flag on the bound.
                let bound = if key == "exclusiveMinimum" {
                    "minimum"
                } else {
                    "maximum"
                };
                match value {
                    Value::Number(_) => {
                        out.insert(bound.to_owned(), value.clone());
                        out.insert(key.clone(), Value::Bool(true));
                    }
                    Value::Bool(_) => {
                        out.insert(key.clone(), value.clone());
                    }
                    _ => {}
                }
            }
            plain if PLAIN_KEYWORDS.contains(&plain) || plain.starts_with("x-") => {
                out.insert(key.clone(), value.clone());
            }
            // JSON Schema / OpenAPI 3 only (`nullable`, `examples`, `writeOnly`, …).
            _ => {}
        }
    }
    Value::Object(out)
}

/// A `#/components/schemas/X` reference as `#/definitions/X`.
fn reference(value: &Value) -> Value {
    match value.as_str() {
        Some(target) => Value::String(match target.strip_prefix(V3_REF) {
            Some(name) => format!("{V2_REF}{name}"),
            None => target.to_owned(),
        }),
        None => value.clone(),
    }
}

/// The values and common type of a union whose every alternative is an `enum` (schemars
/// writes documented unit variants as `oneOf` of one-value enums); `None` for any other union.
fn constants(alternatives: &Value) -> Option<(Vec<Value>, Option<Value>)> {
    let alternatives = alternatives.as_array()?;
    let mut values = Vec::new();
    let mut types = Vec::new();
    for alternative in alternatives {
        let object = alternative.as_object()?;
        if object.contains_key("$ref") || object.contains_key("properties") {
            return None;
        }
        values.extend(object.get("enum")?.as_array()?.iter().cloned());
        types.push(object.get("type").and_then(single_type));
    }
    let first = types.first().cloned().flatten();
    let common = types.iter().all(|type_| *type_ == first).then_some(first);
    Some((values, common.flatten()))
}

/// A `type` as one Swagger type: `null` alternatives dropped; `None` when several remain
/// (the schema then accepts any value).
fn single_type(value: &Value) -> Option<Value> {
    match value {
        Value::String(type_) if type_ != "null" => Some(value.clone()),
        Value::Array(types) => {
            let mut kept = types.iter().filter(|type_| *type_ != "null");
            match (kept.next(), kept.next()) {
                (Some(only), None) => Some(only.clone()),
                _ => None,
            }
        }
        _ => None,
    }
}

/// One path: its path parameters and operations.
fn path_item(item: &Value) -> Value {
    let mut out = Map::new();
    for (key, value) in item.as_object().into_iter().flatten() {
        match key.as_str() {
            "parameters" => {
                out.insert(key.clone(), parameters(value));
            }
            "get" | "put" | "post" | "delete" | "options" | "head" | "patch" => {
                out.insert(key.clone(), operation(value));
            }
            extension if extension.starts_with("x-") => {
                out.insert(key.clone(), value.clone());
            }
            _ => {}
        }
    }
    Value::Object(out)
}

fn parameters(list: &Value) -> Value {
    Value::Array(
        list.as_array()
            .into_iter()
            .flatten()
            .map(parameter)
            .collect(),
    )
}

/// A query or path parameter: OpenAPI 3 nests its type under `schema`, Swagger 2.0 does not.
fn parameter(parameter: &Value) -> Value {
    let mut out = Map::new();
    for (key, value) in parameter.as_object().into_iter().flatten() {
        match key.as_str() {
            "name" | "in" | "required" | "description" => {
                out.insert(key.clone(), value.clone());
            }
            "schema" => {
                for (keyword, value) in value.as_object().into_iter().flatten() {
                    if matches!(
                        keyword.as_str(),
                        "type" | "format" | "uniqueItems" | "enum" | "default"
                    ) {
                        out.insert(keyword.clone(), value.clone());
                    }
                }
            }
            extension if extension.starts_with("x-") => {
                out.insert(key.clone(), value.clone());
            }
            _ => {}
        }
    }
    Value::Object(out)
}

/// An operation: the request body becomes an `in: body` parameter, media types move to
/// `consumes`/`produces`, and each response keeps its JSON schema.
fn operation(operation: &Value) -> Value {
    let mut out = Map::new();
    let mut produces: Vec<Value> = Vec::new();
    for (key, value) in operation.as_object().into_iter().flatten() {
        match key.as_str() {
            "operationId" | "tags" | "summary" | "description" | "deprecated" => {
                out.insert(key.clone(), value.clone());
            }
            "parameters" => {
                let mut list = match parameters(value) {
                    Value::Array(list) => list,
                    _ => Vec::new(),
                };
                if let Some(Value::Array(existing)) = out.remove("parameters") {
                    list.splice(0..0, existing);
                }
                out.insert(key.clone(), Value::Array(list));
            }
            "requestBody" => {
                let content = value.get("content").and_then(Value::as_object);
                let consumes: Vec<Value> = content
                    .into_iter()
                    .flatten()
                    .map(|(media, _)| Value::String(media.clone()))
                    .collect();
                let body_schema = content
                    .and_then(|content| {
                        content
                            .get("application/json")
                            .or_else(|| content.values().next())
                    })
                    .and_then(|media| media.get("schema"))
                    .map_or_else(|| json!({"type": "object"}), schema);
                let body = json!({
                    "name": "body",
                    "in": "body",
                    "required": value.get("required").cloned().unwrap_or(Value::Bool(false)),
                    "schema": body_schema,
                });
                match out.get_mut("parameters") {
                    Some(Value::Array(list)) => list.insert(0, body),
                    _ => {
                        out.insert("parameters".to_owned(), Value::Array(vec![body]));
                    }
                }
                out.insert("consumes".to_owned(), Value::Array(consumes));
            }
            "responses" => {
                let mut responses = Map::new();
                for (code, response) in value.as_object().into_iter().flatten() {
                    let mut converted = Map::new();
                    converted.insert(
                        "description".to_owned(),
                        response
                            .get("description")
                            .cloned()
                            .unwrap_or_else(|| Value::String(String::new())),
                    );
                    let content = response.get("content").and_then(Value::as_object);
                    for media in content.into_iter().flatten().map(|(media, _)| media) {
                        let media = Value::String(media.clone());
                        if !produces.contains(&media) {
                            produces.push(media);
                        }
                    }
                    if let Some(body) = content
                        .and_then(|content| {
                            content
                                .get("application/json")
                                .or_else(|| content.values().next())
                        })
                        .and_then(|media| media.get("schema"))
                    {
                        converted.insert("schema".to_owned(), schema(body));
                    }
                    responses.insert(code.clone(), Value::Object(converted));
                }
                out.insert(key.clone(), Value::Object(responses));
            }
            extension if extension.starts_with("x-") => {
                out.insert(key.clone(), value.clone());
            }
            _ => {}
        }
    }
    if !produces.is_empty() {
        out.insert("produces".to_owned(), Value::Array(produces));
    }
    Value::Object(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn schemas_become_swagger_2() {
        let v3 = json!({"components": {"schemas": {"A": {
            "type": "object",
            "properties": {
                "spec": {"allOf": [{"$ref": "#/components/schemas/B"}], "description": "The spec."},
                "phase": {"oneOf": [
                    {"type": "string", "enum": ["Up"], "description": "up"},
                    {"type": "string", "enum": ["Down"]},
                ]},
                "env": {"anyOf": [{"type": "string"}, {"$ref": "#/components/schemas/B"}], "description": "union"},
                "count": {"type": ["integer", "null"], "exclusiveMinimum": 0, "nullable": true},
                "tags": {"type": "array", "items": {"$ref": "#/components/schemas/B"}},
            },
        }}}, "paths": {}});
        let a = &document(&v3)["definitions"]["A"]["properties"];
        assert_eq!(
            a["spec"],
            json!({"$ref": "#/definitions/B", "description": "The spec."})
        );
        assert_eq!(
            a["phase"],
            json!({"type": "string", "enum": ["Up", "Down"]})
        );
        assert_eq!(a["env"], json!({"description": "union"}));
        assert_eq!(
            a["count"],
            json!({"type": "integer", "minimum": 0, "exclusiveMinimum": true})
        );
        assert_eq!(a["tags"]["items"], json!({"$ref": "#/definitions/B"}));
    }

    #[test]
    fn operations_get_body_parameters_and_media_types() {
        let v3 = json!({"paths": {"/a/{name}": {
            "parameters": [{"name": "name", "in": "path", "required": true,
                            "schema": {"type": "string", "uniqueItems": true}}],
            "put": {
                "operationId": "replaceA",
                "parameters": [{"name": "dryRun", "in": "query", "description": "d",
                                "schema": {"type": "string", "uniqueItems": true}}],
                "requestBody": {"required": true, "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/A"}},
                    "application/yaml": {"schema": {"$ref": "#/components/schemas/A"}},
                }},
                "responses": {"200": {"description": "OK", "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/A"}}}}},
                "x-kubernetes-action": "put",
            },
        }}});
        let item = &document(&v3)["paths"]["/a/{name}"];
        assert_eq!(
            item["parameters"],
            json!([{"name": "name", "in": "path", "required": true, "type": "string", "uniqueItems": true}])
        );
        assert_eq!(
            item["put"],
            json!({
                "operationId": "replaceA",
                "parameters": [
                    {"name": "body", "in": "body", "required": true, "schema": {"$ref": "#/definitions/A"}},
                    {"name": "dryRun", "in": "query", "description": "d", "type": "string", "uniqueItems": true},
                ],
                "consumes": ["application/json", "application/yaml"],
                "produces": ["application/json"],
                "responses": {"200": {"description": "OK", "schema": {"$ref": "#/definitions/A"}}},
                "x-kubernetes-action": "put",
            })
        );
    }
}
