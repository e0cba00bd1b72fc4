//! The Piston API server.
//!
//! `/api/v2` is wire-compatible with Piston 3.1 (routes, fields, validation order and messages,
//! status codes, the WebSocket protocol); `/api/v3` adds the repository routes of the v3 design.
//! The server talks to the machinery only through the [`Engine`] seam: an in-memory engine in the tests
//! of the HTTP layer, the adapter onto `ppman` and `runner` for real jobs.
//!
//! * [`config`]: options, sources and validation (documented in `api/CONFIG.md`);
//! * [`engine`]: the seam and its data types;
//! * [`job`]: request validation and limit resolution;
//! * [`server`]: router, middleware, graceful shutdown; [`v2`], [`v3`], [`ws`]: the routes;
//! * [`http`]: what the routes share (state, error answers, JSON bodies);
//! * [`gate`]: concurrency limit and bounded queue; [`metrics`]: Prometheus; [`openapi`].

pub mod adapter;
pub mod config;
pub mod engine;
pub mod gate;
pub mod http;
pub mod job;
pub mod metrics;
pub mod openapi;
pub mod server;
pub mod signals;
pub mod v2;
pub mod v3;
pub mod ws;

pub use config::Config;
pub use engine::Engine;
pub use http::AppState;
pub use server::{router, serve};
