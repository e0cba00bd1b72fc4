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
//! * signals reach the program (SIGSTOP excepted: it would stop the sandbox's init, which
//!   cannot block it; SIGTSTP stops the program);
//! * the client's messages are bounded: one longer than `max_body_size` closes with 1009
//!   "Message Too Big"; more than 256 stdin/signal messages, or more than 1 MiB of stdin,
//!   waiting for the job close with 4006 "Too Many Messages", and the job itself holds at most
//!   about 1 MiB of stdin its program has not read (a program that reads nothing gets its pipe
//!   filled, then the client is closed); a page whose `Origin` is not in `allowed_origins` gets
//!   403;
//! * **extension:** `{"type":"data","stream":"stdin","eof":true}` closes the program's stdin (after
//!   writing `data`, if the message has one), so programs reading to end of file terminate;
//! * the output limit holds: past `output_max_size` bytes on a stream in a stage, the rest is
//!   dropped, the program is killed, and its `exit` message says `"signal":"SIGKILL"` with
//!   `"status":"OL"` (stdout) or `"EL"` (stderr);
//! * `exit` messages also carry `status` and `message` when the stage has them;
//! * output is cut into `data` messages on UTF-8 character boundaries;
//! * after its Close frame the server waits up to 2 s for the client's (the closing handshake),
//!   so a client still sending when it is closed reads the code instead of a reset.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::engine::{
    InteractiveJob, JobEvent, OutputStream, StageName, StageOutcome, Status, error_chain,
};
use crate::gate::{JobKind, JobRecord, Slot};
use crate::http::{ApiError, AppState};
use crate::job;
use crate::signals;

/// How long a client has to send `init`.
pub const INIT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long the server waits, after its Close frame, for the client's (RFC 6455's closing
/// handshake), reading and dropping whatever else the client still sends. Dropping the
/// connection at once while a client is still sending makes the server's kernel answer with a
/// reset, which can discard the Close frame before the client reads it.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

const SIGKILL: i32 = 9;

pub async fn connect(
    ws: WebSocketUpgrade,
    headers: axum::http::HeaderMap,
    State(state): State<AppState>,
) -> Response {
    if let Some(origin) = headers.get(axum::http::header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        if !state.config.allowed_origins.iter().any(|o| o == origin) {
            tracing::warn!(origin, "WebSocket from another site refused");
            return ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "WebSocket connections from pages of {origin:?} are not allowed \
                     (allowed_origins)"
                ),
            )
            .into_response();
        }
    }
    let span = tracing::info_span!("ws");
    // A client message is at most a request body's size (stdin comes in pieces): one up to twice
    // that is read and answered with 1009; the transport drops a connection past it unread.
    let limit = state.config.max_body_size.saturating_mul(2);
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| session(socket, state).instrument(span))
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
    /// Longer than a request body may be: the session ends with 1009.
    TooBig,
    Closed,
    Ignore,
}

/// The close code and reason for a message past the size limit (RFC 6455's "Message Too Big").
const TOO_BIG: (u16, &str) = (1009, "Message Too Big");

