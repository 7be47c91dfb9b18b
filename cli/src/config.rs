//! `pacer config` and where client commands find their server: a kubeconfig-like file
//! (`$PACER_CONFIG`, else `$XDG_CONFIG_HOME/pacer/config.yaml`, else
//! `~/.config/pacer/config.yaml`) holding named contexts (server URL, namespace, optional
//! bearer token) and the current one.
//!
//! Precedence, for each setting: flag (`--server`, `-n/--namespace`, `--token`) > environment
//! (`PACER_SERVER`, `PACER_NAMESPACE`, `PACER_TOKEN`) > the selected context (`--context`, else
//! `PACER_CONTEXT`, else the file's `currentContext`) > defaults (`http://127.0.0.1:8080`,
//! `default`, no token).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use pacer_client::{Client, DEFAULT_NAMESPACE, DEFAULT_SERVER};
use serde::{Deserialize, Serialize};

use crate::output::Outcome;

/// How a client command reaches the server (flattened into every client command).
#[derive(Clone, Debug, Default, clap::Args)]
pub(crate) struct ConnectArgs {
    /// API server URL (overrides PACER_SERVER and the config file).
    #[arg(long, value_name = "URL")]
    pub(crate) server: Option<String>,
    /// Namespace (overrides PACER_NAMESPACE and the config file).
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub(crate) namespace: Option<String>,
    /// Context of the config file to use (overrides PACER_CONTEXT and currentContext).
    #[arg(long, value_name = "NAME")]
    pub(crate) context: Option<String>,
    /// Bearer token (overrides PACER_TOKEN and the config file).
    #[arg(long, value_name = "TOKEN")]
    pub(crate) token: Option<String>,
}

/// `pacer config …`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ConfigCommand {
    /// Create or update a context; only the given fields change.
    SetContext {
        /// Name of the context.
        name: String,
        /// API server URL.
        #[arg(long, value_name = "URL")]
        server: Option<String>,
        /// Default namespace.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Bearer token.
        #[arg(long)]
        token: Option<String>,
        /// Also make it the current context.
        #[arg(long)]
        current: bool,
    },
    /// Make a context the current one.
    UseContext {
        /// Name of the context.
        name: String,
    },
    /// Print the current context's name.
    CurrentContext,
    /// List the contexts.
    GetContexts,
    /// Remove a context.
    DeleteContext {
        /// Name of the context.
        name: String,
    },
    /// Print the config file (tokens redacted unless --raw).
    View {
        /// Show tokens.
        #[arg(long)]
        raw: bool,
    },
}

/// The config file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ConfigFile {
    /// `pacer.dev/v1`.
    #[serde(default = "config_api_version")]
    pub(crate) api_version: String,
    /// `Config`.
    #[serde(default = "config_kind")]
    pub(crate) kind: String,
    /// The context used when none is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) current_context: Option<String>,
    /// Named contexts.
    #[serde(default)]
    pub(crate) contexts: Vec<NamedContext>,
}

/// One context.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct NamedContext {
    /// Its name.
    pub(crate) name: String,
    /// API server URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) server: Option<String>,
    /// Default namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) namespace: Option<String>,
    /// Bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) token: Option<String>,
}

/// What a client command ends up using.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Settings {
    /// Server URL.
    pub(crate) server: String,
    /// Namespace.
    pub(crate) namespace: String,
    /// Whether the namespace was given with `-n` (apply then refuses objects of another one).
    pub(crate) namespace_from_flag: bool,
    /// Bearer token.
    pub(crate) token: Option<String>,
}

fn config_api_version() -> String {
    pacer_schemas::API_VERSION.to_owned()
}

fn config_kind() -> String {
    "Config".to_owned()
}

impl ConnectArgs {
    /// Resolves the settings from flags, the process environment and the config file.
    pub(crate) fn settings(&self) -> anyhow::Result<Settings> {
        let env = |key: &str| std::env::var(key).ok();
        let path = config_path(&env)?;
        let file = ConfigFile::load(&path)?;
        resolve(self, &env, &file)
    }

