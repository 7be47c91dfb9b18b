//! `Launch`: everything a runtime needs to start one instance, derived once (purely) from the
//! Instance object — what to run (`cmd` through `/bin/sh -c`, or `args` as given), the
//! environment Marathon gives its tasks (`HOST`, `PORT0…`, `PORT_<NAME>`, `PORT`, `PORTS`,
//! `MARATHON_APP_*`, `MESOS_TASK_ID`), host ports and how they map to container ports, the
//! resource limits, the kill grace period, and the labels that mark the instance as Pacer's.
//! Runtimes never look at the Instance itself, so this is the one place those rules live.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use pacer_schemas::env::EnvVarValue;
use pacer_schemas::networking::PortProtocol;
use pacer_schemas::{AppSpec, Instance, MarathonId};

/// Label (on containers) and pid-file field naming the instance's namespace.
pub const LABEL_NAMESPACE: &str = "pacer.dev/namespace";
/// Label naming the instance.
pub const LABEL_INSTANCE: &str = "pacer.dev/instance";
/// Label naming the instance's App.
pub const LABEL_APP: &str = "pacer.dev/app";
/// Label naming the node whose agent started it.
pub const LABEL_NODE: &str = "pacer.dev/node";
/// Label holding the identity of the agent (its data directory's id) that owns it.
pub const LABEL_AGENT: &str = "pacer.dev/agent-id";
/// Label saying who manages the container: always [`MANAGED_BY`].
pub const LABEL_MANAGED_BY: &str = "pacer.dev/managed-by";
/// Value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY: &str = "pacer";

/// Marathon's default `taskKillGracePeriodSeconds` when an App sets none (Mesos' default).
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(3);

/// An instance's namespace and name: the key an agent tracks it by.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceKey {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl InstanceKey {
    /// A key from its parts.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of `instance`.
    pub fn of(instance: &Instance) -> Self {
        Self::new(
            instance.metadata.namespace_str(),
            instance.metadata.name_str(),
        )
    }
}

impl fmt::Display for InstanceKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.namespace, self.name)
    }
}

/// What to execute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `cmd`: run with `/bin/sh -c` (Marathon's shell command).
    Shell(String),
    /// `args`: run as an argument vector, no shell (appended to a Docker image's entrypoint).
    Argv(Vec<String>),
    /// Neither: a Docker image's own entrypoint and command.
    ImageDefault,
}

/// One host port of the instance and, for containers on a bridge, the container port behind
/// it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortBinding {
    /// The port on the node.
    pub host_port: u16,
    /// The port inside the container (equal to `host_port` under host networking).
    pub container_port: u16,
    /// Transport protocols.
    pub protocols: Vec<&'static str>,
    /// The port's name, if the App named it.
    pub name: Option<String>,
}

/// Everything a runtime needs to start an instance.
#[derive(Clone, Debug, PartialEq)]
pub struct Launch {
    /// Which instance.
    pub key: InstanceKey,
    /// Its App's name.
    pub app: String,
    /// What to run.
    pub command: Command,
    /// Docker image; `None` runs a plain process.
    pub image: Option<String>,
    /// Whether the container joins the host's network (`portDefinitions`) rather than the
    /// bridge (`container.portMappings`).
    pub host_network: bool,
    /// Environment: the App's `env` plus Marathon's task variables (the App's own win).
    pub env: BTreeMap<String, String>,
    /// Host ports, in the App's port order.
    pub ports: Vec<PortBinding>,
    /// CPU shares (a limit for containers and, where enforced, processes).
    pub cpus: f64,
    /// Memory in MiB.
    pub mem: f64,
    /// Time between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// Labels that mark what runs as Pacer's and name the instance.
    pub labels: BTreeMap<String, String>,
}

