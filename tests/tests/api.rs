//! The `piston` server end to end: the real binary over real HTTP and WebSocket, with real
//! runtimes (bash, python, gcc's C and C++, node's JavaScript) installed from the repository
//! repo-builder built (scripts/test.sh). Piston's validation messages, stdin and args, files in
//! each encoding, compile errors, every limit and status, the interactive protocol with a signal
//! and end of stdin, and package install and uninstall through the v2 and v3 routes.
//!
//! Most tests share one server and the installation behind it (starting them takes seconds).
//! Statics are never dropped, so a helper process started with them stops that server and
//! uninstalls its packages once this test process has exited, however it exits. The package
//! tests each get a data directory and a server of their own.
//!
//! `cargo test -p e2e` does not build the `piston` and `ppman` binaries: `cargo build
//! --workspace` first (scripts/test.sh does).

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use e2e::{Installation, host_processes_with, index_entry, read_index, test_repo};
use futures_util::StreamExt as _;
use ppman::schema::{Index, IndexEntry};
use serde_json::{Value, json};
use test_support::ws::{self, Ws, send};
use test_support::{Client, agent, json_of, piston_command, terminate};
use tokio_tungstenite::tungstenite::Message;

/// The packages behind the shared server: the subset CI builds.
const PACKAGES: [&str; 4] = ["bash", "python", "gcc", "node"];

/// Job uids and cgroups of this file's servers: apart from a default server's (1990000001–), the
/// e2e runner tests' (63001–) and the runner and repo-builder crates' tests, which may run on
/// this host at the same time. Each server sweeps its cgroup at start-up, so each has its own.
const SHARED_UIDS: (u32, u32) = (64001, 64050);
const V2_PACKAGES_UIDS: (u32, u32) = (64051, 64075);
const V3_PACKAGES_UIDS: (u32, u32) = (64076, 64100);
/// 64 uids: 64 jobs at once.
const HOSTILE_UIDS: (u32, u32) = (64101, 64164);
const FLOOD_UIDS: (u32, u32) = (64165, 64180);
const SERVICE_UIDS: (u32, u32) = (64181, 64190);

/// The shared server's limits: generous where timing is not what a test is about (the host is
/// shared and busy), positive everywhere so that every cap message of Piston can be asked for.
const COMPILE_TIMEOUT: u64 = 60_000;
const COMPILE_CPU_TIME: u64 = 60_000;
const COMPILE_MEMORY_LIMIT: u64 = 1 << 30;
const RUN_TIMEOUT: u64 = 20_000;
const RUN_CPU_TIME: u64 = 20_000;
const RUN_MEMORY_LIMIT: u64 = 512 << 20;
/// Piston's default.
const OUTPUT_MAX_SIZE: usize = 1024;
const MAX_BODY_SIZE: usize = 1 << 20;

/// A binary of this build (`target/<profile>/<name>`, next to the `deps/` directory this test
/// runs from).
fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory")
        .join(name);
    assert!(
        bin.is_file(),
        "{} is missing: build the workspace first: cargo build --workspace",
        bin.display()
    );
    bin
}

/// The test repository's index (the tests compare what the server says with it).
fn index() -> Index {
    read_index(&test_repo().expect("the test repository"))
}

fn version(name: &str) -> String {
    index_entry(&index(), name).version.to_string()
}

/// A port free on loopback a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A `piston` server process on loopback. Dropping it stops it as an operator would (SIGTERM)
/// and waits for it to exit.
struct Server {
    child: Child,
    addr: SocketAddr,
    client: Client,
    log: PathBuf,
    _work: tempfile::TempDir,
}

impl Server {
    /// Starts `piston` on `data` with its own uid range, cgroup and work directory (in `work`,
    /// which also holds its log), plus `settings`; returns once it answers `/healthz`.
    fn start(
        data: &Path,
        work: tempfile::TempDir,
        uids: (u32, u32),
        cgroup: &str,
        settings: &[(&str, String)],
    ) -> Self {
        Self::start_with(data, work, uids, cgroup, settings, |c| c)
    }

    /// [`Server::start`], with the command passed through `wrap` before it is spawned.
    fn start_with(
        data: &Path,
        work: tempfile::TempDir,
        (uid_min, uid_max): (u32, u32),
        cgroup: &str,
        settings: &[(&str, String)],
        wrap: impl Fn(Command) -> Command,
    ) -> Self {
        let log = work.path().join("server.log");
        let mut options = vec![
            ("runner_uid_min", uid_min.to_string()),
            ("runner_uid_max", uid_max.to_string()),
            ("runner_gid_min", uid_min.to_string()),
            ("runner_gid_max", uid_max.to_string()),
            ("runner_cgroup_name", cgroup.to_owned()),
            (
                "runner_work_directory",
                work.path().join("jobs").display().to_string(),
            ),
            ("shutdown_timeout", "5000".to_owned()),
            // Every running job needs a uid of its own (the server checks at start-up).
            ("max_concurrent_jobs", (uid_max - uid_min + 1).to_string()),
        ];
        options.extend(settings.iter().cloned());
        // A port taken between the probe and the bind is tried again.
        for _ in 0..3 {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let file = File::create(&log).expect("server log");
            let mut child = wrap(piston_command(
                &binary("piston"),
                &addr.to_string(),
                data,
                &options,
            ))
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("server log"))
            .stderr(file)
            .spawn()
            .expect("start piston");
            match wait_ready(&mut child, addr, &log) {
                Ok(()) => {
                    return Self {
                        child,
                        addr,
                        client: Client::new(addr, Some(HTTP_TIMEOUT)),
                        log,
                        _work: work,
                    };
                }
                Err(text) if text.contains("cannot listen") => {}
                Err(text) => panic!("piston did not start: {text}"),
            }
        }
        panic!("piston found no free port");
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A JSON POST that declares a body of `length` bytes and sends none: the answer.
    fn declare_body(&self, path: &str, length: usize) -> (u16, Value) {
        let mut stream = std::net::TcpStream::connect(self.addr).expect("connect");
        stream
            .set_read_timeout(Some(HTTP_TIMEOUT))
            .expect("read timeout");
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {length}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .expect("send the head");
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut stream, &mut answer).expect("the answer");
        let (head, body) = answer.split_once("\r\n\r\n").expect("head and body");
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        json_of((status, body.to_owned()))
    }

    /// POST /api/v2/execute, which must answer 200; the response.
    fn execute(&self, request: &Value) -> Value {
        let (status, body) = self.post("/api/v2/execute", request);
        assert_eq!(status, 200, "{request} -> {body}\n{}", self.log_text());
        body
    }

    /// POST /api/v2/execute, which must refuse the request with 400 and `message`.
    fn refused(&self, request: &Value, message: &str) {
        assert_eq!(
            self.post("/api/v2/execute", request),
            (400, json!({ "message": message })),
            "for {request}"
        );
    }

    /// The run stage of a Python job (`extra` is merged into the request).
    fn python(&self, code: &str, extra: &Value) -> Value {
        let response = self.execute(&request("python", "main.py", code, extra));
        assert_eq!(response["language"], "python");
        assert!(response.get("compile").is_none(), "{response}");
        response["run"].clone()
    }
}

/// The HTTP calls of [`Client`] (`server.get(…)`, `server.post(…)`, …).
impl std::ops::Deref for Server {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = terminate(&mut self.child, Duration::from_secs(30));
    }
}

/// Waits until the server at `addr` answers, or returns its log (`log`) when it exited first
/// or did not answer in time (then it is killed).
fn wait_ready(child: &mut Child, addr: SocketAddr, log: &Path) -> Result<(), String> {
    let log_text = || std::fs::read_to_string(log).unwrap_or_default();
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{status}\n{}", log_text()));
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("no answer within 60 s\n{}", log_text()));
        }
        if agent(Some(Duration::from_secs(2)))
            .get(format!("http://{addr}/healthz"))
            .call()
            .is_ok_and(|r| r.status() == 200)
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Long enough for a job under the shared server's limits on a busy host.
const HTTP_TIMEOUT: Duration = Duration::from_secs(180);

