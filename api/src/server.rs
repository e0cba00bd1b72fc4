//! The HTTP server: the router, its middleware and fallbacks, and graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::http::{ApiError, AppState, json_response};
use crate::{openapi, v2, v3, ws};

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
        // v3's state-changing routes take no body, but must be JSON all the same: a page on
        // another site can send a form or a no-cors fetch to a loopback server without asking,
        // but not an `application/json` request.
        .nest("/api/v3", v3::routes().layer(middleware::from_fn(require_json)))
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
