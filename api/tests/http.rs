//! The HTTP routes over real loopback HTTP, against the fake engine.

#![allow(clippy::needless_pass_by_value)] // request bodies are built inline at each call

mod common;

use api::Config;
use common::Server;
use serde_json::{Value, json};

fn message(body: &Value) -> &str {
    body["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message in {body}"))
}

/// POSTs to /api/v2/execute and expects a 400 with `expected`.
fn refused(server: &Server, body: Value, expected: &str) {
    let (status, response) = server.post("/api/v2/execute", &body);
    assert_eq!((status, message(&response)), (400, expected), "for {body}");
}

fn py(extra: Value) -> Value {
    let mut body =
        json!({"language": "python", "version": "3.x", "files": [{"content": "print:hi"}]});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

#[test]
fn server_routes_and_errors() {
    let server = Server::start();
    let (status, body) = server.get("/");
    assert_eq!(status, 200);
    assert_eq!(
        body["message"],
        format!("Piston v{}", env!("CARGO_PKG_VERSION"))
    );

    assert_eq!(server.get("/nope"), (404, json!({"message": "Not Found"})));
    assert_eq!(
        server.get("/api/v2/nope"),
        (404, json!({"message": "Not Found"}))
    );

    let (status, body) = server.get("/healthz");
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));

    let (status, doc) = server.get("/api/openapi.json");
    assert_eq!(status, 200);
    for path in [
        "/api/v2/runtimes",
        "/api/v2/execute",
        "/api/v2/packages",
        "/api/v2/connect",
        "/api/v3/runtimes",
        "/api/v3/repos",
        "/api/v3/repos/{repo}/packages",
        "/api/v3/repos/{repo}/packages/{package}/{version}",
        "/api/v3/repos/{repo}/packages/{package}/{version}/install",
        "/api/v3/repos/{repo}/packages/{package}/{version}/uninstall",
        "/api/v3/repos/{repo}/packages/{package}/{version}/cache",
        "/healthz",
        "/metrics",
    ] {
        assert!(doc["paths"].get(path).is_some(), "openapi lacks {path}");
    }
}

#[test]
fn runtimes_as_piston_lists_them() {
    let server = Server::start();
    let (status, body) = server.get("/api/v2/runtimes");
    assert_eq!(status, 200);
    let list = body.as_array().unwrap();
    let python = list
        .iter()
        .find(|r| r["language"] == "python" && r["version"] == "3.12.0")
        .unwrap();
    assert_eq!(
        python,
        &json!({"language": "python", "version": "3.12.0", "aliases": ["py", "py3"]})
    );
    let cpp = list.iter().find(|r| r["language"] == "c++").unwrap();
    assert_eq!(
        cpp["runtime"], "gcc",
        "provided languages name their package"
    );

    let (_, v3) = server.get("/api/v3/runtimes");
    let zig = v3
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["language"] == "zig")
        .unwrap();
    assert_eq!(zig["limits"]["compile_timeout"], 15000);
    assert_eq!(zig["limits"]["run_timeout"], 3000);
    assert_eq!(zig["compiled"], true);
}