/// An execute request (or WebSocket init, without the type) with one file, `extra` merged in.
fn request(language: &str, name: &str, content: &str, extra: &Value) -> Value {
    let mut body = json!({
        "language": language,
        "version": "*",
        "files": [{"name": name, "content": content}],
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

/// The server most tests use, over an installation of [`PACKAGES`], with its reaper.
struct Shared {
    server: Server,
    /// Never dropped: the reaper reads end of file on its stdin when this process is gone.
    _reaper: Mutex<Child>,
    _installation: Installation,
}

static SHARED: OnceLock<Option<Shared>> = OnceLock::new();

/// The shared server, started by the first test that needs it; `None` when privileged tests
/// cannot run here (see [`test_repo`]).
fn shared() -> Option<&'static Server> {
    SHARED
        .get_or_init(|| {
            let installation = Installation::new(&PACKAGES)?;
            let work = tempfile::Builder::new()
                .prefix("piston-e2e-api-")
                .tempdir()
                .expect("work dir");
            let mut reaper = reaper(installation.data.path(), work.path());
            let server = Server::start(
                installation.data.path(),
                work,
                SHARED_UIDS,
                "piston-e2e-api",
                &[
                    ("compile_timeout", COMPILE_TIMEOUT.to_string()),
                    ("compile_cpu_time", COMPILE_CPU_TIME.to_string()),
                    ("compile_memory_limit", COMPILE_MEMORY_LIMIT.to_string()),
                    ("run_timeout", RUN_TIMEOUT.to_string()),
                    ("run_cpu_time", RUN_CPU_TIME.to_string()),
                    ("run_memory_limit", RUN_MEMORY_LIMIT.to_string()),
                    ("output_max_size", OUTPUT_MAX_SIZE.to_string()),
                    ("max_body_size", MAX_BODY_SIZE.to_string()),
                ],
            );
            let pipe = reaper.stdin.as_mut().expect("reaper stdin");
            writeln!(pipe, "server {}", server.child.id()).expect("tell the reaper");
            Some(Shared {
                server,
                _reaper: Mutex::new(reaper),
                _installation: installation,
            })
        })
        .as_ref()
        .map(|s| &s.server)
}

/// Starts the process that cleans up after the shared server once this process is gone (its
/// stdin, a pipe only this process holds, reads end of file then): it stops the server (SIGTERM,
/// then waits up to 30 s), uninstalls [`PACKAGES`], collects garbage and removes `data` and
/// `work`. Its own process group keeps a terminal's Ctrl-C from killing it with the tests.
fn reaper(data: &Path, work: &Path) -> Child {
    const SCRIPT: &str = r#"
trap '' INT HUP TERM QUIT
ppman=$1 data=$2 work=$3
shift 3
server=
while read -r what value; do
    if [ "$what" = server ]; then server=$value; fi
done
alive() { [ -r "/proc/$1/stat" ] && [ "$(sed 's/.*) //' "/proc/$1/stat" | cut -d' ' -f1)" != Z ]; }
if [ -n "$server" ] && alive "$server"; then
    kill -TERM "$server" 2>/dev/null
    n=0
    while alive "$server" && [ "$n" -lt 300 ]; do sleep 0.1; n=$((n + 1)); done
    kill -KILL "$server" 2>/dev/null
fi
for p in "$@"; do "$ppman" --data-dir "$data" uninstall --cascade "$p" >/dev/null 2>&1; done
"$ppman" --data-dir "$data" gc >/dev/null 2>&1
rm -rf --one-file-system "$data" "$work"
"#;
    Command::new("/bin/sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("piston-e2e-api-reaper")
        .arg(binary("ppman"))
        .arg(data)
        .arg(work)
        .args(PACKAGES)
        .env_remove("PISTON_DATA_DIRECTORY")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        // Not the tests' stderr: it outlives them, and a CI runner reading that pipe would wait.
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start the reaper")
}

/// The fields of a stage object, exactly Piston's.
const STAGE_FIELDS: [&str; 10] = [
    "stdout",
    "stderr",
    "output",
    "code",
    "signal",
    "message",
    "status",
    "cpu_time",
    "wall_time",
    "memory",
];

/// A stage that exited 0 with `stdout` and nothing on stderr, its figures plausible.
fn assert_clean(stage: &Value, stdout: &str) {
    let mut keys: Vec<&str> = stage
        .as_object()
        .unwrap_or_else(|| panic!("not a stage: {stage}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut expected = STAGE_FIELDS;
    expected.sort_unstable();
    assert_eq!(keys, expected, "{stage}");
    assert_eq!(
        (
            &stage["stdout"],
            &stage["stderr"],
            &stage["output"],
            &stage["code"],
            &stage["signal"],
            &stage["message"],
            &stage["status"],
        ),
        (
            &json!(stdout),
            &json!(""),
            &json!(stdout),
            &json!(0),
            &Value::Null,
            &Value::Null,
            &Value::Null,
        ),
        "{stage}"
    );
    assert_figures(stage);
}

/// cpu_time and wall_time are milliseconds, memory bytes: numbers a program could have used
/// (whole milliseconds, rounded down: a bash job on the plain-exec path can end within one).
fn assert_figures(stage: &Value) {
    let cpu = stage["cpu_time"].as_f64().expect("cpu_time is a number");
    let wall = stage["wall_time"].as_f64().expect("wall_time is a number");
    let memory = stage["memory"].as_u64().expect("memory is a whole number");
    assert!((0.0..600_000.0).contains(&cpu), "{stage}");
    assert!((0.0..600_000.0).contains(&wall), "{stage}");
    assert!(memory > 0 && memory <= 4 << 30, "{stage}");
}

fn number(stage: &Value, field: &str) -> f64 {
    stage[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} is not a number: {stage}"))
}

#[test]
fn server_routes_and_runtimes() {
    let Some(s) = shared() else {
        return;
    };
    assert_eq!(
        s.get("/"),
        (
            200,
            json!({"message": format!("Piston v{}", env!("CARGO_PKG_VERSION"))})
        )
    );
    assert_eq!(s.get("/nope"), (404, json!({"message": "Not Found"})));
    let (status, health) = s.get("/healthz");
    assert_eq!((status, &health["status"]), (200, &json!("ok")));

    // Every language of every installed package, as Piston lists them: `runtime` names the
    // package when it differs from the language.
    let index = index();
    let mut expected: Vec<Value> = PACKAGES
        .iter()
        .map(|name| index_entry(&index, name))
        .flat_map(|e| {
            e.provides.iter().map(move |p| {
                let mut rt = json!({
                    "language": p.language,
                    "version": e.version.to_string(),
                    "aliases": p.aliases,
                });
                if p.language != e.name {
                    rt["runtime"] = json!(e.name);
                }
                rt
            })
        })
        .collect();
    let by_language = |a: &Value, b: &Value| a["language"].as_str().cmp(&b["language"].as_str());
    expected.sort_by(by_language);
    let (status, runtimes) = s.get("/api/v2/runtimes");
    assert_eq!(status, 200);
    let mut runtimes = runtimes.as_array().expect("a list").clone();
    runtimes.sort_by(by_language);
    assert_eq!(runtimes, expected);
    let languages: Vec<&str> = runtimes
        .iter()
        .filter_map(|r| r["language"].as_str())
        .collect();
    assert_eq!(languages, ["bash", "c", "c++", "javascript", "python"]);

    // v3: the package, whether it compiles, and the effective limits (this server's settings).
    let (status, v3) = s.get("/api/v3/runtimes");
    assert_eq!(status, 200);
    for rt in v3.as_array().expect("a list") {
        let language = rt["language"].as_str().expect("language");
        let package = match language {
            "c" | "c++" => "gcc",
            "javascript" => "node",
            other => other,
        };
        assert_eq!(rt["package"], package, "{rt}");
        assert_eq!(rt["compiled"], package == "gcc", "{rt}");
        assert_eq!(
            rt["limits"],
            json!({
                "compile_timeout": COMPILE_TIMEOUT,
                "run_timeout": RUN_TIMEOUT,
                "compile_cpu_time": COMPILE_CPU_TIME,
                "run_cpu_time": RUN_CPU_TIME,
                "compile_memory_limit": COMPILE_MEMORY_LIMIT,
                "run_memory_limit": RUN_MEMORY_LIMIT,
                "output_max_size": OUTPUT_MAX_SIZE,
                "max_process_count": 64,
                "max_open_files": 2048,
                "max_file_size": 10_000_000,
            }),
            "{rt}"
        );
    }
}

/// Each of Piston's messages, in Piston's order, from the real server with real runtimes; then
/// the body-level answers (415, 400, 413) and this server's own checks.
#[test]
fn every_validation_message_of_the_reference() {
    let Some(s) = shared() else {
        return;
    };
    let py = |extra: Value| request("python", "main.py", "print('ran')", &extra);

    // 1-4: the required fields.
    s.refused(&json!({}), "language is required as a string");
    s.refused(&json!([1, 2]), "language is required as a string");
    s.refused(
        &json!({"language": 3, "version": "3.x", "files": []}),
        "language is required as a string",
    );
    s.refused(
        &json!({"language": "python"}),
        "version is required as a string",
    );
    s.refused(
        &json!({"language": "python", "version": 3.11, "files": []}),
        "version is required as a string",
    );
    s.refused(
        &json!({"language": "python", "version": "3.x"}),
        "files is required as an array",
    );
    s.refused(
        &json!({"language": "python", "version": "3.x", "files": {"content": "x"}}),
        "files is required as an array",
    );
    s.refused(
        &json!({"language": "python", "version": "3.x", "files": [{"content": 5}]}),
        "files[0].content is required as a string",
    );
    // Checked before the runtime: an unknown language with a bad file is told about the file.
    s.refused(
        &json!({"language": "html", "version": "5.0.0", "files": [{"content": "a"}, {"name": "b"}]}),
        "files[1].content is required as a string",
    );

    // 5: the runtime, by name or alias and a semver selector; a bad selector matches nothing.
    s.refused(
        &json!({"language": "html", "version": "5.0.0", "files": [{"content": "x"}]}),
        "html-5.0.0 runtime is unknown",
    );
    s.refused(
        &py(json!({"version": "2.x"})),
        "python-2.x runtime is unknown",
    );
    s.refused(
        &py(json!({"language": "cpp", "version": "garbage!"})),
        "cpp-garbage! runtime is unknown",
    );
    // Before the encoding check.
    s.refused(
        &json!({"language": "cobol", "version": "*", "files": [{"content": "eA==", "encoding": "base64"}]}),
        "cobol-* runtime is unknown",
    );

    // 6: at least one code file.
    for encoding in ["base64", "hex"] {
        s.refused(
            &py(json!({"files": [{"name": "a", "content": "6869", "encoding": encoding}]})),
            "files must include at least one utf8 encoded file",
        );
    }

    // 7: the limits, memory before timeout before cpu_time, compile before run; every cap of
    // this server is positive, so each message can be asked for.
    let caps = [
        ("compile_memory_limit", COMPILE_MEMORY_LIMIT),
        ("run_memory_limit", RUN_MEMORY_LIMIT),
        ("compile_timeout", COMPILE_TIMEOUT),
        ("run_timeout", RUN_TIMEOUT),
        ("compile_cpu_time", COMPILE_CPU_TIME),
        ("run_cpu_time", RUN_CPU_TIME),
    ];
    for (name, cap) in caps {
        s.refused(
            &py(json!({ name: "100" })),
            &format!("If specified, {name} must be a number"),
        );
        s.refused(
            &py(json!({ name: [100] })),
            &format!("If specified, {name} must be a number"),
        );
        s.refused(
            &py(json!({ name: cap + 1 })),
            &format!("{name} cannot exceed the configured limit of {cap}"),
        );
        // -1 for a memory limit is what Piston's README sends for "none": it gets the
        // configured limit instead of Piston's refusal (see README, API).
        let negative = if name.ends_with("memory_limit") {
            -2
        } else {
            -1
        };
        s.refused(
            &py(json!({ name: negative })),
            &format!("{name} must be non-negative"),
        );
    }
    let run = s.python(
        "print('ran')",
        &json!({"compile_memory_limit": -1, "run_memory_limit": -1}),
    );
    assert_clean(&run, "ran\n");
    s.refused(
        &py(json!({"run_cpu_time": "x", "run_timeout": "x", "compile_memory_limit": "x"})),
        "If specified, compile_memory_limit must be a number",
    );
    s.refused(
        &py(json!({"run_cpu_time": -1, "compile_timeout": COMPILE_TIMEOUT + 1})),
        &format!("compile_timeout cannot exceed the configured limit of {COMPILE_TIMEOUT}"),
    );
    // The encoding check comes before the limits.
    s.refused(
        &py(json!({"files": [{"content": "00", "encoding": "hex"}], "run_timeout": "x"})),
        "files must include at least one utf8 encoded file",
    );
    // Falsy values mean "the default", as in Piston, and the job runs.
    for default in [json!(0), Value::Null, json!(false), json!("")] {
        let run = s.python(
            "print('ran')",
            &json!({"run_timeout": default, "run_memory_limit": default}),
        );
        assert_clean(&run, "ran\n");
    }

    // Where Piston fails late (a 500 with an empty body for a path escaping the job directory)
    // or not at all, this server answers 400 with a message, after Piston's own checks.
    s.refused(
        &py(json!({"files": [{"content": "x"}, {"name": "../../etc/passwd", "content": "x"}]})),
        "File path \"../../etc/passwd\" tries to escape parent directory",
    );
    s.refused(&py(json!({"stdin": 5})), "stdin must be a string");
    s.refused(
        &py(json!({"args": "a b"})),
        "args must be an array of strings",
    );
    let (status, body) = s.post(
        "/api/v2/execute",
        &py(json!({"files": [{"content": "x"}, {"content": "%%%", "encoding": "base64"}]})),
    );
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("files[1].content is not valid base64")),
        "{body}"
    );

    // The body itself: JSON only (415), parseable (400), not too large (413).
    assert_eq!(
        s.send(
            "POST",
            "/api/v2/execute",
            "text/plain",
            &py(json!({})).to_string()
        ),
        (
            415,
            json!({"message": "requests must be of type application/json"})
        )
    );
    let (status, body) = s.send("POST", "/api/v2/execute", "application/json", "{nope");
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("request body is not valid JSON")),
        "{body}"
    );
    // The declared length is enough: the server answers before the body (and closes the
    // connection without reading it, so a client still sending gets a broken pipe; this one
    // sends none).
    assert_eq!(
        s.declare_body("/api/v2/execute", MAX_BODY_SIZE + 1),
        (
            413,
            json!({"message": format!("request body is larger than the limit of {MAX_BODY_SIZE} bytes")})
        )
    );
}

/// Each runtime (called by an alias) runs a program that prints its arguments and a line of
/// stdin; gcc's languages also report their compile stage.
#[test]
fn every_runtime_runs_with_args_and_stdin() {
    let Some(s) = shared() else {
        return;
    };
    let c = r#"#include <stdio.h>
int main(int argc, char **argv) {
    printf("args:");
    for (int i = 1; i < argc; i++) printf("%s%s", i > 1 ? "|" : " ", argv[i]);
    char line[64];
    if (!fgets(line, sizeof line, stdin)) return 1;
    printf("\nstdin: %s", line);
    return 0;
}
"#;
    let cpp = r#"#include <iostream>
#include <string>
int main(int argc, char **argv) {
    std::cout << "args:";
    for (int i = 1; i < argc; i++) std::cout << (i > 1 ? "|" : " ") << argv[i];
    std::string line;
    std::getline(std::cin, line);
    std::cout << "\nstdin: " << line << std::endl;
}
"#;
    let cases = [
        (
            "sh",
            "bash",
            "bash",
            "main.sh",
            "IFS='|'; echo \"args: $*\"; read -r line; echo \"stdin: $line\"",
        ),
        (
            "py",
            "python",
            "python",
            "main.py",
            "import sys\nprint('args:', '|'.join(sys.argv[1:]))\nprint('stdin:', input())",
        ),
        (
            "js",
            "javascript",
            "node",
            "main.js",
            "const input = require('fs').readFileSync(0, 'utf8');\n\
             console.log('args: ' + process.argv.slice(2).join('|'));\n\
             console.log('stdin: ' + input.split('\\n')[0]);",
        ),
        ("gcc", "c", "gcc", "main.c", c),
        ("cpp", "c++", "gcc", "main.cpp", cpp),
    ];
    for (alias, language, package, file, code) in cases {
        let response = s.execute(&request(
            alias,
            file,
            code,
            // Piston adds the missing newline to stdin.
            &json!({"args": ["one", "two words"], "stdin": "hello there"}),
        ));
        assert_eq!(response["language"], language, "{response}");
        assert_eq!(response["version"], version(package), "{response}");
        assert_clean(
            &response["run"],
            "args: one|two words\nstdin: hello there\n",
        );
        if package == "gcc" {
            assert_clean(&response["compile"], "");
        } else {
            assert!(response.get("compile").is_none(), "{response}");
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Several files in each encoding, in sub-directories; the first code file is what runs, even
/// after a binary one; a file without a name is `file0.code`; C from several files and a header.
#[test]
fn several_files_in_each_encoding() {
    let Some(s) = shared() else {
        return;
    };
    let blob: Vec<u8> = (0..=255).collect();
    let main = r#"import sys, helper
blob = open("data/blob.bin", "rb").read()
print(sys.argv[0], sys.argv[1:])
print(helper.greet("there"))
print(len(blob), blob == bytes(range(256)))
print(open("data/deep/hex.bin", "rb").read())
print(open("notes.txt").read())
"#;
    let response = s.execute(&json!({
        "language": "python",
        "version": "3.x",
        "args": ["x"],
        "files": [
            {"name": "data/blob.bin", "content": base64::engine::general_purpose::STANDARD.encode(&blob), "encoding": "base64"},
            {"name": "main.py", "content": main},
            {"name": "helper.py", "content": "def greet(n):\n    return 'hi ' + n\n", "encoding": "utf8"},
            {"name": "data/deep/hex.bin", "content": hex("h\u{e9}llo\0\n".as_bytes()), "encoding": "hex"},
            // Piston takes any other encoding for utf8.
            {"name": "notes.txt", "content": "plain", "encoding": "latin1"},
        ],
    }));
    assert_clean(
        &response["run"],
        "main.py ['x']\nhi there\n256 True\nb'h\\xc3\\xa9llo\\x00\\n'\nplain\n",
    );

    let unnamed = json!({"language": "py3", "version": "3", "files": [{"content": "import sys\nprint(sys.argv[0])"}]});
    assert_clean(&s.execute(&unnamed)["run"], "file0.code\n");

    let response = s.execute(&json!({
        "language": "c",
        "version": "*",
        "files": [
            {"name": "main.c", "content": "#include <stdio.h>\n#include \"lib/util.h\"\nint main(void) { printf(\"%d\\n\", twice(21)); return 0; }\n"},
            {"name": "lib/util.h", "content": "int twice(int);\n"},
            {"name": "util.c", "content": "#include \"lib/util.h\"\nint twice(int n) { return 2 * n; }\n"},
        ],
    }));
    assert_clean(&response["compile"], "");
    assert_clean(&response["run"], "42\n");
}

/// A burst from many clients at once, more jobs than the server has sandbox uids: every job is
/// answered with its own output. (Under such load teardown used to fall behind and jobs were
/// refused for want of a uid.)
#[test]
fn a_burst_of_jobs_all_complete() {
    let Some(s) = shared() else {
        return;
    };
    let results: Vec<(usize, Value)> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..24)
            .map(|client| {
                scope.spawn(move || {
                    (0..10)
                        .map(|i| {
                            let n = client * 10 + i;
                            let body = request("bash", "main.sh", &format!("echo {n}"), &json!({}));
                            (n, s.execute(&body))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        clients
            .into_iter()
            .flat_map(|c| c.join().expect("client"))
            .collect()
    });
    assert!(results.len() as u32 > SHARED_UIDS.1 - SHARED_UIDS.0 + 1);
    for (n, response) in &results {
        assert_clean(&response["run"], &format!("{n}\n"));
    }
}

/// Piston gives the compile script the code files only (`utf8`): a data file sent as base64
/// or hex is there for the program to read, not for the compiler.
#[test]
fn compile_stage_gets_the_code_files_only() {
    let Some(s) = shared() else {
        return;
    };
    let response = s.execute(&json!({
        "language": "c",
        "version": "*",
        "files": [
            {"name": "main.c", "content": "#include <stdio.h>\nint main(void) { char b[8] = {0}; fgets(b, sizeof b, fopen(\"data.bin\", \"r\")); puts(b); return 0; }\n"},
            {"name": "data.bin", "content": "aGk=", "encoding": "base64"},
            {"name": "more.bin", "content": "6869", "encoding": "hex"},
        ],
    }));
    assert_clean(&response["compile"], "");
    assert_clean(&response["run"], "hi\n");
}

/// A failed compile ends the job: the compile stage is the result, and Piston reports it as the
/// run stage too. A program that compiles may still fail as it runs.
#[test]
fn compile_errors_and_compiled_programs_that_fail() {
    let Some(s) = shared() else {
        return;
    };
    let response = s.execute(&request(
        "c++",
        "main.cpp",
        "#include <cstdio>\nint main() { std::puts(\"ran\"); return undefined_name; }\n",
        &json!({}),
    ));
    let compile = &response["compile"];
    assert_eq!(
        (
            &compile["stdout"],
            &compile["code"],
            &compile["signal"],
            &compile["status"],
            &compile["message"]
        ),
        (
            &json!(""),
            &json!(1),
            &Value::Null,
            &json!("RE"),
            &json!("Exited with error status 1")
        ),
        "{response}"
    );
    let stderr = compile["stderr"].as_str().expect("stderr");
    assert!(
        stderr.contains("main.cpp:2:")
            && stderr.contains("undefined_name")
            && stderr.contains("was not declared in this scope"),
        "{stderr}"
    );
    assert_eq!(compile["output"], compile["stderr"]);
    assert_figures(compile);
    assert_eq!(response["run"], *compile, "the run stage is the compile's");

    let response = s.execute(&request(
        "c",
        "main.c",
        "#include <stdio.h>\nint main(void) { int *volatile p = 0; puts(\"before\"); fflush(stdout); return *p; }\n",
        &json!({}),
    ));
    assert_clean(&response["compile"], "");
    let run = &response["run"];
    assert_eq!(
        (
            &run["stdout"],
            &run["code"],
            &run["signal"],
            &run["status"],
            &run["message"]
        ),
        (
            &json!("before\n"),
            &Value::Null,
            &json!("SIGSEGV"),
            &json!("SG"),
            &json!("Caught fatal signal 11")
        ),
        "{response}"
    );

    let response = s.execute(&request(
        "c++",
        "main.cpp",
        "#include <iostream>\nint main() { std::cerr << \"bad\" << std::endl; return 7; }\n",
        &json!({}),
    ));
    let run = &response["run"];
    assert_eq!(
        (
            &run["stderr"],
            &run["code"],
            &run["signal"],
            &run["status"],
            &run["message"]
        ),
        (
            &json!("bad\n"),
            &json!(7),
            &Value::Null,
            &json!("RE"),
            &json!("Exited with error status 7")
        ),
        "{response}"
    );
}

/// A Python exception is RE with code 1; a signal is SG with its name.
#[test]
fn runtime_errors_and_signals() {
    let Some(s) = shared() else {
        return;
    };
    let run = s.python(
        "print('before', flush=True)\nraise ValueError('boom')\n",
        &json!({}),
    );
    assert_eq!(
        (
            &run["stdout"],
            &run["code"],
            &run["signal"],
            &run["status"],
            &run["message"]
        ),
        (
            &json!("before\n"),
            &json!(1),
            &Value::Null,
            &json!("RE"),
            &json!("Exited with error status 1")
        ),
        "{run}"
    );
    let stderr = run["stderr"].as_str().expect("stderr");
    assert!(
        stderr.starts_with("Traceback") && stderr.ends_with("ValueError: boom\n"),
        "{run}"
    );
    assert_eq!(run["output"], format!("before\n{stderr}"));
    assert_figures(&run);

    let run = s.python(
        "import os\nprint('dying', flush=True)\nos.kill(os.getpid(), 9)\nprint('alive')\n",
        &json!({}),
    );
    assert_eq!(
        (
            &run["stdout"],
            &run["code"],
            &run["signal"],
            &run["status"],
            &run["message"]
        ),
        (
            &json!("dying\n"),
            &Value::Null,
            &json!("SIGKILL"),
            &json!("SG"),
            &json!("Caught fatal signal 9")
        ),
        "{run}"
    );
    assert_figures(&run);
}

/// A stage killed for a limit: status, message, signal SIGKILL (Piston forces it for TO, OL and
/// EL), no exit code.
fn assert_killed(run: &Value, status: &str, message: &str) {
    assert_eq!(
        (
            &run["status"],
            &run["message"],
            &run["signal"],
            &run["code"]
        ),
        (
            &json!(status),
            &json!(message),
            &json!("SIGKILL"),
            &Value::Null
        ),
        "{run}"
    );
    assert_figures(run);
}

/// CPU time and wall time, each on its own: a spin hits whichever is lower, a sleep only the
/// wall clock.
#[test]
fn time_limits() {
    let Some(s) = shared() else {
        return;
    };
    let spin = "print('spinning', flush=True)\nwhile True:\n    pass\n";
    let run = s.python(spin, &json!({"run_cpu_time": 500}));
    assert_killed(&run, "TO", "Time limit exceeded");
    assert_eq!(run["stdout"], "spinning\n");
    assert!(number(&run, "cpu_time") >= 500.0, "{run}");
    assert!(number(&run, "wall_time") < RUN_TIMEOUT as f64, "{run}");

    let run = s.python(spin, &json!({"run_timeout": 1000}));
    assert_killed(&run, "TO", "Time limit exceeded (wall clock)");
    assert!(number(&run, "wall_time") >= 1000.0, "{run}");

    let run = s.python(
        "import time\nprint('sleeping', flush=True)\ntime.sleep(60)\n",
        &json!({"run_timeout": 1000}),
    );
    assert_killed(&run, "TO", "Time limit exceeded (wall clock)");
    assert_eq!(run["stdout"], "sleeping\n");
    let wall = number(&run, "wall_time");
    assert!((1000.0..15_000.0).contains(&wall), "{run}");
    assert!(number(&run, "cpu_time") < 1000.0, "{run}");
}

#[test]
fn memory_limit() {
    let Some(s) = shared() else {
        return;
    };
    let limit: u64 = 64 << 20;
    let run = s.python(
        "a = []\nwhile True:\n    a.append(b'x' * (4 << 20))\n    print(len(a), flush=True)\n",
        &json!({"run_memory_limit": limit}),
    );
    assert_eq!(
        (
            &run["status"],
            &run["message"],
            &run["signal"],
            &run["code"]
        ),
        (
            &json!("SG"),
            &json!("Memory limit exceeded"),
            &json!("SIGKILL"),
            &Value::Null
        ),
        "{run}"
    );
    let memory = run["memory"].as_u64().expect("memory");
    assert!(
        (limit / 2..=limit).contains(&memory),
        "peak {memory}: {run}"
    );
    let chunks: u64 = run["stdout"]
        .as_str()
        .and_then(|s| s.lines().last())
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("no count: {run}"));
    assert!((5..16).contains(&chunks), "{chunks} × 4 MiB: {run}");

    // The same program under a higher limit gets further.
    let run = s.python(
        "a = [b'x' * (4 << 20) for _ in range(24)]\nprint(len(a))\n",
        &json!({"run_memory_limit": 256 << 20}),
    );
    assert_clean(&run, "24\n");
    assert!(run["memory"].as_u64().expect("memory") >= 96 << 20, "{run}");
}

/// Past `output_max_size` on stdout: OL; on stderr: EL. What was kept is there, and no more
/// than the limit.
#[test]
fn output_limits() {
    let Some(s) = shared() else {
        return;
    };
    let run = s.python("while True:\n    print('x' * 99)\n", &json!({}));
    assert_killed(&run, "OL", "stdout length exceeded");
    let stdout = run["stdout"].as_str().expect("stdout");
    assert!(
        stdout.len() <= OUTPUT_MAX_SIZE && stdout.len() >= 500,
        "{} bytes kept",
        stdout.len()
    );
    assert!(
        format!("{}\n", "x".repeat(99))
            .repeat(11)
            .starts_with(stdout),
        "{stdout:?}"
    );
    assert_eq!(run["stderr"], "");
    assert_eq!(run["output"], run["stdout"]);

    let run = s.python(
        "import sys\nprint('fine', flush=True)\nwhile True:\n    sys.stderr.write('y' * 100)\n    sys.stderr.flush()\n",
        &json!({}),
    );
    assert_killed(&run, "EL", "stderr length exceeded");
    assert_eq!(run["stdout"], "fine\n");
    let stderr = run["stderr"].as_str().expect("stderr");
    assert!(
        stderr.len() <= OUTPUT_MAX_SIZE && stderr.len() >= 500 && stderr.bytes().all(|b| b == b'y'),
        "{stderr:?}"
    );
    assert_eq!(run["output"], format!("fine\n{stderr}"));
}

/// An inode bomb in each writable file system of a job (/box, /tmp, /dev/shm) stops at that
/// file system's inode limit with ENOSPC, within the run's time, and the next job runs.
#[test]
fn inode_bombs_stop_at_each_file_systems_limit() {
    let Some(s) = shared() else {
        return;
    };
    let bomb = r#"
import errno
for d in ("/box", "/tmp", "/dev/shm"):
    n = 0
    try:
        while True:
            open(f"{d}/f{n}", "w").close()
            n += 1
    except OSError as e:
        print(d, n, errno.errorcode[e.errno])
"#;
    let run = s.python(bomb, &json!({}));
    assert_eq!(run["status"], Value::Null, "{run}");
    let stdout = run["stdout"].as_str().expect("stdout");
    // The defaults: the job tmpfs under /box 65536 inodes, /tmp and /dev/shm 16384 each.
    let limits = [("/box", 65_536), ("/tmp", 16_384), ("/dev/shm", 16_384)];
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), limits.len(), "{run}");
    for (line, (dir, most)) in lines.iter().zip(limits) {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!((fields[0], fields[2]), (dir, "ENOSPC"), "{run}");
        let n: u64 = fields[1].parse().expect("a count");
        assert!(n > most / 2 && n < most, "{dir}: {n} files, limit {most}");
    }
    eprintln!("inode bombs: {}", stdout.replace('\n', "; "));
    assert_clean(&s.python("print('next')", &json!({})), "next\n");
}

/// A job with eight busy processes gets one CPU (the default cap), so a small job beside it
/// keeps the other core: the busy one's CPU time stays at about its wall time.
#[test]
fn a_many_threaded_job_gets_one_cpu_beside_a_small_one() {
    let Some(s) = shared() else {
        return;
    };
    let spin = "spin() { while :; do :; done; }\n\
                for i in 1 2 3 4 5 6 7 8; do spin & done\n\
                sleep 3; kill $(jobs -p); echo done\n";
    let (busy, small) = std::thread::scope(|scope| {
        let busy = scope.spawn(|| s.execute(&request("bash", "main.sh", spin, &json!({}))));
        std::thread::sleep(Duration::from_millis(1000));
        let small = s.python("print(sum(range(3_000_000)))", &json!({}));
        (busy.join().expect("client"), small)
    });
    let busy = &busy["run"];
    assert_eq!(busy["stdout"], "done\n", "{busy}");
    let (cpu, wall) = (number(busy, "cpu_time"), number(busy, "wall_time"));
    assert!(
        cpu / wall < 1.25,
        "{cpu} ms of CPU in {wall} ms of wall time: more than one CPU"
    );
    assert!(cpu / wall > 0.5, "the loops ran: {busy}");
    assert_clean(&small, "4499998500000\n");
    eprintln!(
        "busy job: {cpu} ms CPU in {wall} ms; small job beside it: {} ms CPU in {} ms",
        number(&small, "cpu_time"),
        number(&small, "wall_time")
    );
}

/// Socket families beyond what a job needs are refused in a real runtime (EAFNOSUPPORT), those
/// it needs work, and a program that crashes with a core limit it tried to lift still runs as
/// usual.
#[test]
fn socket_families_are_an_allow_list() {
    let Some(s) = shared() else {
        return;
    };
    let probe = r#"
import socket, resource
for name, args in [("packet", (17, socket.SOCK_RAW)), ("alg", (38, socket.SOCK_SEQPACKET)),
                   ("vsock", (40, socket.SOCK_STREAM)), ("audit", (16, socket.SOCK_RAW, 9)),
                   ("route", (16, socket.SOCK_RAW, 0)), ("inet", (2, socket.SOCK_STREAM)),
                   ("inet6", (10, socket.SOCK_DGRAM)), ("unix", (1, socket.SOCK_STREAM))]:
    try:
        socket.socket(*args).close()
        print(name, "ok")
    except OSError as e:
        print(name, e.errno)
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
print("core", resource.getrlimit(resource.RLIMIT_CORE))
"#;
    let run = s.python(probe, &json!({}));
    assert_clean(
        &run,
        "packet 97\nalg 97\nvsock 97\naudit 97\nroute ok\ninet ok\ninet6 ok\nunix ok\n\
         core (1, 1)\n",
    );
}

async fn connect(s: &Server) -> Ws {
    ws::connect(&s.ws_url("/api/v2/connect")).await
}

/// Long enough for a compile on a busy host.
const WS_WAIT: Duration = Duration::from_secs(120);

async fn recv(ws: &mut Ws) -> Value {
    ws::recv(ws, WS_WAIT).await
}

async fn closed(ws: &mut Ws) -> (u16, String) {
    ws::closed(ws, WS_WAIT).await
}

/// What a stage printed, as the data messages carried it (a program's writes may arrive cut
/// or joined).
#[derive(Default, Debug)]
struct Printed {
    stdout: String,
    stderr: String,
}

impl Printed {
    /// Takes data messages until `stream` holds `text`.
    async fn until(&mut self, ws: &mut Ws, stream: &str, text: &str) {
        while !self.stream(stream).contains(text) {
            let message = recv(ws).await;
            assert!(
                self.take(&message),
                "expected output, got {message} ({self:?})"
            );
        }
    }

    /// Takes data messages until the stage's exit message, which it returns.
    async fn until_exit(&mut self, ws: &mut Ws) -> Value {
        loop {
            let message = recv(ws).await;
            if message["type"] == "exit" {
                return message;
            }
            assert!(
                self.take(&message),
                "expected output, got {message} ({self:?})"
            );
        }
    }

    fn take(&mut self, message: &Value) -> bool {
        let (Some("data"), Some(stream), Some(data)) = (
            message["type"].as_str(),
            message["stream"].as_str(),
            message["data"].as_str(),
        ) else {
            return false;
        };
        match stream {
            "stdout" => self.stdout.push_str(data),
            "stderr" => self.stderr.push_str(data),
            _ => return false,
        }
        true
    }

    fn stream(&self, name: &str) -> &str {
        if name == "stdout" {
            &self.stdout
        } else {
            &self.stderr
        }
    }
}

fn init(language: &str, file: &str, code: &str, extra: &Value) -> Value {
    let mut init = request(language, file, code, extra);
    init["type"] = json!("init");
    init
}

/// A conversation with Python: runtime, stage, stdin lines answered one by one, then the
/// documented extension message closes stdin and the program sees end of file. The init's
/// `stdin` is ignored, as in Piston.
#[tokio::test]
async fn websocket_conversation_and_end_of_stdin() {
    let Some(s) = shared() else {
        return;
    };
    let program = r#"import sys
print("ready", flush=True)
for line in sys.stdin:
    print("got", line.strip(), flush=True)
print("end of input", file=sys.stderr, flush=True)
sys.exit(3)
"#;
    let mut ws = connect(s).await;
    send(
        &mut ws,
        init("py", "main.py", program, &json!({"stdin": "ignored\n"})),
    )
    .await;
    assert_eq!(
        recv(&mut ws).await,
        json!({"type": "runtime", "language": "python", "version": version("python")})
    );
    assert_eq!(
        recv(&mut ws).await,
        json!({"type": "stage", "stage": "run"})
    );
    let mut printed = Printed::default();
    printed.until(&mut ws, "stdout", "ready\n").await;
    send(
        &mut ws,
        json!({"type": "data", "stream": "stdin", "data": "hello\n"}),
    )
    .await;
    printed.until(&mut ws, "stdout", "got hello\n").await;
    send(&mut ws, json!({"type": "unknown"})).await;
    send(
        &mut ws,
        json!({"type": "data", "stream": "stdin", "data": "last\n", "eof": true}),
    )
    .await;
    let exit = printed.until_exit(&mut ws).await;
    assert_eq!(printed.stdout, "ready\ngot hello\ngot last\n");
    assert_eq!(printed.stderr, "end of input\n");
    assert_eq!(
        exit,
        json!({"type": "exit", "stage": "run", "code": 3, "signal": null, "status": "RE", "message": "Exited with error status 3"})
    );
    assert_eq!(closed(&mut ws).await, (4999, "Job Completed".to_owned()));
}

/// Signals reach the program (unlike Piston, where they never did): a handled SIGINT, then a
/// SIGKILL, which is what the program died of.
#[tokio::test]
async fn websocket_signals() {
    let Some(s) = shared() else {
        return;
    };
    // The handler only notes the signal: it may arrive while `print` is still writing "ready".
    let program = r#"import signal, sys, time
caught = None
def on(sig, frame):
    global caught
    caught = sig
signal.signal(signal.SIGINT, on)
print("ready", flush=True)
while caught is None:
    time.sleep(0.01)
print("caught", signal.Signals(caught).name, flush=True)
sys.exit(42)
"#;
    let mut ws = connect(s).await;
    send(&mut ws, init("python", "main.py", program, &json!({}))).await;
    assert_eq!(recv(&mut ws).await["type"], "runtime");
    assert_eq!(
        recv(&mut ws).await,
        json!({"type": "stage", "stage": "run"})
    );
    let mut printed = Printed::default();
    printed.until(&mut ws, "stdout", "ready\n").await;
    send(&mut ws, json!({"type": "signal", "signal": "SIGINT"})).await;
    let exit = printed.until_exit(&mut ws).await;
    assert_eq!(printed.stdout, "ready\ncaught SIGINT\n");
    assert_eq!(
        exit,
        json!({"type": "exit", "stage": "run", "code": 42, "signal": null, "status": "RE", "message": "Exited with error status 42"})
    );
    assert_eq!(closed(&mut ws).await.0, 4999);

    let mut ws = connect(s).await;
    send(&mut ws, init("python", "main.py", program, &json!({}))).await;
    assert_eq!(recv(&mut ws).await["type"], "runtime");
    assert_eq!(recv(&mut ws).await["type"], "stage");
    let mut printed = Printed::default();
    printed.until(&mut ws, "stdout", "ready\n").await;
    send(&mut ws, json!({"type": "signal", "signal": "SIGKILL"})).await;
    let exit = printed.until_exit(&mut ws).await;
    assert_eq!(
        exit,
        json!({"type": "exit", "stage": "run", "code": null, "signal": "SIGKILL", "status": "SG", "message": "Caught fatal signal 9"})
    );
    assert_eq!(closed(&mut ws).await.0, 4999);

    // A name Piston does not know ends the session (and the job).
    let mut ws = connect(s).await;
    send(&mut ws, init("python", "main.py", program, &json!({}))).await;
    assert_eq!(recv(&mut ws).await["type"], "runtime");
    assert_eq!(recv(&mut ws).await["type"], "stage");
    send(&mut ws, json!({"type": "signal", "signal": "SIGNOPE"})).await;
    let mut printed = Printed::default();
    loop {
        match tokio::time::timeout(WS_WAIT, ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                let message: Value = serde_json::from_str(&text).expect("JSON");
                assert!(printed.take(&message), "unexpected {message}");
            }
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                assert_eq!(
                    (u16::from(frame.code), frame.reason.as_str()),
                    (4005, "Invalid signal")
                );
                break;
            }
            other => panic!("expected output or a close frame, got {other:?}"),
        }
    }
}

/// C++ over the WebSocket: the compile stage, then a conversation with the program; a compile
/// error ends the session without a run stage.
#[tokio::test]
async fn websocket_compiled_language() {
    let Some(s) = shared() else {
        return;
    };
    let echo = "#include <iostream>\n#include <string>\n\
                int main() { std::string l; while (std::getline(std::cin, l)) \
                std::cout << \"got \" << l << std::endl; std::cout << \"bye\" << std::endl; }\n";
    let mut ws = connect(s).await;
    send(&mut ws, init("c++", "main.cpp", echo, &json!({}))).await;
    assert_eq!(
        recv(&mut ws).await,
        json!({"type": "runtime", "language": "c++", "version": version("gcc")})
    );
    assert_eq!(
        recv(&mut ws).await,
        json!({"type": "stage", "stage": "compile"})
    );
    let mut compiled = Printed::default();
    let exit = compiled.until_exit(&mut ws).await;
    assert_eq!(
        exit,
        json!({"type": "exit", "stage": "compile", "code": 0, "signal": null})
    );
    assert_eq!(
        (compiled.stdout.as_str(), compiled.stderr.as_str()),
        ("", "")
    );
    assert_eq!(
        recv(&mut ws).await,
        json!({"type": "stage", "stage": "run"})
    );
    let mut printed = Printed::default();
    send(
        &mut ws,
        json!({"type": "data", "stream": "stdin", "data": "one\n"}),
    )
    .await;
    printed.until(&mut ws, "stdout", "got one\n").await;
    send(
        &mut ws,
        json!({"type": "data", "stream": "stdin", "eof": true}),
    )
    .await;
    let exit = printed.until_exit(&mut ws).await;
    assert_eq!(printed.stdout, "got one\nbye\n");
    assert_eq!(
        exit,
        json!({"type": "exit", "stage": "run", "code": 0, "signal": null})
    );
    assert_eq!(closed(&mut ws).await, (4999, "Job Completed".to_owned()));

    let mut ws = connect(s).await;
    send(
        &mut ws,
        init(
            "cpp",
            "main.cpp",
            "int main() { return nope; }\n",
            &json!({}),
        ),
    )
    .await;
    assert_eq!(recv(&mut ws).await["type"], "runtime");
    assert_eq!(
        recv(&mut ws).await,
        json!({"type": "stage", "stage": "compile"})
    );
    let mut compiled = Printed::default();
    let exit = compiled.until_exit(&mut ws).await;
    assert!(
        compiled.stderr.contains("nope") && compiled.stderr.contains("was not declared"),
        "{compiled:?}"
    );
    assert_eq!(
        exit,
        json!({"type": "exit", "stage": "compile", "code": 1, "signal": null, "status": "RE", "message": "Exited with error status 1"})
    );
    assert_eq!(closed(&mut ws).await, (4999, "Job Completed".to_owned()));
}

/// The limits hold over the WebSocket: the wall clock (the exchange of Piston's README: `cat`
/// waiting for input is killed), output (unlike Piston), and a bad init is refused with
/// Piston's message.
#[tokio::test]
async fn websocket_limits_and_errors() {
    let Some(s) = shared() else {
        return;
    };
    let mut ws = connect(s).await;
    send(
        &mut ws,
        init("bash", "main.sh", "cat", &json!({"run_timeout": 2000})),
    )
    .await;
    assert_eq!(
        recv(&mut ws).await,
        json!({"type": "runtime", "language": "bash", "version": version("bash")})
    );
    assert_eq!(
        recv(&mut ws).await,
        json!({"type": "stage", "stage": "run"})
    );
    send(
        &mut ws,
        json!({"type": "data", "stream": "stdin", "data": "Hello World!\n"}),
    )
    .await;
    let mut printed = Printed::default();
    let exit = printed.until_exit(&mut ws).await;
    assert_eq!(printed.stdout, "Hello World!\n");
    assert_eq!(
        exit,
        json!({"type": "exit", "stage": "run", "code": null, "signal": "SIGKILL", "status": "TO", "message": "Time limit exceeded (wall clock)"})
    );
    assert_eq!(closed(&mut ws).await.0, 4999);

    let mut ws = connect(s).await;
    send(
        &mut ws,
        init(
            "python",
            "main.py",
            "while True:\n    print('z' * 99)\n",
            &json!({}),
        ),
    )
    .await;
    assert_eq!(recv(&mut ws).await["type"], "runtime");
    assert_eq!(recv(&mut ws).await["type"], "stage");
    let mut printed = Printed::default();
    let exit = printed.until_exit(&mut ws).await;
    assert_eq!(printed.stdout.len(), OUTPUT_MAX_SIZE);
    assert!(printed.stdout.bytes().all(|b| b == b'z' || b == b'\n'));
    assert_eq!(
        exit,
        json!({"type": "exit", "stage": "run", "code": null, "signal": "SIGKILL", "status": "OL", "message": "stdout length exceeded"})
    );
    assert_eq!(closed(&mut ws).await.0, 4999);

    let mut ws = connect(s).await;
    send(
        &mut ws,
        init("python", "main.py", "x", &json!({"version": "2.x"})),
    )
    .await;
    assert_eq!(
        recv(&mut ws).await,
        json!({"type": "error", "message": "python-2.x runtime is unknown"})
    );
    assert_eq!(closed(&mut ws).await, (4002, "Notified Error".to_owned()));
}

/// Piston's close codes, with real jobs behind the sessions that got that far: no init within
/// 1 s (4001), data or a signal before init (4003), a second init (4000), writing to anything
/// but stdin (4004). A session that ends early takes its job with it.
#[tokio::test]
async fn websocket_close_codes() {
    let Some(s) = shared() else {
        return;
    };
    let mut ws = connect(s).await;
    let started = Instant::now();
    assert_eq!(
        closed(&mut ws).await,
        (4001, "Initialization Timeout".to_owned())
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    for early in [
        json!({"type": "data", "stream": "stdin", "data": "x"}),
        json!({"type": "signal", "signal": "SIGINT"}),
    ] {
        let mut ws = connect(s).await;
        send(&mut ws, early).await;
        assert_eq!(
            closed(&mut ws).await,
            (4003, "Not yet initialized".to_owned())
        );
    }
    let forever = "import time\nprint('ready', flush=True)\ntime.sleep(600)\n";
    for (message, code, reason) in [
        (
            init("python", "main.py", forever, &json!({})),
            4000,
            "Already Initialized",
        ),
        (
            json!({"type": "data", "stream": "stdout", "data": "x"}),
            4004,
            "Can only write to stdin",
        ),
    ] {
        // The program's command line carries a mark the host can find it by.
        let mark = format!("e2e-api-close-{code}-{}", std::process::id());
        let mut ws = connect(s).await;
        send(
            &mut ws,
            init("python", "main.py", forever, &json!({"args": [mark]})),
        )
        .await;
        assert_eq!(recv(&mut ws).await["type"], "runtime");
        assert_eq!(recv(&mut ws).await["type"], "stage");
        Printed::default().until(&mut ws, "stdout", "ready\n").await;
        assert!(!host_processes_with(&mark).is_empty(), "the job runs");
        send(&mut ws, message).await;
        assert_eq!(closed(&mut ws).await, (code, reason.to_owned()));
        let until = Instant::now() + Duration::from_secs(30);
        while !host_processes_with(&mark).is_empty() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(host_processes_with(&mark), Vec::<String>::new());
    }
}

/// A server of its own over an empty installation (the test repository registered as `test`,
/// nothing installed). Fields drop in order: the server stops before the packages go.
struct Own {
    server: Server,
    installation: Installation,
}

fn own_server(uids: (u32, u32), cgroup: &str) -> Option<Own> {
    let installation = Installation::new(&[])?;
    let work = tempfile::Builder::new()
        .prefix("piston-e2e-api-")
        .tempdir()
        .expect("work dir");
    let server = Server::start(installation.data.path(), work, uids, cgroup, &[]);
    Some(Own {
        server,
        installation,
    })
}

/// Piston's package routes: list, install, uninstall, with Piston's answers and codes; what is
/// installed runs at once, what is removed is gone at once.
#[test]
fn v2_packages_install_and_uninstall() {
    let Some(own) = own_server(V2_PACKAGES_UIDS, "piston-e2e-api-v2") else {
        return;
    };
    let s = &own.server;
    let index = index();
    let bash = index_entry(&index, "bash").version.to_string();
    let listing = |installed: &[&str]| -> Vec<Value> {
        let mut list: Vec<Value> = index
            .packages
            .iter()
            .map(|p| {
                json!({
                    "language": p.name,
                    "language_version": p.version.to_string(),
                    "installed": installed.contains(&p.name.as_str()),
                })
            })
            .collect();
        list.sort_by_key(Value::to_string);
        list
    };
    let packages = || {
        let (status, list) = s.get("/api/v2/packages");
        assert_eq!(status, 200);
        let mut list = list.as_array().expect("a list").clone();
        list.sort_by_key(Value::to_string);
        list
    };
    assert_eq!(packages(), listing(&[]));
    assert_eq!(s.get("/api/v2/runtimes"), (200, json!([])));
    let hello = request("bash", "main.sh", "echo hello from bash", &json!({}));
    s.refused(&hello, "bash-* runtime is unknown");

    let wanted = json!({"language": "bash", "version": "5.x"});
    assert_eq!(
        s.post("/api/v2/packages", &wanted),
        (200, json!({"language": "bash", "version": bash}))
    );
    assert_eq!(packages(), listing(&["bash", "base"]));
    let (_, runtimes) = s.get("/api/v2/runtimes");
    assert_eq!(
        runtimes,
        json!([{"language": "bash", "version": bash, "aliases": ["sh"]}])
    );
    assert_clean(&s.execute(&hello)["run"], "hello from bash\n");
    assert_eq!(
        s.post("/api/v2/packages", &wanted),
        (500, json!({"message": "Already installed"}))
    );
    assert_eq!(
        s.post(
            "/api/v2/packages",
            &json!({"language": "bash", "version": "99.x"})
        ),
        (
            404,
            json!({"message": "Requested package bash-99.x does not exist"})
        )
    );
    assert_eq!(
        s.post(
            "/api/v2/packages",
            &json!({"language": "nope", "version": "*"})
        ),
        (
            404,
            json!({"message": "Requested package nope-* does not exist"})
        )
    );
    assert_eq!(
        s.post("/api/v2/packages", &json!({"language": "bash"})),
        (400, json!({"message": "version is required as a string"}))
    );
    assert_eq!(
        s.send(
            "POST",
            "/api/v2/packages",
            "text/plain",
            &wanted.to_string()
        ),
        (
            415,
            json!({"message": "requests must be of type application/json"})
        )
    );

    assert_eq!(
        s.delete("/api/v2/packages", &wanted),
        (200, json!({"language": "bash", "version": bash}))
    );
    assert_eq!(packages(), listing(&[]), "its base went with it");
    assert_eq!(s.get("/api/v2/runtimes"), (200, json!([])));
    s.refused(&hello, "bash-* runtime is unknown");
    assert_eq!(
        s.delete("/api/v2/packages", &wanted),
        (500, json!({"message": "bash-5.x is not installed"}))
    );
    assert_eq!(
        s.delete(
            "/api/v2/packages",
            &json!({"language": "nope", "version": "*"})
        ),
        (
            404,
            json!({"message": "Requested package nope-* does not exist"})
        )
    );
    assert!(
        own.installation
            .pm
            .installed()
            .expect("installed")
            .is_empty(),
        "ppman agrees nothing is installed"
    );
}

/// The v3 repository routes: repositories, packages (synced), one package's metadata, install
/// with dependencies (201, 409 when present), uninstall (409 while needed, `cascade`, 404 when
/// absent), the cache purge.
#[test]
fn v3_repository_routes() {
    let Some(own) = own_server(V3_PACKAGES_UIDS, "piston-e2e-api-v3") else {
        return;
    };
    let s = &own.server;
    let index = index();
    let python = index_entry(&index, "python");
    let base = index_entry(&index, "base");
    let url = own.installation.server.url.clone();

    let (status, repos) = s.get("/api/v3/repos");
    assert_eq!(status, 200);
    assert_eq!(
        repos,
        json!([{
            "name": "test",
            "url": url,
            "index_version": index.version,
            "generated": index.generated,
            "packages": index.packages.len(),
        }])
    );
    let (status, packages) = s.get("/api/v3/repos/test/packages?sync=true");
    assert_eq!(status, 200, "{packages}");
    let packages = packages.as_array().expect("a list");
    assert_eq!(packages.len(), index.packages.len());
    let listed = packages
        .iter()
        .find(|p| p["name"] == "python")
        .expect("python is listed");
    assert_eq!(
        listed,
        &json!({
            "repo": "test",
            "name": "python",
            "version": python.version.to_string(),
            "description": python.description,
            "languages": ["python"],
            "installed": false,
        })
    );
    assert_eq!(
        s.get("/api/v3/repos/all/packages")
            .1
            .as_array()
            .map(Vec::len),
        Some(packages.len())
    );
    assert_eq!(
        s.get("/api/v3/repos/nope/packages"),
        (
            404,
            json!({"message": "repository \"nope\" is not configured"})
        )
    );
    assert_eq!(
        s.get("/api/v3/repos/test/packages?sync=maybe"),
        (400, json!({"message": "sync must be true or false"}))
    );

    let (status, detail) = s.get("/api/v3/repos/test/packages/python/3.x");
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["repo"], "test");
    assert_eq!(detail["name"], "python");
    assert_eq!(detail["version"], python.version.to_string());
    assert_eq!(detail["author"], python.author);
    assert_eq!(detail["size"], python.size);
    assert_eq!(detail["checksums"], json!({"sha256": python.sha256}));
    assert_eq!(detail["dependencies"], json!(python.dependencies));
    assert_eq!(detail["compiled"], false);
    assert_eq!(detail["installed"], false);
    assert_eq!(detail["build_file_sha256"], python.build_file.sha256);
    // Both links lead somewhere: the image, and the folder of the build files.
    let fetch = |link: &str| {
        assert!(link.starts_with(&url), "{link} is absolute");
        let mut response = agent(Some(HTTP_TIMEOUT)).get(link).call().unwrap();
        assert_eq!(response.status(), 200, "{link} can be fetched");
        response
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .expect("body")
    };
    let image = fetch(detail["download_url"].as_str().expect("download_url"));
    assert_eq!(image.len() as u64, python.size);
    let folder = detail["build_file_url"].as_str().expect("build_file_url");
    let toml = fetch(&format!("{}/package.toml", folder.trim_end_matches('/')));
    assert!(
        String::from_utf8_lossy(&toml).contains("name = \"python\""),
        "{folder}"
    );
    assert_eq!(
        s.get("/api/v3/repos/test/packages/python/99.x"),
        (
            404,
            json!({"message": "Requested package python-99.x does not exist"})
        )
    );
    assert_eq!(s.get("/api/v3/repos/test/packages/python/%3E%3E%3E").0, 400);

    let hello = request(
        "python",
        "main.py",
        "print('hello from python')",
        &json!({}),
    );
    s.refused(&hello, "python-* runtime is unknown");
    let (status, report) = s.post_empty("/api/v3/repos/test/packages/python/3.x/install");
    assert_eq!(status, 201, "{report}");
    let reference =
        |e: &IndexEntry| json!({"repo": "test", "name": e.name, "version": e.version.to_string()});
    assert_eq!(report["package"], reference(python));
    let mut installed = report["installed"].as_array().expect("installed").clone();
    installed.sort_by_key(Value::to_string);
    assert_eq!(installed, [reference(base), reference(python)]);
    assert_clean(&s.execute(&hello)["run"], "hello from python\n");
    assert_eq!(
        s.post_empty(&format!(
            "/api/v3/repos/test/packages/python/{}/install",
            python.version
        )),
        (
            409,
            json!({"message": format!("python-{} is already installed", python.version)})
        )
    );
    assert_eq!(
        s.get("/api/v3/repos/test/packages/python/3.x").1["installed"],
        true
    );

    // python needs base: refused, unless everything that needs it goes too.
    let (status, body) = s.post_empty("/api/v3/repos/test/packages/base/*/uninstall");
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("python")),
        "the refusal names the dependent: {body}"
    );
    assert_clean(&s.execute(&hello)["run"], "hello from python\n");
    assert_eq!(
        s.delete_empty("/api/v3/repos/test/packages/python/3.x/cache"),
        (
            501,
            json!({"message": "this server has no job cache yet: there is nothing to purge"})
        ),
        "no cache yet: the purge says so instead of reporting 0"
    );
    let (status, report) =
        s.post_empty("/api/v3/repos/test/packages/base/*/uninstall?cascade=true");
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["package"], reference(base));
    let mut removed = report["removed"].as_array().expect("removed").clone();
    removed.sort_by_key(Value::to_string);
    assert_eq!(removed, [reference(base), reference(python)]);
    s.refused(&hello, "python-* runtime is unknown");
    assert_eq!(s.get("/api/v3/runtimes"), (200, json!([])));
    let (status, body) = s.post_empty("/api/v3/repos/test/packages/python/3.x/uninstall");
    assert_eq!(
        (status, body),
        (404, json!({"message": "python-3.x is not installed"}))
    );
    assert_eq!(
        s.post_empty("/api/v3/repos/test/packages/nope/*/uninstall"),
        (
            404,
            json!({"message": "Requested package nope-* does not exist"})
        )
    );
    assert!(
        own.installation
            .pm
            .installed()
            .expect("installed")
            .is_empty(),
        "ppman agrees nothing is installed"
    );
}

