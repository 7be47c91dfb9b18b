//! Reading manifests: files, directories (their `*.yaml`, `*.yml` and `*.json` files, sorted)
//! and standard input (`-`), as multi-document YAML or (concatenated) JSON; `List` kinds are
//! expanded into their items. Every object is checked here, before anything is sent: it must
//! be an object of a known `pacer.dev/v1` kind with a name, and decode strictly (no unknown
//! fields). Errors name the file and, for syntax errors, the line and column; for a bad object,
//! its document index.
//!
//! YAML is read with YAML 1.2's booleans: only `true`/`false` are booleans, so `yes`, `on` or
//! `y` stay strings (kubectl's YAML 1.1 reading would turn `DEBUG: yes` into a boolean that a
//! string field then rejects).

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;

use pacer_client::ResourceInfo;
use pacer_schemas::decode::{DecodeError, decode_value_strict};
use pacer_schemas::{App, Deployment, Event, Instance, Node, Offer};
use serde_json::Value;

/// One object read from a manifest.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Manifest {
    /// Where it came from: a path, or `STDIN`.
    pub(crate) source: String,
    /// 1-based index of its document in the source (empty documents are not counted).
    pub(crate) document: usize,
    /// 1-based index within a `List` document.
    pub(crate) item: Option<usize>,
    /// The line its document starts on, when known.
    pub(crate) line: Option<u64>,
    /// Its kind.
    pub(crate) resource: ResourceInfo,
    /// The object as written.
    pub(crate) object: Value,
}

/// Why manifests could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ManifestError {
    /// A file, directory or standard input could not be read.
    #[error("read {path}: {source}")]
    Read {
        /// What was read.
        path: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// YAML that does not parse.
    #[error("{path}:{line}:{column}: invalid YAML: {message}")]
    Yaml {
        /// The file.
        path: String,
        /// 1-based line.
        line: u64,
        /// 1-based column.
        column: u64,
        /// What the parser found.
        message: String,
    },
    /// JSON that does not parse.
    #[error("{path}:{line}:{column}: invalid JSON: {message}")]
    Json {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser found.
        message: String,
    },
    /// A document that parses but is not a valid object.
    #[error("{}: {message}", locate(.path, *.document, *.item, *.line))]
    Object {
        /// The file.
        path: String,
        /// 1-based document index.
        document: usize,
        /// 1-based index within a `List`.
        item: Option<usize>,
        /// Line where the document starts.
        line: Option<u64>,
        /// What is wrong.
        message: String,
    },
}

impl Manifest {
    /// `metadata.name`.
    pub(crate) fn name(&self) -> &str {
        self.object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// `metadata.namespace`, if written.
    pub(crate) fn namespace(&self) -> Option<&str> {
        self.object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|namespace| !namespace.is_empty())
    }

    /// `metadata.labels`.
    pub(crate) fn labels(&self) -> BTreeMap<String, String> {
        labels_of(&self.object)
    }

    /// `app.pacer.dev/web`.
    pub(crate) fn display_name(&self) -> String {
        format!("{}/{}", self.resource.type_name(), self.name())
    }

    /// `"web.yaml"` or `"shop.yaml" (document 2)`, for messages.
    pub(crate) fn origin(&self) -> String {
        let mut origin = format!("{:?}", self.source);
        if self.document > 1 || self.item.is_some() {
            origin.push_str(&format!(" (document {}", self.document));
            if let Some(item) = self.item {
                origin.push_str(&format!(", item {item}"));
            }
            origin.push(')');
        }
        origin
    }
}

/// `metadata.labels` of any object.
pub(crate) fn labels_of(object: &Value) -> BTreeMap<String, String> {
    object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads every path in order (`-` is standard input; a directory contributes its manifest
/// files sorted by name).
pub(crate) fn load(paths: &[String]) -> Result<Vec<Manifest>, ManifestError> {
    let mut manifests = Vec::new();
    for path in paths {
        if path == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|source| ManifestError::Read {
                    path: "STDIN".to_owned(),
                    source,
                })?;
            manifests.extend(parse("STDIN", &text, Format::sniff(&text))?);
            continue;
        }
        let read_error = |source| ManifestError::Read {
            path: path.clone(),
            source,
        };
        let metadata = std::fs::metadata(path).map_err(read_error)?;
        let files = if metadata.is_dir() {
            manifest_files(Path::new(path)).map_err(read_error)?
        } else {
            vec![path.clone()]
        };
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|source| ManifestError::Read {
                path: file.clone(),
                source,
            })?;
            let format = if file.ends_with(".json") {
                Format::Json
            } else if file.ends_with(".yaml") || file.ends_with(".yml") {
                Format::Yaml
            } else {
                Format::sniff(&text)
            };
            manifests.extend(parse(&file, &text, format)?);
        }
    }
    Ok(manifests)
}

