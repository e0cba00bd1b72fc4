//! Graceful shutdown: running jobs finish, new connections are refused, the bound holds.

mod common;

use std::time::Duration;

use api::Config;
use common::Server;
use serde_json::json;

fn wait_job() -> serde_json::Value {
    json!({"language": "python", "version": "3.x", "files": [{"content": "wait"}]})
}

fn wait_until_running(server: &Server) {
    while server.get("/healthz").1["jobs_running"] != 1 {
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn running_jobs_finish_and_new_connections_are_refused() {
    let server = std::sync::Arc::new(std::sync::Mutex::new(Server::start()));
    let (addr, fake) = {
        let s = server.lock().unwrap();
        (s.addr, std::sync::Arc::clone(&s.fake))
    };
    let url = format!("http://{addr}/api/v2/execute");
    let request = std::thread::spawn(move || {
        let agent = test_support::agent(None);
        let mut response = agent
            .post(&url)
            .header("content-type", "application/json")
            .send(wait_job().to_string())
            .unwrap();
        (
            response.status().as_u16(),
            response.body_mut().read_to_string().unwrap(),
        )
    });
    wait_until_running(&server.lock().unwrap());
    server.lock().unwrap().begin_shutdown();
    // The listener closes: new connections are refused while the job still runs.
    let mut refused = false;
    for _ in 0..200 {
        if std::net::TcpStream::connect(addr).is_err() {
            refused = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(refused, "the listener should close on shutdown");
    fake.release();
    let (status, body) = request.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("released"), "{body}");
    server.lock().unwrap().join();
}

#[test]
fn shutdown_is_bounded() {
    let config = Config {
        shutdown_timeout: 200,
        ..Config::default()
    };
    let mut server = Server::with_config(config);
    let (addr, fake) = (server.addr, std::sync::Arc::clone(&server.fake));
    let request = std::thread::spawn(move || {
        let agent = test_support::agent(None);
        let _ = agent
            .post(format!("http://{addr}/api/v2/execute"))
            .header("content-type", "application/json")
            .send(wait_job().to_string());
    });
    wait_until_running(&server);
    // The job never finishes on its own; the server still stops.
    server.join();
    fake.release();
    request.join().unwrap();
}
