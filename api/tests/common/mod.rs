//! A real server on 127.0.0.1:0 backed by the fake engine, called through test-support's
//! blocking HTTP client.

#![allow(dead_code)]

pub mod fake;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use api::{AppState, Config};
use fake::FakeEngine;
use test_support::Client;

pub struct Server {
    pub addr: SocketAddr,
    pub client: Client,
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
            client: Client::new(addr, None),
            fake,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        }
    }
}

/// The HTTP calls of [`Client`] (`server.get(…)`, `server.post(…)`, …).
impl std::ops::Deref for Server {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
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
