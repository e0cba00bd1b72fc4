//! What the route handlers share: the application state, the error answer, JSON request bodies
//! and responses, and running blocking engine work off the async threads.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::config::Config;
use crate::engine::{Engine, EngineError, error_chain};
use crate::gate::Gate;
use crate::metrics::Metrics;

/// Everything a request handler needs.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<dyn Engine>,
    pub config: Arc<Config>,
    pub gate: Arc<Gate>,
    pub metrics: Arc<Metrics>,
}

impl AppState {
    pub fn new(engine: Arc<dyn Engine>, config: Config) -> Self {
        let metrics = Arc::new(Metrics::default());
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let concurrency = config.concurrency(cpus, engine.jobs_memory());
        tracing::info!(
            max_concurrent_jobs = concurrency,
            auto = config.max_concurrent_jobs.is_none(),
            cpus,
            "admission"
        );
        let gate = Arc::new(Gate::new(
            concurrency,
            config.max_queued_jobs,
            Arc::clone(&metrics),
        ));
        Self {
            engine,
            config: Arc::new(config),
            gate,
            metrics,
        }
    }
}

/// An error answered as `{"message": ...}` with a status code.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// An internal error: logged in the request's span with its causes, answered with a message.
    pub fn internal(context: &str, error: &EngineError) -> Self {
        let chain = error_chain(error);
        tracing::error!(error = %chain, "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{context}: {chain}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, axum::Json(json!({ "message": self.message }))).into_response();
        if self.status == StatusCode::REQUEST_TIMEOUT {
            // The rest of a body that came too slowly is not waited for: the connection ends.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// A JSON response with a status.
pub fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response {
    (status, axum::Json(value)).into_response()
}

/// How much of a refused body is still read (and dropped) before the 413 goes out, and for how
/// long: a client that sends its whole body before it reads the answer (most do, without
/// `Expect: 100-continue`) would otherwise see the connection reset instead of the 413. Past
/// these bounds the connection is closed, as nginx's lingering close does.
const DISCARD_BYTES: usize = 64 << 20;
const DISCARD_TIME: Duration = Duration::from_secs(5);

/// Reads a JSON request body: 413 past the size limit, 400 when it does not parse.
pub async fn read_json(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Value, ApiError> {
    let limit = state.config.max_body_size;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than the limit of {limit} bytes"),
        )
    };
    let mut stream = body.into_data_stream();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        discard(stream).await;
        return Err(too_large());
    }
    let timeout = Duration::from_millis(state.config.body_timeout);
    let read = async {
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::bad_request(format!("the request body could not be read: {e}"))
            })?;
            if bytes.len() + chunk.len() > limit {
                return Err(None);
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    };
    let bytes = match tokio::time::timeout(timeout, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(error)) => {
            return Err(match error {
                Some(error) => error,
                None => {
                    discard(stream).await;
                    too_large()
                }
            });
        }
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} ms",
                    timeout.as_millis()
                ),
            ));
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        // body-parser gives an empty body as `{}`.
        return Ok(Value::Object(serde_json::Map::new()));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("request body is not valid JSON: {e}")))
}

/// Reads and drops the rest of a refused body, within [`DISCARD_BYTES`] and [`DISCARD_TIME`].
async fn discard(mut stream: axum::body::BodyDataStream) {
    let drain = async {
        let mut seen = 0;
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.len();
            if seen > DISCARD_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DISCARD_TIME, drain).await;
}

/// Runs blocking engine work off the async threads.
pub async fn blocking<T, F>(f: F) -> Result<T, EngineError>
where
    F: FnOnce() -> Result<T, EngineError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(join) => Err(EngineError::message(format!("engine task failed: {join}"))),
    }
}
