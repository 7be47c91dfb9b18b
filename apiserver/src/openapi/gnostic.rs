//! The protobuf form of `/openapi/v2`: the subset of gnostic's `openapi.v2` messages
//! (github.com/google/gnostic, `openapiv2/OpenAPIv2.proto`) that Pacer's Swagger 2.0 document
//! uses, declared by hand with `prost` (names and field numbers as in the `.proto`, so no
//! `protoc` step), and [`encode`], which turns the Swagger 2.0 JSON document into a
//! [`Document`] — kubectl fetches `/openapi/v2` only as this message.
//!
//! The conversion is strict: a keyword the messages below cannot carry is an error naming its
//! JSON path, so the JSON and protobuf forms never silently differ. Vendor extensions, defaults,
//! enums and examples travel as gnostic's `Any` with their JSON text in the `yaml` field (JSON is
//! YAML; kubectl parses them with a YAML decoder).

// The message and field names mirror OpenAPIv2.proto one to one; see it for their meaning.
#![allow(missing_docs)]

use serde_json::{Map, Value};

/// Why the Swagger 2.0 JSON document could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum GnosticError {
    /// A keyword that the protobuf form cannot carry.
    #[error("{path}: keyword {keyword:?} is not supported in the protobuf form")]
    Unsupported {
        /// JSON path of the object holding it.
        path: String,
        /// The keyword.
        keyword: String,
    },
    /// A value of the wrong JSON type.
    #[error("{path}: expected {expected}")]
    Shape {
        /// JSON path of the value.
        path: String,
        /// What was expected there.
        expected: &'static str,
    },
}

/// `openapi.v2.Document`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Document {
    #[prost(string, tag = "1")]
    pub swagger: String,
    #[prost(message, optional, tag = "2")]
    pub info: Option<Info>,
    #[prost(string, repeated, tag = "6")]
    pub consumes: Vec<String>,
    #[prost(string, repeated, tag = "7")]
    pub produces: Vec<String>,
    #[prost(message, optional, tag = "8")]
    pub paths: Option<Paths>,
    #[prost(message, optional, tag = "9")]
    pub definitions: Option<Definitions>,
    #[prost(message, repeated, tag = "16")]
    pub vendor_extension: Vec<NamedAny>,
}

/// `openapi.v2.Info`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Info {
    #[prost(string, tag = "1")]
    pub title: String,
    #[prost(string, tag = "2")]
    pub version: String,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(message, repeated, tag = "7")]
    pub vendor_extension: Vec<NamedAny>,
}

/// `openapi.v2.Any`: a value as YAML text (the `google.protobuf.Any` field 1 is not used).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Any {
    #[prost(string, tag = "2")]
    pub yaml: String,
}

/// `openapi.v2.NamedAny`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NamedAny {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<Any>,
}

/// `openapi.v2.Paths`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Paths {
    #[prost(message, repeated, tag = "1")]
    pub vendor_extension: Vec<NamedAny>,
    #[prost(message, repeated, tag = "2")]
    pub path: Vec<NamedPathItem>,
}

/// `openapi.v2.NamedPathItem`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NamedPathItem {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<PathItem>,
}

/// `openapi.v2.PathItem`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PathItem {
    #[prost(message, optional, tag = "2")]
    pub get: Option<Operation>,
    #[prost(message, optional, tag = "3")]
    pub put: Option<Operation>,
    #[prost(message, optional, tag = "4")]
    pub post: Option<Operation>,
    #[prost(message, optional, tag = "5")]
    pub delete: Option<Operation>,
    #[prost(message, optional, tag = "6")]
    pub options: Option<Operation>,
    #[prost(message, optional, tag = "7")]
    pub head: Option<Operation>,
    #[prost(message, optional, tag = "8")]
    pub patch: Option<Operation>,
    #[prost(message, repeated, tag = "9")]
    pub parameters: Vec<ParametersItem>,
    #[prost(message, repeated, tag = "10")]
    pub vendor_extension: Vec<NamedAny>,
}

