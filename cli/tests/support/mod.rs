//! Shared harness for the end-to-end tests that start the real `pacer` binary: a server
//! process (`pacer dev` or `pacer server`) on a free loopback port with its log in a temporary
//! directory, the `pacer` CLI aimed at it, raw HTTP/1.1 requests and watch streams over plain
//! `std` sockets (no HTTP client in between, so a test sees exactly what the server sent), and
//! a check that the server logged no unexpected `ERROR` line. `Server` also carries the calls
//! most tests share: `eventually` (poll until a condition holds, with the server log in the
//! failure), `create`, `get_json`, `get_if_found`, `list`, `instances_of` and `rolled_out`;
//! [`wait`] holds the polling itself and [`process`] the guards for other processes.
//!
//! Include it with `mod support;` from a test file in `cli/tests/`.

// Each test file uses a different subset of the harness.
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod kubectl;
pub mod marathon_client;
pub mod metrics;
pub mod process;
pub mod wait;

pub use process::{AgentProcess, KillOnDrop, process_alive};
pub use wait::{EVENTUALLY, eventually, eventually_within};

/// The Instances collection of namespace `default`.
pub const INSTANCES: &str = "/apis/pacer.dev/v1/namespaces/default/instances";

/// The `pacer` binary under test.
pub const PACER: &str = env!("CARGO_BIN_EXE_pacer");

/// How long a server may take to answer `/readyz` after it was started.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long one raw HTTP request may take before the test calls it a hang.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// A `pacer agent hollow --count N` process against a server: N hollow nodes whose instances
/// turn Running at once without running anything, so deployments finish. Killed on drop.
pub struct HollowFleet(AgentProcess);

impl HollowFleet {
    /// Starts `count` hollow agents named `e2e-hollow-1…`, logging to `hollow.log` in the
    /// server's scratch directory.
    pub fn start(server: &Server, count: usize) -> Self {
        let count = count.to_string();
        Self(AgentProcess::start(
            &[
                "hollow",
                "--server",
                &server.url,
                "--count",
                &count,
                "--name-prefix",
                "e2e-hollow-",
            ],
            server.dir(),
            "hollow.log",
        ))
    }
}