/// Why an instance cannot be launched as specified.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LaunchError {
    /// The Instance carries no `spec.template`.
    #[error("spec.template: required: the Instance carries no App spec to run")]
    NoTemplate,
    /// Neither a command nor an image.
    #[error("spec.template: neither cmd, args nor container.docker.image: nothing to run")]
    NothingToRun,
    /// An env var refers to a secret (no secret store yet).
    #[error("spec.template.env.{0}: secret references are not supported by this agent yet")]
    SecretEnv(String),
    /// Fewer host ports than the App declares.
    #[error("spec.hostPorts: {given} host port(s) for {needed} declared port(s)")]
    PortCount {
        /// Ports the App declares.
        needed: usize,
        /// Host ports placement assigned.
        given: usize,
    },
    /// A port outside 1..=65535.
    #[error("{field}: {port} is not a port number (1-65535)")]
    BadPort {
        /// Field path.
        field: String,
        /// The value.
        port: i32,
    },
}

/// How the node names itself in `HOST`.
#[derive(Clone, Debug, Default)]
pub struct LaunchContext {
    /// The node's host name (`$HOST`).
    pub host: String,
    /// The node's name (label).
    pub node: String,
    /// The agent's identity (label).
    pub agent_id: String,
}

impl Launch {
    /// Derives the launch of `instance` on a node described by `context`.
    pub fn from_instance(
        instance: &Instance,
        context: &LaunchContext,
    ) -> Result<Self, LaunchError> {
        let key = InstanceKey::of(instance);
        let spec = instance
            .spec
            .template
            .as_ref()
            .ok_or(LaunchError::NoTemplate)?;
        let image = spec.image().map(str::to_owned);
        let command = match (&spec.cmd, &spec.args) {
            (Some(cmd), _) if !cmd.trim().is_empty() => Command::Shell(cmd.clone()),
            (_, Some(args)) if !args.is_empty() => Command::Argv(args.clone()),
            _ if image.is_some() => Command::ImageDefault,
            _ => return Err(LaunchError::NothingToRun),
        };
        let host_network = spec.uses_host_networking();
        let ports = port_bindings(
            spec,
            instance.spec.host_ports.as_deref().unwrap_or_default(),
        )?;
        let app = if instance.spec.app.is_empty() {
            key.name.clone()
        } else {
            instance.spec.app.clone()
        };
        let env = environment(instance, spec, &app, &ports, context, image.as_deref())?;
        let labels = BTreeMap::from([
            (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
            (LABEL_NAMESPACE.to_owned(), key.namespace.clone()),
            (LABEL_INSTANCE.to_owned(), key.name.clone()),
            (LABEL_APP.to_owned(), app.clone()),
            (LABEL_NODE.to_owned(), context.node.clone()),
            (LABEL_AGENT.to_owned(), context.agent_id.clone()),
        ]);
        let kill_grace = spec
            .task_kill_grace_period_seconds
            .and_then(|seconds| u64::try_from(seconds).ok())
            .map_or(DEFAULT_KILL_GRACE, Duration::from_secs);
        Ok(Self {
            key,
            app,
            command,
            image,
            host_network,
            env,
            ports,
            cpus: spec.cpus.unwrap_or(1.0),
            mem: spec.mem.unwrap_or(128.0),
            kill_grace,
            labels,
        })
    }

    /// The kill grace period `instance` asks for, without deriving the whole launch.
    pub fn kill_grace_of(instance: &Instance) -> Duration {
        instance
            .spec
            .template
            .as_ref()
            .and_then(|spec| spec.task_kill_grace_period_seconds)
            .and_then(|seconds| u64::try_from(seconds).ok())
            .map_or(DEFAULT_KILL_GRACE, Duration::from_secs)
    }
}

/// Pairs the App's ports with the host ports placement assigned: `portDefinitions` under
/// host networking (container port = host port), else the port mappings that ask for a host
/// port (a `containerPort` of 0 means "same as the host port").
fn port_bindings(spec: &AppSpec, host_ports: &[i32]) -> Result<Vec<PortBinding>, LaunchError> {
    struct Declared {
        container_port: Option<i32>,
        protocol: Option<PortProtocol>,
        name: Option<String>,
    }
    let declared: Vec<Declared> = if spec.uses_host_networking() {
        match (&spec.port_definitions, &spec.ports) {
            (Some(definitions), _) => definitions
                .iter()
                .map(|definition| Declared {
                    container_port: None,
                    protocol: definition.protocol.clone(),
                    name: definition.name.clone(),
                })
                .collect(),
            (None, Some(ports)) => ports
                .iter()
                .map(|_| Declared {
                    container_port: None,
                    protocol: None,
                    name: None,
                })
                .collect(),
            (None, None) => Vec::new(),
        }
    } else {
        spec.port_mappings()
            .unwrap_or_default()
            .iter()
            .filter(|mapping| mapping.host_port.is_some())
            .map(|mapping| Declared {
                container_port: mapping.container_port.filter(|port| *port != 0),
                protocol: mapping.protocol.clone(),
                name: mapping.name.clone(),
            })
            .collect()
    };
    // No host ports at all (e.g. an unplaced instance, or one whose App asks for none) is
    // allowed: the instance simply gets no PORT variables.
    if host_ports.is_empty() {
        return Ok(Vec::new());
    }
    if host_ports.len() < declared.len() {
        return Err(LaunchError::PortCount {
            needed: declared.len(),
            given: host_ports.len(),
        });
    }
    let as_port = |field: String, port: i32| {
        u16::try_from(port)
            .ok()
            .filter(|port| *port != 0)
            .ok_or(LaunchError::BadPort { field, port })
    };
    declared
        .iter()
        .zip(host_ports)
        .enumerate()
        .map(|(index, (declared, host_port))| {
            let host = as_port(format!("spec.hostPorts[{index}]"), *host_port)?;
            let container = match declared.container_port {
                Some(port) => as_port(
                    format!("spec.template.container.portMappings[{index}].containerPort"),
                    port,
                )?,
                None => host,
            };
            let protocols = match declared.protocol {
                Some(PortProtocol::Udp) => vec!["udp"],
                Some(PortProtocol::UdpTcp) => vec!["udp", "tcp"],
                _ => vec!["tcp"],
            };
            Ok(PortBinding {
                host_port: host,
                container_port: container,
                protocols,
                name: declared.name.clone(),
            })
        })
        .collect()
}

/// Marathon's task environment plus the App's `env` (which wins on a clash).
fn environment(
    instance: &Instance,
    spec: &AppSpec,
    app: &str,
    ports: &[PortBinding],
    context: &LaunchContext,
    image: Option<&str>,
) -> Result<BTreeMap<String, String>, LaunchError> {
    let key = InstanceKey::of(instance);
    let mut env = BTreeMap::new();
    env.insert("HOST".to_owned(), context.host.clone());
    for (index, port) in ports.iter().enumerate() {
        env.insert(format!("PORT{index}"), port.host_port.to_string());
        if let Some(name) = &port.name {
            env.insert(
                format!("PORT_{}", env_name(name)),
                port.host_port.to_string(),
            );
        }
        if port.container_port != port.host_port {
            // Marathon: `PORT_<containerPort>` is the host port a container port is mapped to.
            env.insert(
                format!("PORT_{}", port.container_port),
                port.host_port.to_string(),
            );
        }
    }
    if let Some(first) = ports.first() {
        env.insert("PORT".to_owned(), first.host_port.to_string());
    }
    let all: Vec<String> = ports
        .iter()
        .map(|port| port.host_port.to_string())
        .collect();
    env.insert("PORTS".to_owned(), all.join(","));
    let marathon_id = MarathonId::from_object(&key.namespace, app)
        .map(|id| id.to_string())
        .unwrap_or_else(|_| format!("/{}/{app}", key.namespace));
    env.insert("MARATHON_APP_ID".to_owned(), marathon_id);
    env.insert(
        "MARATHON_APP_VERSION".to_owned(),
        instance.spec.app_version.clone(),
    );
    env.insert(
        "MARATHON_APP_DOCKER_IMAGE".to_owned(),
        image.unwrap_or_default().to_owned(),
    );
    env.insert(
        "MARATHON_APP_RESOURCE_CPUS".to_owned(),
        spec.cpus.unwrap_or(1.0).to_string(),
    );
    env.insert(
        "MARATHON_APP_RESOURCE_MEM".to_owned(),
        spec.mem.unwrap_or(128.0).to_string(),
    );
    env.insert(
        "MARATHON_APP_RESOURCE_DISK".to_owned(),
        spec.disk.unwrap_or(0.0).to_string(),
    );
    env.insert(
        "MARATHON_APP_RESOURCE_GPUS".to_owned(),
        spec.gpus.unwrap_or(0).to_string(),
    );
    let labels = spec.labels.clone().unwrap_or_default();
    let label_names: Vec<String> = labels.keys().map(|name| env_name(name)).collect();
    env.insert("MARATHON_APP_LABELS".to_owned(), label_names.join(" "));
    for (name, value) in &labels {
        env.insert(
            format!("MARATHON_APP_LABEL_{}", env_name(name)),
            value.clone(),
        );
    }
    env.insert("MESOS_TASK_ID".to_owned(), key.name.clone());
    for (name, value) in spec.env.iter().flatten() {
        match value {
            EnvVarValue::Value(value) => {
                env.insert(name.clone(), value.clone());
            }
            EnvVarValue::Secret(_) => return Err(LaunchError::SecretEnv(name.clone())),
        }
    }
    Ok(env)
}

/// A name as Marathon puts it into a variable name: upper case, anything but `[A-Z0-9_]`
/// replaced by `_`.
fn env_name(name: &str) -> String {
    name.chars()
        .map(|character| {
            if character.is_ascii_alphanumeric() {
                character.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use pacer_schemas::ObjectMeta;
    use pacer_schemas::container::{Container, DockerContainer, PortMapping};
    use pacer_schemas::instance::InstanceSpec;
    use pacer_schemas::networking::{Network, NetworkMode, PortDefinition};

    use super::*;

    fn instance(spec: AppSpec, host_ports: &[i32]) -> Instance {
        Instance {
            metadata: ObjectMeta::named("prod", "web-abc12"),
            spec: InstanceSpec {
                app: "web".into(),
                app_version: "2024-01-01T00:00:00Z".into(),
                template: Some(spec),
                host_ports: Some(host_ports.to_vec()),
                ..InstanceSpec::default()
            },
            ..Instance::default()
        }
    }

    fn context() -> LaunchContext {
        LaunchContext {
            host: "node-1.example".into(),
            node: "node-1".into(),
            agent_id: "agent-x".into(),
        }
    }

    #[test]
    fn shell_command_with_marathon_environment() {
        let spec = AppSpec {
            cmd: Some("echo $PORT0".into()),
            port_definitions: Some(vec![
                PortDefinition {
                    name: Some("http".into()),
                    ..PortDefinition::default()
                },
                PortDefinition::default(),
            ]),
            env: Some(BTreeMap::from([("GREETING".into(), "hi".into())])),
            labels: Some(BTreeMap::from([("team-name".into(), "shop".into())])),
            cpus: Some(0.5),
            task_kill_grace_period_seconds: Some(7),
            ..AppSpec::default()
        };
        let launch = Launch::from_instance(&instance(spec, &[31000, 31001]), &context()).unwrap();
        assert_eq!(launch.command, Command::Shell("echo $PORT0".into()));
        assert!(launch.image.is_none());
        assert!(launch.host_network);
        assert_eq!(launch.kill_grace, Duration::from_secs(7));
        for (name, value) in [
            ("HOST", "node-1.example"),
            ("PORT0", "31000"),
            ("PORT1", "31001"),
            ("PORT", "31000"),
            ("PORTS", "31000,31001"),
            ("PORT_HTTP", "31000"),
            ("GREETING", "hi"),
            ("MARATHON_APP_ID", "/prod/web"),
            ("MARATHON_APP_VERSION", "2024-01-01T00:00:00Z"),
            ("MARATHON_APP_RESOURCE_CPUS", "0.5"),
            ("MARATHON_APP_LABELS", "TEAM_NAME"),
            ("MARATHON_APP_LABEL_TEAM_NAME", "shop"),
            ("MESOS_TASK_ID", "web-abc12"),
        ] {
            assert_eq!(
                launch.env.get(name).map(String::as_str),
                Some(value),
                "{name}"
            );
        }
        assert_eq!(launch.labels[LABEL_INSTANCE], "web-abc12");
        assert_eq!(launch.labels[LABEL_NODE], "node-1");
        assert_eq!(launch.labels[LABEL_AGENT], "agent-x");
    }

    #[test]
    fn bridge_port_mappings_pair_host_and_container_ports() {
        let spec = AppSpec {
            networks: Some(vec![Network {
                mode: Some(NetworkMode::ContainerBridge),
                ..Network::default()
            }]),
            container: Some(Container {
                docker: Some(DockerContainer {
                    image: Some("pacer-test/busybox:1".into()),
                    ..DockerContainer::default()
                }),
                port_mappings: Some(vec![
                    PortMapping {
                        container_port: Some(8080),
                        host_port: Some(0),
                        ..PortMapping::default()
                    },
                    PortMapping {
                        container_port: Some(9090),
                        host_port: None,
                        ..PortMapping::default()
                    },
                    PortMapping {
                        container_port: Some(0),
                        host_port: Some(0),
                        protocol: Some(PortProtocol::UdpTcp),
                        ..PortMapping::default()
                    },
                ]),
                ..Container::default()
            }),
            ..AppSpec::default()
        };
        let launch = Launch::from_instance(&instance(spec, &[31005, 31006]), &context()).unwrap();
        assert_eq!(launch.command, Command::ImageDefault);
        assert!(!launch.host_network);
        assert_eq!(
            launch
                .ports
                .iter()
                .map(|port| (port.host_port, port.container_port, port.protocols.clone()))
                .collect::<Vec<_>>(),
            vec![
                (31005, 8080, vec!["tcp"]),
                (31006, 31006, vec!["udp", "tcp"])
            ]
        );
        assert_eq!(launch.env["PORT_8080"], "31005");
        assert_eq!(
            launch.env["MARATHON_APP_DOCKER_IMAGE"],
            "pacer-test/busybox:1"
        );
    }

    #[test]
    fn what_cannot_be_launched_says_why() {
        let no_template = Instance {
            metadata: ObjectMeta::named("default", "x"),
            ..Instance::default()
        };
        assert_eq!(
            Launch::from_instance(&no_template, &context()).unwrap_err(),
            LaunchError::NoTemplate
        );
        let empty = instance(AppSpec::default(), &[]);
        assert_eq!(
            Launch::from_instance(&empty, &context()).unwrap_err(),
            LaunchError::NothingToRun
        );
        let two_ports = AppSpec {
            args: Some(vec!["sleep".into(), "1".into()]),
            port_definitions: Some(vec![PortDefinition::default(), PortDefinition::default()]),
            ..AppSpec::default()
        };
        let error = Launch::from_instance(&instance(two_ports, &[31000]), &context()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "spec.hostPorts: 1 host port(s) for 2 declared port(s)"
        );
        let zero = AppSpec {
            args: Some(vec!["sleep".into()]),
            port_definitions: Some(vec![PortDefinition::default()]),
            ..AppSpec::default()
        };
        assert!(matches!(
            Launch::from_instance(&instance(zero, &[0]), &context()).unwrap_err(),
            LaunchError::BadPort { .. }
        ));
    }
}
