//! The list scenario: many Apps created through the API (and the same objects written into the
//! baseline store in 128-put transactions), then full LISTs of their namespace with and without
//! paging, beside the store's `list` of the same prefix, unpaged and paged.
//!
//! A list's time is the sum over its pages of the time from sending the request to receiving
//! the page's last byte (for the store: the `list` call); the benchmark's own decoding of each
//! page (to find the `continue` token and count the items) between pages is not counted.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use futures::{StreamExt as _, TryStreamExt as _};
use hdrhistogram::Histogram;
use pacer_store::{ListOptions, Store as _, Txn};
use serde::{Deserialize, Serialize};

use super::{Bench, Side};
use crate::load::{self, LatencyMs};

/// The namespace the Apps are created in.
const NAMESPACE: &str = "bench-list";

/// Puts per baseline transaction (the store's limit).
const TXN_PUTS: usize = pacer_store::key::MAX_TXN_OPS;

/// Timeout of one LIST page.
const LIST_TIMEOUT: Duration = Duration::from_secs(60);

/// What the scenario needs.
#[derive(Debug, Clone, Copy)]
pub struct ListParams {
    /// Apps to create.
    pub apps: usize,
    /// Concurrent POSTs while creating them.
    pub create_concurrency: usize,
    /// `limit=` of the paged lists.
    pub page_size: usize,
    /// Timed lists of each kind.
    pub rounds: usize,
}

/// The list scenario's results.
#[derive(Debug, Clone, Serialize)]
pub struct ListResult {
    /// What is measured.
    pub description: &'static str,
    /// Objects listed.
    pub objects: usize,
    /// Their average size as stored, bytes.
    pub object_bytes: usize,
    /// Creating them through the API.
    pub create: CreateFigure,
    /// API unpaged, API paged, store unpaged, store paged.
    pub figures: Vec<ListFigure>,
}

/// Creating the objects with concurrent POSTs.
#[derive(Debug, Clone, Serialize)]
pub struct CreateFigure {
    /// Concurrent POSTs.
    pub concurrency: usize,
    /// Wall time.
    pub secs: f64,
    /// Creates per second.
    pub per_sec: f64,
    /// Per POST.
    pub latency_ms: LatencyMs,
}

/// One kind of full list.
#[derive(Debug, Clone, Serialize)]
pub struct ListFigure {
    /// API or store.
    pub side: Side,
    /// Its name in the table.
    pub label: &'static str,
    /// Page size, if paged.
    pub page_size: Option<usize>,
    /// Pages per full list.
    pub pages: usize,
    /// Bytes per full list (API: response bodies; store: values).
    pub bytes: u64,
    /// Time per full list (one sample per round).
    pub latency_ms: LatencyMs,
    /// Objects per second at the median time.
    pub objects_per_sec: f64,
}

/// The four kinds of list, in a fixed order (their run order rotates).
const KINDS: [(Side, bool); 4] = [
    (Side::Api, false),
    (Side::Api, true),
    (Side::Store, false),
    (Side::Store, true),
];

/// One full list: its time, pages, items and bytes.
struct Listed {
    elapsed: Duration,
    pages: usize,
    items: usize,
    bytes: u64,
}