    /// Builds a client from the resolved settings.
    pub(crate) fn connect(&self) -> anyhow::Result<(Client, Settings)> {
        let settings = self.settings()?;
        let mut config = pacer_client::Config::new(&settings.server)
            .with_namespace(&settings.namespace)
            .with_user_agent(format!("pacer/{}", env!("CARGO_PKG_VERSION")));
        if let Some(token) = &settings.token {
            config = config.with_token(token);
        }
        let client = Client::new(config)?;
        Ok((client, settings))
    }
}

/// Applies the precedence rules (see the module docs); `env` reads an environment variable.
pub(crate) fn resolve(
    args: &ConnectArgs,
    env: &dyn Fn(&str) -> Option<String>,
    file: &ConfigFile,
) -> anyhow::Result<Settings> {
    let env = |key: &str| env(key).filter(|value| !value.is_empty());
    let context_name = args.context.clone().or_else(|| env("PACER_CONTEXT"));
    let context = match &context_name {
        Some(name) => Some(file.context(name).with_context(|| {
            format!("context {name:?} is not in the config file (see `pacer config get-contexts`)")
        })?),
        None => file
            .current_context
            .as_deref()
            .and_then(|name| file.context(name)),
    };
    let server = args
        .server
        .clone()
        .or_else(|| env("PACER_SERVER"))
        .or_else(|| context.and_then(|context| context.server.clone()))
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
    let namespace = args
        .namespace
        .clone()
        .or_else(|| env("PACER_NAMESPACE"))
        .or_else(|| context.and_then(|context| context.namespace.clone()))
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
    let token = args
        .token
        .clone()
        .or_else(|| env("PACER_TOKEN"))
        .or_else(|| context.and_then(|context| context.token.clone()));
    Ok(Settings {
        server,
        namespace,
        namespace_from_flag: args.namespace.is_some(),
        token,
    })
}

