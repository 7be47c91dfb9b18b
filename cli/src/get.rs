//! `pacer get RESOURCE [NAME…]`: tables (or YAML, JSON, names) of objects of one kind, in a
//! namespace or across all (`-A`), filtered by label and field selectors; `-w` keeps watching
//! and prints a row per change until interrupted.

use anyhow::{Context as _, bail};
use futures::StreamExt;
use jiff::Timestamp;
use pacer_client::{DynamicApi, LabelSelector, ListParams, ResourceInfo, WatchEvent, WatchParams};
use serde_json::Value;

use crate::config::ConnectArgs;
use crate::output::{self, Outcome, OutputFormat};
use crate::table;

/// Options of `pacer get`.
#[derive(Debug, clap::Args)]
pub(crate) struct GetArgs {
    /// The kind: plural, singular or short name (`apps`, `app`, `ap`), or `TYPE/NAME`.
    pub(crate) resource: String,
    /// Names of the objects (all when none).
    pub(crate) names: Vec<String>,
    /// Output format: yaml, json, wide or name (a table by default).
    #[arg(short = 'o', long, value_enum)]
    pub(crate) output: Option<OutputFormat>,
    /// After listing, watch for changes and print each.
    #[arg(short = 'w', long)]
    pub(crate) watch: bool,
    /// Label selector, e.g. `app=web,tier in (a,b),!legacy`.
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub(crate) selector: Option<String>,
    /// Field selector (`metadata.name=…`, `metadata.namespace=…`).
    #[arg(long, value_name = "SELECTOR")]
    pub(crate) field_selector: Option<String>,
    /// List across all namespaces.
    #[arg(short = 'A', long)]
    pub(crate) all_namespaces: bool,
    /// Print tables without the header line.
    #[arg(long)]
    pub(crate) no_headers: bool,
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
}

/// Resolves a resource name to its kind, with kubectl's error for unknown ones.
pub(crate) fn resolve_resource(name: &str) -> anyhow::Result<&'static ResourceInfo> {
    ResourceInfo::resolve(name).with_context(|| {
        format!(
            "the server doesn't have a resource type {name:?} (known: {})",
            ResourceInfo::all_names().join(", ")
        )
    })
}

/// Runs `pacer get`.
pub(crate) async fn run(args: GetArgs) -> anyhow::Result<Outcome> {
    let (kind, mut names) = match args.resource.split_once('/') {
        Some((kind, name)) => (kind, vec![name.to_owned()]),
        None => (args.resource.as_str(), Vec::new()),
    };
    names.extend(args.names.iter().cloned());
    let resource = resolve_resource(kind)?;
    if let Some(selector) = &args.selector {
        LabelSelector::parse(selector)?;
    }
    if args.all_namespaces && !names.is_empty() {
        bail!("a resource cannot be retrieved by name across all namespaces");
    }
    if args.watch && names.len() > 1 {
        bail!(
            "watch is only supported on individual resources and resource collections, but {} resources were found",
            names.len()
        );
    }
    let (client, settings) = args.connect.connect()?;
    let api = if args.all_namespaces || !resource.namespaced {
        DynamicApi::all(client, *resource)
    } else {
        DynamicApi::namespaced(client, *resource, &settings.namespace)
    };
    let mut printer = Printer::new(resource, args.output, args.all_namespaces, args.no_headers);

    let mut failed = false;
    let mut objects = Vec::new();
    let mut resource_version = String::new();
    if names.is_empty() {
        let params = ListParams {
            label_selector: args.selector.clone(),
            field_selector: args.field_selector.clone(),
            ..ListParams::default()
        };
        let list = api.list_all(&params).await?;
        resource_version = list.metadata.resource_version.unwrap_or_default();
        objects = list.items;
        if objects.is_empty() && !args.watch && printer.is_table() {
            if args.all_namespaces || !resource.namespaced {
                eprintln!("No resources found");
            } else {
                eprintln!("No resources found in {} namespace.", settings.namespace);
            }
        }
        printer.print_all(&objects, names.is_empty())?;
    } else {
        for name in &names {
            match api.get(name).await {
                Ok(object) => objects.push(object),
                Err(error) => {
                    failed = true;
                    eprintln!("{}", output::render_error(&anyhow::Error::new(error)));
                }
            }
        }
        if let Some(object) = objects.first() {
            resource_version = output::str_at(object, "/metadata/resourceVersion").to_owned();
        }
        printer.print_all(&objects, false)?;
    }
    if failed {
        return Ok(Outcome::Failed);
    }
    if args.watch {
        let params = WatchParams {
            label_selector: args.selector.clone(),
            field_selector: match names.first() {
                Some(name) => Some(format!("metadata.name={name}")),
                None => args.field_selector.clone(),
            },
            ..WatchParams::default()
        };
        watch(&api, &params, resource_version, &mut printer).await?;
    }
    Ok(Outcome::Success)
}