/// How a source is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// One or more YAML documents.
    Yaml,
    /// One or more concatenated JSON values.
    Json,
}

impl Format {
    /// JSON when the text starts with `{` or `[`, YAML otherwise.
    pub(crate) fn sniff(text: &str) -> Self {
        match text.trim_start().chars().next() {
            Some('{' | '[') => Self::Json,
            _ => Self::Yaml,
        }
    }
}

/// Parses one source into checked objects.
pub(crate) fn parse(
    source: &str,
    text: &str,
    format: Format,
) -> Result<Vec<Manifest>, ManifestError> {
    let documents = match format {
        Format::Yaml => parse_yaml(source, text)?,
        Format::Json => parse_json(source, text)?,
    };
    let mut manifests = Vec::new();
    let mut index = 0;
    for (line, document) in documents {
        if document.is_null() {
            continue;
        }
        index += 1;
        let fail = |item: Option<usize>, message: String| ManifestError::Object {
            path: source.to_owned(),
            document: index,
            item,
            line,
            message,
        };
        if is_list(&document) {
            let items = document
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (position, item) in items.into_iter().enumerate() {
                let resource = check(&item).map_err(|message| fail(Some(position + 1), message))?;
                manifests.push(Manifest {
                    source: source.to_owned(),
                    document: index,
                    item: Some(position + 1),
                    line,
                    resource,
                    object: item,
                });
            }
            continue;
        }
        let resource = check(&document).map_err(|message| fail(None, message))?;
        manifests.push(Manifest {
            source: source.to_owned(),
            document: index,
            item: None,
            line,
            resource,
            object: document,
        });
    }
    Ok(manifests)
}

/// The message of a serde-saphyr error without its location prefix and source snippet.
pub(crate) fn yaml_message(error: &serde_saphyr::Error) -> String {
    let text = error.without_snippet().to_string();
    let first = text.lines().next().unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    // Either "line 4 column 5: message" or "message at line 4, column 5".
    let message = match first
        .strip_prefix("line ")
        .and_then(|rest| rest.split_once(": "))
    {
        Some((position, message)) if position.contains("column") => message,
        _ => first,
    };
    match message.rfind(" at line ") {
        Some(position) if message[position..].contains("column") => message[..position].to_owned(),
        _ => message.to_owned(),
    }
}

fn parse_yaml(source: &str, text: &str) -> Result<Vec<(Option<u64>, Value)>, ManifestError> {
    let options = serde_saphyr::options! { strict_booleans: true };
    let documents: Vec<serde_saphyr::Spanned<Value>> =
        serde_saphyr::from_multiple_with_options(text, options).map_err(|error| {
            let (line, column) = error
                .location()
                .map_or((0, 0), |location| (location.line(), location.column()));
            ManifestError::Yaml {
                path: source.to_owned(),
                line,
                column,
                message: yaml_message(&error),
            }
        })?;
    Ok(documents
        .into_iter()
        .map(|document| {
            let line = document.referenced.line();
            ((line > 0).then_some(line), document.value)
        })
        .collect())
}

fn parse_json(source: &str, text: &str) -> Result<Vec<(Option<u64>, Value)>, ManifestError> {
    let mut documents = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    loop {
        let offset = stream.byte_offset();
        let start = offset
            + text[offset..]
                .find(|character: char| !character.is_whitespace())
                .unwrap_or(0);
        match stream.next() {
            None => break,
            Some(Ok(value)) => {
                let line = text[..start].matches('\n').count() as u64 + 1;
                documents.push((Some(line), value));
            }
            Some(Err(error)) => {
                return Err(ManifestError::Json {
                    path: source.to_owned(),
                    line: error.line(),
                    column: error.column(),
                    message: strip_json_position(&error.to_string()),
                });
            }
        }
    }
    Ok(documents)
}

fn strip_json_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(position) => message[..position].to_owned(),
        None => message.to_owned(),
    }
}

fn is_list(document: &Value) -> bool {
    let kind = document.get("kind").and_then(Value::as_str).unwrap_or("");
    kind.ends_with("List") && document.get("items").is_some_and(Value::is_array)
}