/// Where the config file lives.
pub(crate) fn config_path(env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<PathBuf> {
    let env = |key: &str| env(key).filter(|value| !value.is_empty());
    if let Some(path) = env("PACER_CONFIG") {
        return Ok(PathBuf::from(path));
    }
    if let Some(config_home) = env("XDG_CONFIG_HOME") {
        return Ok(PathBuf::from(config_home).join("pacer/config.yaml"));
    }
    let home = env("HOME")
        .context("find the config file: neither PACER_CONFIG, XDG_CONFIG_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".config/pacer/config.yaml"))
}

impl ConfigFile {
    /// Reads the file; a missing file is an empty config.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::empty());
            }
            Err(error) => {
                return Err(error).with_context(|| format!("read {}", path.display()));
            }
        };
        if text.trim().is_empty() {
            return Ok(Self::empty());
        }
        serde_saphyr::from_str(&text).map_err(|error| {
            let location = error
                .location()
                .map(|location| format!(":{}:{}", location.line(), location.column()))
                .unwrap_or_default();
            anyhow::anyhow!(
                "{}{location}: invalid config file: {}",
                path.display(),
                crate::manifest::yaml_message(&error)
            )
        })
    }

    /// Writes the file (mode 0600: it may hold tokens), creating its directory.
    pub(crate) fn save(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_saphyr::to_string(self).context("encode the config file")?;
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        let temporary = path.with_extension("yaml.tmp");
        write_private(&temporary, text.as_bytes())
            .with_context(|| format!("write {}", temporary.display()))?;
        std::fs::rename(&temporary, path).with_context(|| format!("replace {}", path.display()))?;
        Ok(())
    }

    fn empty() -> Self {
        Self {
            api_version: config_api_version(),
            kind: config_kind(),
            ..Self::default()
        }
    }

    fn context(&self, name: &str) -> Option<&NamedContext> {
        self.contexts.iter().find(|context| context.name == name)
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// Runs `pacer config …`.
pub(crate) fn run(command: ConfigCommand) -> anyhow::Result<Outcome> {
    let env = |key: &str| std::env::var(key).ok();
    let path = config_path(&env)?;
    let mut file = ConfigFile::load(&path)?;
    match command {
        ConfigCommand::SetContext {
            name,
            server,
            namespace,
            token,
            current,
        } => {
            if let Some(server) = &server {
                // Fail now rather than on the next command.
                pacer_client::Client::new(pacer_client::Config::new(server))?;
            }
            let exists = file.context(&name).is_some();
            if !exists {
                file.contexts.push(NamedContext {
                    name: name.clone(),
                    ..NamedContext::default()
                });
            }
            if let Some(context) = file
                .contexts
                .iter_mut()
                .find(|context| context.name == name)
            {
                context.server = server.or(context.server.take());
                context.namespace = namespace.or(context.namespace.take());
                context.token = token.or(context.token.take());
            }
            if current || file.current_context.is_none() {
                file.current_context = Some(name.clone());
            }
            file.save(&path)?;
            let verb = if exists { "modified" } else { "created" };
            println!("Context \"{name}\" {verb}.");
        }
        ConfigCommand::UseContext { name } => {
            if file.context(&name).is_none() {
                bail!("no context exists with the name: {name:?}");
            }
            file.current_context = Some(name.clone());
            file.save(&path)?;
            println!("Switched to context \"{name}\".");
        }
        ConfigCommand::CurrentContext => match &file.current_context {
            Some(name) => println!("{name}"),
            None => bail!("current-context is not set"),
        },
        ConfigCommand::GetContexts => {
            let mut table = crate::output::plain_table(&["CURRENT", "NAME", "SERVER", "NAMESPACE"]);
            for context in &file.contexts {
                let current = file.current_context.as_deref() == Some(context.name.as_str());
                table.add_row(vec![
                    if current { "*" } else { "" }.to_owned(),
                    context.name.clone(),
                    context.server.clone().unwrap_or_default(),
                    context.namespace.clone().unwrap_or_default(),
                ]);
            }
            println!("{}", crate::output::render_table(&table));
        }
        ConfigCommand::DeleteContext { name } => {
            let before = file.contexts.len();
            file.contexts.retain(|context| context.name != name);
            if file.contexts.len() == before {
                bail!("no context exists with the name: {name:?}");
            }
            if file.current_context.as_deref() == Some(name.as_str()) {
                file.current_context = None;
            }
            file.save(&path)?;
            println!("Deleted context \"{name}\" from {}.", path.display());
        }
        ConfigCommand::View { raw } => {
            if !raw {
                for context in &mut file.contexts {
                    if context.token.is_some() {
                        context.token = Some("REDACTED".to_owned());
                    }
                }
            }
            print!(
                "{}",
                serde_saphyr::to_string(&file).context("encode the config")?
            );
        }
    }
    Ok(Outcome::Success)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn file() -> ConfigFile {
        ConfigFile {
            current_context: Some("dev".into()),
            contexts: vec![
                NamedContext {
                    name: "dev".into(),
                    server: Some("http://dev:1".into()),
                    namespace: Some("devns".into()),
                    token: Some("devtoken".into()),
                },
                NamedContext {
                    name: "prod".into(),
                    server: Some("https://prod:2".into()),
                    namespace: None,
                    token: None,
                },
            ],
            ..ConfigFile::empty()
        }
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        move |key| map.get(key).cloned()
    }

    #[test]
    fn defaults_apply_without_anything() {
        let settings = resolve(&ConnectArgs::default(), &env(&[]), &ConfigFile::empty()).unwrap();
        assert_eq!(
            settings,
            Settings {
                server: "http://127.0.0.1:8080".into(),
                namespace: "default".into(),
                namespace_from_flag: false,
                token: None
            }
        );
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let file = file();
        let from_file = resolve(&ConnectArgs::default(), &env(&[]), &file).unwrap();
        assert_eq!(
            (from_file.server.as_str(), from_file.namespace.as_str()),
            ("http://dev:1", "devns")
        );
        assert_eq!(from_file.token.as_deref(), Some("devtoken"));

        let vars = env(&[
            ("PACER_SERVER", "http://env:3"),
            ("PACER_NAMESPACE", "envns"),
            ("PACER_TOKEN", "envtoken"),
        ]);
        let from_env = resolve(&ConnectArgs::default(), &vars, &file).unwrap();
        assert_eq!(from_env.server, "http://env:3");
        assert_eq!(from_env.namespace, "envns");
        assert_eq!(from_env.token.as_deref(), Some("envtoken"));
        assert!(!from_env.namespace_from_flag);

        let flags = ConnectArgs {
            server: Some("http://flag:4".into()),
            namespace: Some("flagns".into()),
            token: Some("flagtoken".into()),
            context: None,
        };
        let from_flags = resolve(&flags, &vars, &file).unwrap();
        assert_eq!(from_flags.server, "http://flag:4");
        assert_eq!(from_flags.namespace, "flagns");
        assert_eq!(from_flags.token.as_deref(), Some("flagtoken"));
        assert!(from_flags.namespace_from_flag);
    }

    #[test]
    fn contexts_are_selected_by_flag_env_or_current() {
        let file = file();
        let by_env = resolve(
            &ConnectArgs::default(),
            &env(&[("PACER_CONTEXT", "prod")]),
            &file,
        )
        .unwrap();
        assert_eq!(by_env.server, "https://prod:2");
        assert_eq!(by_env.namespace, "default");
        assert_eq!(by_env.token, None);
        let args = ConnectArgs {
            context: Some("dev".into()),
            ..ConnectArgs::default()
        };
        assert_eq!(
            resolve(&args, &env(&[("PACER_CONTEXT", "prod")]), &file)
                .unwrap()
                .server,
            "http://dev:1"
        );
        let missing = ConnectArgs {
            context: Some("nope".into()),
            ..ConnectArgs::default()
        };
        let error = resolve(&missing, &env(&[]), &file).unwrap_err();
        assert!(error.to_string().contains("\"nope\""), "{error}");
        // Empty variables count as unset.
        let empty = resolve(
            &ConnectArgs::default(),
            &env(&[("PACER_SERVER", "")]),
            &file,
        )
        .unwrap();
        assert_eq!(empty.server, "http://dev:1");
    }

    #[test]
    fn config_path_follows_the_environment() {
        assert_eq!(
            config_path(&env(&[("PACER_CONFIG", "/x/c.yaml"), ("HOME", "/h")])).unwrap(),
            PathBuf::from("/x/c.yaml")
        );
        assert_eq!(
            config_path(&env(&[("XDG_CONFIG_HOME", "/xdg"), ("HOME", "/h")])).unwrap(),
            PathBuf::from("/xdg/pacer/config.yaml")
        );
        assert_eq!(
            config_path(&env(&[("HOME", "/h")])).unwrap(),
            PathBuf::from("/h/.config/pacer/config.yaml")
        );
        assert!(config_path(&env(&[])).is_err());
    }

    #[test]
    fn the_file_round_trips_and_rejects_typos() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.yaml");
        assert_eq!(ConfigFile::load(&path).unwrap(), ConfigFile::empty());
        file().save(&path).unwrap();
        assert_eq!(ConfigFile::load(&path).unwrap(), file());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("currentContext: dev"), "{text}");
        std::fs::write(&path, "contexts:\n- name: a\n  sever: http://x\n").unwrap();
        let error = ConfigFile::load(&path).unwrap_err().to_string();
        assert!(error.contains("config.yaml:3:3"), "{error}");
        assert!(error.contains("sever"), "{error}");
    }
}
