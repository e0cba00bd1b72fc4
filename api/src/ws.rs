//! `GET /api/v2/connect`: Piston's interactive WebSocket protocol.
//!
//! Client → server: `init` (the fields of `/execute`; `stdin` is ignored), `data`
//! (`{"stream":"stdin","data":"..."}`), `signal` (`{"signal":"SIGINT"}`). Server → client:
//! `runtime`, then per stage `stage`, `data` chunks and `exit`, then close 4999 "Job Completed";
//! `error` then close 4002 on a bad message. Other close codes: 4000 "Already Initialized",
//! 4001 "Initialization Timeout" (no `init` within 1 s), 4003 "Not yet initialized",
//! 4004 "Can only write to stdin", 4005 "Invalid signal". Unknown message types are ignored.
//!
//! Unlike Piston:
//! * signals reach the program;
//! * **extension:** `{"type":"data","stream":"stdin","eof":true}` closes the program's stdin (after
//!   writing `data`, if the message has one), so programs reading to end of file terminate;
//! * the output limit holds: past `output_max_size` bytes on a stream in a stage, the rest is
//!   dropped, the program is killed, and its `exit` message says `"signal":"SIGKILL"` with
//!   `"status":"OL"` (stdout) or `"EL"` (stderr);
//! * `exit` messages also carry `status` and `message` when the stage has them;
//! * output is cut into `data` messages on UTF-8 character boundaries.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::engine::{
    InteractiveJob, JobEvent, OutputStream, StageName, StageOutcome, Status, error_chain,
};
use crate::gate::JobKind;
use crate::http::AppState;
use crate::job;
use crate::signals;

/// How long a client has to send `init`.
pub const INIT_TIMEOUT: Duration = Duration::from_secs(1);

const SIGKILL: i32 = 9;

pub async fn connect(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    let span = tracing::info_span!("ws");
    ws.on_upgrade(move |socket| session(socket, state).instrument(span))
}

type Sink = SplitSink<WebSocket, Message>;

async fn send_json(sink: &mut Sink, value: Value) -> bool {
    sink.send(Message::Text(Utf8Bytes::from(value.to_string())))
        .await
        .is_ok()
}

async fn close(sink: &mut Sink, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    let _ = sink.send(Message::Close(Some(frame))).await;
    let _ = sink.close().await;
}

/// Sends `{"type":"error"}` and closes with 4002. Close reasons are limited to 123 bytes, so the
/// message goes in the error message, not the reason.
async fn notify_error(sink: &mut Sink, message: &str) {
    send_json(sink, json!({ "type": "error", "message": message })).await;
    close(sink, 4002, "Notified Error").await;
}

/// A client message, decoded.
enum Incoming {
    Json(Value),
    Invalid(String),
    Closed,
    Ignore,
}

fn decode(message: Option<Result<Message, axum::Error>>) -> Incoming {
    let text = match message {
        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Incoming::Closed,
        Some(Ok(Message::Text(text))) => text.to_string(),
        Some(Ok(Message::Binary(bytes))) => match String::from_utf8(bytes.to_vec()) {
            Ok(text) => text,
            Err(_) => return Incoming::Invalid("message is not UTF-8 text".to_owned()),
        },
        Some(Ok(_)) => return Incoming::Ignore,
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(value) => Incoming::Json(value),
        Err(e) => Incoming::Invalid(format!("message is not valid JSON: {e}")),
    }
}

fn kind(value: &Value) -> &str {
    value.get("type").and_then(Value::as_str).unwrap_or("")
}

async fn session(socket: WebSocket, state: AppState) {
    let (mut sink, mut stream) = socket.split();
    let deadline = tokio::time::Instant::now() + INIT_TIMEOUT;
    let init = loop {
        let message = match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => {
                close(&mut sink, 4001, "Initialization Timeout").await;
                return;
            }
            Ok(message) => message,
        };
        match decode(message) {
            Incoming::Closed => return,
            Incoming::Ignore => {}
            Incoming::Invalid(message) => {
                notify_error(&mut sink, &message).await;
                return;
            }
            Incoming::Json(value) => match kind(&value) {
                "init" => break value,
                "data" | "signal" => {
                    close(&mut sink, 4003, "Not yet initialized").await;
                    return;
                }
                _ => {}
            },
        }
    };

    let runtimes = state.engine.runtimes();
    let mut job = match job::validate(
        &init,
        &runtimes,
        &state.config.limits,
        &state.config.limit_overrides,
    ) {
        Ok(job) => job,
        Err(invalid) => {
            notify_error(&mut sink, &invalid.0).await;
            return;
        }
    };
    job.stdin.clear();
    let (slot, record) = match state.gate.admit(JobKind::Interactive, &job).await {
        Ok(admitted) => admitted,
        Err(busy) => {
            notify_error(&mut sink, &busy.to_string()).await;
            return;
        }
    };
    let language = job.runtime.language.clone();
    let version = job.runtime.version.to_string();
    let limit = job.run.output_max_size;
    let compile_limit = job.compile.map_or(limit, |c| c.output_max_size);
    let engine = Arc::clone(&state.engine);
    let handle = match tokio::task::spawn_blocking(move || engine.start(job)).await {
        Ok(Ok(handle)) => Arc::<dyn InteractiveJob>::from(handle),
        Ok(Err(error)) => {
            record
                .span()
                .in_scope(|| tracing::error!(error = %error_chain(&error), "cannot start job"));
            record.failed();
            notify_error(
                &mut sink,
                &format!("the job could not start: {}", error_chain(&error)),
            )
            .await;
            return;
        }
        Err(join) => {
            notify_error(&mut sink, &format!("the job could not start: {join}")).await;
            return;
        }
    };
    if !send_json(
        &mut sink,
        json!({ "type": "runtime", "language": language, "version": version }),
    )
    .await
    {
        let _ = handle.signal(SIGKILL);
        return;
    }
    let outcome = run(
        &mut sink,
        &mut stream,
        Arc::clone(&handle),
        (compile_limit, limit),
    )
    .instrument(record.span().clone())
    .await;
    drop(handle);
    drop(slot);
    record.finished(&outcome);
}