/// The memory of `cgroup` under this process's own cgroup (where the servers it starts put
/// theirs): (peak, limit) in bytes, v1 or v2.
fn cgroup_memory(cgroup: &str) -> (u64, u64) {
    let own = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
    let (dir, peak, limit) = match own.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then(|| path.to_owned())
    }) {
        Some(path) => (
            format!("/sys/fs/cgroup/memory{path}/{cgroup}"),
            "memory.max_usage_in_bytes",
            "memory.limit_in_bytes",
        ),
        None => {
            let path = own
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .expect("a cgroup");
            (
                format!("/sys/fs/cgroup{path}/{cgroup}"),
                "memory.peak",
                "memory.max",
            )
        }
    };
    let read = |f: &str| -> u64 {
        let path = format!("{dir}/{f}");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{path}: {text:?}"))
    };
    (read(peak), read(limit))
}

/// Hostile load on a server with the default limits and concurrency (`auto`): 64 memory bombs
/// that name no limit, sent at once, are each held at the default 512 MiB and all of them
/// together under the jobs' share of the host's memory; a small job sent in the middle gets its
/// answer, and `/healthz` answers throughout. (The share is made small, about 2 GiB, so that it
/// is what sizes the concurrency here.)
#[test]
fn hostile_load_is_bounded_by_the_default_limits() {
    let Some(installation) = Installation::new(&["python"]) else {
        return;
    };
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("/proc/meminfo");
    let host: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("MemTotal")
        * 1024;
    let percent = ((2u64 << 30) * 100).div_ceil(host).clamp(1, 100);
    let share = host * percent / 100 / 4096 * 4096;
    let job_limit: u64 = 512 << 20;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let concurrency = (4 * cpus).min(share / job_limit).clamp(1, 64);
    let cgroup = "piston-e2e-api-hostile";
    let work = tempfile::Builder::new()
        .prefix("piston-e2e-api-")
        .tempdir()
        .expect("work dir");
    let s = Server::start(
        installation.data.path(),
        work,
        HOSTILE_UIDS,
        cgroup,
        &[
            ("runner_jobs_memory_percent", percent.to_string()),
            ("max_concurrent_jobs", "auto".into()),
        ],
    );
    assert_eq!(
        cgroup_memory(cgroup).1,
        share,
        "the jobs' share is on the runner's cgroup"
    );
    let log = s.log_text();
    assert!(
        log.contains(&format!("max_concurrent_jobs={concurrency}")),
        "auto concurrency should be {concurrency}: {log}"
    );

    let done = std::sync::atomic::AtomicBool::new(false);
    let (health, bombs, small) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let mut worst = Duration::ZERO;
            let mut answers = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let started = Instant::now();
                let (status, body) = s.get_text("/healthz");
                assert_eq!(status, 200, "/healthz: {body}");
                worst = worst.max(started.elapsed());
                answers += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            (answers, worst)
        });
        let bombs: Vec<_> = (0..64)
            .map(|_| {
                scope.spawn(|| {
                    s.python(
                        "a = []\nwhile True:\n    a.append(b'x' * (8 << 20))\n",
                        &json!({}),
                    )
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(1));
        let small = s.python("print('still here')", &json!({}));
        let bombs: Vec<Value> = bombs
            .into_iter()
            .map(|h| h.join().expect("client"))
            .collect();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        (watcher.join().expect("watcher"), bombs, small)
    });
    assert_clean(&small, "still here\n");
    let mut killed = 0;
    for bomb in &bombs {
        // A bomb that reached its own limit is killed for memory: by the kernel, or by the
        // runner when reclaim at the limit stalled it. One held at the jobs' shared cap may run
        // out of wall time first (3 s by default): bounded either way. Its peak does not tell
        // the two apart: the kernel raises a job's watermark for charges the shared cap then
        // refuses, and a bomb growing slowly at the shared cap may reach its own limit in its
        // last milliseconds (seen with the host's CPUs busy); the runner's own test of a job
        // thrashing at its limit (runner/tests/sandbox.rs) shows that case alone.
        let outcome = (&bomb["status"], &bomb["message"]);
        let peak = bomb["memory"].as_u64().expect("memory");
        if outcome == (&json!("SG"), &json!("Memory limit exceeded")) {
            killed += 1;
        } else {
            assert_eq!(
                outcome,
                (&json!("TO"), &json!("Time limit exceeded (wall clock)")),
                "{bomb}"
            );
        }
        assert!(
            peak <= job_limit,
            "a bomb's peak {peak} is above the default 512 MiB"
        );
    }
    let (peak, _) = cgroup_memory(cgroup);
    assert!(
        peak <= share,
        "the jobs together peaked at {peak}, above their share {share}"
    );
    assert!(killed > 0, "no bomb reached its memory limit: {bombs:?}");
    let (answers, worst) = health;
    assert!(answers > 0, "/healthz was never asked");
    eprintln!(
        "64 memory bombs, {concurrency} at once, {killed} killed for memory (the rest stalled at \
         the shared cap and timed out): jobs' peak {} MiB of {} MiB; /healthz answered \
         {answers} times, the slowest in {worst:?}",
        peak >> 20,
        share >> 20
    );
}