#[test]
fn validation_messages_in_piston_order() {
    let server = Server::start();
    refused(&server, json!({}), "language is required as a string");
    refused(&server, json!([1, 2]), "language is required as a string");
    refused(
        &server,
        json!({"language": 1, "version": 1}),
        "language is required as a string",
    );
    refused(
        &server,
        json!({"language": "python"}),
        "version is required as a string",
    );
    refused(
        &server,
        json!({"language": "python", "version": 3}),
        "version is required as a string",
    );
    refused(
        &server,
        json!({"language": "python", "version": "3.x"}),
        "files is required as an array",
    );
    refused(
        &server,
        json!({"language": "python", "version": "3.x", "files": "x"}),
        "files is required as an array",
    );
    refused(
        &server,
        json!({"language": "nope", "version": "3.x", "files": [{"content": "a"}, {"name": "b"}]}),
        "files[1].content is required as a string",
    );
    refused(
        &server,
        json!({"language": "html", "version": "5.0.0", "files": []}),
        "html-5.0.0 runtime is unknown",
    );
    refused(
        &server,
        json!({"language": "python", "version": "4.x", "files": []}),
        "python-4.x runtime is unknown",
    );
    refused(
        &server,
        json!({"language": "python", "version": "3.12", "files": []}),
        "files must include at least one utf8 encoded file",
    );
    refused(
        &server,
        json!({"language": "python", "version": "garbage!", "files": [{"content": "a"}]}),
        "python-garbage! runtime is unknown",
    );
    refused(
        &server,
        py(json!({"files": [{"content": "eA==", "encoding": "base64"}]})),
        "files must include at least one utf8 encoded file",
    );
    // The limits: memory, timeout, cpu_time; compile before run.
    refused(
        &server,
        py(json!({"run_timeout": "x", "compile_memory_limit": "y"})),
        "If specified, compile_memory_limit must be a number",
    );
    refused(
        &server,
        py(json!({"run_timeout": "3000"})),
        "If specified, run_timeout must be a number",
    );
    refused(
        &server,
        py(json!({"run_timeout": 5000})),
        "run_timeout cannot exceed the configured limit of 3000",
    );
    refused(
        &server,
        py(json!({"compile_timeout": 10001})),
        "compile_timeout cannot exceed the configured limit of 10000",
    );
    refused(
        &server,
        py(json!({"run_timeout": -1})),
        "run_timeout must be non-negative",
    );
    refused(
        &server,
        py(json!({"run_cpu_time": 3001, "run_timeout": -1})),
        "run_timeout must be non-negative",
    );
    refused(
        &server,
        py(json!({"run_cpu_time": 3001})),
        "run_cpu_time cannot exceed the configured limit of 3000",
    );
    refused(
        &server,
        py(json!({"compile_cpu_time": true})),
        "If specified, compile_cpu_time must be a number",
    );
    // The memory limits are finite by default: a request may lower them, not lift them; -1
    // (Piston's README's "none") gets the configured limit.
    refused(
        &server,
        py(json!({"run_memory_limit": 1_000_000_000_000_i64})),
        "run_memory_limit cannot exceed the configured limit of 536870912",
    );
    refused(
        &server,
        py(json!({"run_memory_limit": -5})),
        "run_memory_limit must be non-negative",
    );
    // Piston's falsy values mean "default".
    for ok in [
        json!({"run_timeout": 0}),
        json!({"run_timeout": null}),
        json!({"run_timeout": false}),
        json!({"run_memory_limit": 100_000_000}),
        json!({"run_memory_limit": -1, "compile_memory_limit": -1}),
        json!({"run_timeout": 1500.5}),
    ] {
        let (status, body) = server.post("/api/v2/execute", &py(ok.clone()));
        assert_eq!(status, 200, "{ok}: {body}");
    }
    let jobs = server.fake.jobs();
    let last = jobs.last().unwrap();
    assert_eq!(last.run.wall_timeout_ms, 1501);
    let minus_one = &jobs[jobs.len() - 2];
    assert_eq!(minus_one.run.memory_bytes, Some(512 << 20));
    assert_eq!(jobs[jobs.len() - 3].run.memory_bytes, Some(100_000_000));

    // This server's own checks come after Piston's.
    refused(
        &server,
        py(json!({"files": [{"content": "x"}, {"name": "../../etc/passwd", "content": "x"}]})),
        "File path \"../../etc/passwd\" tries to escape parent directory",
    );
    refused(&server, py(json!({"stdin": 5})), "stdin must be a string");
    refused(
        &server,
        py(json!({"args": "a b"})),
        "args must be an array of strings",
    );
    let (status, body) = server.post(
        "/api/v2/execute",
        &py(json!({"files": [{"content": "x"}, {"content": "%%%", "encoding": "base64"}]})),
    );
    assert_eq!(status, 400);
    assert!(
        message(&body).starts_with("files[1].content is not valid base64"),
        "{body}"
    );
}

#[test]
fn limit_overrides_take_precedence() {
    let config = Config {
        limit_overrides: [(
            "python".to_owned(),
            [("run_timeout".to_owned(), 5000_i64)].into(),
        )]
        .into(),
        shutdown_timeout: 2000,
        ..Config::default()
    };
    let server = Server::with_config(config);
    let (status, _) = server.post("/api/v2/execute", &py(json!({"run_timeout": 4000})));
    assert_eq!(status, 200);
    refused(
        &server,
        py(json!({"run_timeout": 6000})),
        "run_timeout cannot exceed the configured limit of 5000",
    );
    // zig's package override (15000) beats the global compile_timeout.
    let zig = json!({"language": "zig", "version": "*", "files": [{"content": "x"}], "compile_timeout": 12000});
    assert_eq!(server.post("/api/v2/execute", &zig).0, 200);
    assert_eq!(
        server
            .fake
            .jobs()
            .last()
            .unwrap()
            .compile
            .unwrap()
            .wall_timeout_ms,
        12000
    );
    let zig = json!({"language": "zig", "version": "*", "files": [{"content": "x"}], "compile_timeout": 16000});
    refused(
        &server,
        zig,
        "compile_timeout cannot exceed the configured limit of 15000",
    );
}