/// Checks one object: known apiVersion and kind, a name, strict decoding.
fn check(object: &Value) -> Result<ResourceInfo, String> {
    let Some(map) = object.as_object() else {
        return Err(format!(
            "expected an object with apiVersion, kind and metadata, found {}",
            type_name(object)
        ));
    };
    let api_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
    if api_version.is_empty() || kind.is_empty() {
        return Err(
            "apiVersion and kind are required (e.g. apiVersion: pacer.dev/v1, kind: App)"
                .to_owned(),
        );
    }
    let Some(resource) = ResourceInfo::for_kind(api_version, kind) else {
        if let Some(known) = ResourceInfo::resolve(kind).filter(|known| known.kind == kind) {
            return Err(format!(
                "{kind} has apiVersion {api_version:?}; expected {:?}",
                known.api_version
            ));
        }
        let kinds: Vec<&str> = pacer_client::KNOWN_RESOURCES
            .iter()
            .map(|known| known.kind)
            .collect();
        return Err(format!(
            "unknown kind {kind:?} (apiVersion {api_version:?}); {} serves {}",
            pacer_schemas::API_VERSION,
            kinds.join(", ")
        ));
    };
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if name.is_empty() {
        return Err(format!("{kind}: metadata.name is required"));
    }
    decode_strictly(kind, object.clone())
        .map_err(|error| format!("{kind} {name:?}: {}", describe_decode_error(&error)))?;
    Ok(*resource)
}

fn decode_strictly(kind: &str, object: Value) -> Result<(), DecodeError> {
    match kind {
        "App" => decode_value_strict::<App>(object).map(drop),
        "Instance" => decode_value_strict::<Instance>(object).map(drop),
        "Node" => decode_value_strict::<Node>(object).map(drop),
        "Deployment" => decode_value_strict::<Deployment>(object).map(drop),
        "Offer" => decode_value_strict::<Offer>(object).map(drop),
        "Event" => decode_value_strict::<Event>(object).map(drop),
        _ => Ok(()),
    }
}

