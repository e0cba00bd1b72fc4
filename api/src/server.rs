//! The HTTP server: shared state, the router, error responses and graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::config::Config;
use crate::engine::{Engine, EngineError, error_chain};
use crate::gate::Gate;
use crate::metrics::Metrics;
use crate::{openapi, v2, v3, ws};

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
        let gate = Arc::new(Gate::new(
            config.max_concurrent_jobs,
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
        (self.status, axum::Json(json!({ "message": self.message }))).into_response()
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
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request(format!("the request body could not be read: {e}"))
        })?;
        if bytes.len() + chunk.len() > limit {
            discard(stream).await;
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
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

/// Piston's router-wide rule: requests with a body must be JSON.
async fn require_json(request: Request, next: Next) -> Response {
    let method = request.method();
    if method != Method::GET && method != Method::HEAD && method != Method::OPTIONS {
        let json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !json {
            return ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "requests must be of type application/json",
            )
            .into_response();
        }
    }
    next.run(request).await
}

async fn count_responses(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    state.metrics.response(response.status().as_u16());
    response
}

async fn root() -> Response {
    json_response(
        StatusCode::OK,
        &json!({ "message": format!("Piston v{}", env!("CARGO_PKG_VERSION")) }),
    )
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "Not Found")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
}

async fn healthz(State(state): State<AppState>) -> Response {
    let running = state
        .metrics
        .running
        .load(std::sync::atomic::Ordering::Relaxed);
    let queued = state
        .metrics
        .queued
        .load(std::sync::atomic::Ordering::Relaxed);
    json_response(
        StatusCode::OK,
        &json!({ "status": "ok", "jobs_running": running, "jobs_queued": queued }),
    )
}

async fn metrics(State(state): State<AppState>) -> Response {
    let mut response = state.metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    let v2 = v2::routes()
        .route("/connect", get(ws::connect))
        .layer(middleware::from_fn(require_json));
    let request_id = header::HeaderName::from_static("x-request-id");
    Router::new()
        .route("/", get(root))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/openapi.json", get(openapi::document))
        .nest("/api/v2", v2)
        .nest("/api/v3", v3::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), count_responses))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let id = request
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!("request", id, method = %request.method(), path = %request.uri().path())
            }),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

/// Serves `state` on `listener` until `shutdown` resolves; then stops accepting, lets requests
/// and jobs (WebSocket ones included) finish for at most `config.shutdown_timeout`, and returns.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let bound = Duration::from_millis(state.config.shutdown_timeout);
    let gate = Arc::clone(&state.gate);
    let (stopping_tx, stopping_rx) = tokio::sync::watch::channel(None::<Instant>);
    let app = router(state);
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!(
            timeout_ms = bound.as_millis() as u64,
            "shutting down: no new connections"
        );
        let _ = stopping_tx.send(Some(Instant::now()));
    });
    let mut stopping = stopping_rx.clone();
    let deadline = async move {
        let started = loop {
            if let Some(t) = *stopping.borrow_and_update() {
                break t;
            }
            if stopping.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::time::sleep_until((started + bound).into()).await;
    };
    tokio::select! {
        result = server => {
            result?;
            let started = (*stopping_rx.borrow()).unwrap_or_else(Instant::now);
            let left = bound.saturating_sub(started.elapsed());
            if tokio::time::timeout(left, gate.drain()).await.is_err() {
                tracing::warn!("shutdown timeout reached with jobs still running; they are killed on exit");
            }
        }
        () = deadline => {
            tracing::warn!("shutdown timeout reached with requests still running; they are killed on exit");
        }
    }
    tracing::info!("stopped");
    Ok(())
}
