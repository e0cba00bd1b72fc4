//! Helpers the tests of several crates share (`api`'s tests against the fake engine, ppman's
//! and repo-builder's integration tests, the end-to-end tests in `tests/`, the runner's sandbox
//! tests): the privileged-test rule ([`privileged`]), mount and loop-device leak checks
//! ([`mounts`]), a tmpfs scratch layer for sandbox tests ([`layer`]), a static file server on loopback ([`static_server`]), a small blocking HTTP
//! client for the API, a WebSocket client ([`ws`]), starting and stopping a `piston` server
//! process and lookups of host processes. Test code: it panics on anything unexpected.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod layer;
pub mod mounts;
pub mod privileged;
pub mod static_server;
pub mod ws;

pub use layer::TmpfsLayer;
pub use mounts::{
    Mount, loop_devices_backed_by, mount_points_under, mounts_under, wait_for_no_loop_devices,
};
pub use privileged::{Need, current_test, gate, privileged_required, require};
pub use static_server::StaticServer;

/// A blocking HTTP client for a server at `addr`; every call returns the status and the body
/// (any status: 4xx and 5xx are answers here, not errors).
#[derive(Debug, Clone)]
pub struct Client {
    pub addr: SocketAddr,
    /// Whole-request timeout (`None`: ureq's default of none).
    pub timeout: Option<Duration>,
}

impl Client {
    pub fn new(addr: SocketAddr, timeout: Option<Duration>) -> Client {
        Client { addr, timeout }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    fn agent(&self) -> ureq::Agent {
        agent(self.timeout)
    }

    /// GET: status and body text.
    pub fn get_text(&self, path: &str) -> (u16, String) {
        finish(self.agent().get(self.url(path)).call().expect("GET"))
    }

    /// GET of a JSON answer.
    pub fn get(&self, path: &str) -> (u16, Value) {
        json_of(self.get_text(path))
    }

    /// A POST or DELETE with a body and a content type; the answer must be JSON.
    pub fn send(&self, method: &str, path: &str, content_type: &str, body: &str) -> (u16, Value) {
        let agent = self.agent();
        let url = self.url(path);
        let response = match method {
            "POST" => agent
                .post(&url)
                .header("content-type", content_type)
                .send(body),
            "DELETE" => agent
                .delete(&url)
                .header("content-type", content_type)
                .force_send_body()
                .send(body),
            other => panic!("method {other}"),
        }
        .expect(method);
        json_of(finish(response))
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send("POST", path, "application/json", &body.to_string())
    }

    pub fn delete(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send("DELETE", path, "application/json", &body.to_string())
    }

    /// A POST without a body (the v3 routes), typed JSON as they require.
    pub fn post_empty(&self, path: &str) -> (u16, Value) {
        json_of(finish(
            self.agent()
                .post(self.url(path))
                .header("Content-Type", "application/json")
                .send_empty()
                .expect("POST"),
        ))
    }

    /// A DELETE without a body (the v3 routes), typed JSON as they require.
    pub fn delete_empty(&self, path: &str) -> (u16, Value) {
        json_of(finish(
            self.agent()
                .delete(self.url(path))
                .header("Content-Type", "application/json")
                .call()
                .expect("DELETE"),
        ))
    }
}

/// An agent that returns every status as an answer, with a whole-request `timeout`.
pub fn agent(timeout: Option<Duration>) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(timeout)
        .build()
        .into()
}

/// Status and body text (up to 64 MiB: the output tests return large bodies).
fn finish(mut response: ureq::http::Response<ureq::Body>) -> (u16, String) {
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .expect("response body");
    (status, body)
}

/// The body parsed as JSON (panics with the text when it is not).
pub fn json_of((status, text): (u16, String)) -> (u16, Value) {
    let value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {status} {text:?}"));
    (status, value)
}

/// Command lines of the host's processes (other than this one) that contain `needle`, with
/// their arguments separated by spaces: a job's program carries a mark in its arguments so a
/// test can tell whether it still runs.
pub fn host_processes_with(needle: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|e| e.file_name().to_string_lossy() != me)
        .filter_map(|e| {
            let line = std::fs::read(e.path().join("cmdline")).ok()?;
            let line = String::from_utf8_lossy(&line).replace('\0', " ");
            line.contains(needle).then_some(line)
        })
        .collect()
}

/// A command that starts the `piston` server `binary` on `bind` with `data` as its data
/// directory and `settings` as `--set NAME=VALUE` options — configured by these alone: the
/// caller's `PISTON_*`, `PORT` and `RUST_LOG` are removed from its environment.
pub fn piston_command(
    binary: &Path,
    bind: &str,
    data: &Path,
    settings: &[(&str, String)],
) -> Command {
    let mut command = Command::new(binary);
    command
        .arg("--bind")
        .arg(bind)
        .arg("--data-directory")
        .arg(data);
    for (name, value) in settings {
        command.arg("--set").arg(format!("{name}={value}"));
    }
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("PISTON_") || name == "PORT" || name == "RUST_LOG" {
            command.env_remove(&*name);
        }
    }
    command
}

/// Stops a server as an operator would: SIGTERM, then waits up to `within` for it to exit.
/// `Ok(None)` when it had not: it is then SIGKILLed and reaped.
pub fn terminate(child: &mut Child, within: Duration) -> std::io::Result<Option<ExitStatus>> {
    let pid = rustix::process::Pid::from_child(child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill()?;
    child.wait()?;
    Ok(None)
}