/// Watches until interrupted, re-watching from the last version when the server ends a
/// stream and relisting (silently) when that version expired.
async fn watch(
    api: &DynamicApi,
    params: &WatchParams,
    mut resource_version: String,
    printer: &mut Printer,
) -> anyhow::Result<()> {
    loop {
        let mut events = api.watch(params, &resource_version).await?;
        let mut expired = false;
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(error) if error.is_expired() => {
                    expired = true;
                    break;
                }
                Err(error) => return Err(error.into()),
            };
            match &event {
                WatchEvent::Added(object)
                | WatchEvent::Modified(object)
                | WatchEvent::Deleted(object) => {
                    let version = output::str_at(object, "/metadata/resourceVersion");
                    if !version.is_empty() {
                        version.clone_into(&mut resource_version);
                    }
                    printer.print_event(object)?;
                }
                WatchEvent::Bookmark(bookmark) => {
                    if !bookmark.metadata.resource_version.is_empty() {
                        resource_version.clone_from(&bookmark.metadata.resource_version);
                    }
                }
                WatchEvent::Error(status) if status.code == Some(410) => {
                    expired = true;
                    break;
                }
                WatchEvent::Error(status) => {
                    bail!(
                        "watch failed: {} ({})",
                        status.message.as_deref().unwrap_or("no message"),
                        status
                            .reason
                            .as_ref()
                            .map_or("no reason", |reason| reason.as_str())
                    );
                }
            }
        }
        if expired {
            let list_params = ListParams {
                label_selector: params.label_selector.clone(),
                field_selector: params.field_selector.clone(),
                ..ListParams::default()
            };
            let list = api.list_all(&list_params).await?;
            resource_version = list.metadata.resource_version.unwrap_or_default();
        }
    }
}

/// Prints objects in the chosen format, remembering column widths for watch rows.
pub(crate) struct Printer {
    resource: &'static ResourceInfo,
    format: Option<OutputFormat>,
    all_namespaces: bool,
    no_headers: bool,
    widths: Option<Vec<usize>>,
    documents: usize,
}

impl Printer {
    pub(crate) fn new(
        resource: &'static ResourceInfo,
        format: Option<OutputFormat>,
        all_namespaces: bool,
        no_headers: bool,
    ) -> Self {
        Self {
            resource,
            format,
            all_namespaces,
            no_headers,
            widths: None,
            documents: 0,
        }
    }

    fn is_table(&self) -> bool {
        matches!(self.format, None | Some(OutputFormat::Wide))
    }

    fn wide(&self) -> bool {
        self.format == Some(OutputFormat::Wide)
    }

    /// Prints the initial objects; `as_list`: several objects (or a list query) in YAML/JSON
    /// become one `List`.
    fn print_all(&mut self, objects: &[Value], as_list: bool) -> anyhow::Result<()> {
        match self.format {
            None | Some(OutputFormat::Wide) => {
                if objects.is_empty() {
                    return Ok(());
                }
                let now = Timestamp::now();
                let headers = table::headers(self.resource, self.wide(), self.all_namespaces);
                let rows: Vec<Vec<String>> = objects
                    .iter()
                    .map(|object| {
                        table::row(self.resource, object, self.wide(), self.all_namespaces, now)
                    })
                    .collect();
                let mut rendered = output::plain_table(&headers);
                if self.no_headers {
                    rendered = comfy_table::Table::new();
                    rendered.load_style(comfy_table::presets::NOTHING);
                }
                for row in &rows {
                    rendered.add_row(row.clone());
                }
                println!("{}", output::render_table(&rendered));
                self.widths = Some(output::column_widths(&headers, &rows));
            }
            Some(OutputFormat::Name) => {
                for object in objects {
                    println!("{}", output::object_name(self.resource, object));
                }
            }
            Some(format @ (OutputFormat::Yaml | OutputFormat::Json)) => {
                let value = if !as_list && objects.len() == 1 {
                    objects[0].clone()
                } else if objects.is_empty() && !as_list {
                    return Ok(());
                } else {
                    output::list_value(objects.to_vec())
                };
                self.print_document(format, &value)?;
            }
        }
        Ok(())
    }

    /// Prints one watch event's object.
    fn print_event(&mut self, object: &Value) -> anyhow::Result<()> {
        match self.format {
            None | Some(OutputFormat::Wide) => {
                let now = Timestamp::now();
                let headers = table::headers(self.resource, self.wide(), self.all_namespaces);
                let row = table::row(self.resource, object, self.wide(), self.all_namespaces, now);
                let widths = match &self.widths {
                    Some(widths) => widths.clone(),
                    None => {
                        let widths = output::column_widths(&headers, std::slice::from_ref(&row));
                        if !self.no_headers {
                            let header: Vec<String> =
                                headers.iter().map(|header| (*header).to_owned()).collect();
                            println!("{}", output::aligned_row(&header, &widths));
                        }
                        self.widths = Some(widths.clone());
                        widths
                    }
                };
                println!("{}", output::aligned_row(&row, &widths));
            }
            Some(OutputFormat::Name) => println!("{}", output::object_name(self.resource, object)),
            Some(format @ (OutputFormat::Yaml | OutputFormat::Json)) => {
                self.print_document(format, object)?;
            }
        }
        Ok(())
    }

    fn print_document(&mut self, format: OutputFormat, value: &Value) -> anyhow::Result<()> {
        if format == OutputFormat::Yaml {
            if self.documents > 0 {
                println!("---");
            }
            print!("{}", output::to_yaml(value)?);
        } else {
            print!("{}", output::to_json(value)?);
        }
        self.documents += 1;
        Ok(())
    }
}