/// Accumulates bytes and hands out the longest complete UTF-8 prefix.
#[derive(Default)]
struct Utf8Carry {
    pending: Vec<u8>,
}

impl Utf8Carry {
    fn push(&mut self, data: &[u8]) -> String {
        self.pending.extend_from_slice(data);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(text) => {
                    out.push_str(text);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    match e.error_len() {
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            self.pending.drain(..valid + bad);
                        }
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                    }
                }
            }
        }
    }

    fn flush(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

/// Output accounting of the current stage.
struct StageOutput {
    limit: u64,
    written: [u64; 2],
    carry: [Utf8Carry; 2],
    exceeded: Option<Status>,
}

impl StageOutput {
    fn new(limit: u64) -> Self {
        Self {
            limit,
            written: [0, 0],
            carry: [Utf8Carry::default(), Utf8Carry::default()],
            exceeded: None,
        }
    }
}

fn index(stream: OutputStream) -> usize {
    match stream {
        OutputStream::Stdout => 0,
        OutputStream::Stderr => 1,
    }
}

enum Control {
    Write(Vec<u8>),
    Eof,
}

/// Forwards events to the client and client messages to the job until the job is done or the
/// session ends. Returns the metrics outcome.
async fn run(
    sink: &mut Sink,
    stream: &mut SplitStream<WebSocket>,
    handle: Arc<dyn InteractiveJob>,
    (compile_limit, run_limit): (u64, u64),
) -> String {
    // Events: a blocking thread waits on the job and feeds a bounded channel.
    let (events_tx, mut events) = mpsc::channel::<JobEvent>(64);
    let stop = Arc::new(AtomicBool::new(false));
    {
        let handle = Arc::clone(&handle);
        let stop = Arc::clone(&stop);
        tokio::task::spawn_blocking(move || {
            while !stop.load(Ordering::Relaxed) {
                match handle.next_event(Duration::from_millis(100)) {
                    Ok(None) => {}
                    Ok(Some(event)) => {
                        let done = event == JobEvent::Done;
                        if events_tx.blocking_send(event).is_err() || done {
                            return;
                        }
                    }
                    Err(error) => {
                        tracing::error!(error = %error_chain(&error), "job event failed");
                        let _ = events_tx.blocking_send(JobEvent::Done);
                        return;
                    }
                }
            }
        });
    }
    // Stdin: one writer thread keeps writes in order and never blocks this task; signals bypass it.
    let (control_tx, control_rx) = std::sync::mpsc::channel::<Control>();
    {
        let handle = Arc::clone(&handle);
        tokio::task::spawn_blocking(move || {
            for control in control_rx {
                let result = match control {
                    Control::Write(data) => handle.write_stdin(&data),
                    Control::Eof => handle.close_stdin(),
                };
                if let Err(error) = result {
                    tracing::debug!(error = %error_chain(&error), "stdin not delivered");
                }
            }
        });
    }
    let signal = |n: i32| {
        let handle = Arc::clone(&handle);
        tokio::task::spawn_blocking(move || {
            if let Err(error) = handle.signal(n) {
                tracing::debug!(error = %error_chain(&error), "signal not delivered");
            }
        })
    };

    let mut output = StageOutput::new(run_limit);
    let mut last_status = String::from("ok");
    let mut compile_failed = false;
    let finished: Result<(), (u16, &'static str)> = loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { break Ok(()) };
                match event {
                    JobEvent::Stage(stage) => {
                        output = StageOutput::new(if stage == StageName::Compile { compile_limit } else { run_limit });
                        if !send_json(sink, json!({ "type": "stage", "stage": stage.as_str() })).await {
                            break Err((0, ""));
                        }
                    }
                    JobEvent::Output { stream, data } => {
                        let i = index(stream);
                        let room = output.limit.saturating_sub(output.written[i]);
                        let take = (data.len() as u64).min(room) as usize;
                        output.written[i] += take as u64;
                        let text = output.carry[i].push(&data[..take]);
                        if !text.is_empty()
                            && !send_json(sink, json!({ "type": "data", "stream": stream.as_str(), "data": text })).await
                        {
                            break Err((0, ""));
                        }
                        if take < data.len() && output.exceeded.is_none() {
                            output.exceeded = Some(if i == 0 { Status::OL } else { Status::EL });
                            tracing::info!(stream = stream.as_str(), limit = output.limit, "output limit exceeded; killing");
                            signal(SIGKILL);
                        }
                    }
                    JobEvent::Exit { stage, outcome } => {
                        for (i, name) in [(0, "stdout"), (1, "stderr")] {
                            let rest = output.carry[i].flush();
                            if !rest.is_empty() {
                                send_json(sink, json!({ "type": "data", "stream": name, "data": rest })).await;
                            }
                        }
                        let message = exit_message(stage, &outcome, output.exceeded);
                        if stage == StageName::Compile && !outcome.succeeded() {
                            compile_failed = true;
                        }
                        last_status = output
                            .exceeded
                            .or(outcome.status)
                            .map_or_else(|| "ok".to_owned(), |s| s.as_str().to_owned());
                        if !send_json(sink, message).await {
                            break Err((0, ""));
                        }
                    }
                    JobEvent::Done => break Ok(()),
                }
            }
            message = stream.next() => {
                match decode(message) {
                    Incoming::Closed => break Err((0, "")),
                    Incoming::Ignore => {}
                    Incoming::Invalid(message) => {
                        send_json(sink, json!({ "type": "error", "message": message })).await;
                        break Err((4002, "Notified Error"));
                    }
                    Incoming::Json(value) => match kind(&value) {
                        "init" => break Err((4000, "Already Initialized")),
                        "data" => {
                            if value.get("stream").and_then(Value::as_str) != Some("stdin") {
                                break Err((4004, "Can only write to stdin"));
                            }
                            match value.get("data") {
                                None | Some(Value::Null) => {}
                                Some(Value::String(text)) => {
                                    let _ = control_tx.send(Control::Write(text.clone().into_bytes()));
                                }
                                Some(_) => {
                                    send_json(sink, json!({ "type": "error", "message": "data must be a string" })).await;
                                    break Err((4002, "Notified Error"));
                                }
                            }
                            if value.get("eof").and_then(Value::as_bool) == Some(true) {
                                let _ = control_tx.send(Control::Eof);
                            }
                        }
                        "signal" => {
                            let number = value.get("signal").and_then(Value::as_str).and_then(signals::number);
                            let Some(number) = number else {
                                break Err((4005, "Invalid signal"));
                            };
                            tracing::info!(signal = number, "signal from client");
                            signal(number);
                        }
                        _ => {}
                    },
                }
            }
        }
    };
    stop.store(true, Ordering::Relaxed);
    drop(control_tx);
    match finished {
        Ok(()) => {
            close(sink, 4999, "Job Completed").await;
            if compile_failed {
                "compile_error".to_owned()
            } else {
                last_status
            }
        }
        Err((code, reason)) => {
            // The session ends before the job: kill it. Dropping the handle cleans up.
            let _ = signal(SIGKILL).await;
            if code != 0 {
                close(sink, code, reason).await;
            }
            "aborted".to_owned()
        }
    }
}