#[test]
fn execute_results() {
    let server = Server::start();
    let body = json!({
        "language": "py",
        "version": "3.10",
        "files": [
            {"name": "main.py", "content": "echo"},
            {"name": "data/a.bin", "content": "aGVsbG8=", "encoding": "base64"},
            {"name": "/b.bin", "content": "68656c6c6f", "encoding": "hex"},
            {"content": "plain"}
        ],
        "stdin": "in",
        "args": ["1", "two"]
    });
    let (status, response) = server.post("/api/v2/execute", &body);
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["language"], "python");
    assert_eq!(response["version"], "3.10.0");
    assert!(response.get("compile").is_none());
    assert_eq!(
        response["run"],
        json!({
            "stdout": "args=1,two;stdin=in\n;files=main.py,data/a.bin,b.bin,file3.code",
            "stderr": "",
            "output": "args=1,two;stdin=in\n;files=main.py,data/a.bin,b.bin,file3.code",
            "code": 0,
            "signal": null,
            "message": null,
            "status": null,
            "cpu_time": 1,
            "wall_time": 2,
            "memory": 1_000_000
        })
    );
    let job = server.fake.jobs().pop().unwrap();
    let contents: Vec<&[u8]> = job.files.iter().map(|f| f.content.as_slice()).collect();
    assert_eq!(contents, [&b"echo"[..], b"hello", b"hello", b"plain"]);
    assert_eq!(
        job.files.iter().map(|f| f.code).collect::<Vec<_>>(),
        [true, false, false, true]
    );

    // Compiled: compile present; a failed compile is also reported as run.
    let cpp = |content: &str| json!({"language": "cpp", "version": "10.2.0", "files": [{"content": content}]});
    let (status, response) = server.post("/api/v2/execute", &cpp("print:ok"));
    assert_eq!(status, 200);
    assert_eq!(response["language"], "c++");
    assert_eq!(response["compile"]["code"], 0);
    assert_eq!(response["run"]["stdout"], "ok");
    let (_, response) = server.post("/api/v2/execute", &cpp("compile-error"));
    assert_eq!(response["compile"]["code"], 1);
    assert_eq!(response["run"], response["compile"]);
    assert_eq!(response["run"]["status"], "RE");

    let (_, response) = server.post(
        "/api/v2/execute",
        &py(json!({"files": [{"content": "timeout"}]})),
    );
    assert_eq!(response["run"]["status"], "TO");
    assert_eq!(response["run"]["signal"], "SIGKILL");
    assert_eq!(response["run"]["code"], Value::Null);

    let (status, response) = server.post(
        "/api/v2/execute",
        &py(json!({"files": [{"content": "internal"}]})),
    );
    assert_eq!(status, 500);
    assert!(
        message(&response).contains("the fake sandbox failed"),
        "{response}"
    );

    let (_, metrics) = server.get_text("/metrics");
    assert!(
        metrics.contains("piston_jobs_total{kind=\"execute\",outcome=\"TO\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("piston_jobs_total{kind=\"execute\",outcome=\"compile_error\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("piston_http_responses_total{code=\"500\"} 1"),
        "{metrics}"
    );
}

#[test]
fn bodies_415_413_400() {
    let config = Config {
        max_body_size: 1024,
        shutdown_timeout: 2000,
        ..Config::default()
    };
    let server = Server::with_config(config);
    let (status, body) = server.send("POST", "/api/v2/execute", "text/plain", "{}");
    assert_eq!(
        (status, message(&body)),
        (415, "requests must be of type application/json")
    );
    let (status, body) = server.send(
        "DELETE",
        "/api/v2/packages",
        "application/x-www-form-urlencoded",
        "a=b",
    );
    assert_eq!(
        (status, message(&body)),
        (415, "requests must be of type application/json")
    );
    let (status, body) = server.send(
        "POST",
        "/api/v2/execute",
        "application/json",
        "{\"language\":",
    );
    assert_eq!(status, 400);
    assert!(
        message(&body).starts_with("request body is not valid JSON"),
        "{body}"
    );
    let big =
        json!({"language": "python", "version": "3.x", "files": [{"content": "x".repeat(2000)}]});
    let (status, body) = server.post("/api/v2/execute", &big);
    assert_eq!(
        (status, message(&body)),
        (413, "request body is larger than the limit of 1024 bytes")
    );
    // A body far past the limit (and past the socket buffers) that the client sends in full
    // before it reads: the server reads and drops it, so the client gets the 413 rather than a
    // connection reset.
    let huge = format!("{{\"language\": \"{}\"}}", "x".repeat(4 << 20));
    let (status, body) = server.send("POST", "/api/v2/execute", "application/json", &huge);
    assert_eq!(
        (status, message(&body)),
        (413, "request body is larger than the limit of 1024 bytes")
    );
    let (status, body) = server.send(
        "POST",
        "/api/v2/execute",
        "application/json; charset=utf-8",
        "",
    );
    assert_eq!(
        (status, message(&body)),
        (400, "language is required as a string")
    );
}

#[test]
fn busy_server_answers_503() {
    let config = Config {
        max_concurrent_jobs: Some(1),
        max_queued_jobs: 0,
        shutdown_timeout: 2000,
        ..Config::default()
    };
    let server = std::sync::Arc::new(Server::with_config(config));
    let first = {
        let server = std::sync::Arc::clone(&server);
        std::thread::spawn(move || {
            server.post(
                "/api/v2/execute",
                &py(json!({"files": [{"content": "wait"}]})),
            )
        })
    };
    while server.get("/healthz").1["jobs_running"] != 1 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let (status, body) = server.post("/api/v2/execute", &py(json!({})));
    assert_eq!(status, 503);
    assert!(message(&body).starts_with("server is busy"), "{body}");
    server.fake.release();
    let (status, body) = first.join().unwrap();
    assert_eq!(
        (status, body["run"]["stdout"].as_str()),
        (200, Some("released"))
    );
    let (_, metrics) = server.get_text("/metrics");
    assert!(
        metrics.contains("piston_jobs_rejected_total 1"),
        "{metrics}"
    );
}

#[test]
fn v2_packages() {
    let server = Server::start();
    let (status, list) = server.get("/api/v2/packages");
    assert_eq!(status, 200);
    assert!(
        list.as_array().unwrap().contains(
            &json!({"language": "ruby", "language_version": "3.0.1", "installed": false})
        )
    );

    let ruby = json!({"language": "ruby", "version": "3.x"});
    assert_eq!(
        server.post("/api/v2/packages", &ruby),
        (200, json!({"language": "ruby", "version": "3.0.1"}))
    );
    assert_eq!(
        server.post("/api/v2/packages", &ruby),
        (500, json!({"message": "Already installed"}))
    );
    let (_, runtimes) = server.get("/api/v2/runtimes");
    assert!(
        runtimes
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["language"] == "ruby")
    );
    assert_eq!(
        server.post(
            "/api/v2/packages",
            &json!({"language": "python", "version": "4.x"})
        ),
        (
            404,
            json!({"message": "Requested package python-4.x does not exist"})
        )
    );
    assert_eq!(
        server.post(
            "/api/v2/packages",
            &json!({"language": "python", "version": "not a version"})
        ),
        (
            404,
            json!({"message": "Requested package python-not a version does not exist"})
        )
    );
    assert_eq!(
        server.delete("/api/v2/packages", &ruby),
        (200, json!({"language": "ruby", "version": "3.0.1"}))
    );
    assert_eq!(
        server.delete("/api/v2/packages", &ruby),
        (500, json!({"message": "ruby-3.x is not installed"}))
    );
    assert_eq!(
        server.delete(
            "/api/v2/packages",
            &json!({"language": "nope", "version": "*"})
        ),
        (
            404,
            json!({"message": "Requested package nope-* does not exist"})
        )
    );
    assert_eq!(
        server.delete("/api/v2/packages", &json!({"version": "*"})),
        (400, json!({"message": "language is required as a string"}))
    );
}