/// `openapi.v2.Operation`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Operation {
    #[prost(string, repeated, tag = "1")]
    pub tags: Vec<String>,
    #[prost(string, tag = "2")]
    pub summary: String,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(string, tag = "5")]
    pub operation_id: String,
    #[prost(string, repeated, tag = "6")]
    pub produces: Vec<String>,
    #[prost(string, repeated, tag = "7")]
    pub consumes: Vec<String>,
    #[prost(message, repeated, tag = "8")]
    pub parameters: Vec<ParametersItem>,
    #[prost(message, optional, tag = "9")]
    pub responses: Option<Responses>,
    #[prost(string, repeated, tag = "10")]
    pub schemes: Vec<String>,
    #[prost(bool, tag = "11")]
    pub deprecated: bool,
    #[prost(message, repeated, tag = "13")]
    pub vendor_extension: Vec<NamedAny>,
}

/// `openapi.v2.ParametersItem` (only inline parameters, no `$ref`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ParametersItem {
    #[prost(oneof = "ParametersItemOneof", tags = "1")]
    pub oneof: Option<ParametersItemOneof>,
}

/// The `oneof` of `ParametersItem`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum ParametersItemOneof {
    #[prost(message, tag = "1")]
    Parameter(Parameter),
}

/// `openapi.v2.Parameter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Parameter {
    #[prost(oneof = "ParameterOneof", tags = "1, 2")]
    pub oneof: Option<ParameterOneof>,
}

/// The `oneof` of `Parameter`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum ParameterOneof {
    #[prost(message, boxed, tag = "1")]
    BodyParameter(Box<BodyParameter>),
    #[prost(message, tag = "2")]
    NonBodyParameter(NonBodyParameter),
}

/// `openapi.v2.BodyParameter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BodyParameter {
    #[prost(string, tag = "1")]
    pub description: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub r#in: String,
    #[prost(bool, tag = "4")]
    pub required: bool,
    #[prost(message, optional, tag = "5")]
    pub schema: Option<Schema>,
    #[prost(message, repeated, tag = "6")]
    pub vendor_extension: Vec<NamedAny>,
}

/// `openapi.v2.NonBodyParameter` (query and path parameters).
#[derive(Clone, PartialEq, prost::Message)]
pub struct NonBodyParameter {
    #[prost(oneof = "NonBodyParameterOneof", tags = "3, 4")]
    pub oneof: Option<NonBodyParameterOneof>,
}

/// The `oneof` of `NonBodyParameter`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum NonBodyParameterOneof {
    #[prost(message, tag = "3")]
    QueryParameterSubSchema(QueryParameterSubSchema),
    #[prost(message, tag = "4")]
    PathParameterSubSchema(PathParameterSubSchema),
}

/// `openapi.v2.QueryParameterSubSchema`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct QueryParameterSubSchema {
    #[prost(bool, tag = "1")]
    pub required: bool,
    #[prost(string, tag = "2")]
    pub r#in: String,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(string, tag = "4")]
    pub name: String,
    #[prost(string, tag = "6")]
    pub r#type: String,
    #[prost(string, tag = "7")]
    pub format: String,
    #[prost(bool, tag = "20")]
    pub unique_items: bool,
    #[prost(message, repeated, tag = "23")]
    pub vendor_extension: Vec<NamedAny>,
}

/// `openapi.v2.PathParameterSubSchema`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PathParameterSubSchema {
    #[prost(bool, tag = "1")]
    pub required: bool,
    #[prost(string, tag = "2")]
    pub r#in: String,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(string, tag = "4")]
    pub name: String,
    #[prost(string, tag = "5")]
    pub r#type: String,
    #[prost(string, tag = "6")]
    pub format: String,
    #[prost(bool, tag = "19")]
    pub unique_items: bool,
    #[prost(message, repeated, tag = "22")]
    pub vendor_extension: Vec<NamedAny>,
}

/// `openapi.v2.Responses`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Responses {
    #[prost(message, repeated, tag = "1")]
    pub response_code: Vec<NamedResponseValue>,
    #[prost(message, repeated, tag = "2")]
    pub vendor_extension: Vec<NamedAny>,
}

/// `openapi.v2.NamedResponseValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NamedResponseValue {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<ResponseValue>,
}

/// `openapi.v2.ResponseValue` (only inline responses, no `$ref`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseValue {
    #[prost(oneof = "ResponseValueOneof", tags = "1")]
    pub oneof: Option<ResponseValueOneof>,
}

/// The `oneof` of `ResponseValue`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum ResponseValueOneof {
    #[prost(message, tag = "1")]
    Response(Response),
}

/// `openapi.v2.Response`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Response {
    #[prost(string, tag = "1")]
    pub description: String,
    #[prost(message, optional, tag = "2")]
    pub schema: Option<SchemaItem>,
    #[prost(message, repeated, tag = "5")]
    pub vendor_extension: Vec<NamedAny>,
}

