//! Probes against real listeners on loopback: plain HTTP answers with chosen statuses, an
//! HTTPS server with a self-signed certificate (rcgen), TCP ports open and closed, a server
//! that never answers (timeouts), command checks run in a real sandbox with the instance's
//! environment and, through `docker exec`, in a real container (the Docker engine runs on
//! these machines). Plus how a plan is resolved from an Instance.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use pacer_schemas::ObjectMeta;
use pacer_schemas::health::{CommandCheck, HealthCheck, ReadinessCheck};
use pacer_schemas::instance::{InstanceSpec, InstanceStatus};
use pacer_schemas::networking::PortDefinition;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// Serves every connection with `response` (raw HTTP) after reading the request head.
async fn serve_raw(response: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0_u8; 4096];
                let _ = stream.read(&mut buffer).await;
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    address
}

/// Accepts connections and never answers.
async fn serve_silence() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    address
}

/// A loopback port with nothing listening on it.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    address
}

/// An HTTPS server with a fresh self-signed certificate answering 200 `ok`.
async fn serve_https() -> SocketAddr {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut buffer = [0_u8; 4096];
                let _ = tls.read(&mut buffer).await;
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    address
}

fn http_check(scheme: Scheme, address: SocketAddr, ignore_http1xx: bool) -> HealthPlan {
    HealthPlan {
        index: 0,
        probe: Probe::Http {
            scheme,
            address,
            path: "/health".into(),
            ignore_http1xx,
        },
        grace_seconds: 0,
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(2),
        delay: Duration::ZERO,
    }
}

#[tokio::test]
async fn http_probes_read_statuses_as_marathon_does() {
    let prober = Prober::new().unwrap();
    // (response, ignoreHttp1xx, expected outcome: healthy / unhealthy cause contains / ignored)
    let table: [(&'static str, bool, Result<bool, &str>); 6] = [
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            false,
            Ok(true),
        ),
        (
            "HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n",
            false,
            Ok(true),
        ),
        (
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            false,
            Err("HTTP status 404"),
        ),
        (
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
            true,
            Err("HTTP status 503"),
        ),
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
            true,
            Ok(false),
        ),
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
            false,
            Err("HTTP status 101"),
        ),
    ];
    for (response, ignore, expected) in table {
        let address = serve_raw(response).await;
        let outcome = run_health_probe(&prober, &http_check(Scheme::Http, address, ignore)).await;
        match expected {
            Ok(true) => assert_eq!(outcome, Outcome::Healthy, "{response:?}"),
            Ok(false) => assert_eq!(outcome, Outcome::Ignored, "{response:?}"),
            Err(cause) => match outcome {
                Outcome::Unhealthy(text) => assert!(text.contains(cause), "{response:?}: {text}"),
                other => panic!("{response:?}: {other:?}"),
            },
        }
    }
}

#[tokio::test]
async fn https_probes_accept_self_signed_certificates() {
    let prober = Prober::new().unwrap();
    let address = serve_https().await;
    let outcome = run_health_probe(&prober, &http_check(Scheme::Https, address, false)).await;
    assert_eq!(outcome, Outcome::Healthy);
    // The same port over plain HTTP fails.
    let outcome = run_health_probe(&prober, &http_check(Scheme::Http, address, false)).await;
    assert!(matches!(outcome, Outcome::Unhealthy(_)), "{outcome:?}");
}

