//! Piston's `/api/v2` routes, wire-compatible: same fields, defaults, validation order, messages and
//! status codes (see the module docs of [`crate::job`] for where this deliberately differs).

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Map, Value, json};
use tracing::Instrument;

use ppman::Selector;

use crate::engine::{ALL_REPOS, EngineError, JobOutcome, StageOutcome, Status};
use crate::gate::JobKind;
use crate::http::{ApiError, AppState, blocking, json_response, read_json};
use crate::job;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/runtimes", get(runtimes))
        .route("/execute", post(execute))
        .route(
            "/packages",
            get(list_packages).post(install).delete(uninstall),
        )
}

async fn runtimes(State(state): State<AppState>) -> Response {
    let list: Vec<Value> = state
        .engine
        .runtimes()
        .iter()
        .map(|rt| {
            let mut item = json!({
                "language": rt.language,
                "version": rt.version.to_string(),
                "aliases": rt.aliases,
            });
            if let Some(runtime) = rt.runtime_field() {
                item["runtime"] = json!(runtime);
            }
            item
        })
        .collect();
    json_response(StatusCode::OK, &list)
}

/// A millisecond figure as Piston prints it: an integer when it is one.
fn number(value: f64) -> Value {
    if value.fract() == 0.0 && value.abs() < 9e15 {
        json!(value as i64)
    } else {
        json!(value)
    }
}

/// Piston's stage object. The signal is `SIGKILL` whenever the stage was killed for a limit.
pub fn stage_json(stage: &StageOutcome) -> Value {
    let killed = matches!(stage.status, Some(Status::TO | Status::OL | Status::EL));
    let signal = if killed {
        Some("SIGKILL".to_owned())
    } else {
        stage.signal.clone()
    };
    json!({
        "stdout": stage.stdout,
        "stderr": stage.stderr,
        "output": stage.output,
        "code": stage.code,
        "signal": signal,
        "message": stage.message,
        "status": stage.status.map(Status::as_str),
        "cpu_time": number(stage.cpu_time_ms),
        "wall_time": number(stage.wall_time_ms),
        "memory": stage.memory_bytes,
    })
}

/// The metrics outcome of a job.
pub fn outcome_label(outcome: &JobOutcome) -> String {
    if let Some(compile) = &outcome.compile
        && !compile.succeeded()
    {
        return "compile_error".to_owned();
    }
    match outcome.run.as_ref().and_then(|r| r.status) {
        Some(status) => status.as_str().to_owned(),
        None => "ok".to_owned(),
    }
}

async fn execute(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_json(&state, &headers, body).await?;
    let runtimes = state.engine.runtimes();
    let job = job::validate(
        &body,
        &runtimes,
        &state.config.limits,
        &state.config.limit_overrides,
    )
    .map_err(|e| ApiError::bad_request(e.0))?;
    let (slot, record) = state
        .gate
        .admit(JobKind::Execute, &job)
        .await
        .map_err(|busy| {
            tracing::warn!(%busy, "job refused");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, busy.to_string())
        })?;
    let language = job.runtime.language.clone();
    let version = job.runtime.version.to_string();
    let engine = state.engine.clone();
    let result = async {
        tracing::debug!(files = job.files.len(), "running");
        // The slot moves into the blocking task: a client that hangs up does not free it while
        // the job still runs.
        blocking(move || {
            let result = engine.execute(job);
            drop(slot);
            result
        })
        .await
    }
    .instrument(record.span().clone())
    .await;
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(error) => {
            let error = record
                .span()
                .in_scope(|| ApiError::internal("the job could not run", &error));
            record.failed();
            return Err(error);
        }
    };
    record.finished(&outcome_label(&outcome));

    let mut response = Map::new();
    response.insert("language".to_owned(), json!(language));
    response.insert("version".to_owned(), json!(version));
    // A failed compile skips the run stage; Piston then reports the compile result as `run`.
    let run = outcome.run.as_ref().or(outcome.compile.as_ref());
    response.insert("run".to_owned(), run.map(stage_json).unwrap_or(Value::Null));
    if let Some(compile) = &outcome.compile {
        response.insert("compile".to_owned(), stage_json(compile));
    }
    Ok(json_response(StatusCode::OK, &Value::Object(response)))
}

async fn list_packages(State(state): State<AppState>) -> Result<Response, ApiError> {
    let engine = state.engine.clone();
    let packages = blocking(move || engine.packages(ALL_REPOS, false))
        .await
        .map_err(|e| ApiError::internal("cannot list packages", &e))?;
    let list: Vec<Value> = packages
        .iter()
        .map(|p| json!({ "language": p.name, "language_version": p.version.to_string(), "installed": p.installed }))
        .collect();
    Ok(json_response(StatusCode::OK, &list))
}

/// The `language` and `version` of a package request's JSON body, and the version as a
/// selector; a version that is no selector is an unknown package (404), as in Piston.
async fn package_request(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(String, String, Selector), ApiError> {
    let body = read_json(state, headers, body).await?;
    let field = |name: &str| {
        body.get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ApiError::bad_request(format!("{name} is required as a string")))
    };
    let (language, version) = (field("language")?, field("version")?);
    match Selector::parse(&version) {
        Ok(selector) => Ok((language, version, selector)),
        Err(_) => Err(package_error(
            &EngineError::UnknownPackage {
                name: language,
                selector: version,
            },
            "",
        )),
    }
}

fn package_error(error: &EngineError, what: &str) -> ApiError {
    match error {
        EngineError::UnknownPackage { .. } => {
            ApiError::new(StatusCode::NOT_FOUND, error.to_string())
        }
        EngineError::AlreadyInstalled { .. }
        | EngineError::NotInstalled { .. }
        | EngineError::Conflict(_) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
        }
        _ => ApiError::internal(what, error),
    }
}

async fn install(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (language, version, selector) = package_request(&state, &headers, body).await?;
    let engine = state.engine.clone();
    let name = language.clone();
    let report = blocking(move || engine.install(ALL_REPOS, &name, &selector))
        .await
        .map_err(|e| package_error(&e, &format!("cannot install {language}-{version}")))?;
    tracing::info!(package = %report.package.name, version = %report.package.version, "installed");
    Ok(json_response(
        StatusCode::OK,
        &json!({ "language": report.package.name, "version": report.package.version.to_string() }),
    ))
}

async fn uninstall(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (language, version, selector) = package_request(&state, &headers, body).await?;
    let engine = state.engine.clone();
    let name = language.clone();
    let report = blocking(move || engine.uninstall(&name, &selector, false))
        .await
        .map_err(|e| package_error(&e, &format!("cannot uninstall {language}-{version}")))?;
    tracing::info!(package = %report.package.name, version = %report.package.version, "uninstalled");
    Ok(json_response(
        StatusCode::OK,
        &json!({ "language": report.package.name, "version": report.package.version.to_string() }),
    ))
}