/// `openapi.v2.SchemaItem` (only `Schema`, no `FileSchema`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SchemaItem {
    #[prost(oneof = "SchemaItemOneof", tags = "1")]
    pub oneof: Option<SchemaItemOneof>,
}

/// The `oneof` of `SchemaItem`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum SchemaItemOneof {
    #[prost(message, tag = "1")]
    Schema(Schema),
}

/// `openapi.v2.Definitions`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Definitions {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedSchema>,
}

/// `openapi.v2.NamedSchema`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NamedSchema {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<Schema>,
}

/// `openapi.v2.Schema`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Schema {
    #[prost(string, tag = "1")]
    pub xref: String,
    #[prost(string, tag = "2")]
    pub format: String,
    #[prost(string, tag = "3")]
    pub title: String,
    #[prost(string, tag = "4")]
    pub description: String,
    #[prost(message, optional, tag = "5")]
    pub default: Option<Any>,
    #[prost(double, tag = "6")]
    pub multiple_of: f64,
    #[prost(double, tag = "7")]
    pub maximum: f64,
    #[prost(bool, tag = "8")]
    pub exclusive_maximum: bool,
    #[prost(double, tag = "9")]
    pub minimum: f64,
    #[prost(bool, tag = "10")]
    pub exclusive_minimum: bool,
    #[prost(int64, tag = "11")]
    pub max_length: i64,
    #[prost(int64, tag = "12")]
    pub min_length: i64,
    #[prost(string, tag = "13")]
    pub pattern: String,
    #[prost(int64, tag = "14")]
    pub max_items: i64,
    #[prost(int64, tag = "15")]
    pub min_items: i64,
    #[prost(bool, tag = "16")]
    pub unique_items: bool,
    #[prost(int64, tag = "17")]
    pub max_properties: i64,
    #[prost(int64, tag = "18")]
    pub min_properties: i64,
    #[prost(string, repeated, tag = "19")]
    pub required: Vec<String>,
    #[prost(message, repeated, tag = "20")]
    pub r#enum: Vec<Any>,
    #[prost(message, optional, tag = "21")]
    pub additional_properties: Option<AdditionalPropertiesItem>,
    #[prost(message, optional, tag = "22")]
    pub r#type: Option<TypeItem>,
    #[prost(message, optional, tag = "23")]
    pub items: Option<ItemsItem>,
    #[prost(message, repeated, tag = "24")]
    pub all_of: Vec<Schema>,
    #[prost(message, optional, tag = "25")]
    pub properties: Option<Properties>,
    #[prost(bool, tag = "27")]
    pub read_only: bool,
    #[prost(message, optional, tag = "30")]
    pub example: Option<Any>,
    #[prost(message, repeated, tag = "31")]
    pub vendor_extension: Vec<NamedAny>,
}

/// `openapi.v2.AdditionalPropertiesItem`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AdditionalPropertiesItem {
    #[prost(oneof = "AdditionalPropertiesOneof", tags = "1, 2")]
    pub oneof: Option<AdditionalPropertiesOneof>,
}

/// The `oneof` of `AdditionalPropertiesItem`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum AdditionalPropertiesOneof {
    #[prost(message, tag = "1")]
    Schema(Box<Schema>),
    #[prost(bool, tag = "2")]
    Boolean(bool),
}

/// `openapi.v2.TypeItem`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeItem {
    #[prost(string, repeated, tag = "1")]
    pub value: Vec<String>,
}

/// `openapi.v2.ItemsItem`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ItemsItem {
    #[prost(message, repeated, tag = "1")]
    pub schema: Vec<Schema>,
}

/// `openapi.v2.Properties`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Properties {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedSchema>,
}

