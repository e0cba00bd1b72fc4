//! The WebSocket protocol of `/api/v2/connect` over a real connection, against the fake engine.

mod common;

use std::time::{Duration, Instant};

use api::Config;
use common::Server;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use test_support::ws::{self, Ws, send};
use tokio_tungstenite::tungstenite::Message;

/// How long a message may take against the fake engine.
const WAIT: Duration = Duration::from_secs(10);

async fn connect(server: &Server) -> Ws {
    ws::connect(&server.ws_url("/api/v2/connect")).await
}

async fn recv(ws: &mut Ws) -> Value {
    ws::recv(ws, WAIT).await
}

async fn closed(ws: &mut Ws) -> (u16, String) {
    ws::closed(ws, WAIT).await
}

fn init(language: &str, content: &str) -> Value {
    json!({"type": "init", "language": language, "version": "*", "files": [{"content": content}]})
}

#[tokio::test]
async fn full_flow_with_stdin_and_eof() {
    let server = Server::start();
    let mut ws = connect(&server).await;
    send(&mut ws, init("cpp", "cat")).await;
    assert_eq!(
        recv(&mut ws).await,
        json!({"type": "runtime", "language": "c++", "version": "10.2.0"})
    );
    assert_eq!(
        recv(&mut ws).await,
        json!({"type": "stage", "stage": "compile"})
    );
    assert_eq!(
        recv(&mut ws).await,
        json!({"type": "exit", "stage": "compile", "code": 0, "signal": null})
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
    assert_eq!(
        recv(&mut ws).await,
        json!({"type": "data", "stream": "stdout", "data": "Hello World!\n"})
    );
    send(&mut ws, json!({"type": "unknown"})).await;
    send(
        &mut ws,
        json!({"type": "data", "stream": "stdin", "data": "bye", "eof": true}),
    )
    .await;
    assert_eq!(
        recv(&mut ws).await,
        json!({"type": "data", "stream": "stdout", "data": "bye"})
    );
    assert_eq!(
        recv(&mut ws).await,
        json!({"type": "exit", "stage": "run", "code": 0, "signal": null})
    );
    assert_eq!(closed(&mut ws).await, (4999, "Job Completed".to_owned()));
    let job = server.fake.jobs().pop().unwrap();
    assert!(job.stdin.is_empty(), "init's stdin is ignored");
}

#[tokio::test]
async fn signals_reach_the_program() {
    let server = Server::start();
    let mut ws = connect(&server).await;
    send(&mut ws, init("python", "cat")).await;
    assert_eq!(recv(&mut ws).await["type"], "runtime");
    assert_eq!(
        recv(&mut ws).await,
        json!({"type": "stage", "stage": "run"})
    );
    send(&mut ws, json!({"type": "signal", "signal": "SIGINT"})).await;
    assert_eq!(
        recv(&mut ws).await,
        json!({"type": "exit", "stage": "run", "code": null, "signal": "SIGINT", "status": "SG"})
    );
    assert_eq!(closed(&mut ws).await.0, 4999);
}

#[tokio::test]
async fn output_limit_holds() {
    let config = Config {
        limits: api::config::GlobalLimits {
            output_max_size: 10_000,
            ..Default::default()
        },
        shutdown_timeout: 2000,
        ..Config::default()
    };
    let server = Server::with_config(config);
    let mut ws = connect(&server).await;
    send(&mut ws, init("python", "spam")).await;
    assert_eq!(recv(&mut ws).await["type"], "runtime");
    assert_eq!(recv(&mut ws).await["type"], "stage");
    let mut received = 0;
    let exit = loop {
        let message = recv(&mut ws).await;
        match message["type"].as_str() {
            Some("data") => received += message["data"].as_str().unwrap().len(),
            Some("exit") => break message,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(received, 10_000);
    assert_eq!(exit["status"], "OL");
    assert_eq!(exit["signal"], "SIGKILL");
    assert_eq!(exit["message"], "stdout length exceeded");
    assert_eq!(closed(&mut ws).await.0, 4999);
}

#[tokio::test]
async fn close_codes() {
    let server = Server::start();

    // No init within 1 s.
    let mut ws = connect(&server).await;
    let started = Instant::now();
    assert_eq!(
        closed(&mut ws).await,
        (4001, "Initialization Timeout".to_owned())
    );
    assert!(started.elapsed() >= Duration::from_millis(900));

    // data or signal before init.
    let mut ws = connect(&server).await;
    send(
        &mut ws,
        json!({"type": "data", "stream": "stdin", "data": "x"}),
    )
    .await;
    assert_eq!(
        closed(&mut ws).await,
        (4003, "Not yet initialized".to_owned())
    );
    let mut ws = connect(&server).await;
    send(&mut ws, json!({"type": "signal", "signal": "SIGINT"})).await;
    assert_eq!(closed(&mut ws).await.0, 4003);

    // Malformed JSON.
    let mut ws = connect(&server).await;
    ws.send(Message::Text("{nope".into())).await.unwrap();
    let error = recv(&mut ws).await;
    assert_eq!(error["type"], "error");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("message is not valid JSON")
    );
    assert_eq!(closed(&mut ws).await, (4002, "Notified Error".to_owned()));

    // A validation error of init.
    let mut ws = connect(&server).await;
    send(&mut ws, json!({"type": "init", "language": "python"})).await;
    assert_eq!(
        recv(&mut ws).await,
        json!({"type": "error", "message": "version is required as a string"})
    );
    assert_eq!(closed(&mut ws).await.0, 4002);

    // After init: double init, bad stream, bad signal, malformed JSON.
    let cases: [(Value, u16, &str); 3] = [
        (init("python", "cat"), 4000, "Already Initialized"),
        (
            json!({"type": "data", "stream": "stdout", "data": "x"}),
            4004,
            "Can only write to stdin",
        ),
        (
            json!({"type": "signal", "signal": "SIGFOO"}),
            4005,
            "Invalid signal",
        ),
    ];
    for (message, code, reason) in cases {
        let mut ws = connect(&server).await;
        send(&mut ws, init("python", "cat")).await;
        assert_eq!(recv(&mut ws).await["type"], "runtime");
        assert_eq!(recv(&mut ws).await["type"], "stage");
        send(&mut ws, message).await;
        assert_eq!(closed(&mut ws).await, (code, reason.to_owned()));
    }
    let mut ws = connect(&server).await;
    send(&mut ws, init("python", "cat")).await;
    assert_eq!(recv(&mut ws).await["type"], "runtime");
    assert_eq!(recv(&mut ws).await["type"], "stage");
    ws.send(Message::Text("[".into())).await.unwrap();
    assert_eq!(recv(&mut ws).await["type"], "error");
    assert_eq!(closed(&mut ws).await.0, 4002);
}

#[tokio::test]
async fn compile_failure_ends_the_job() {
    let server = Server::start();
    let mut ws = connect(&server).await;
    send(&mut ws, init("c", "compile-error")).await;
    assert_eq!(recv(&mut ws).await["type"], "runtime");
    assert_eq!(
        recv(&mut ws).await,
        json!({"type": "stage", "stage": "compile"})
    );
    assert_eq!(
        recv(&mut ws).await,
        json!({"type": "data", "stream": "stderr", "data": "error"})
    );
    assert_eq!(
        recv(&mut ws).await,
        json!({"type": "exit", "stage": "compile", "code": 1, "signal": null})
    );
    assert_eq!(closed(&mut ws).await.0, 4999);
    let (_, metrics) = server.get_text("/metrics");
    assert!(
        metrics.contains("piston_jobs_total{kind=\"interactive\",outcome=\"compile_error\"} 1"),
        "{metrics}"
    );
}

/// A WebSocket from a web page of another site is refused (403) unless its `Origin` is in
/// `allowed_origins`; clients that send no `Origin` (every non-browser client) are not affected.
#[tokio::test]
async fn cross_origin_websockets_are_refused() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let server = Server::with_config(Config {
        allowed_origins: vec!["https://judge.example.org".to_owned()],
        shutdown_timeout: 2000,
        ..Config::default()
    });
    let url = server.ws_url("/api/v2/connect");
    let with_origin = |origin: &str| {
        let mut request = url.as_str().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("Origin", origin.parse().unwrap());
        request
    };
    match tokio_tungstenite::connect_async(with_origin("https://evil.example.com")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403);
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                .into_owned();
            assert!(body.contains("are not allowed (allowed_origins)"), "{body}");
        }
        other => panic!("a cross-site WebSocket was accepted: {other:?}"),
    }
    for accepted in [
        tokio_tungstenite::connect_async(with_origin("https://judge.example.org")).await,
        tokio_tungstenite::connect_async(url.as_str()).await,
    ] {
        let (mut ws, _) = accepted.expect("accepted");
        send(&mut ws, init("cpp", "cat")).await;
        assert_eq!(recv(&mut ws).await["type"], "runtime");
    }
}

/// A client message larger than a request body may be (`max_body_size`) ends the connection
/// instead of being buffered.
#[tokio::test]
async fn an_oversized_message_ends_the_connection() {
    let server = Server::with_config(Config {
        max_body_size: 4096,
        shutdown_timeout: 2000,
        ..Config::default()
    });
    let mut ws = connect(&server).await;
    send(&mut ws, init("cpp", "cat")).await;
    assert_eq!(recv(&mut ws).await["type"], "runtime");
    let big = json!({"type": "data", "stream": "stdin", "data": "x".repeat(6000)});
    let _ = ws.send(Message::Text(big.to_string().into())).await;
    // The job's own messages may come first; then the server ends the connection.
    let end = loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("in time")
        {
            Some(Ok(Message::Close(frame))) => {
                break frame.map_or_else(String::new, |f| {
                    format!("{} {}", u16::from(f.code), f.reason)
                });
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => break format!("error {e}"),
            None => break "end of stream".to_owned(),
        }
    };
    assert!(
        end.contains("1009") && end.contains("Message Too Big"),
        "{end}"
    );
    assert_eq!(server.client.get("/healthz").0, 200);
}