/// The workspace root (the CLI runs there, so `manifests/…` paths work).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `pacer` server process (`dev` or `server`), killed on drop unless stopped.
pub struct Server {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub address: String,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts `pacer <args> --listen 127.0.0.1:<free port>` with `PACER_LOG=info` and waits
    /// until it answers `GET /readyz` with 200.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_log(args, "info")
    }

    /// [`Server::start`] with `PACER_LOG=<log_filter>`.
    pub fn start_with_log(args: &[&str], log_filter: &str) -> Self {
        Self::launch(tempfile::tempdir().unwrap(), args, log_filter)
    }

    /// `pacer dev --no-agent` with its data directory in this server's scratch directory: the
    /// API and the controllers, but no local agent, so nothing is really started on this
    /// machine (tests of the agent use [`Server::dev_with_agent`]).
    pub fn dev() -> Self {
        Self::dev_with_log("info")
    }

    /// [`Server::dev`] with `PACER_LOG=<log_filter>`.
    pub fn dev_with_log(log_filter: &str) -> Self {
        Self::dev_in_scratch(&["--no-agent"], log_filter)
    }

    /// `pacer dev` with its in-process agent, which really runs instances on this machine.
    pub fn dev_with_agent() -> Self {
        Self::dev_in_scratch(&[], "info")
    }

    fn dev_in_scratch(extra: &[&str], log_filter: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let data = data.to_str().unwrap().to_owned();
        let mut args = vec!["dev", "--data-dir", &data];
        args.extend_from_slice(extra);
        Self::launch(dir, &args, log_filter)
    }

    fn launch(dir: tempfile::TempDir, args: &[&str], log_filter: &str) -> Self {
        let address = format!("127.0.0.1:{}", free_port());
        let log = File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new(PACER)
            .args(args)
            .args(["--listen", &address])
            .env("PACER_LOG", log_filter)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start pacer");
        let mut server = Self {
            child,
            url: format!("http://{address}"),
            address,
            dir,
        };
        server.wait_ready(args);
        server
    }

    fn wait_ready(&mut self, args: &[&str]) {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                panic!(
                    "pacer {} exited with {status} before serving; log:\n{}",
                    args.join(" "),
                    self.log()
                );
            }
            if ready(&self.address) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "pacer {} did not answer GET /readyz on {} within {READY_TIMEOUT:?}; log:\n{}",
            args.join(" "),
            self.address,
            self.log()
        );
    }

    /// The process id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// A scratch directory for this test (holds the log and the CLI's config file).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the process has exited, and how.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Sends SIGTERM and waits (up to 15 s) for the process to exit; returns how it exited.
    pub fn terminate(&mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM {} failed", self.pid());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "pacer did not stop within 15s of SIGTERM; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fails when the log has an `ERROR` line that contains none of `allowed`.
    #[track_caller]
    pub fn assert_no_unexpected_errors(&self, allowed: &[&str]) {
        let log = self.log();
        let unexpected: Vec<&str> = log
            .lines()
            .filter(|line| line.split_whitespace().nth(1) == Some("ERROR"))
            .filter(|line| !allowed.iter().any(|allowed| line.contains(allowed)))
            .collect();
        assert!(
            unexpected.is_empty(),
            "unexpected ERROR lines in the server log:\n{}\n\nfull log:\n{log}",
            unexpected.join("\n")
        );
    }

    /// A `pacer` CLI command aimed at this server through the environment, with its own
    /// config file, run from the workspace root.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(PACER);
        command
            .args(args)
            .env("PACER_SERVER", &self.url)
            .env("PACER_CONFIG", self.dir.path().join("config.yaml"))
            .env_remove("PACER_NAMESPACE")
            .env_remove("PACER_CONTEXT")
            .env_remove("PACER_TOKEN")
            .env("PACER_LOG", "warn")
            .env("NO_COLOR", "1")
            .current_dir(repo_root());
        command
    }

    /// Runs the `pacer` CLI against this server.
    pub fn run(&self, args: &[&str]) -> Run {
        let output = self.command(args).stdin(Stdio::null()).output().unwrap();
        Run::from(args, output)
    }

    /// Runs the `pacer` CLI against this server with `input` on its standard input.
    pub fn run_with_stdin(&self, args: &[&str], input: &str) -> Run {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        Run::from(args, child.wait_with_output().unwrap())
    }

    /// Writes `text` to `name` in the scratch directory and returns its path.
    pub fn write(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }

    /// A raw HTTP request to this server.
    pub fn http(&self, method: &str, path: &str, body: Option<&Value>) -> HttpResponse {
        http(&self.address, method, path, body)
    }

    /// Polls `check` until it returns `Some` and returns its value; panics with `what` and
    /// this server's log after [`EVENTUALLY`].
    #[track_caller]
    pub fn eventually<T>(&self, what: &str, check: impl FnMut() -> Option<T>) -> T {
        eventually(what, || format!("server log:\n{}", self.log()), check)
    }

    /// `POST path` with `object`, which must answer 201; returns the created object.
    #[track_caller]
    pub fn create(&self, path: &str, object: &Value) -> Value {
        let response = self.http("POST", path, Some(object));
        assert_eq!(response.code, 201, "POST {path}: {}", response.body);
        response.json()
    }

    /// `GET path`, which must answer 200, as JSON.
    #[track_caller]
    pub fn get_json(&self, path: &str) -> Value {
        let response = self.http("GET", path, None);
        assert_eq!(response.code, 200, "GET {path}: {}", response.body);
        response.json()
    }

    /// `GET path` as JSON, `None` on 404; any other answer but 200 fails.
    #[track_caller]
    pub fn get_if_found(&self, path: &str) -> Option<Value> {
        let response = self.http("GET", path, None);
        match response.code {
            200 => Some(response.json()),
            404 => None,
            code => panic!("GET {path}: {code} {}", response.body),
        }
    }

    /// The `items` of the list at `path` (which must answer 200).
    #[track_caller]
    pub fn list(&self, path: &str) -> Vec<Value> {
        let list = self.get_json(path);
        list["items"]
            .as_array()
            .unwrap_or_else(|| panic!("GET {path}: no items: {list}"))
            .clone()
    }

    /// The Instances of App `app` in `namespace` (label `pacer.dev/app=<app>`).
    #[track_caller]
    pub fn instances_of(&self, namespace: &str, app: &str) -> Vec<Value> {
        self.list(&format!(
            "/apis/pacer.dev/v1/namespaces/{namespace}/instances?labelSelector=pacer.dev%2Fapp%3D{app}"
        ))
    }

    /// Waits (`pacer rollout status`, up to 90 s) until App `app`'s deployment finished.
    #[track_caller]
    pub fn rolled_out(&self, namespace: &str, app: &str) {
        self.run(&[
            "rollout",
            "status",
            app,
            "-n",
            namespace,
            "--timeout",
            "90s",
        ])
        .success();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one `pacer` CLI run printed and how it ended.
#[derive(Debug)]
pub struct Run {
    /// The arguments, joined.
    pub args: String,
    /// The exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    fn from(args: &[&str], output: Output) -> Self {
        Self {
            args: args.join(" "),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Asserts exit code 0.
    #[track_caller]
    pub fn success(self) -> Self {
        assert_eq!(self.code, Some(0), "pacer {} failed: {self:#?}", self.args);
        self
    }

    /// Asserts exit code 1.
    #[track_caller]
    pub fn failure(self) -> Self {
        assert_eq!(
            self.code,
            Some(1),
            "pacer {} should exit 1: {self:#?}",
            self.args
        );
        self
    }

    /// Standard output as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|error| {
            panic!(
                "pacer {}: stdout is not JSON ({error}): {self:#?}",
                self.args
            )
        })
    }
}