/// Converts a Swagger 2.0 JSON document into gnostic's `Document`.
pub fn encode(document: &Value) -> Result<Document, GnosticError> {
    let mut fields = Fields::new(document, "$")?;
    let swagger = fields.string("swagger")?;
    let info = fields
        .take("info")
        .map(|info| info_of(info, "$.info"))
        .transpose()?;
    let consumes = fields.strings("consumes")?;
    let produces = fields.strings("produces")?;
    let paths = fields
        .take("paths")
        .map(|paths| {
            let mut items = Fields::new(paths, "$.paths")?;
            let vendor_extension = items.extensions()?;
            let path = items
                .rest()
                .map(|(name, item)| {
                    Ok(NamedPathItem {
                        name: name.clone(),
                        value: Some(path_item(item, &format!("$.paths[{name:?}]"))?),
                    })
                })
                .collect::<Result<_, GnosticError>>()?;
            Ok(Paths {
                vendor_extension,
                path,
            })
        })
        .transpose()?;
    let definitions = fields
        .take("definitions")
        .map(|definitions| {
            Ok(Definitions {
                additional_properties: named_schemas(definitions, "$.definitions")?,
            })
        })
        .transpose()?;
    let vendor_extension = fields.extensions()?;
    fields.finish()?;
    Ok(Document {
        swagger,
        info,
        consumes,
        produces,
        paths,
        definitions,
        vendor_extension,
    })
}

fn info_of(info: &Value, path: &str) -> Result<Info, GnosticError> {
    let mut fields = Fields::new(info, path)?;
    let info = Info {
        title: fields.string("title")?,
        version: fields.string("version")?,
        description: fields.string("description")?,
        vendor_extension: fields.extensions()?,
    };
    fields.finish()?;
    Ok(info)
}

fn path_item(item: &Value, path: &str) -> Result<PathItem, GnosticError> {
    let mut fields = Fields::new(item, path)?;
    let mut verb = |verb: &'static str| {
        fields
            .take(verb)
            .map(|value| operation(value, &format!("{path}.{verb}")))
            .transpose()
    };
    let get = verb("get")?;
    let put = verb("put")?;
    let post = verb("post")?;
    let delete = verb("delete")?;
    let options = verb("options")?;
    let head = verb("head")?;
    let patch = verb("patch")?;
    let parameters = parameters(fields.take("parameters"), &format!("{path}.parameters"))?;
    let vendor_extension = fields.extensions()?;
    fields.finish()?;
    Ok(PathItem {
        get,
        put,
        post,
        delete,
        options,
        head,
        patch,
        parameters,
        vendor_extension,
    })
}

fn operation(operation: &Value, path: &str) -> Result<Operation, GnosticError> {
    let mut fields = Fields::new(operation, path)?;
    let tags = fields.strings("tags")?;
    let summary = fields.string("summary")?;
    let description = fields.string("description")?;
    let operation_id = fields.string("operationId")?;
    let produces = fields.strings("produces")?;
    let consumes = fields.strings("consumes")?;
    let parameters = parameters(fields.take("parameters"), &format!("{path}.parameters"))?;
    let responses = fields
        .take("responses")
        .map(|responses| responses_of(responses, &format!("{path}.responses")))
        .transpose()?;
    let schemes = fields.strings("schemes")?;
    let deprecated = fields.boolean("deprecated")?;
    let vendor_extension = fields.extensions()?;
    fields.finish()?;
    Ok(Operation {
        tags,
        summary,
        description,
        operation_id,
        produces,
        consumes,
        parameters,
        responses,
        schemes,
        deprecated,
        vendor_extension,
    })
}

fn parameters(list: Option<&Value>, path: &str) -> Result<Vec<ParametersItem>, GnosticError> {
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    let items = list.as_array().ok_or_else(|| GnosticError::Shape {
        path: path.to_owned(),
        expected: "an array of parameters",
    })?;
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let parameter = parameter(item, &format!("{path}[{index}]"))?;
            Ok(ParametersItem {
                oneof: Some(ParametersItemOneof::Parameter(Parameter {
                    oneof: Some(parameter),
                })),
            })
        })
        .collect()
}