#[test]
fn v3_repositories() {
    let server = Server::start();
    let (status, repos) = server.get("/api/v3/repos");
    assert_eq!(status, 200);
    assert_eq!(repos[0]["name"], "main");
    assert_eq!(repos[1]["packages"], 1);

    let (status, main) = server.get("/api/v3/repos/main/packages?sync=true");
    assert_eq!(status, 200);
    assert!(main.as_array().unwrap().iter().all(|p| p["repo"] == "main"));
    let (_, all) = server.get("/api/v3/repos/all/packages");
    assert_eq!(
        all.as_array().unwrap().len(),
        main.as_array().unwrap().len() + 1
    );
    assert_eq!(server.get("/api/v3/repos/nope/packages").0, 404);
    assert_eq!(
        server.get("/api/v3/repos/main/packages?sync=maybe"),
        (400, json!({"message": "sync must be true or false"}))
    );

    let (status, detail) = server.get("/api/v3/repos/main/packages/python/3.x");
    assert_eq!(status, 200);
    assert_eq!(detail["version"], "3.12.0");
    for field in [
        "author",
        "size",
        "checksums",
        "dependencies",
        "build_file_url",
        "download_url",
        "provides",
        "cache",
    ] {
        assert!(
            detail.get(field).is_some(),
            "detail lacks {field}: {detail}"
        );
    }
    assert_eq!(server.get("/api/v3/repos/main/packages/python/4.x").0, 404);
    assert_eq!(
        server.get("/api/v3/repos/main/packages/python/%3E%3E%3E").0,
        400
    );

    let (status, report) = server.post_empty("/api/v3/repos/all/packages/lua/*/install");
    assert_eq!(status, 201, "{report}");
    assert_eq!(
        report["package"],
        json!({"repo": "extra", "name": "lua", "version": "5.4.4"})
    );
    let (status, body) = server.post_empty("/api/v3/repos/extra/packages/lua/5.4.4/install");
    assert_eq!(
        (status, message(&body)),
        (409, "lua-5.4.4 is already installed")
    );
    let (status, report) =
        server.post_empty("/api/v3/repos/extra/packages/lua/5/uninstall?cascade=true");
    assert_eq!(status, 200);
    assert_eq!(report["removed"][0]["name"], "lua");
    assert_eq!(
        server
            .post_empty("/api/v3/repos/extra/packages/lua/5/uninstall")
            .0,
        404
    );

    assert_eq!(
        server.delete_empty("/api/v3/repos/main/packages/gcc/10/cache"),
        (200, json!({"purged": 3}))
    );
    assert_eq!(server.fake.purged(), ["gcc-10.2.0"]);
}

