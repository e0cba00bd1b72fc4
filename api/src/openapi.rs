//! The OpenAPI 3.1 document of every route, written by hand (no code generation, no extra crate),
//! served at `GET /api/openapi.json`. A test checks it lists every route of the router.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use crate::http::json_response;

fn error(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

fn ok(description: &str, schema: &Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn array_of(name: &str) -> Value {
    json!({ "type": "array", "items": reference(name) })
}

fn body(name: &str) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": reference(name) } } })
}

fn path_params(names: &[&str]) -> Value {
    Value::Array(
        names
            .iter()
            .map(|n| json!({ "name": n, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect(),
    )
}

fn flag_param(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description, "schema": { "type": "boolean" } })
}

/// The document.
pub fn spec() -> Value {
    let pkg = ["repo", "package", "version"];
    let stage = json!({
        "type": "object",
        "properties": {
            "stdout": { "type": "string" }, "stderr": { "type": "string" }, "output": { "type": "string" },
            "code": { "type": ["integer", "null"] }, "signal": { "type": ["string", "null"] },
            "message": { "type": ["string", "null"] },
            "status": { "type": ["string", "null"], "enum": ["RE", "SG", "TO", "OL", "EL", "XX", null] },
            "cpu_time": { "type": "number" }, "wall_time": { "type": "number" }, "memory": { "type": "integer" }
        }
    });
    let limit = |d: &str| json!({ "type": "number", "description": d });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Piston",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Code execution engine. /api/v2 is wire-compatible with Piston 3.1; /api/v3 adds repositories. \
                The API can install packages and has no authentication: expose it only behind a trusted proxy."
        },
        "paths": {
            "/": { "get": { "summary": "Server name and version", "responses": { "200": ok("`{\"message\":\"Piston v...\"}`", &json!({ "type": "object" })) } } },
            "/healthz": { "get": { "summary": "Liveness and job counts", "responses": { "200": ok("healthy", &json!({ "type": "object" })) } } },
            "/metrics": { "get": { "summary": "Prometheus metrics (text format)", "responses": { "200": { "description": "metrics", "content": { "text/plain": {} } } } } },
            "/api/openapi.json": { "get": { "summary": "This document", "responses": { "200": ok("OpenAPI 3.1", &json!({ "type": "object" })) } } },
            "/api/v2/runtimes": { "get": { "summary": "Installed runtimes", "responses": { "200": ok("runtimes", &array_of("Runtime")) } } },
            "/api/v2/execute": { "post": {
                "summary": "Run code to completion",
                "requestBody": body("ExecuteRequest"),
                "responses": {
                    "200": ok("results", &reference("ExecuteResponse")),
                    "400": error("validation failed, in Piston's order and words; malformed JSON; bad file name or encoding"),
                    "413": error("body larger than max_body_size"),
                    "415": error("`requests must be of type application/json`"),
                    "500": error("the job could not run"),
                    "503": error("too many jobs running and queued")
                }
            } },
            "/api/v2/packages": {
                "get": { "summary": "Packages of every repository", "responses": { "200": ok("packages", &array_of("V2Package")) } },
                "post": { "summary": "Install a package (highest version matching the selector)", "requestBody": body("V2PackageRequest"),
                    "responses": { "200": ok("installed", &reference("V2PackageRequest")), "404": error("`Requested package <l>-<v> does not exist`"), "415": error("not JSON"), "500": error("`Already installed` or install failure") } },
                "delete": { "summary": "Uninstall a package", "requestBody": body("V2PackageRequest"),
                    "responses": { "200": ok("uninstalled", &reference("V2PackageRequest")), "404": error("unknown package"), "415": error("not JSON"), "500": error("`<l>-<v> is not installed`") } }
            },
            "/api/v2/connect": { "get": {
                "summary": "Interactive execution over WebSocket",
                "description": "Client: init (execute fields), data {stream:'stdin', data, eof?}, signal {signal}. Server: runtime, stage, data {stream, data}, exit {stage, code, signal, status?, message?}, error {message}. Close codes: 4000 Already Initialized, 4001 Initialization Timeout (1 s), 4002 Notified Error, 4003 Not yet initialized, 4004 Can only write to stdin, 4005 Invalid signal, 4999 Job Completed. Extension: `eof: true` closes stdin. Output is limited to output_max_size per stream and stage (then SIGKILL, status OL/EL).",
                "responses": { "101": { "description": "switching to the WebSocket protocol" } }
            } },
            "/api/v3/runtimes": { "get": { "summary": "Installed runtimes with package and effective limits", "responses": { "200": ok("runtimes", &json!({ "type": "array", "items": { "type": "object" } })) } } },
            "/api/v3/repos": { "get": { "summary": "Configured repositories", "responses": { "200": ok("repositories", &array_of("Repository")) } } },
            "/api/v3/repos/{repo}/packages": { "get": {
                "summary": "Packages of a repository (`all` for every repository)",
                "parameters": [path_params(&["repo"])[0].clone(), flag_param("sync", "download the index again first")],
                "responses": { "200": ok("packages", &array_of("PackageSummary")), "404": error("unknown repository"), "500": error("sync failed") }
            } },
            "/api/v3/repos/{repo}/packages/{package}/{version}": { "get": {
                "summary": "Metadata of the highest version matching the selector",
                "parameters": path_params(&pkg),
                "responses": { "200": ok("package", &reference("PackageDetail")), "400": error("bad selector"), "404": error("unknown repository or package") }
            } },
            "/api/v3/repos/{repo}/packages/{package}/{version}/install": { "post": {
                "summary": "Install the package and its dependencies",
                "parameters": path_params(&pkg),
                "responses": { "201": ok("installed", &reference("InstallReport")), "404": error("unknown"), "409": error("already installed"), "500": error("install failed") }
            } },
            "/api/v3/repos/{repo}/packages/{package}/{version}/uninstall": { "post": {
                "summary": "Uninstall the package",
                "parameters": [path_params(&pkg)[0].clone(), path_params(&pkg)[1].clone(), path_params(&pkg)[2].clone(), flag_param("cascade", "also remove installed packages that depend on it")],
                "responses": { "200": ok("removed", &reference("UninstallReport")), "404": error("not installed"), "409": error("needed by other packages") }
            } },
            "/api/v3/repos/{repo}/packages/{package}/{version}/cache": { "delete": {
                "summary": "Purge the package's cache entries",
                "parameters": path_params(&pkg),
                "responses": { "200": ok("purged", &json!({ "type": "object", "properties": { "purged": { "type": "integer" } } })), "404": error("unknown package"), "501": error("this server has no job cache") }
            } }
        },
        "components": { "schemas": {
            "Error": { "type": "object", "required": ["message"], "properties": { "message": { "type": "string" } } },
            "Runtime": { "type": "object", "required": ["language", "version", "aliases"], "properties": {
                "language": { "type": "string" }, "version": { "type": "string" },
                "aliases": { "type": "array", "items": { "type": "string" } }, "runtime": { "type": "string" } } },
            "ExecuteRequest": { "type": "object", "required": ["language", "version", "files"], "properties": {
                "language": { "type": "string" }, "version": { "type": "string", "description": "npm-style selector: 3.10.0 is exact, 3.10 is 3.10.x" },
                "files": { "type": "array", "items": { "type": "object", "required": ["content"], "properties": {
                    "name": { "type": "string" }, "content": { "type": "string" },
                    "encoding": { "type": "string", "enum": ["utf8", "base64", "hex"] } } } },
                "stdin": { "type": "string" }, "args": { "type": "array", "items": { "type": "string" } },
                "compile_timeout": limit("ms"), "run_timeout": limit("ms"), "compile_cpu_time": limit("ms"), "run_cpu_time": limit("ms"),
                "compile_memory_limit": limit("bytes"), "run_memory_limit": limit("bytes") } },
            "Stage": stage,
            "ExecuteResponse": { "type": "object", "required": ["language", "version", "run"], "properties": {
                "language": { "type": "string" }, "version": { "type": "string" },
                "run": reference("Stage"), "compile": reference("Stage") } },
            "V2Package": { "type": "object", "properties": {
                "language": { "type": "string" }, "language_version": { "type": "string" }, "installed": { "type": "boolean" } } },
            "V2PackageRequest": { "type": "object", "required": ["language", "version"], "properties": {
                "language": { "type": "string" }, "version": { "type": "string" } } },
            "Repository": { "type": "object", "properties": {
                "name": { "type": "string" }, "url": { "type": "string" }, "index_version": { "type": ["integer", "null"] },
                "generated": { "type": ["integer", "null"] }, "packages": { "type": "integer" } } },
            "PackageSummary": { "type": "object", "properties": {
                "repo": { "type": "string" }, "name": { "type": "string" }, "version": { "type": "string" },
                "description": { "type": "string" }, "languages": { "type": "array", "items": { "type": "string" } },
                "installed": { "type": "boolean" } } },
            "PackageDetail": { "type": "object", "properties": {
                "repo": { "type": "string" }, "name": { "type": "string" }, "version": { "type": "string" },
                "author": { "type": "string" }, "description": { "type": "string" }, "size": { "type": "integer" },
                "checksums": { "type": "object", "additionalProperties": { "type": "string" } },
                "dependencies": { "type": "object", "additionalProperties": { "type": "string" } },
                "provides": { "type": "array", "items": { "type": "object" } },
                "limit_overrides": { "type": "object", "additionalProperties": { "type": "integer" } },
                "compiled": { "type": "boolean" }, "cache": { "type": "string", "enum": ["none", "compiled", "output"] },
                "build_file_url": { "type": "string" }, "build_file_sha256": { "type": "string" },
                "download_url": { "type": "string" }, "installed": { "type": "boolean" } } },
            "PackageRef": { "type": "object", "properties": { "repo": { "type": "string" }, "name": { "type": "string" }, "version": { "type": "string" } } },
            "InstallReport": { "type": "object", "properties": { "package": reference("PackageRef"), "installed": array_of("PackageRef") } },
            "UninstallReport": { "type": "object", "properties": { "package": reference("PackageRef"), "removed": array_of("PackageRef") } }
        } }
    })
}

pub async fn document() -> Response {
    json_response(StatusCode::OK, &spec())
}
