//! Running the real Python Marathon client (PyPI `marathon==0.13.0`, installed into
//! `target/python` by `hack/install-python-deps.sh`) against a test server: a session is a
//! Python script that exits non-zero with a traceback on its first failure and prints a
//! success line at the end.

use std::path::PathBuf;
use std::process::Command;

use super::{Server, repo_root};

/// The Python with the Marathon client, installed by `hack/install-python-deps.sh`.
pub fn python() -> PathBuf {
    let python = repo_root().join("target/python/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run hack/install-python-deps.sh (make test runs hack/install-deps.sh)",
        python.display()
    );
    python
}

/// Runs the Python `script` with `PACER_URL` set to `server`'s URL, and asserts that it exits
/// 0 and prints `ok_line`; on failure the script's output and the server log are in the panic.
/// Returns the script's stdout.
pub fn run_session(server: &Server, script: &str, ok_line: &str) -> String {
    let output = Command::new(python())
        .args(["-c", script])
        .env("PACER_URL", &server.url)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains(ok_line),
        "the Marathon client session failed ({}):\n{stdout}\n{stderr}\n\nserver log:\n{}",
        output.status,
        server.log()
    );
    stdout
}