fn parameter(parameter: &Value, path: &str) -> Result<ParameterOneof, GnosticError> {
    let mut fields = Fields::new(parameter, path)?;
    let location = fields.string("in")?;
    let name = fields.string("name")?;
    let description = fields.string("description")?;
    let required = fields.boolean("required")?;
    let result = match location.as_str() {
        "body" => ParameterOneof::BodyParameter(Box::new(BodyParameter {
            description,
            name,
            r#in: location,
            required,
            schema: fields
                .take("schema")
                .map(|schema| schema_of(schema, &format!("{path}.schema")))
                .transpose()?,
            vendor_extension: fields.extensions()?,
        })),
        "query" => ParameterOneof::NonBodyParameter(NonBodyParameter {
            oneof: Some(NonBodyParameterOneof::QueryParameterSubSchema(
                QueryParameterSubSchema {
                    required,
                    r#in: location,
                    description,
                    name,
                    r#type: fields.string("type")?,
                    format: fields.string("format")?,
                    unique_items: fields.boolean("uniqueItems")?,
                    vendor_extension: fields.extensions()?,
                },
            )),
        }),
        "path" => ParameterOneof::NonBodyParameter(NonBodyParameter {
            oneof: Some(NonBodyParameterOneof::PathParameterSubSchema(
                PathParameterSubSchema {
                    required,
                    r#in: location,
                    description,
                    name,
                    r#type: fields.string("type")?,
                    format: fields.string("format")?,
                    unique_items: fields.boolean("uniqueItems")?,
                    vendor_extension: fields.extensions()?,
                },
            )),
        }),
        _ => {
            return Err(GnosticError::Shape {
                path: format!("{path}.in"),
                expected: "\"body\", \"query\" or \"path\"",
            });
        }
    };
    fields.finish()?;
    Ok(result)
}

fn responses_of(responses: &Value, path: &str) -> Result<Responses, GnosticError> {
    let mut fields = Fields::new(responses, path)?;
    let vendor_extension = fields.extensions()?;
    let response_code = fields
        .rest()
        .map(|(code, response)| {
            let path = format!("{path}[{code:?}]");
            let mut fields = Fields::new(response, &path)?;
            let value = Response {
                description: fields.string("description")?,
                schema: fields
                    .take("schema")
                    .map(|schema| {
                        Ok(SchemaItem {
                            oneof: Some(SchemaItemOneof::Schema(schema_of(
                                schema,
                                &format!("{path}.schema"),
                            )?)),
                        })
                    })
                    .transpose()?,
                vendor_extension: fields.extensions()?,
            };
            fields.finish()?;
            Ok(NamedResponseValue {
                name: code.clone(),
                value: Some(ResponseValue {
                    oneof: Some(ResponseValueOneof::Response(value)),
                }),
            })
        })
        .collect::<Result<_, GnosticError>>()?;
    Ok(Responses {
        response_code,
        vendor_extension,
    })
}

fn named_schemas(map: &Value, path: &str) -> Result<Vec<NamedSchema>, GnosticError> {
    let object = map.as_object().ok_or_else(|| GnosticError::Shape {
        path: path.to_owned(),
        expected: "an object of schemas",
    })?;
    object
        .iter()
        .map(|(name, schema)| {
            Ok(NamedSchema {
                name: name.clone(),
                value: Some(schema_of(schema, &format!("{path}[{name:?}]"))?),
            })
        })
        .collect()
}

