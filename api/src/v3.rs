//! The v3 routes: repositories and their packages (seed 000), richer runtimes.
//!
//! Shapes (all JSON; errors are `{"message": ...}`):
//! * `GET  /api/v3/runtimes` → `[{language, version, aliases, package, compiled, limits}]`, with
//!   the effective limits of each runtime;
//! * `GET  /api/v3/repos` → `[{name, url, index_version, generated, packages}]`;
//! * `GET  /api/v3/repos/{repo}/packages?sync=true` → `[{repo, name, version, description,
//!   languages, installed}]`; `sync` downloads the repository's index first. `{repo}` may be `all`;
//! * `GET  /api/v3/repos/{repo}/packages/{package}/{version}` → metadata: `{repo, name, version,
//!   author, description, size, checksums, dependencies, provides, limit_overrides, compiled,
//!   cache, build_file_url, build_file_sha256, download_url, installed}`. `{version}` is a selector
//!   (`3.x`, `*`, `3.12.0`); the highest match is answered;
//! * `POST /api/v3/repos/{repo}/packages/{package}/{version}/install` → `{package, installed}`
//!   (201 Created), installing the dependencies too; 409 when already installed;
//! * `POST /api/v3/repos/{repo}/packages/{package}/{version}/uninstall?cascade=true` →
//!   `{package, removed}`; 404 when not installed, 409 when other packages need it (use `cascade`);
//! * `DELETE /api/v3/repos/{repo}/packages/{package}/{version}/cache` → `{purged}`: the number of
//!   cache entries of that package removed; 501 while the engine has no job cache.
//!
//! These routes take no request body, but the ones that change state (POST, DELETE) must be sent
//! as `Content-Type: application/json` (else 415): a web page of another site can make a browser
//! send a form or a no-cors `fetch` to a loopback server without asking it, but not that.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get, post};
use serde_json::{Value, json};

use ppman::Selector;

use crate::config::LIMIT_KEYS;
use crate::engine::EngineError;
use crate::http::{ApiError, AppState, blocking, json_response};
use crate::job::effective_limit;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/runtimes", get(runtimes))
        .route("/repos", get(repos))
        .route("/repos/{repo}/packages", get(packages))
        .route("/repos/{repo}/packages/{package}/{version}", get(package))
        .route(
            "/repos/{repo}/packages/{package}/{version}/install",
            post(install),
        )
        .route(
            "/repos/{repo}/packages/{package}/{version}/uninstall",
            post(uninstall),
        )
        .route(
            "/repos/{repo}/packages/{package}/{version}/cache",
            delete(purge),
        )
}

fn error(e: &EngineError, what: &str) -> ApiError {
    match e {
        EngineError::UnknownPackage { .. }
        | EngineError::UnknownRepo(_)
        | EngineError::NotInstalled { .. } => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
        EngineError::AlreadyInstalled { name, version } => ApiError::new(
            StatusCode::CONFLICT,
            format!("{name}-{version} is already installed"),
        ),
        EngineError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
        EngineError::Unsupported(_) => ApiError::new(StatusCode::NOT_IMPLEMENTED, e.to_string()),
        _ => ApiError::internal(what, e),
    }
}

fn flag(query: &HashMap<String, String>, name: &str) -> Result<bool, ApiError> {
    match query.get(name).map(|v| v.to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) if ["", "1", "true", "yes"].contains(&v.as_str()) => Ok(true),
        Some(v) if ["0", "false", "no"].contains(&v.as_str()) => Ok(false),
        Some(_) => Err(ApiError::bad_request(format!(
            "{name} must be true or false"
        ))),
    }
}

fn selector(version: &str) -> Result<Selector, ApiError> {
    Selector::parse(version)
        .map_err(|e| ApiError::bad_request(format!("{e}: use e.g. 3.12.0, 3.x or *")))
}

async fn runtimes(State(state): State<AppState>) -> Response {
    let list: Vec<Value> = state
        .engine
        .runtimes()
        .iter()
        .map(|rt| {
            let limits: serde_json::Map<String, Value> = LIMIT_KEYS
                .iter()
                .map(|key| {
                    let value = effective_limit(
                        &state.config.limits,
                        &state.config.limit_overrides,
                        rt,
                        key,
                    );
                    ((*key).to_owned(), json!(value))
                })
                .collect();
            json!({
                "language": rt.language,
                "version": rt.version.to_string(),
                "aliases": rt.aliases,
                "package": rt.package,
                "compiled": rt.compiled,
                "limits": limits,
            })
        })
        .collect();
    json_response(StatusCode::OK, &list)
}

async fn repos(State(state): State<AppState>) -> Result<Response, ApiError> {
    let engine = state.engine.clone();
    let repos = blocking(move || engine.repositories())
        .await
        .map_err(|e| error(&e, "cannot list repositories"))?;
    Ok(json_response(StatusCode::OK, &repos))
}

async fn packages(
    State(state): State<AppState>,
    Path(repo): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let sync = flag(&query, "sync")?;
    let engine = state.engine.clone();
    let what = format!("cannot list the packages of {repo}");
    let list = blocking(move || engine.packages(&repo, sync))
        .await
        .map_err(|e| error(&e, &what))?;
    Ok(json_response(StatusCode::OK, &list))
}

async fn package(
    State(state): State<AppState>,
    Path((repo, name, version)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let selector = selector(&version)?;
    let engine = state.engine.clone();
    let detail = blocking(move || engine.package(&repo, &name, &selector))
        .await
        .map_err(|e| error(&e, "cannot read the package"))?;
    Ok(json_response(StatusCode::OK, &detail))
}

async fn install(
    State(state): State<AppState>,
    Path((repo, name, version)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let selector = selector(&version)?;
    let engine = state.engine.clone();
    let what = format!("cannot install {name}-{version}");
    let report = blocking(move || engine.install(&repo, &name, &selector))
        .await
        .map_err(|e| error(&e, &what))?;
    tracing::info!(package = %report.package.name, version = %report.package.version, "installed");
    Ok(json_response(StatusCode::CREATED, &report))
}

async fn uninstall(
    State(state): State<AppState>,
    Path((_repo, name, version)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let cascade = flag(&query, "cascade")?;
    let selector = selector(&version)?;
    let engine = state.engine.clone();
    let what = format!("cannot uninstall {name}-{version}");
    let report = blocking(move || engine.uninstall(&name, &selector, cascade))
        .await
        .map_err(|e| error(&e, &what))?;
    tracing::info!(package = %report.package.name, version = %report.package.version, "uninstalled");
    Ok(json_response(StatusCode::OK, &report))
}

async fn purge(
    State(state): State<AppState>,
    Path((_repo, name, version)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let selector = selector(&version)?;
    let engine = state.engine.clone();
    let purged = blocking(move || engine.purge_cache(&name, &selector))
        .await
        .map_err(|e| error(&e, "cannot purge the cache"))?;
    Ok(json_response(StatusCode::OK, &json!({ "purged": purged })))
}
