//! The Piston API server: Piston's `/api/v2` routes, wire-compatible with Piston 3.1 (routes,
//! fields, validation order and messages, status codes, the WebSocket protocol), and `/api/v3`,
//! the repository routes of the v3 design. It talks to the machinery only through the [`Engine`]
//! seam: an in-memory engine in the tests of the HTTP layer, the [`adapter`] onto `ppman` and
//! `jobs` for real jobs.
//!
//! * [`serve`] — serves the [`router`] of an [`AppState`] until shutdown, then lets requests and
//!   jobs finish within `shutdown_timeout` (`server`: router, middleware, fallbacks, shutdown).
//! * [`config`] — options, sources and validation ([`Config`]; documented in `api/CONFIG.md`).
//! * [`engine`] — the seam and its data types; [`adapter::build`] — the real engine.
//! * `v2`, `v3`, `ws` — the routes; `openapi` — their document; `http` — what the routes share
//!   (the state, error answers, JSON bodies, blocking engine work).
//! * `job` — request validation and limit resolution; `gate` — the concurrency limit, the bounded
//!   queue and a job's admission (its span, its end in the metrics); `metrics` — Prometheus.
//! * [`signals`] — the signal names of the WebSocket protocol.

pub mod adapter;
pub mod config;
pub mod engine;
mod gate;
mod http;
mod job;
mod metrics;
mod openapi;
mod server;
pub mod signals;
mod v2;
mod v3;
mod ws;

pub use config::Config;
pub use engine::Engine;
pub use http::AppState;
pub use server::{router, serve};