fn exit_message(stage: StageName, outcome: &StageOutcome, exceeded: Option<Status>) -> Value {
    let status = exceeded.or(outcome.status);
    let killed = matches!(status, Some(Status::TO | Status::OL | Status::EL));
    let mut message = json!({
        "type": "exit",
        "stage": stage.as_str(),
        "code": if exceeded.is_some() { None } else { outcome.code },
        "signal": if killed { Some("SIGKILL") } else { outcome.signal.as_deref() },
    });
    if let Some(status) = status {
        message["status"] = json!(status.as_str());
    }
    let text = match exceeded {
        Some(Status::OL) => Some("stdout length exceeded"),
        Some(Status::EL) => Some("stderr length exceeded"),
        _ => outcome.message.as_deref(),
    };
    if let Some(text) = text {
        message["message"] = json!(text);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_carry_splits_on_character_boundaries() {
        let mut carry = Utf8Carry::default();
        let bytes = "héllo".as_bytes();
        assert_eq!(carry.push(&bytes[..2]), "h");
        assert_eq!(carry.push(&bytes[2..]), "éllo");
        assert_eq!(carry.push(b"a\xffb"), "a\u{FFFD}b");
        assert_eq!(carry.push(&"€".as_bytes()[..1]), "");
        assert_eq!(carry.flush(), "\u{FFFD}");
    }
}
