//! A real server on 127.0.0.1:0 backed by the fake engine, and a small blocking HTTP client.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use api::fake::FakeEngine;
use api::{AppState, Config};
use serde_json::Value;

pub struct Server {
    pub addr: SocketAddr,
    pub fake: Arc<FakeEngine>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start() -> Self {
        Self::with_config(Config {
            shutdown_timeout: 2000,
            ..Config::default()
        })
    }

    pub fn with_config(config: Config) -> Self {
        let fake = Arc::new(FakeEngine::new());
        let engine: Arc<dyn api::Engine> = fake.clone();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let state = AppState::new(engine, config);
                api::serve(listener, state, async move {
                    let _ = shutdown_rx.await;
                })
                .await
                .unwrap();
            });
            runtime.shutdown_timeout(std::time::Duration::from_millis(100));
        });
        let addr = addr_rx.recv().unwrap();
        Self {
            addr,
            fake,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into()
    }

    fn finish(mut response: ureq::http::Response<ureq::Body>) -> (u16, String) {
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap();
        (status, body)
    }

    /// GET: status and body text.
    pub fn get_text(&self, path: &str) -> (u16, String) {
        Self::finish(Self::agent().get(self.url(path)).call().unwrap())
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        let (status, body) = self.get_text(path);
        (
            status,
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}")),
        )
    }

    /// A request with a body and content type.
    pub fn send_raw(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &str,
    ) -> (u16, Value) {
        let agent = Self::agent();
        let url = self.url(path);
        let response = match method {
            "POST" => agent
                .post(&url)
                .header("content-type", content_type)
                .send(body),
            "DELETE" => agent
                .delete(&url)
                .header("content-type", content_type)
                .force_send_body()
                .send(body),
            other => panic!("method {other}"),
        }
        .unwrap();
        let (status, text) = Self::finish(response);
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {status} {text:?}")),
        )
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send_raw("POST", path, "application/json", &body.to_string())
    }

    pub fn delete(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send_raw("DELETE", path, "application/json", &body.to_string())
    }

    /// A POST without body or content type (the v3 routes).
    pub fn post_empty(&self, path: &str) -> (u16, Value) {
        let response = Self::agent().post(self.url(path)).send_empty().unwrap();
        let (status, text) = Self::finish(response);
        (status, serde_json::from_str(&text).unwrap())
    }

    pub fn delete_empty(&self, path: &str) -> (u16, Value) {
        let response = Self::agent().delete(self.url(path)).call().unwrap();
        let (status, text) = Self::finish(response);
        (status, serde_json::from_str(&text).unwrap())
    }
}

impl Server {
    /// Signals shutdown (as SIGTERM does) without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Waits until the server has stopped (without releasing held fake jobs).
    pub fn join(&mut self) {
        self.begin_shutdown();
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.fake.release();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
