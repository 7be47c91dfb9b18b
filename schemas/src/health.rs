//! An App's probes: `healthChecks` (kill and replace unhealthy instances), `readinessChecks`
//! (gate deployments) and Marathon 1.6's `check` (an informational check whose result is only
//! reported), with Marathon's field names.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::wire_enum::wire_enum;

wire_enum! {
    /// How a health check probes. `HTTP`, `HTTPS` and `TCP` are Marathon's scheduler-side
    /// checks; Pacer runs every kind on the agent, so they behave like their `MESOS_*` twins.
    pub enum HealthCheckProtocol {
        /// HTTP GET; healthy on a 2xx or 3xx status.
        Http = "HTTP",
        /// HTTPS GET without certificate verification.
        Https = "HTTPS",
        /// A TCP connect.
        Tcp = "TCP",
        /// A shell command inside the instance; healthy on exit code 0.
        Command = "COMMAND",
        /// HTTP GET run by the agent.
        MesosHttp = "MESOS_HTTP",
        /// HTTPS GET run by the agent.
        MesosHttps = "MESOS_HTTPS",
        /// TCP connect run by the agent.
        MesosTcp = "MESOS_TCP",
    }
}

impl HealthCheckProtocol {
    /// Whether the check makes an HTTP request (and so uses `path` and `ignoreHttp1xx`).
    pub fn is_http(&self) -> bool {
        matches!(
            self,
            Self::Http | Self::Https | Self::MesosHttp | Self::MesosHttps
        )
    }

    /// Whether Marathon runs this check through Mesos (at most one such check per App).
    pub fn is_mesos(&self) -> bool {
        matches!(
            self,
            Self::Command | Self::MesosHttp | Self::MesosHttps | Self::MesosTcp
        )
    }
}

wire_enum! {
    /// IP version used by `MESOS_HTTP(S)` checks.
    pub enum IpProtocol {
        /// IPv4.
        Ipv4 = "IPv4",
        /// IPv6.
        Ipv6 = "IPv6",
    }
}

wire_enum! {
    /// Scheme of a readiness check.
    pub enum ReadinessProtocol {
        /// HTTP.
        Http = "HTTP",
        /// HTTPS.
        Https = "HTTPS",
    }
}

/// A health check. After `maxConsecutiveFailures` failures in a row (outside the grace period)
/// the instance is killed and replaced.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// `HTTP` (default), `HTTPS`, `TCP`, `COMMAND`, `MESOS_HTTP`, `MESOS_HTTPS` or `MESOS_TCP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<HealthCheckProtocol>,
    /// Request path for HTTP checks (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Index into the App's ports of the port to probe (default 0); exclusive with `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_index: Option<i32>,
    /// A fixed port number to probe; exclusive with `portIndex`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// The command of a `COMMAND` check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandCheck>,
    /// Seconds after start during which failures are ignored, until the first success
    /// (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period_seconds: Option<i32>,
    /// Seconds between checks (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<i32>,
    /// Seconds before a check counts as failed (default 20); less than `intervalSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i32>,
    /// Failures in a row that kill the instance (default 3); 0 never kills.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_consecutive_failures: Option<i32>,
    /// Treat 1xx responses as neither success nor failure (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_http1xx: Option<bool>,
    /// Seconds before the first check (default 15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_seconds: Option<i32>,
    /// `IPv4` or `IPv6` (agent-run HTTP checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_protocol: Option<IpProtocol>,
}

/// The command of a `COMMAND` health check.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CommandCheck {
    /// Shell command run inside the instance; exit code 0 means healthy.
    pub value: String,
}

/// A readiness check: during deployments an instance counts only once its endpoint answers
/// with one of `httpStatusCodesForReady`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadinessCheck {
    /// Name of the check (default `readinessCheck`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `HTTP` (default) or `HTTPS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<ReadinessProtocol>,
    /// Request path (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Name of the port to probe, from `portDefinitions` or `container.portMappings` (default
    /// `http-api`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
    /// Seconds between checks (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<i32>,
    /// Seconds before a check counts as failed (default 10); less than `intervalSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i32>,
    /// Status codes that mean ready (default `[200]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status_codes_for_ready: Option<Vec<i32>>,
    /// Keep the last response for `/v2/deployments` (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserve_last_response: Option<bool>,
}

/// Marathon 1.6's app-level `check`: run by the agent and reported, never acted on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppCheck {
    /// An HTTP check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<AppHttpCheck>,
    /// A TCP check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<AppTcpCheck>,
    /// A command check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<AppExecCheck>,
    /// Seconds between checks (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<i32>,
    /// Seconds before a check counts as failed (default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i32>,
    /// Seconds before the first check (default 15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_seconds: Option<i32>,
}

/// HTTP variant of [`AppCheck`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppHttpCheck {
    /// Index into the App's ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_index: Option<i32>,
    /// Request path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `HTTP` or `HTTPS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
}

/// TCP variant of [`AppCheck`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppTcpCheck {
    /// Index into the App's ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_index: Option<i32>,
}

/// Command variant of [`AppCheck`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppExecCheck {
    /// The command to run.
    pub command: ExecCommand,
}

/// A command given as a shell string or as an argument vector.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecCommand {
    /// Run through `/bin/sh -c`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    /// Run directly, without a shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
}