/// A line of `/proc/<pid>/status` (`VmRSS`, `Threads`), as its number.
fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {status}"))
}

/// Floods a WebSocket job with `message` until the server closes the connection (or `count`
/// messages went out, `pause` apart); what the server closed with, if it did.
async fn flood(ws: Ws, message: Value, count: usize, pause: Duration) -> Option<(u16, String)> {
    use futures_util::SinkExt as _;
    let (mut sink, mut stream) = ws.split();
    let reader = tokio::spawn(async move {
        while let Some(Ok(m)) = stream.next().await {
            if let Message::Close(frame) = m {
                return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
            }
        }
        None
    });
    let text = message.to_string();
    for _ in 0..count {
        if reader.is_finished() {
            break;
        }
        let sent = tokio::time::timeout(
            Duration::from_secs(30),
            sink.send(Message::Text(text.clone().into())),
        )
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            break;
        }
        tokio::time::sleep(pause).await;
    }
    tokio::time::timeout(WS_WAIT, reader)
        .await
        .expect("the server answers the flood")
        .expect("reader")
}

/// WebSocket floods cost the server a bound, and it keeps answering: 64 MB of stdin into a
/// program that reads nothing, in messages slow enough for the session to pass each on, closes
/// the connection with 4006 once about 2 MiB wait (without the bound the job's stdin buffer
/// grew with every message); 20,000 signals (`SIGCONT`, harmless)
/// as fast as the client can send them are taken by the one control thread of the session (or
/// close it with 4006), not by a blocking task each; `/healthz` and a job answer meanwhile; every
/// flood ends with a Close frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_floods_are_bounded() {
    let Some(installation) = Installation::new(&["python"]) else {
        return;
    };
    let work = tempfile::Builder::new()
        .prefix("piston-e2e-api-")
        .tempdir()
        .expect("work dir");
    let s = Server::start(
        installation.data.path(),
        work,
        FLOOD_UIDS,
        "piston-e2e-api-floods",
        &[
            ("run_timeout", "60000".into()),
            ("run_cpu_time", "60000".into()),
        ],
    );
    let pid = s.child.id();
    let sleeper = "import time\nprint('ready', flush=True)\ntime.sleep(50)\n";
    let start = |code: &'static str| {
        let s = &s;
        async move {
            let mut ws = connect(s).await;
            send(&mut ws, init("python", "main.py", code, &json!({}))).await;
            assert_eq!(recv(&mut ws).await["type"], "runtime");
            assert_eq!(recv(&mut ws).await["type"], "stage");
            Printed::default().until(&mut ws, "stdout", "ready\n").await;
            ws
        }
    };

    // Stdin into a program that never reads it.
    let rss_before = proc_status(pid, "VmRSS");
    let ws = start(sleeper).await;
    let chunk = "x".repeat(1_000_000);
    let stdin = json!({"type": "data", "stream": "stdin", "data": chunk});
    // Slow enough for the session to hand each message on: the job is what must say no.
    let closed = flood(ws, stdin, 64, Duration::from_millis(150)).await;
    assert_eq!(closed, Some((4006, "Too Many Messages".to_owned())));
    let grown = proc_status(pid, "VmRSS").saturating_sub(rss_before);
    eprintln!("stdin flood: closed with {closed:?}, the server grew by {grown} KiB");
    assert!(
        grown < 48 << 10,
        "the server grew by {grown} KiB for one connection's stdin"
    );

    // Signals as fast as the client sends them.
    let threads_before = proc_status(pid, "Threads");
    let ws = start("import time\nprint('ready', flush=True)\ntime.sleep(5)\n").await;
    let signal = json!({"type": "signal", "signal": "SIGCONT"});
    let busy = tokio::spawn(flood(ws, signal.clone(), 20_000, Duration::ZERO));
    let (status, _) = tokio::task::block_in_place(|| s.get_text("/healthz"));
    assert_eq!(status, 200);
    let run = tokio::task::block_in_place(|| s.python("print('meanwhile')", &json!({})));
    assert_clean(&run, "meanwhile\n");
    let threads = proc_status(pid, "Threads");
    assert!(
        threads <= threads_before + 16,
        "{threads} threads during a signal flood, {threads_before} before"
    );
    // Either the backlog filled, or every signal was taken and the program ended; either way the
    // Close frame arrives although the client was still sending (a server that dropped the
    // connection without the closing handshake lost it to a reset about once in ten floods).
    let ended = |closed: Option<(u16, String)>| {
        let closed = closed.expect("a Close frame");
        assert!(
            closed == (4006, "Too Many Messages".to_owned())
                || closed == (4999, "Job Completed".to_owned()),
            "{closed:?}"
        );
    };
    ended(busy.await.expect("flood"));
    for _ in 0..6 {
        let ws = start("import time\nprint('ready', flush=True)\ntime.sleep(1)\n").await;
        ended(flood(ws, signal.clone(), 20_000, Duration::ZERO).await);
    }
    let (status, _) = tokio::task::block_in_place(|| s.get_text("/healthz"));
    assert_eq!(status, 200);
}