/// A body of 69,000 empty files (about what fits in the 1 MiB body limit) is refused with a
/// 400 at once, and the server answers `/healthz` right away meanwhile and after.
#[test]
fn a_body_of_69000_files_is_refused_quickly() {
    let server = Server::start();
    let files = vec![json!({"content": ""}); 69_000];
    let body = json!({"language": "python", "version": "3.12.0", "files": files});
    assert!(body.to_string().len() <= 1 << 20, "fits in the body limit");
    let started = std::time::Instant::now();
    let (status, answer) = server.post("/api/v2/execute", &body);
    assert_eq!(status, 400, "{answer}");
    assert!(
        message(&answer).starts_with("files: a job may have at most 4096 files"),
        "{answer}"
    );
    eprintln!("refused in {:?}", started.elapsed());
    assert_eq!(server.client.get("/healthz").0, 200);
    assert_eq!(server.fake.jobs().len(), 0, "nothing ran");
}

/// A body that arrives too slowly gets a 408 after `body_timeout` and its connection is closed,
/// so a slow client holds no worker; the server answers other requests meanwhile.
#[test]
fn a_slow_body_times_out_with_408() {
    use std::io::{Read, Write};
    let server = Server::with_config(Config {
        body_timeout: 300,
        shutdown_timeout: 2000,
        ..Config::default()
    });
    let mut slow = std::net::TcpStream::connect(server.addr).unwrap();
    slow.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        slow,
        "POST /api/v2/execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n{{\"language\":"
    )
    .unwrap();
    let started = std::time::Instant::now();
    assert_eq!(server.client.get("/healthz").0, 200, "not held up");
    let mut answer = String::new();
    slow.read_to_string(&mut answer).unwrap();
    let waited = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("the request body did not arrive within 300 ms"),
        "{answer}"
    );
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(waited < std::time::Duration::from_secs(5), "{waited:?}");
}

/// The v3 routes that change state take no body but must be JSON, as every state-changing route:
/// a form post or a no-cors fetch from a page of another site cannot install or uninstall.
#[test]
fn v3_state_changes_must_be_json() {
    let server = Server::start();
    for (method, path) in [
        ("POST", "/api/v3/repos/main/packages/ruby/3.0.1/install"),
        ("POST", "/api/v3/repos/main/packages/gcc/10/uninstall"),
        ("DELETE", "/api/v3/repos/main/packages/gcc/10/cache"),
    ] {
        for content_type in ["application/x-www-form-urlencoded", "text/plain"] {
            let (status, body) = server.send(method, path, content_type, "");
            assert_eq!(
                (status, message(&body)),
                (415, "requests must be of type application/json"),
                "{method} {path} as {content_type}"
            );
        }
    }
    assert!(server.fake.purged().is_empty(), "nothing was purged");
    assert_eq!(
        server
            .client
            .delete_empty("/api/v3/repos/main/packages/gcc/10/cache")
            .0,
        200
    );
}
