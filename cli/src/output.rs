//! What client commands print and how they end: output formats (`-o yaml|json|wide|name`),
//! borderless tables, kubectl-style ages, and the exit code with the error on stderr
//! (`Error from server (Conflict): …`).

use std::io::Write as _;

use comfy_table::{CellAlignment, ColumnConstraint, Table, presets};
use jiff::Timestamp;
use pacer_client::ResourceInfo;
use serde_json::Value;

/// How a command that succeeded ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 1 without an error message (`pacer diff` found differences).
    Differences,
    /// Exit 1; the errors were printed as they happened.
    Failed,
}

/// `-o` formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum OutputFormat {
    /// The object(s) as YAML.
    Yaml,
    /// The object(s) as JSON.
    Json,
    /// The table with more columns.
    Wide,
    /// `type/name` only.
    Name,
}

/// Ends a client command: exit 0, or flush and exit 1 after printing the error kubectl-style.
pub(crate) fn finish(result: anyhow::Result<Outcome>) -> anyhow::Result<()> {
    let code = match result {
        Ok(Outcome::Success) => return Ok(()),
        Ok(Outcome::Differences | Outcome::Failed) => 1,
        Err(error) => {
            let _ = std::io::stdout().flush();
            eprintln!("{}", render_error(&error));
            1
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

/// `Error from server (Reason): context: message` for server errors, `error: …` otherwise.
pub(crate) fn render_error(error: &anyhow::Error) -> String {
    let mut context = Vec::new();
    for cause in error.chain() {
        if let Some(client_error) = cause.downcast_ref::<pacer_client::Error>()
            && let Some(status) = client_error.status()
        {
            let message = status
                .message
                .clone()
                .unwrap_or_else(|| client_error.to_string());
            let prefix = match &status.reason {
                Some(reason) => format!("Error from server ({reason})"),
                None => "Error from server".to_owned(),
            };
            let mut line = if context.is_empty() {
                format!("{prefix}: {message}")
            } else {
                format!("{prefix}: {}: {message}", context.join(": "))
            };
            let causes = status
                .details
                .as_ref()
                .map(|details| details.causes.as_slice())
                .unwrap_or_default();
            for cause in causes {
                let field = cause.field.as_deref().unwrap_or("");
                let text = cause.message.as_deref().unwrap_or("");
                if !message.contains(text) || text.is_empty() {
                    line.push_str(&format!("\n  * {field}: {text}"));
                }
            }
            return line;
        }
        if let Some(client_error) = cause.downcast_ref::<pacer_client::Error>()
            && client_error.is_connect()
            && let pacer_client::Error::Transport { url, .. } = client_error
        {
            let reason = cause.source().map(ToString::to_string).unwrap_or_default();
            let root = error.root_cause().to_string();
            return format!(
                "error: the connection to the server {} was refused or failed - is it running, and is --server (or PACER_SERVER, or the config context) right? ({reason}: {root})",
                server_of(url)
            );
        }
        context.push(cause.to_string());
    }
    format!("error: {error:#}")
}

/// `scheme://host:port` of a request URL.
fn server_of(url: &str) -> String {
    match url.find("://") {
        Some(scheme_end) => {
            let rest = &url[scheme_end + 3..];
            let host_end = rest.find('/').unwrap_or(rest.len());
            format!("{}{}", &url[..scheme_end + 3], &rest[..host_end])
        }
        None => url.to_owned(),
    }
}

/// A borderless table in kubectl's look: upper-case headers, three spaces between columns.
pub(crate) fn plain_table(headers: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    table.set_header(headers.iter().copied());
    table
}

/// Renders a table without trailing spaces, and with the kubectl column gap.
pub(crate) fn render_table(table: &Table) -> String {
    let mut table = table.clone();
    let count = table.column_count();
    for (index, column) in table.column_iter_mut().enumerate() {
        let right = if index + 1 == count { 0 } else { 3 };
        column.set_padding((0, right));
        column.set_cell_alignment(CellAlignment::Left);
        column.set_constraint(ColumnConstraint::ContentWidth);
    }
    table
        .to_string()
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Column widths of a rendered table, to print later rows (watch events) aligned with it.
pub(crate) fn column_widths(headers: &[&str], rows: &[Vec<String>]) -> Vec<usize> {
    let mut widths: Vec<usize> = headers
        .iter()
        .map(|header| header.chars().count())
        .collect();
    for row in rows {
        for (index, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(index) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    widths
}

/// One row padded to `widths` (three spaces between columns).
pub(crate) fn aligned_row(row: &[String], widths: &[usize]) -> String {
    let mut line = String::new();
    for (index, cell) in row.iter().enumerate() {
        line.push_str(cell);
        if index + 1 < row.len() {
            let width = widths.get(index).copied().unwrap_or(0);
            let pad = width.saturating_sub(cell.chars().count()) + 3;
            line.push_str(&" ".repeat(pad));
        }
    }
    line.trim_end().to_owned()
}

/// An object or list as YAML.
pub(crate) fn to_yaml(value: &Value) -> anyhow::Result<String> {
    Ok(serde_saphyr::to_string(value)?)
}

/// An object or list as indented JSON with a final newline.
pub(crate) fn to_json(value: &Value) -> anyhow::Result<String> {
    Ok(format!("{}\n", serde_json::to_string_pretty(value)?))
}

/// kubectl's `-o name`: `app.pacer.dev/web`.
pub(crate) fn object_name(info: &ResourceInfo, object: &Value) -> String {
    format!("{}/{}", info.type_name(), str_at(object, "/metadata/name"))
}

/// Several objects as kubectl prints a list: `apiVersion: v1`, `kind: List`, `items`.
pub(crate) fn list_value(items: Vec<Value>) -> Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": ""},
        "items": items,
    })
}

/// The string at a JSON pointer, or `""`.
pub(crate) fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The age of an RFC 3339 timestamp at `now`, as kubectl prints it (`45s`, `3m12s`, `5h`,
/// `2d3h`, `400d`, `3y`); `<unknown>` when absent or unparsable.
pub(crate) fn age(timestamp: &str, now: Timestamp) -> String {
    let Ok(then) = timestamp.parse::<Timestamp>() else {
        return "<unknown>".to_owned();
    };
    let seconds = now.as_second() - then.as_second();
    human_duration(seconds)
}

/// kubectl's `HumanDuration`.
pub(crate) fn human_duration(seconds: i64) -> String {
    if seconds < 0 {
        return "0s".to_owned();
    }
    let minutes = seconds / 60;
    let hours = seconds / 3600;
    let days = hours / 24;
    if seconds < 120 {
        format!("{seconds}s")
    } else if minutes < 10 {
        let rest = seconds % 60;
        if rest == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{rest}s")
        }
    } else if hours < 3 {
        format!("{minutes}m")
    } else if hours < 8 {
        let rest = minutes % 60;
        if rest == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{rest}m")
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        let rest = hours % 24;
        if rest == 0 {
            format!("{days}d")
        } else {
            format!("{days}d{rest}h")
        }
    } else if hours < 24 * 365 * 2 {
        format!("{days}d")
    } else if hours < 24 * 365 * 8 {
        let years = days / 365;
        let rest = days % 365;
        if rest == 0 {
            format!("{years}y")
        } else {
            format!("{years}y{rest}d")
        }
    } else {
        format!("{}y", days / 365)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use pacer_schemas::Status;
    use pacer_schemas::status::StatusReason;

    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        for (seconds, expected) in [
            (-5, "0s"),
            (5, "5s"),
            (119, "119s"),
            (125, "2m5s"),
            (600, "10m"),
            (3 * 3600 + 120, "3h2m"),
            (10 * 3600, "10h"),
            (3 * 86400 + 7200, "3d2h"),
            (30 * 86400, "30d"),
            (3 * 365 * 86400, "3y"),
        ] {
            assert_eq!(human_duration(seconds), expected, "{seconds}");
        }
        let now: Timestamp = "2024-05-01T10:00:00Z".parse().unwrap();
        assert_eq!(age("2024-05-01T09:59:30Z", now), "30s");
        assert_eq!(age("", now), "<unknown>");
    }

    #[test]
    fn tables_are_borderless_and_aligned() {
        let mut table = plain_table(&["NAME", "AGE"]);
        table.add_row(vec!["web-frontend", "5s"]);
        table.add_row(vec!["db", "10m"]);
        assert_eq!(
            render_table(&table),
            "NAME           AGE\nweb-frontend   5s\ndb             10m"
        );
        let rows = vec![vec!["web-frontend".to_owned(), "5s".to_owned()]];
        let widths = column_widths(&["NAME", "AGE"], &rows);
        assert_eq!(
            aligned_row(&["db".into(), "1s".into()], &widths),
            "db             1s"
        );
    }

    #[test]
    fn server_errors_print_like_kubectl() {
        let status = Status::failure(409, StatusReason::Conflict, "the object has been modified");
        let error = anyhow::Error::new(pacer_client::Error::Api {
            status: Box::new(status),
            method: "PATCH".into(),
            url: "http://x".into(),
        })
        .context("error when applying app.pacer.dev/web from \"web.yaml\"");
        assert_eq!(
            render_error(&error),
            "Error from server (Conflict): error when applying app.pacer.dev/web from \"web.yaml\": the object has been modified"
        );
        assert_eq!(
            render_error(&anyhow::anyhow!("boom").context("read x")),
            "error: read x: boom"
        );
    }
}