/// Runs the scenario.
pub async fn run(bench: &Bench, params: ListParams) -> Result<ListResult> {
    let create = create_apps(bench, params).await?;
    let (create, stored) = create;
    let object_bytes = stored.iter().map(|(_, value)| value.len()).sum::<usize>() / stored.len();
    for chunk in stored.chunks(TXN_PUTS) {
        let txn = chunk.iter().fold(Txn::new(), |txn, (key, value)| {
            txn.put(key.clone(), value.clone())
        });
        let outcome = bench
            .store
            .txn(txn)
            .await
            .context("write the objects into the baseline store")?;
        ensure!(outcome.committed(), "an unconditional transaction failed");
    }
    drop(stored);

    let mut histograms = Vec::new();
    for _ in KINDS {
        histograms.push(load::latency_histogram()?);
    }
    let mut shapes = [(0usize, 0u64); 4];
    for round in 0..params.rounds {
        let mut times = [Duration::ZERO; 4];
        for turn in 0..KINDS.len() {
            let index = (turn + round) % KINDS.len();
            let (side, paged) = KINDS[index];
            let limit = if paged { params.page_size } else { 0 };
            let listed = match side {
                Side::Api => list_api(bench, limit).await,
                Side::Store => list_store(bench, limit).await,
            }
            .with_context(|| format!("{} round {}", label(side, paged), round + 1))?;
            ensure!(
                listed.items == params.apps,
                "{} listed {} objects, not {}",
                label(side, paged),
                listed.items,
                params.apps
            );
            load::record(&mut histograms[index], listed.elapsed);
            times[index] = listed.elapsed;
            shapes[index] = (listed.pages, listed.bytes);
        }
        eprintln!(
            "{:<15} round {}/{}: {}",
            format!("LIST {}", params.apps),
            round + 1,
            params.rounds,
            KINDS
                .iter()
                .zip(times)
                .map(|(&(side, paged), time)| format!(
                    "{} {:.1} ms",
                    label(side, paged),
                    time.as_secs_f64() * 1000.0
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let figures = KINDS
        .iter()
        .zip(&histograms)
        .zip(shapes)
        .map(|((&(side, paged), histogram), (pages, bytes))| {
            figure(side, paged, params, histogram, pages, bytes)
        })
        .collect();
    Ok(ListResult {
        description: "full LIST of one namespace's Apps through the API, unpaged and with \
                      limit/continue paging, beside the store's list of the same prefix; time \
                      per full list = sum over pages of request sent to last byte received",
        objects: params.apps,
        object_bytes,
        create,
        figures,
    })
}

fn label(side: Side, paged: bool) -> &'static str {
    match (side, paged) {
        (Side::Api, false) => "API: LIST, unpaged",
        (Side::Api, true) => "API: LIST, paged",
        (Side::Store, false) => "store: list, unpaged",
        (Side::Store, true) => "store: list, paged",
    }
}

fn figure(
    side: Side,
    paged: bool,
    params: ListParams,
    histogram: &Histogram<u64>,
    pages: usize,
    bytes: u64,
) -> ListFigure {
    let latency_ms = LatencyMs::from_micros(histogram);
    ListFigure {
        side,
        label: label(side, paged),
        page_size: paged.then_some(params.page_size),
        pages,
        bytes,
        objects_per_sec: if latency_ms.p50 > 0.0 {
            params.apps as f64 / (latency_ms.p50 / 1000.0)
        } else {
            0.0
        },
        latency_ms,
    }
}

/// Creates the Apps with concurrent POSTs; returns the figure and each object's stored form
/// under its key.
async fn create_apps(
    bench: &Bench,
    params: ListParams,
) -> Result<(CreateFigure, Vec<(String, Vec<u8>)>)> {
    eprint!(
        "{:<15} creating {} apps with {} concurrent POSTs ",
        format!("LIST {}", params.apps),
        params.apps,
        params.create_concurrency
    );
    let began = Instant::now();
    let created: Vec<(String, Vec<u8>, Duration)> = futures::stream::iter(0..params.apps)
        .map(|index| async move {
            let name = format!("app-{index:05}");
            let started = Instant::now();
            let object = bench.create_app(NAMESPACE, &name).await?;
            let took = started.elapsed();
            anyhow::Ok((
                super::app_key(NAMESPACE, &name),
                super::stored_form(object)?,
                took,
            ))
        })
        .buffer_unordered(params.create_concurrency)
        .try_collect()
        .await?;
    let elapsed = began.elapsed();
    let mut latency = load::latency_histogram()?;
    let stored = created
        .into_iter()
        .map(|(key, value, took)| {
            load::record(&mut latency, took);
            (key, value)
        })
        .collect();
    let figure = CreateFigure {
        concurrency: params.create_concurrency,
        secs: elapsed.as_secs_f64(),
        per_sec: load::per_sec(params.apps as u64, elapsed),
        latency_ms: LatencyMs::from_micros(&latency),
    };
    eprintln!("{:.0}/s", figure.per_sec);
    Ok((figure, stored))
}

/// The part of a list response the benchmark reads.
#[derive(Deserialize)]
struct ListBody {
    metadata: ListMeta,
    items: Vec<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct ListMeta {
    #[serde(rename = "continue", default)]
    continue_token: Option<String>,
}

async fn list_api(bench: &Bench, limit: usize) -> Result<Listed> {
    let url = bench.apps_url(NAMESPACE);
    let mut listed = Listed {
        elapsed: Duration::ZERO,
        pages: 0,
        items: 0,
        bytes: 0,
    };
    let mut token: Option<String> = None;
    loop {
        let mut query: Vec<(&str, String)> = Vec::new();
        if limit > 0 {
            query.push(("limit", limit.to_string()));
        }
        if let Some(token) = &token {
            query.push(("continue", token.clone()));
        }
        let began = Instant::now();
        let response = bench
            .client
            .get(&url)
            .query(&query)
            .timeout(LIST_TIMEOUT)
            .send()
            .await
            .context("LIST")?;
        let status = response.status();
        let body = response.bytes().await.context("read a LIST page")?;
        listed.elapsed += began.elapsed();
        ensure!(
            status.is_success(),
            "LIST: {status}: {}",
            String::from_utf8_lossy(&body)
        );
        let page: ListBody = serde_json::from_slice(&body).context("decode a LIST page")?;
        listed.pages += 1;
        listed.items += page.items.len();
        listed.bytes += body.len() as u64;
        token = page
            .metadata
            .continue_token
            .filter(|token| !token.is_empty());
        if token.is_none() {
            return Ok(listed);
        }
        ensure!(
            limit > 0,
            "an unpaged LIST returned a continue token after {} items",
            listed.items
        );
    }
}

async fn list_store(bench: &Bench, limit: usize) -> Result<Listed> {
    let prefix = format!("/registry/apps/{NAMESPACE}/");
    let mut listed = Listed {
        elapsed: Duration::ZERO,
        pages: 0,
        items: 0,
        bytes: 0,
    };
    let mut token = None;
    loop {
        let options = ListOptions {
            limit,
            continue_token: token.take(),
            revision: None,
        };
        let began = Instant::now();
        let page = bench.store.list(&prefix, &options).await?;
        listed.elapsed += began.elapsed();
        listed.pages += 1;
        listed.items += page.items.len();
        listed.bytes += page
            .items
            .iter()
            .map(|item| item.value.len() as u64)
            .sum::<u64>();
        token = page.continue_token;
        if token.is_none() {
            return Ok(listed);
        }
    }
}
