//! `pacer logs INSTANCE|APP [-f] [--tail N] [-n NS]`: an instance's stdout and stderr, read
//! through the API server's Instance `log` subresource (which streams them from the agent of
//! the instance's node). For an App, the logs of each of its bound instances, every line
//! prefixed with `[instance]` — one instance after the other, or all at once as they come
//! with `-f`.

use std::io::Write;

use anyhow::{Context, bail};
use futures::StreamExt;
use pacer_client::{Api, ListParams};
use pacer_schemas::instance::labels::APP;
use pacer_schemas::{App, Instance};

use crate::config::{ConnectArgs, Settings};
use crate::output::Outcome;

/// Options of `pacer logs`.
#[derive(Debug, clap::Args)]
pub(crate) struct LogsArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// An Instance's name, or an App's (then every instance of it, lines prefixed with the
    /// instance's name).
    target: String,
    /// Keep streaming new output until the instance ends (or Ctrl-C).
    #[arg(short = 'f', long)]
    follow: bool,
    /// Only the last N lines (of stdout and of stderr where the runtime keeps them apart); a
    /// negative number: everything.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true, value_name = "N")]
    tail: i64,
}

/// One log request's parameters.
#[derive(Clone, Copy, Debug)]
struct Request {
    follow: bool,
    tail_lines: Option<u64>,
}

pub(crate) async fn run(args: LogsArgs) -> anyhow::Result<Outcome> {
    let (client, settings) = args.connect.connect()?;
    let request = Request {
        follow: args.follow,
        tail_lines: u64::try_from(args.tail).ok(),
    };
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .context("build the HTTP client")?;
    let namespace = settings.namespace.clone();
    let instances: Api<Instance> = Api::namespaced(client.clone(), &namespace);
    if instances.get_opt(&args.target).await?.is_some() {
        let response = open(&http, &settings, &args.target, request).await?;
        copy(response, None).await?;
        return Ok(Outcome::Success);
    }
    let apps: Api<App> = Api::namespaced(client, &namespace);
    if apps.get_opt(&args.target).await?.is_none() {
        bail!(
            "no instance or app named {:?} in namespace {namespace:?}",
            args.target
        );
    }
    let params = ListParams::default().labels(format!("{APP}={}", args.target));
    let mut names: Vec<String> = instances
        .list_all(&params)
        .await?
        .items
        .into_iter()
        .filter(|instance| {
            instance
                .spec
                .node_name
                .as_deref()
                .is_some_and(|node| !node.is_empty())
        })
        .filter_map(|instance| instance.metadata.name)
        .collect();
    names.sort();
    if names.is_empty() {
        eprintln!("app {} has no instance on a node yet", args.target);
        return Ok(Outcome::Success);
    }
    let mut failed = false;
    if request.follow {
        let streams = names.iter().map(|name| {
            let (http, settings) = (&http, &settings);
            async move {
                let result = match open(http, settings, name, request).await {
                    Ok(response) => copy(response, Some(name)).await,
                    Err(error) => Err(error),
                };
                (name, result)
            }
        });
        let results = futures::future::join_all(streams).await;
        for (name, result) in results {
            if let Err(error) = result {
                eprintln!("{name}: {}", crate::output::render_error(&error));
                failed = true;
            }
        }
    } else {
        for name in &names {
            let result = match open(&http, &settings, name, request).await {
                Ok(response) => copy(response, Some(name)).await,
                Err(error) => Err(error),
            };
            if let Err(error) = result {
                eprintln!("{name}: {}", crate::output::render_error(&error));
                failed = true;
            }
        }
    }
    Ok(if failed {
        Outcome::Failed
    } else {
        Outcome::Success
    })
}

/// `GET …/instances/{name}/log`; a non-2xx answer becomes the server's `Status` error.
async fn open(
    http: &reqwest::Client,
    settings: &Settings,
    name: &str,
    request: Request,
) -> anyhow::Result<reqwest::Response> {
    let mut url = reqwest::Url::parse(&settings.server)
        .with_context(|| format!("server URL {:?}", settings.server))?;
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("server URL {:?} cannot be a base", settings.server))?
        .pop_if_empty()
        .extend([
            "apis",
            "pacer.dev",
            "v1",
            "namespaces",
            &settings.namespace,
            "instances",
            name,
            "log",
        ]);
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("follow", if request.follow { "true" } else { "false" });
        if let Some(lines) = request.tail_lines {
            query.append_pair("tailLines", &lines.to_string());
        }
    }
    let mut builder = http.get(url.clone());
    if let Some(token) = &settings.token {
        builder = builder.bearer_auth(token);
    }
    let response = builder
        .send()
        .await
        .map_err(|source| pacer_client::Error::Transport {
            method: "GET".to_owned(),
            url: url.to_string(),
            source: source.without_url(),
        })?;
    if response.status().is_success() {
        return Ok(response);
    }
    let code = response.status().as_u16();
    let body = response.bytes().await.unwrap_or_default();
    let status = serde_json::from_slice::<pacer_schemas::Status>(&body).unwrap_or_else(|_| {
        pacer_schemas::Status::failure(
            code,
            pacer_schemas::status::StatusReason::InternalError,
            String::from_utf8_lossy(&body).into_owned(),
        )
    });
    Err(pacer_client::Error::Api {
        status: Box::new(status),
        method: "GET".to_owned(),
        url: url.to_string(),
    }
    .into())
}

/// Copies a log body to stdout as it arrives, each line prefixed with `[prefix] ` if given
/// (whole lines only, so that concurrent instances do not mix within a line).
async fn copy(response: reqwest::Response, prefix: Option<&str>) -> anyhow::Result<()> {
    let mut body = response.bytes_stream();
    let mut pending: Vec<u8> = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.context("read the log stream")?;
        let mut stdout = std::io::stdout().lock();
        match prefix {
            None => stdout.write_all(&chunk)?,
            Some(prefix) => {
                pending.extend_from_slice(&chunk);
                if let Some(end) = pending.iter().rposition(|byte| *byte == b'\n') {
                    let complete: Vec<u8> = pending.drain(..=end).collect();
                    for line in complete.split_inclusive(|byte| *byte == b'\n') {
                        write!(stdout, "[{prefix}] ")?;
                        stdout.write_all(line)?;
                    }
                }
            }
        }
        stdout.flush()?;
    }
    if let Some(prefix) = prefix
        && !pending.is_empty()
    {
        let mut stdout = std::io::stdout().lock();
        write!(stdout, "[{prefix}] ")?;
        stdout.write_all(&pending)?;
        writeln!(stdout)?;
        stdout.flush()?;
    }
    Ok(())
}