fn schema_of(schema: &Value, path: &str) -> Result<Schema, GnosticError> {
    let mut fields = Fields::new(schema, path)?;
    let r#type = match fields.take("type") {
        None => None,
        Some(Value::String(single)) => Some(TypeItem {
            value: vec![single.clone()],
        }),
        Some(Value::Array(many)) => Some(TypeItem {
            value: many
                .iter()
                .map(|type_| type_.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or_else(|| GnosticError::Shape {
                    path: format!("{path}.type"),
                    expected: "a string or an array of strings",
                })?,
        }),
        Some(_) => {
            return Err(GnosticError::Shape {
                path: format!("{path}.type"),
                expected: "a string or an array of strings",
            });
        }
    };
    let additional_properties = match fields.take("additionalProperties") {
        None => None,
        Some(Value::Bool(allowed)) => Some(AdditionalPropertiesOneof::Boolean(*allowed)),
        Some(schema) => Some(AdditionalPropertiesOneof::Schema(Box::new(schema_of(
            schema,
            &format!("{path}.additionalProperties"),
        )?))),
    }
    .map(|oneof| AdditionalPropertiesItem { oneof: Some(oneof) });
    let items = match fields.take("items") {
        None => None,
        Some(Value::Array(many)) => Some(ItemsItem {
            schema: many
                .iter()
                .enumerate()
                .map(|(index, item)| schema_of(item, &format!("{path}.items[{index}]")))
                .collect::<Result<_, _>>()?,
        }),
        Some(single) => Some(ItemsItem {
            schema: vec![schema_of(single, &format!("{path}.items"))?],
        }),
    };
    let all_of = match fields.take("allOf") {
        None => Vec::new(),
        Some(Value::Array(many)) => many
            .iter()
            .enumerate()
            .map(|(index, item)| schema_of(item, &format!("{path}.allOf[{index}]")))
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(GnosticError::Shape {
                path: format!("{path}.allOf"),
                expected: "an array of schemas",
            });
        }
    };
    let properties = fields
        .take("properties")
        .map(|properties| {
            Ok(Properties {
                additional_properties: named_schemas(properties, &format!("{path}.properties"))?,
            })
        })
        .transpose()?;
    let r#enum = match fields.take("enum") {
        None => Vec::new(),
        Some(Value::Array(values)) => values.iter().map(any).collect(),
        Some(_) => {
            return Err(GnosticError::Shape {
                path: format!("{path}.enum"),
                expected: "an array",
            });
        }
    };
    let schema = Schema {
        xref: fields.string("$ref")?,
        format: fields.string("format")?,
        title: fields.string("title")?,
        description: fields.string("description")?,
        default: fields.take("default").map(any),
        multiple_of: fields.number("multipleOf")?,
        maximum: fields.number("maximum")?,
        exclusive_maximum: fields.boolean("exclusiveMaximum")?,
        minimum: fields.number("minimum")?,
        exclusive_minimum: fields.boolean("exclusiveMinimum")?,
        max_length: fields.integer("maxLength")?,
        min_length: fields.integer("minLength")?,
        pattern: fields.string("pattern")?,
        max_items: fields.integer("maxItems")?,
        min_items: fields.integer("minItems")?,
        unique_items: fields.boolean("uniqueItems")?,
        max_properties: fields.integer("maxProperties")?,
        min_properties: fields.integer("minProperties")?,
        required: fields.strings("required")?,
        r#enum,
        additional_properties,
        r#type,
        items,
        all_of,
        properties,
        read_only: fields.boolean("readOnly")?,
        example: fields.take("example").map(any),
        vendor_extension: fields.extensions()?,
    };
    fields.finish()?;
    Ok(schema)
}

/// A value as gnostic's `Any`: its JSON text, which is also YAML.
fn any(value: &Value) -> Any {
    Any {
        yaml: value.to_string(),
    }
}

/// The keys of one JSON object being converted: each conversion takes the keys it knows, and
/// [`Fields::finish`] fails on any left over.
struct Fields<'a> {
    path: &'a str,
    object: &'a Map<String, Value>,
    taken: Vec<&'a str>,
}

impl<'a> Fields<'a> {
    fn new(value: &'a Value, path: &'a str) -> Result<Self, GnosticError> {
        let object = value.as_object().ok_or_else(|| GnosticError::Shape {
            path: path.to_owned(),
            expected: "an object",
        })?;
        Ok(Self {
            path,
            object,
            taken: Vec::new(),
        })
    }

    fn take(&mut self, key: &'a str) -> Option<&'a Value> {
        self.taken.push(key);
        self.object.get(key)
    }

    fn shape(&self, key: &str, expected: &'static str) -> GnosticError {
        GnosticError::Shape {
            path: format!("{}.{key}", self.path),
            expected,
        }
    }

    fn string(&mut self, key: &'a str) -> Result<String, GnosticError> {
        match self.take(key) {
            None => Ok(String::new()),
            Some(Value::String(text)) => Ok(text.clone()),
            Some(_) => Err(self.shape(key, "a string")),
        }
    }

    fn strings(&mut self, key: &'a str) -> Result<Vec<String>, GnosticError> {
        match self.take(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or_else(|| self.shape(key, "an array of strings")),
            Some(_) => Err(self.shape(key, "an array of strings")),
        }
    }

    fn boolean(&mut self, key: &'a str) -> Result<bool, GnosticError> {
        match self.take(key) {
            None => Ok(false),
            Some(Value::Bool(flag)) => Ok(*flag),
            Some(_) => Err(self.shape(key, "a boolean")),
        }
    }

    fn number(&mut self, key: &'a str) -> Result<f64, GnosticError> {
        match self.take(key) {
            None => Ok(0.0),
            Some(value) => value.as_f64().ok_or_else(|| self.shape(key, "a number")),
        }
    }

    fn integer(&mut self, key: &'a str) -> Result<i64, GnosticError> {
        match self.take(key) {
            None => Ok(0),
            Some(value) => value.as_i64().ok_or_else(|| self.shape(key, "an integer")),
        }
    }

    /// The `x-…` vendor extensions, in key order.
    fn extensions(&mut self) -> Result<Vec<NamedAny>, GnosticError> {
        let object = self.object;
        let mut extensions = Vec::new();
        for (key, value) in object.iter().filter(|(key, _)| key.starts_with("x-")) {
            self.taken.push(key.as_str());
            extensions.push(NamedAny {
                name: key.clone(),
                value: Some(any(value)),
            });
        }
        Ok(extensions)
    }

    /// Every key not taken yet: the entries of a map-like object (paths, responses).
    fn rest(&mut self) -> impl Iterator<Item = (&'a String, &'a Value)> + use<'a> {
        let object = self.object;
        let taken = std::mem::take(&mut self.taken);
        let rest: Vec<_> = object
            .iter()
            .filter(|(key, _)| !taken.contains(&key.as_str()))
            .collect();
        self.taken = object.keys().map(String::as_str).collect();
        rest.into_iter()
    }