/// A complete HTTP response (body de-chunked).
#[derive(Debug)]
pub struct HttpResponse {
    /// The request, as `METHOD path`, for failure messages.
    pub request: String,
    /// The status code.
    pub code: u16,
    /// The status line and headers, as sent.
    pub head: String,
    /// The body.
    pub body: String,
    /// How long the request took.
    pub took: Duration,
}

impl HttpResponse {
    /// The body as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|error| {
            panic!(
                "{}: the body is not JSON ({error}): {self:#?}",
                self.request
            )
        })
    }

    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then_some(value.trim())
        })
    }
}

/// Sends one HTTP/1.1 request (`Connection: close`) with an optional JSON body and reads the
/// whole answer; panics if there is none within [`HTTP_TIMEOUT`].
pub fn http(address: &str, method: &str, path: &str, body: Option<&Value>) -> HttpResponse {
    let started = Instant::now();
    let request = format!("{method} {path}");
    let mut stream = TcpStream::connect(address)
        .unwrap_or_else(|error| panic!("{request}: cannot connect to {address}: {error}"));
    stream.set_read_timeout(Some(HTTP_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(HTTP_TIMEOUT)).unwrap();
    let payload = body.map(|body| serde_json::to_vec(body).unwrap());
    let mut text = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nAccept: application/json\r\nConnection: close\r\n"
    );
    if let Some(payload) = &payload {
        text.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            payload.len()
        ));
    }
    text.push_str("\r\n");
    stream.write_all(text.as_bytes()).unwrap();
    if let Some(payload) = &payload {
        stream.write_all(payload).unwrap();
    }
    let mut reader = BufReader::new(stream);
    let (code, head, chunked) = read_head(&mut reader).unwrap_or_else(|error| {
        panic!(
            "{request}: no answer after {:?}: {error}",
            started.elapsed()
        )
    });
    let mut bytes = Vec::new();
    let read = if chunked {
        read_chunks(&mut reader, |chunk| bytes.extend_from_slice(chunk))
    } else {
        reader.read_to_end(&mut bytes).map(|_| ())
    };
    read.unwrap_or_else(|error| {
        panic!(
            "{request}: the body did not end after {:?}: {error}\n{head}",
            started.elapsed()
        )
    });
    HttpResponse {
        request,
        code,
        head,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        took: started.elapsed(),
    }
}