fn describe_decode_error(error: &DecodeError) -> String {
    match error {
        DecodeError::UnknownFields { paths } => {
            let quoted: Vec<String> = paths.iter().map(|path| format!("{path:?}")).collect();
            format!("unknown field {}", quoted.join(", "))
        }
        other => other.to_string(),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn locate(path: &str, document: usize, item: Option<usize>, line: Option<u64>) -> String {
    let mut location = path.to_owned();
    if let Some(line) = line {
        location.push_str(&format!(":{line}"));
    }
    location.push_str(&format!(": document {document}"));
    if let Some(item) = item {
        location.push_str(&format!(", item {item}"));
    }
    location
}

fn manifest_files(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let wanted = path
            .extension()
            .and_then(|extension| extension.to_str())
            .is_some_and(|extension| matches!(extension, "yaml" | "yml" | "json"));
        if wanted && entry.file_type()?.is_file() {
            files.push(path.to_string_lossy().into_owned());
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TWO_APPS: &str = "\
apiVersion: pacer.dev/v1
kind: App
metadata:
  name: web
  labels: {tier: front}
spec:
  cmd: python3 -m http.server $PORT0
---
# nothing here
---
apiVersion: pacer.dev/v1
kind: App
metadata:
  name: db
  namespace: shop
spec:
  container:
    docker: {image: postgres:16}
";

    fn error_text(text: &str, format: Format) -> String {
        parse("f.yaml", text, format).unwrap_err().to_string()
    }

    #[test]
    fn multi_document_yaml_is_read_in_order() {
        let manifests = parse("apps.yaml", TWO_APPS, Format::Yaml).unwrap();
        assert_eq!(manifests.len(), 2);
        assert_eq!(manifests[0].name(), "web");
        assert_eq!(manifests[0].display_name(), "app.pacer.dev/web");
        assert_eq!(
            manifests[0].labels().get("tier").map(String::as_str),
            Some("front")
        );
        assert_eq!(manifests[0].namespace(), None);
        assert_eq!(manifests[1].namespace(), Some("shop"));
        assert_eq!(manifests[1].document, 2);
        assert_eq!(manifests[1].line, Some(11));
        assert_eq!(manifests[1].origin(), "\"apps.yaml\" (document 2)");
    }

    #[test]
    fn json_objects_and_lists_are_read() {
        let text = r#"{"apiVersion":"pacer.dev/v1","kind":"App","metadata":{"name":"a"},"spec":{"cmd":"x"}}
{"apiVersion":"v1","kind":"List","items":[
  {"apiVersion":"pacer.dev/v1","kind":"Node","metadata":{"name":"n1"}},
  {"apiVersion":"pacer.dev/v1","kind":"App","metadata":{"name":"b"},"spec":{"args":["y"]}}]}"#;
        assert_eq!(Format::sniff(text), Format::Json);
        let manifests = parse("x.json", text, Format::Json).unwrap();
        let names: Vec<String> = manifests.iter().map(Manifest::display_name).collect();
        assert_eq!(
            names,
            ["app.pacer.dev/a", "node.pacer.dev/n1", "app.pacer.dev/b"]
        );
        assert_eq!(manifests[2].item, Some(2));
        assert_eq!(manifests[2].line, Some(2));
        assert!(!manifests[1].resource.namespaced);
    }

    #[test]
    fn bad_yaml_names_file_line_and_column() {
        let text = "apiVersion: pacer.dev/v1\nkind: App\nmetadata:\n  name: web\n   labels: x\n";
        let error = parse("web.yaml", text, Format::Yaml).unwrap_err();
        let ManifestError::Yaml { line, column, .. } = &error else {
            panic!("not a YAML error: {error}")
        };
        assert_eq!((*line, *column), (5, 10));
        assert_eq!(
            error.to_string(),
            "web.yaml:5:10: invalid YAML: mapping values are not allowed in this context"
        );
        let quote = error_text("kind: \"App\n", Format::Yaml);
        assert!(quote.starts_with("f.yaml:1:7: invalid YAML: "), "{quote}");
    }

    #[test]
    fn only_yaml_1_2_booleans_are_booleans() {
        let text = "apiVersion: pacer.dev/v1\nkind: App\nmetadata: {name: a}\nspec:\n  cmd: y\n  env: {DEBUG: yes, ON: on}\n  requirePorts: true\n";
        let manifests = parse("b.yaml", text, Format::Yaml).unwrap();
        let spec = &manifests[0].object["spec"];
        assert_eq!(spec["cmd"], "y");
        assert_eq!(spec["env"]["DEBUG"], "yes");
        assert_eq!(spec["requirePorts"], true);
    }

    #[test]
    fn bad_json_names_file_line_and_column() {
        let error = error_text("{\"kind\": \"App\",\n \"x\": }", Format::Json);
        assert_eq!(error, "f.yaml:2:7: invalid JSON: expected value");
    }

    #[test]
    fn wrong_kinds_name_the_document() {
        let pod = "apiVersion: pacer.dev/v1\nkind: App\nmetadata: {name: a}\nspec: {cmd: x}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\n";
        assert_eq!(
            error_text(pod, Format::Yaml),
            "f.yaml:6: document 2: unknown kind \"Pod\" (apiVersion \"v1\"); pacer.dev/v1 serves App, AppVersion, Instance, Deployment, Node, Offer, Event, Lease, Framework"
        );
        let version = "apiVersion: pacer.dev/v2\nkind: App\nmetadata: {name: a}\n";
        assert_eq!(
            error_text(version, Format::Yaml),
            "f.yaml:1: document 1: App has apiVersion \"pacer.dev/v2\"; expected \"pacer.dev/v1\""
        );
        assert!(error_text("- a\n- b\n", Format::Yaml).ends_with("found a list"));
        assert!(
            error_text("kind: App\n", Format::Yaml).contains("apiVersion and kind are required")
        );
        assert!(
            error_text(
                "apiVersion: pacer.dev/v1\nkind: App\nmetadata: {}\n",
                Format::Yaml
            )
            .ends_with("App: metadata.name is required")
        );
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_path() {
        let typo = "apiVersion: pacer.dev/v1\nkind: App\nmetadata: {name: web}\nspec:\n  cmd: x\n  instancs: 2\n";
        assert_eq!(
            error_text(typo, Format::Yaml),
            "f.yaml:1: document 1: App \"web\": unknown field \"spec.instancs\""
        );
        let wrong_type = "apiVersion: pacer.dev/v1\nkind: App\nmetadata: {name: web}\nspec:\n  instances: many\n";
        assert!(error_text(wrong_type, Format::Yaml).contains("spec.instances"));
    }

    #[test]
    fn directories_contribute_sorted_manifest_files() {
        let dir = tempfile::tempdir().unwrap();
        let app = |name: &str| {
            format!(
                "apiVersion: pacer.dev/v1\nkind: App\nmetadata: {{name: {name}}}\nspec: {{cmd: x}}\n"
            )
        };
        std::fs::write(dir.path().join("b.yaml"), app("b")).unwrap();
        std::fs::write(dir.path().join("a.yml"), app("a")).unwrap();
        std::fs::write(
            dir.path().join("c.json"),
            r#"{"apiVersion":"pacer.dev/v1","kind":"App","metadata":{"name":"c"},"spec":{"cmd":"x"}}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("README.md"), "# not a manifest").unwrap();
        let manifests = load(&[dir.path().to_string_lossy().into_owned()]).unwrap();
        let names: Vec<&str> = manifests.iter().map(Manifest::name).collect();
        assert_eq!(names, ["a", "b", "c"]);
        let missing = load(&["/nonexistent/x.yaml".to_owned()]).unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with("read /nonexistent/x.yaml: "),
            "{missing}"
        );
    }
}