    /// Fails on the first key no conversion took.
    fn finish(self) -> Result<(), GnosticError> {
        match self
            .object
            .keys()
            .find(|key| !self.taken.contains(&key.as_str()))
        {
            Some(keyword) => Err(GnosticError::Unsupported {
                path: self.path.to_owned(),
                keyword: keyword.clone(),
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use prost::Message as _;
    use serde_json::json;

    use super::*;

    #[test]
    fn converts_and_round_trips_through_protobuf() {
        let document = json!({
            "swagger": "2.0",
            "info": {"title": "t", "version": "v1"},
            "paths": {"/a/{name}": {
                "parameters": [{"name": "name", "in": "path", "required": true, "type": "string"}],
                "patch": {
                    "operationId": "patchA",
                    "consumes": ["application/merge-patch+json"],
                    "parameters": [
                        {"name": "body", "in": "body", "required": true, "schema": {"type": "object"}},
                        {"name": "dryRun", "in": "query", "type": "string", "uniqueItems": true},
                    ],
                    "responses": {"200": {"description": "OK", "schema": {"$ref": "#/definitions/A"}}},
                    "x-kubernetes-group-version-kind": {"group": "g", "version": "v1", "kind": "A"},
                },
            }},
            "definitions": {"A": {
                "type": "object",
                "required": ["spec"],
                "properties": {
                    "spec": {"type": "object", "additionalProperties": {"type": "integer", "format": "int32"}},
                    "tags": {"type": "array", "items": {"type": "string", "enum": ["x", "y"]}},
                },
                "x-kubernetes-group-version-kind": [{"group": "g", "version": "v1", "kind": "A"}],
            }},
        });
        let encoded = encode(&document).unwrap();
        let decoded = Document::decode(encoded.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded, encoded);
        let path = &decoded.paths.unwrap().path[0];
        assert_eq!(path.name, "/a/{name}");
        let patch = path.value.as_ref().unwrap().patch.as_ref().unwrap();
        assert_eq!(
            patch.vendor_extension[0].value.as_ref().unwrap().yaml,
            r#"{"group":"g","kind":"A","version":"v1"}"#
        );
        let Some(ParametersItemOneof::Parameter(Parameter {
            oneof: Some(ParameterOneof::NonBodyParameter(query)),
        })) = &patch.parameters[1].oneof
        else {
            panic!("not a non-body parameter: {:?}", patch.parameters[1]);
        };
        assert!(matches!(
            &query.oneof,
            Some(NonBodyParameterOneof::QueryParameterSubSchema(sub)) if sub.name == "dryRun"
        ));
        let definition = &decoded.definitions.unwrap().additional_properties[0];
        let schema = definition.value.as_ref().unwrap();
        assert_eq!(schema.required, ["spec"]);
        let properties = &schema.properties.as_ref().unwrap().additional_properties;
        assert_eq!(properties[1].name, "tags");
        let items = &properties[1]
            .value
            .as_ref()
            .unwrap()
            .items
            .as_ref()
            .unwrap();
        assert_eq!(items.schema[0].r#enum[0].yaml, "\"x\"");
    }

    #[test]
    fn unknown_keywords_and_wrong_shapes_are_errors_naming_the_path() {
        let error = encode(&json!({"definitions": {"A": {"oneOf": []}}})).unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"$.definitions["A"]: keyword "oneOf" is not supported in the protobuf form"#
        );
        let error = encode(&json!({"definitions": {"A": {"required": "x"}}})).unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"$.definitions["A"].required: expected an array of strings"#
        );
    }
}