#[tokio::test]
async fn silent_servers_time_out_and_closed_ports_fail() {
    let prober = Prober::new().unwrap();
    let silent = serve_silence().await;
    let mut check = http_check(Scheme::Http, silent, false);
    check.timeout = Duration::from_secs(1);
    match run_health_probe(&prober, &check).await {
        Outcome::Unhealthy(cause) => assert!(cause.contains("no answer within 1s"), "{cause}"),
        other => panic!("{other:?}"),
    }
    let closed = closed_port().await;
    match run_health_probe(&prober, &http_check(Scheme::Http, closed, false)).await {
        Outcome::Unhealthy(cause) => assert!(cause.contains(&closed.to_string()), "{cause}"),
        other => panic!("{other:?}"),
    }
    let tcp = |address| HealthPlan {
        probe: Probe::Tcp { address },
        ..http_check(Scheme::Http, address, false)
    };
    assert_eq!(
        run_health_probe(&prober, &tcp(silent)).await,
        Outcome::Healthy
    );
    match run_health_probe(&prober, &tcp(closed)).await {
        Outcome::Unhealthy(cause) => assert!(cause.contains("connect to"), "{cause}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn command_checks_run_in_the_sandbox_with_the_environment() {
    let prober = Prober::new().unwrap();
    let sandbox = tempfile::tempdir().unwrap();
    std::fs::write(sandbox.path().join("marker"), "x").unwrap();
    let context = CommandContext::Process {
        sandbox: sandbox.path().to_owned(),
        env: BTreeMap::from([("PORT0".to_owned(), "31000".to_owned())]),
    };
    let command = |command: &str, timeout: u64| HealthPlan {
        probe: Probe::Command {
            context: context.clone(),
            command: command.to_owned(),
        },
        timeout: Duration::from_secs(timeout),
        ..http_check(Scheme::Http, "127.0.0.1:1".parse().unwrap(), false)
    };
    let healthy = command(
        "test -f marker && test \"$PORT0\" = 31000 && test \"$MESOS_SANDBOX\" = \"$PWD\"",
        5,
    );
    assert_eq!(run_health_probe(&prober, &healthy).await, Outcome::Healthy);
    match run_health_probe(&prober, &command("echo broken >&2; exit 3", 5)).await {
        Outcome::Unhealthy(cause) => assert_eq!(cause, "command exited with code 3: broken"),
        other => panic!("{other:?}"),
    }
    match run_health_probe(&prober, &command("sleep 30", 1)).await {
        Outcome::Unhealthy(cause) => assert!(cause.contains("within 1s"), "{cause}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn readiness_is_ready_only_on_its_codes_and_keeps_the_response_when_asked() {
    let prober = Prober::new().unwrap();
    let address = serve_raw(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    )
    .await;
    let mut check = ReadinessPlan {
        name: "ready".into(),
        target: Ok((Scheme::Http, address)),
        path: "/ready".into(),
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(2),
        codes: vec![200],
        preserve_last_response: true,
    };
    let result = run_readiness_probe(&prober, &check).await;
    assert!(!result.ready);
    let response = result.last_response.unwrap();
    assert_eq!(response.status, 503);
    assert_eq!(response.content_type.as_deref(), Some("application/json"));
    assert_eq!(response.body.as_deref(), Some("{}"));
    check.codes = vec![200, 503];
    check.preserve_last_response = false;
    let result = run_readiness_probe(&prober, &check).await;
    assert!(result.ready);
    assert!(result.last_response.is_none());
    check.target = Ok((Scheme::Http, closed_port().await));
    assert!(!run_readiness_probe(&prober, &check).await.ready);
}

fn running_instance(template: AppSpec, host_ports: &[i32], image: bool) -> Instance {
    let mut template = template;
    if image {
        template.container = Some(pacer_schemas::container::Container {
            docker: Some(pacer_schemas::container::DockerContainer {
                image: Some("pacer-test/busybox:1".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    Instance {
        metadata: ObjectMeta::named("default", "web-abc"),
        spec: InstanceSpec {
            app: "web".into(),
            template: Some(template),
            node_name: Some("node-1".into()),
            host_ports: Some(host_ports.to_vec()),
            goal: Some(InstanceGoal::Running),
            ..InstanceSpec::default()
        },
        status: Some(InstanceStatus {
            phase: InstancePhase::Running,
            runtime_id: Some("4242".into()),
            ..InstanceStatus::default()
        }),
        ..Instance::default()
    }
}

#[test]
fn plans_resolve_ports_protocols_and_contexts() {
    let template = AppSpec {
        cmd: Some("serve".into()),
        port_definitions: Some(vec![
            PortDefinition::default(),
            PortDefinition {
                name: Some("http-api".into()),
                ..PortDefinition::default()
            },
        ]),
        health_checks: Some(vec![
            HealthCheck {
                protocol: Some(HealthCheckProtocol::Https),
                port_index: Some(1),
                path: Some("/h".into()),
                ..HealthCheck::default()
            },
            HealthCheck {
                protocol: Some(HealthCheckProtocol::Tcp),
                port: Some(8125),
                ..HealthCheck::default()
            },
            HealthCheck {
                protocol: Some(HealthCheckProtocol::Command),
                command: Some(CommandCheck {
                    value: "true".into(),
                }),
                ..HealthCheck::default()
            },
            HealthCheck {
                port_index: Some(5),
                ..HealthCheck::default()
            },
        ]),
        readiness_checks: Some(vec![ReadinessCheck::default()]),
        ..AppSpec::default()
    };
    let context = LaunchContext {
        host: "h".into(),
        node: "node-1".into(),
        agent_id: "a".into(),
    };
    let sandboxes = tempfile::tempdir().unwrap();
    let process = ProcessRuntime::new(sandboxes.path().to_owned(), "a").unwrap();
    let instance = running_instance(template.clone(), &[31000, 31001], false);
    let plan = Plan::of(&instance, &context, Some(&process)).unwrap();
    assert_eq!(plan.runtime_id, "4242");
    let probes: Vec<&Probe> = plan.health.iter().map(|check| &check.probe).collect();
    assert_eq!(
        probes[0],
        &Probe::Http {
            scheme: Scheme::Https,
            address: "127.0.0.1:31001".parse().unwrap(),
            path: "/h".into(),
            ignore_http1xx: false,
        }
    );
    assert_eq!(
        probes[1],
        &Probe::Tcp {
            address: "127.0.0.1:8125".parse().unwrap()
        }
    );
    match probes[2] {
        Probe::Command {
            context: CommandContext::Process { sandbox, env },
            command,
        } => {
            assert_eq!(command, "true");
            assert_eq!(
                sandbox,
                &process.sandbox(&InstanceKey::new("default", "web-abc"))
            );
            assert_eq!(env["PORT1"], "31001");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(probes[3], Probe::Unusable(cause) if cause.contains("portIndex")));
    assert_eq!(
        plan.health[0].interval,
        Duration::from_secs(u64::try_from(defaults::HEALTH_INTERVAL_SECONDS).unwrap())
    );
    assert_eq!(
        plan.readiness[0].target,
        Ok((Scheme::Http, "127.0.0.1:31001".parse().unwrap()))
    );

    // A container's command check is a docker exec in it.
    let docker = running_instance(template.clone(), &[31000, 31001], true);
    let plan = Plan::of(&docker, &context, None).unwrap();
    assert_eq!(
        plan.health[2].probe,
        Probe::Command {
            context: CommandContext::Docker {
                container: "4242".into()
            },
            command: "true".into()
        }
    );

    // Not running, not wanted, or without checks: not probed.
    let mut killing = instance.clone();
    killing.spec.goal = Some(InstanceGoal::Decommissioned);
    assert!(Plan::of(&killing, &context, Some(&process)).is_none());
    let mut starting = instance.clone();
    starting.status.as_mut().unwrap().phase = InstancePhase::Starting;
    assert!(Plan::of(&starting, &context, Some(&process)).is_none());
    let unchecked = running_instance(
        AppSpec {
            cmd: Some("serve".into()),
            ..AppSpec::default()
        },
        &[],
        false,
    );
    assert!(Plan::of(&unchecked, &context, Some(&process)).is_none());
}

#[test]
fn hollow_instances_are_healthy_and_ready_at_once() {
    let now = Time::from_unix_seconds(1_800_000_000).unwrap();
    let template = AppSpec {
        health_checks: Some(vec![HealthCheck::default(), HealthCheck::default()]),
        readiness_checks: Some(vec![ReadinessCheck::default()]),
        ..AppSpec::default()
    };
    let fields = hollow_status(Some(&template), now);
    assert_eq!(fields["healthy"], true);
    assert_eq!(fields["health"].as_array().unwrap().len(), 2);
    assert_eq!(fields["health"][1]["index"], 1);
    assert_eq!(fields["health"][1]["alive"], true);
    assert_eq!(fields["readiness"][0]["name"], "readinessCheck");
    assert_eq!(fields["readiness"][0]["ready"], true);
    assert!(hollow_status(Some(&AppSpec::default()), now).is_empty());
}

/// The busybox test image the agent's end-to-end tests use (`FROM scratch` plus Debian's
/// static busybox), built if this machine does not have it yet.
fn busybox_image() -> &'static str {
    const IMAGE: &str = "pacer-test/busybox:1";
    let present = std::process::Command::new("docker")
        .args(["image", "inspect", IMAGE])
        .output()
        .expect("run docker (the Docker engine runs on these machines)");
    if present.status.success() {
        return IMAGE;
    }
    let busybox = std::path::Path::new("/bin/busybox");
    assert!(
        busybox.is_file(),
        "/bin/busybox is missing: install busybox-static (hack/install-deps.sh)"
    );
    let context = tempfile::tempdir().unwrap();
    std::fs::copy(busybox, context.path().join("busybox")).unwrap();
    std::fs::write(
        context.path().join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
    )
    .unwrap();
    let built = std::process::Command::new("docker")
        .args(["build", "-q", "-t", IMAGE])
        .arg(context.path())
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "docker build {IMAGE}: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    IMAGE
}

/// Removes the container when the test ends, even when it fails.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &self.0])
            .output();
    }
}

#[tokio::test]
async fn command_checks_of_containers_run_with_docker_exec() {
    let image = busybox_image();
    let started = std::process::Command::new("docker")
        .args(["run", "-d", "-e", "GREETING=hi", image, "sleep", "120"])
        .output()
        .unwrap();
    assert!(
        started.status.success(),
        "docker run: {}",
        String::from_utf8_lossy(&started.stderr)
    );
    let container = Container(String::from_utf8(started.stdout).unwrap().trim().to_owned());
    let prober = Prober::new().unwrap();
    let context = CommandContext::Docker {
        container: container.0.clone(),
    };
    let command = |command: &str| HealthPlan {
        probe: Probe::Command {
            context: context.clone(),
            command: command.to_owned(),
        },
        timeout: Duration::from_secs(20),
        ..http_check(Scheme::Http, "127.0.0.1:1".parse().unwrap(), false)
    };
    // It runs inside the container, with the container's environment.
    assert_eq!(
        run_health_probe(
            &prober,
            &command("test \"$GREETING\" = hi && test -x /bin/busybox")
        )
        .await,
        Outcome::Healthy
    );
    match run_health_probe(&prober, &command("echo sick; exit 4")).await {
        Outcome::Unhealthy(cause) => assert_eq!(cause, "command exited with code 4: sick"),
        other => panic!("{other:?}"),
    }
    let gone = CommandContext::Docker {
        container: "pacer-no-such-container".into(),
    };
    match prober.command(&gone, "true", Duration::from_secs(20)).await {
        Err(cause) => assert!(cause.contains("pacer-no-such-container"), "{cause}"),
        Ok(()) => panic!("a missing container cannot be healthy"),
    }
}

#[test]
fn a_probe_target_takes_every_http_tcp_and_readiness_check() {
    let template = AppSpec {
        cmd: Some("serve".into()),
        port_definitions: Some(vec![PortDefinition::default()]),
        health_checks: Some(vec![
            HealthCheck {
                path: Some("/h".into()),
                ..HealthCheck::default()
            },
            HealthCheck {
                protocol: Some(HealthCheckProtocol::Tcp),
                ..HealthCheck::default()
            },
            HealthCheck {
                protocol: Some(HealthCheckProtocol::Command),
                command: Some(CommandCheck {
                    value: "true".into(),
                }),
                ..HealthCheck::default()
            },
        ]),
        readiness_checks: Some(vec![ReadinessCheck::default()]),
        ..AppSpec::default()
    };
    let context = LaunchContext {
        host: "hollow-fleet".into(),
        node: "hollow-fleet".into(),
        agent_id: "hollow".into(),
    };
    let target: SocketAddr = "127.0.0.1:9999".parse().unwrap();
    let instance = running_instance(template, &[31000], false);
    let plan = Plan::of(&instance, &context, None)
        .unwrap()
        .aimed_at(target)
        .unwrap();
    let probes: Vec<(i32, &Probe)> = plan
        .health
        .iter()
        .map(|check| (check.index, &check.probe))
        .collect();
    assert_eq!(
        probes,
        vec![
            (
                0,
                &Probe::Http {
                    scheme: Scheme::Http,
                    address: target,
                    path: "/h".into(),
                    ignore_http1xx: false,
                }
            ),
            (1, &Probe::Tcp { address: target }),
        ],
        "the command check (nowhere to run on a hollow node) is dropped"
    );
    // Even though the instance has no port named `http-api`.
    assert_eq!(plan.readiness[0].target, Ok((Scheme::Http, target)));

    // Only command checks: nothing left to probe.
    let commands_only = running_instance(
        AppSpec {
            cmd: Some("serve".into()),
            health_checks: Some(vec![HealthCheck {
                protocol: Some(HealthCheckProtocol::Command),
                command: Some(CommandCheck {
                    value: "true".into(),
                }),
                ..HealthCheck::default()
            }]),
            ..AppSpec::default()
        },
        &[],
        false,
    );
    let plan = Plan::of(&commands_only, &context, None).unwrap();
    assert!(plan.aimed_at(target).is_none());
}