fn decode(message: Option<Result<Message, axum::Error>>, limit: usize) -> Incoming {
    if let Some(Ok(Message::Text(text))) = &message
        && text.len() > limit
    {
        return Incoming::TooBig;
    }
    if let Some(Ok(Message::Binary(bytes))) = &message
        && bytes.len() > limit
    {
        return Incoming::TooBig;
    }
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

/// Where a session is. Each phase is handled by one method of [`Session`], which returns the next;
/// [`session`] loops until [`Phase::Closed`].
enum Phase {
    /// No `init` yet: the client has until the deadline to send it.
    AwaitingInit(tokio::time::Instant),
    /// `init` arrived: validate it, enter the gate, start the job, announce the runtime.
    Starting(Value),
    /// The job runs: one job event or client message at a time.
    Running(Box<Job>),
    /// The job is done, or the session ends before it.
    Ending(Box<Job>, End),
    /// Nothing left to do.
    Closed,
}

/// How a running job's session ends.
enum End {
    /// The job sent all its events: close 4999 "Job Completed".
    Completed,
    /// The session ends before the job: kill it, then close with the code and reason (none when
    /// the client is gone).
    Aborted(Option<(u16, &'static str)>),
}

async fn session(socket: WebSocket, app: AppState) {
    let (sink, stream) = socket.split();
    let mut session = Session { sink, stream, app };
    let mut phase = Phase::AwaitingInit(tokio::time::Instant::now() + INIT_TIMEOUT);
    loop {
        phase = match phase {
            Phase::AwaitingInit(deadline) => session.await_init(deadline).await,
            Phase::Starting(init) => session.start(&init).await,
            Phase::Running(job) => {
                let span = job.record.span().clone();
                session.forward(job).instrument(span).await
            }
            Phase::Ending(job, end) => {
                let span = job.record.span().clone();
                session.end(*job, end).instrument(span).await
            }
            Phase::Closed => break,
        };
    }
    // The job's slot is free by now; only the connection waits.
    let _ = tokio::time::timeout(CLOSE_LINGER, async {
        while let Some(Ok(_)) = session.stream.next().await {}
    })
    .await;
}

/// The connection and the server's state.
struct Session {
    sink: Sink,
    stream: SplitStream<WebSocket>,
    app: AppState,
}

/// A started job: its slot and record, the threads that feed it and read it, and the accounting
/// of its output and outcome.
struct Job {
    handle: Arc<dyn InteractiveJob>,
    slot: Slot,
    record: JobRecord,
    /// Fed by a blocking thread waiting on the job; ends with [`JobEvent::Done`].
    events: mpsc::Receiver<JobEvent>,
    /// Tells that thread to stop.
    stop: Arc<AtomicBool>,
    /// To the stdin writer thread; dropping it ends the thread.
    control: std::sync::mpsc::SyncSender<Control>,
    /// Stdin bytes in `control`'s backlog and in its thread's hands.
    backlog_bytes: Arc<AtomicU64>,
    compile_limit: u64,
    run_limit: u64,
    /// The current stage's output.
    output: StageOutput,
    /// The metrics outcome of the last stage that exited.
    last_status: String,
    compile_failed: bool,
}

enum Control {
    Write(Vec<u8>),
    Eof,
    Signal(i32),
}

/// Client messages for the job (stdin, EOF, signals) waiting for its control thread. A client
/// that sends faster than the job takes them is closed with [`TOO_MANY`] instead of growing the
/// server's memory or its blocking pool.
const CONTROL_BACKLOG: usize = 256;
/// The stdin bytes of those messages, at most (or one message of up to `max_body_size`).
const CONTROL_BACKLOG_BYTES: u64 = 1 << 20;
/// Stdin the job may hold that its program has not read; the control thread waits below it.
const STDIN_WINDOW: u64 = 1 << 20;
const TOO_MANY: (u16, &str) = (4006, "Too Many Messages");

impl Session {
    /// [`Phase::AwaitingInit`]: one client message, or the timeout (4001). `data` and `signal`
    /// before `init` close with 4003; unknown types and non-text frames are ignored.
    async fn await_init(&mut self, deadline: tokio::time::Instant) -> Phase {
        let Ok(message) = tokio::time::timeout_at(deadline, self.stream.next()).await else {
            close(&mut self.sink, 4001, "Initialization Timeout").await;
            return Phase::Closed;
        };
        match decode(message, self.app.config.max_body_size) {
            Incoming::Closed => Phase::Closed,
            Incoming::TooBig => {
                close(&mut self.sink, TOO_BIG.0, TOO_BIG.1).await;
                Phase::Closed
            }
            Incoming::Ignore => Phase::AwaitingInit(deadline),
            Incoming::Invalid(message) => {
                notify_error(&mut self.sink, &message).await;
                Phase::Closed
            }
            Incoming::Json(value) => match kind(&value) {
                "init" => Phase::Starting(value),
                "data" | "signal" => {
                    close(&mut self.sink, 4003, "Not yet initialized").await;
                    Phase::Closed
                }
                _ => Phase::AwaitingInit(deadline),
            },
        }
    }

    /// [`Phase::Starting`]: the checks of `/execute` (an invalid request or a full queue is an
    /// `error` message and 4002), then the job starts and `runtime` goes out.
    async fn start(&mut self, init: &Value) -> Phase {
        let runtimes = self.app.engine.runtimes();
        let mut job = match job::validate(
            init,
            &runtimes,
            &self.app.config.limits,
            &self.app.config.limit_overrides,
        ) {
            Ok(job) => job,
            Err(invalid) => {
                notify_error(&mut self.sink, &invalid.0).await;
                return Phase::Closed;
            }
        };
        job.stdin.clear();
        let (slot, record) = match self.app.gate.admit(JobKind::Interactive, &job).await {
            Ok(admitted) => admitted,
            Err(busy) => {
                notify_error(&mut self.sink, &busy.to_string()).await;
                return Phase::Closed;
            }
        };
        let language = job.runtime.language.clone();
        let version = job.runtime.version.to_string();
        let run_limit = job.run.output_max_size;
        let compile_limit = job.compile.map_or(run_limit, |c| c.output_max_size);
        let engine = Arc::clone(&self.app.engine);
        let handle = match tokio::task::spawn_blocking(move || engine.start(job)).await {
            Ok(Ok(handle)) => Arc::<dyn InteractiveJob>::from(handle),
            Ok(Err(error)) => {
                record
                    .span()
                    .in_scope(|| tracing::error!(error = %error_chain(&error), "cannot start job"));
                record.failed();
                notify_error(
                    &mut self.sink,
                    &format!("the job could not start: {}", error_chain(&error)),
                )
                .await;
                return Phase::Closed;
            }
            Err(join) => {
                notify_error(&mut self.sink, &format!("the job could not start: {join}")).await;
                return Phase::Closed;
            }
        };
        if !send_json(
            &mut self.sink,
            json!({ "type": "runtime", "language": language, "version": version }),
        )
        .await
        {
            let _ = handle.signal(SIGKILL);
            return Phase::Closed;
        }
        Phase::Running(Box::new(Job::new(
            handle,
            slot,
            record,
            (compile_limit, run_limit),
        )))
    }

    /// [`Phase::Running`]: forwards one job event to the client or one client message to the job.
    async fn forward(&mut self, mut job: Box<Job>) -> Phase {
        let step = tokio::select! {
            event = job.events.recv() => match event {
                Some(event) => self.on_event(&mut job, event).await,
                None => ControlFlow::Break(End::Completed),
            },
            message = self.stream.next() => {
                let message = decode(message, self.app.config.max_body_size);
                self.on_message(&job, message).await
            }
        };
        match step {
            ControlFlow::Continue(()) => Phase::Running(job),
            ControlFlow::Break(end) => Phase::Ending(job, end),
        }
    }

    /// A job event: `stage`, `data` (within the output limit; past it the job is killed) and
    /// `exit` messages. The session ends with the job, or when the client cannot be written to.
    async fn on_event(&mut self, job: &mut Job, event: JobEvent) -> ControlFlow<End> {
        let gone = ControlFlow::Break(End::Aborted(None));
        match event {
            JobEvent::Stage(stage) => {
                let limit = if stage == StageName::Compile {
                    job.compile_limit
                } else {
                    job.run_limit
                };
                job.output = StageOutput::new(limit);
                if !send_json(
                    &mut self.sink,
                    json!({ "type": "stage", "stage": stage.as_str() }),
                )
                .await
                {
                    return gone;
                }
            }
            JobEvent::Output { stream, data } => {
                let output = &mut job.output;
                let i = index(stream);
                let room = output.limit.saturating_sub(output.written[i]);
                let take = (data.len() as u64).min(room) as usize;
                output.written[i] += take as u64;
                let text = output.carry[i].push(&data[..take]);
                if !text.is_empty()
                    && !send_json(
                        &mut self.sink,
                        json!({ "type": "data", "stream": stream.as_str(), "data": text }),
                    )
                    .await
                {
                    return gone;
                }
                if take < data.len() && output.exceeded.is_none() {
                    output.exceeded = Some(if i == 0 { Status::OL } else { Status::EL });
                    tracing::info!(
                        stream = stream.as_str(),
                        limit = output.limit,
                        "output limit exceeded; killing"
                    );
                    job.signal(SIGKILL);
                }
            }
            JobEvent::Exit { stage, outcome } => {
                for (i, name) in [(0, "stdout"), (1, "stderr")] {
                    let rest = job.output.carry[i].flush();
                    if !rest.is_empty() {
                        send_json(
                            &mut self.sink,
                            json!({ "type": "data", "stream": name, "data": rest }),
                        )
                        .await;
                    }
                }
                let message = exit_message(stage, &outcome, job.output.exceeded);
                if stage == StageName::Compile && !outcome.succeeded() {
                    job.compile_failed = true;
                }
                job.last_status = job
                    .output
                    .exceeded
                    .or(outcome.status)
                    .map_or_else(|| "ok".to_owned(), |s| s.as_str().to_owned());
                if !send_json(&mut self.sink, message).await {
                    return gone;
                }
            }
            JobEvent::Done => return ControlFlow::Break(End::Completed),
        }
        ControlFlow::Continue(())
    }

    /// A client message while the job runs: `data` goes to stdin, `signal` to the program; a
    /// second `init` (4000), another stream (4004), a bad signal (4005) or a bad message (4002)
    /// ends the session.
    async fn on_message(&mut self, job: &Job, message: Incoming) -> ControlFlow<End> {
        let abort = |code, reason| ControlFlow::Break(End::Aborted(Some((code, reason))));
        let value = match message {
            Incoming::Closed => return ControlFlow::Break(End::Aborted(None)),
            Incoming::TooBig => return abort(TOO_BIG.0, TOO_BIG.1),
            Incoming::Ignore => return ControlFlow::Continue(()),
            Incoming::Invalid(message) => {
                send_json(
                    &mut self.sink,
                    json!({ "type": "error", "message": message }),
                )
                .await;
                return abort(4002, "Notified Error");
            }
            Incoming::Json(value) => value,
        };
        match kind(&value) {
            "init" => return abort(4000, "Already Initialized"),
            "data" => {
                if value.get("stream").and_then(Value::as_str) != Some("stdin") {
                    return abort(4004, "Can only write to stdin");
                }
                match value.get("data") {
                    None | Some(Value::Null) => {}
                    Some(Value::String(text)) => {
                        if !job.queue(Control::Write(text.clone().into_bytes())) {
                            return abort(TOO_MANY.0, TOO_MANY.1);
                        }
                    }
                    Some(_) => {
                        send_json(
                            &mut self.sink,
                            json!({ "type": "error", "message": "data must be a string" }),
                        )
                        .await;
                        return abort(4002, "Notified Error");
                    }
                }
                if value.get("eof").and_then(Value::as_bool) == Some(true)
                    && !job.queue(Control::Eof)
                {
                    return abort(TOO_MANY.0, TOO_MANY.1);
                }
            }
            "signal" => {
                let number = value
                    .get("signal")
                    .and_then(Value::as_str)
                    .and_then(signals::number);
                let Some(number) = number else {
                    return abort(4005, "Invalid signal");
                };
                tracing::info!(signal = number, "signal from client");
                if !job.queue(Control::Signal(number)) {
                    return abort(TOO_MANY.0, TOO_MANY.1);
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    /// [`Phase::Ending`]: stops the job's threads, closes the connection, frees the slot and
    /// records the outcome.
    async fn end(&mut self, job: Job, end: End) -> Phase {
        job.stop.store(true, Ordering::Relaxed);
        let Job {
            handle,
            slot,
            record,
            control,
            last_status,
            compile_failed,
            ..
        } = job;
        drop(control);
        let outcome = match end {
            End::Completed => {
                close(&mut self.sink, 4999, "Job Completed").await;
                if compile_failed {
                    "compile_error".to_owned()
                } else {
                    last_status
                }
            }
            End::Aborted(code) => {
                // Dropping the handle cleans up.
                let _ = kill(Arc::clone(&handle), SIGKILL).await;
                if let Some((code, reason)) = code {
                    close(&mut self.sink, code, reason).await;
                }
                "aborted".to_owned()
            }
        };
        drop(handle);
        drop(slot);
        record.finished(&outcome);
        Phase::Closed
    }
}

impl Job {
    /// Starts the threads around `handle`: one waits on the job's events and feeds a bounded
    /// channel; one takes the client's stdin and signals, in order, from a bounded backlog.
    fn new(
        handle: Arc<dyn InteractiveJob>,
        slot: Slot,
        record: JobRecord,
        (compile_limit, run_limit): (u64, u64),
    ) -> Self {
        let (events_tx, events) = mpsc::channel::<JobEvent>(64);
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
        let (control, control_rx) = std::sync::mpsc::sync_channel::<Control>(CONTROL_BACKLOG);
        let backlog_bytes = Arc::new(AtomicU64::new(0));
        {
            let handle = Arc::clone(&handle);
            let stop = Arc::clone(&stop);
            let backlog_bytes = Arc::clone(&backlog_bytes);
            tokio::task::spawn_blocking(move || {
                for control in control_rx {
                    let result = match control {
                        Control::Write(data) => {
                            // Backpressure: the job holds at most STDIN_WINDOW (and one
                            // message) its program has not read; meanwhile the backlog fills.
                            while !handle.wait_stdin_below(STDIN_WINDOW, Duration::from_millis(100))
                            {
                                if stop.load(Ordering::Relaxed) {
                                    return;
                                }
                            }
                            let result = handle.write_stdin(&data);
                            backlog_bytes.fetch_sub(data.len() as u64, Ordering::Relaxed);
                            result
                        }
                        Control::Eof => handle.close_stdin(),
                        Control::Signal(number) => handle.signal(number),
                    };
                    if let Err(error) = result {
                        tracing::debug!(error = %error_chain(&error), "client message not delivered");
                    }
                }
            });
        }
        Self {
            handle,
            slot,
            record,
            events,
            stop,
            control,
            backlog_bytes,
            compile_limit,
            run_limit,
            output: StageOutput::new(run_limit),
            last_status: String::from("ok"),
            compile_failed: false,
        }
    }

    /// Sends signal `number` to the program from a blocking thread (the server's own SIGKILLs:
    /// they do not wait behind the client's messages).
    fn signal(&self, number: i32) -> tokio::task::JoinHandle<()> {
        kill(Arc::clone(&self.handle), number)
    }

    /// Hands a client message to the control thread; false when its backlog is full (in
    /// messages, or in stdin bytes when it holds any).
    fn queue(&self, control: Control) -> bool {
        let bytes = match &control {
            Control::Write(data) => data.len() as u64,
            _ => 0,
        };
        let waiting = self.backlog_bytes.load(Ordering::Relaxed);
        if bytes > 0 && waiting > 0 && waiting + bytes > CONTROL_BACKLOG_BYTES {
            return false;
        }
        self.backlog_bytes.fetch_add(bytes, Ordering::Relaxed);
        match self.control.try_send(control) {
            Ok(()) | Err(std::sync::mpsc::TrySendError::Disconnected(_)) => true,
            Err(std::sync::mpsc::TrySendError::Full(_)) => {
                self.backlog_bytes.fetch_sub(bytes, Ordering::Relaxed);
                false
            }
        }
    }
}

/// Sends signal `number` to `handle`'s program from a blocking thread.
fn kill(handle: Arc<dyn InteractiveJob>, number: i32) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        if let Err(error) = handle.signal(number) {
            tracing::debug!(error = %error_chain(&error), "signal not delivered");
        }
    })
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