/// A cgroup of its own for a server, as systemd makes one for a service with `Delegate=yes`: on
/// v2 `/sys/fs/cgroup/piston-e2e.slice/<name>`, with memory, pids and cpu enabled above it (in
/// the root and the slice); on v1 `<name>` under this process's cgroup in each hierarchy the
/// runner uses. Dropping it kills what is left in it and removes it.
struct ServiceCgroup {
    dirs: Vec<PathBuf>,
}

/// What a cgroup holds: its child cgroups, the controllers enabled for them and its processes.
#[derive(Debug, PartialEq)]
struct CgroupState {
    children: Vec<String>,
    subtree_control: String,
    procs: Vec<String>,
}

impl ServiceCgroup {
    fn new(name: &str) -> ServiceCgroup {
        let root = Path::new("/sys/fs/cgroup");
        let dirs = if root.join("cgroup.controllers").exists() {
            let available = std::fs::read_to_string(root.join("cgroup.controllers")).expect("v2");
            let slice = root.join("piston-e2e.slice");
            if !slice.exists() {
                std::fs::create_dir(&slice).expect("piston-e2e.slice");
            }
            for c in ["memory", "pids", "cpu"] {
                if available.split_whitespace().any(|a| a == c) {
                    for d in [root, slice.as_path()] {
                        std::fs::write(d.join("cgroup.subtree_control"), format!("+{c}"))
                            .unwrap_or_else(|e| panic!("+{c} in {}: {e}", d.display()));
                    }
                }
            }
            vec![slice.join(name)]
        } else {
            let own = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
            own.lines()
                .filter_map(|l| {
                    let mut parts = l.splitn(3, ':');
                    let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                    ["memory", "pids", "cpu", "cpuacct"]
                        .contains(&controllers)
                        .then(|| root.join(controllers).join(path.trim_start_matches('/')))
                })
                .map(|d| d.join(name))
                .collect()
        };
        let service = ServiceCgroup { dirs };
        service.remove();
        for d in &service.dirs {
            std::fs::create_dir(d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        }
        service
    }

    /// `command`, started inside this cgroup (moved in by a shell that then becomes it).
    fn wrap(&self, command: &Command) -> Command {
        let mut script = String::new();
        for d in &self.dirs {
            write!(
                script,
                "echo $$ > '{}/cgroup.procs' || exit 1; ",
                d.display()
            )
            .unwrap();
        }
        script.push_str("exec \"$0\" \"$@\"");
        let mut wrapped = Command::new("sh");
        wrapped
            .arg("-c")
            .arg(script)
            .arg(command.get_program())
            .args(command.get_args());
        for (name, value) in command.get_envs() {
            match value {
                Some(value) => wrapped.env(name, value),
                None => wrapped.env_remove(name),
            };
        }
        wrapped
    }

    fn state(&self) -> Vec<CgroupState> {
        self.dirs
            .iter()
            .map(|d| {
                let mut children: Vec<String> = std::fs::read_dir(d)
                    .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
                    .filter_map(Result::ok)
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                children.sort();
                let read = |f: &str| std::fs::read_to_string(d.join(f)).unwrap_or_default();
                let mut procs: Vec<String> =
                    read("cgroup.procs").lines().map(str::to_owned).collect();
                procs.sort();
                CgroupState {
                    children,
                    subtree_control: read("cgroup.subtree_control").trim().to_owned(),
                    procs,
                }
            })
            .collect()
    }

    /// Kills the processes left inside (in child cgroups too) and removes the directories.
    fn remove(&self) {
        fn sweep(dir: &Path) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for e in entries.filter_map(Result::ok) {
                if e.path().is_dir() {
                    sweep(&e.path());
                }
            }
            for _ in 0..100 {
                let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                if procs.trim().is_empty() {
                    break;
                }
                for pid in procs.lines().filter_map(|p| p.parse().ok()) {
                    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = std::fs::remove_dir(dir);
        }
        for d in &self.dirs {
            sweep(d);
        }
    }
}

impl Drop for ServiceCgroup {
    fn drop(&mut self) {
        self.remove();
    }
}

/// A server started in a cgroup of its own (the systemd unit's layout), beside another process
/// there (standing for the shell or an `ExecStartPre` helper), runs its jobs in child cgroups
/// of it, with their limits, and, once stopped, leaves it as it found it: no child cgroups left (on v2 no
/// supervisor leaf), the controllers it enabled for them disabled again, the other process back
/// where it was, and told of in the log while it was moved.
#[test]
fn a_stopped_server_leaves_its_cgroup_as_it_found_it() {
    let Some(installation) = Installation::new(&["python"]) else {
        return;
    };
    let service = ServiceCgroup::new("piston-e2e-service");
    let mut sleep = Command::new("sleep");
    sleep.arg("600");
    let mut neighbour = service.wrap(&sleep).spawn().expect("sleep");
    let neighbour_pid = neighbour.id().to_string();
    let until = Instant::now() + Duration::from_secs(10);
    while !service.state()[0].procs.contains(&neighbour_pid) {
        assert!(
            Instant::now() < until,
            "the neighbour never entered {:?}",
            service.dirs
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = service.state();
    let work = tempfile::Builder::new()
        .prefix("piston-e2e-api-")
        .tempdir()
        .expect("work dir");
    let s = Server::start_with(
        installation.data.path(),
        work,
        SERVICE_UIDS,
        "piston-e2e-api-service",
        &[],
        |c| service.wrap(&c),
    );
    assert_clean(&s.python("print('inside')", &json!({})), "inside\n");
    // The jobs' limits hold there.
    let run = s.python(
        "a = []\nwhile True:\n    a.append(b'x' * (4 << 20))\n",
        &json!({"run_memory_limit": 64 << 20}),
    );
    assert_eq!(
        (&run["status"], &run["message"]),
        (&json!("SG"), &json!("Memory limit exceeded")),
        "{run}"
    );
    let during = service.state();
    for state in &during {
        assert!(
            state.children.iter().any(|c| c == "piston-e2e-api-service"),
            "the jobs' cgroups are under the server's: {during:?}"
        );
    }
    let v2 = service.dirs.len() == 1;
    if v2 {
        assert!(
            during[0]
                .children
                .iter()
                .any(|c| c == "piston-e2e-api-service-supervisor"),
            "{during:?}"
        );
        let log = s.log_text();
        assert!(
            log.lines()
                .any(|l| l.contains("moved") && l.contains(&neighbour_pid)),
            "the neighbour's move is told of: {log}"
        );
    }
    drop(s);
    assert_eq!(service.state(), before, "as found");
    let _ = neighbour.kill();
    let _ = neighbour.wait();
}