/// Reads the status line and headers: (code, head text, whether the body is chunked).
fn read_head(reader: &mut impl BufRead) -> std::io::Result<(u16, String, bool)> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("connection closed in the response head: {head:?}"),
            ));
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line: {head:?}")))?;
    let chunked = head.lines().any(|line| {
        line.split_once(':').is_some_and(|(key, value)| {
            key.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.trim().eq_ignore_ascii_case("chunked")
        })
    });
    Ok((code, head, chunked))
}

/// Reads a chunked body, handing each chunk to `sink` as it arrives.
fn read_chunks(reader: &mut impl BufRead, mut sink: impl FnMut(&[u8])) -> std::io::Result<()> {
    loop {
        let mut size_line = String::new();
        if reader.read_line(&mut size_line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed inside a chunked body",
            ));
        }
        let size_text = size_line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| std::io::Error::other(format!("bad chunk size line {size_line:?}")))?;
        if size == 0 {
            // Trailers, then the final empty line.
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line)? == 0 || line == "\r\n" {
                    return Ok(());
                }
            }
        }
        let mut chunk = vec![0; size + 2];
        reader.read_exact(&mut chunk)?;
        sink(&chunk[..size]);
    }
}

/// What a [`Watch`] delivers: a decoded event line, or how the stream ended.
#[derive(Debug)]
pub enum WatchItem {
    /// One `{"type", "object"}` line.
    Event(Value),
    /// The server ended the stream cleanly.
    End,
    /// The stream broke or sent something undecodable.
    Broken(String),
}

/// An HTTP watch read on a background thread, line by line.
pub struct Watch {
    /// The status code the watch was answered with.
    pub code: u16,
    /// The response head.
    pub head: String,
    items: mpsc::Receiver<WatchItem>,
    stream: TcpStream,
}

impl Watch {
    /// Sends `GET path` (a `?watch=1…` URL) and returns once the response head is in.
    pub fn start(address: &str, path: &str) -> Self {
        let mut stream = TcpStream::connect(address).unwrap();
        stream.set_read_timeout(Some(HTTP_TIMEOUT)).unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {address}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let (code, head, chunked) = read_head(&mut reader)
            .unwrap_or_else(|error| panic!("GET {path}: no response head: {error}"));
        // Events may be minutes apart: no read timeout on the stream itself.
        stream.set_read_timeout(None).unwrap();
        let (sender, items) = mpsc::channel();
        std::thread::spawn(move || {
            let mut pending = Vec::new();
            let mut deliver = |bytes: &[u8]| {
                pending.extend_from_slice(bytes);
                while let Some(end) = pending.iter().position(|byte| *byte == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let item = match serde_json::from_slice(&line) {
                        Ok(event) => WatchItem::Event(event),
                        Err(error) => WatchItem::Broken(format!(
                            "undecodable line {:?}: {error}",
                            String::from_utf8_lossy(&line)
                        )),
                    };
                    let _ = sender.send(item);
                }
            };
            let outcome = if chunked {
                read_chunks(&mut reader, &mut deliver)
            } else {
                let mut buffer = [0; 8192];
                loop {
                    match reader.read(&mut buffer) {
                        Ok(0) => break Ok(()),
                        Ok(read) => deliver(&buffer[..read]),
                        Err(error) => break Err(error),
                    }
                }
            };
            let _ = sender.send(match outcome {
                Ok(()) => WatchItem::End,
                Err(error) => WatchItem::Broken(error.to_string()),
            });
        });
        Self {
            code,
            head,
            items,
            stream,
        }
    }

    /// The next item, or `None` if nothing arrived within `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<WatchItem> {
        self.items.recv_timeout(timeout).ok()
    }

    /// The next item that is not a `BOOKMARK` event, or `None` within `timeout`.
    pub fn next_change(&self, timeout: Duration) -> Option<WatchItem> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left)? {
                WatchItem::Event(event) if event["type"] == "BOOKMARK" => {}
                other => return Some(other),
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// Fails, naming the first missing one and showing `text`, unless `text` contains every one
/// of `expected`.
#[track_caller]
pub fn assert_contains_all(text: &str, expected: &[&str]) {
    for expected in expected {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
}

/// Whether `GET /readyz` answers 200.
pub fn ready(address: &str) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect(address)?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(
            format!("GET /readyz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer.starts_with("HTTP/1.1 200"))
    };
    attempt().unwrap_or(false)
}
