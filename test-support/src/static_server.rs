//! A static file server on 127.0.0.1 serving a folder over real HTTP, as any web server would
//! publish a package repository, with tampering in transit for the integrity tests.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

type Bodies = Arc<Mutex<HashMap<String, Vec<u8>>>>;

/// Serves the files under a folder to `GET /<relative path>` (200 with `Content-Length`, or
/// 404; paths with `..` are not served), one thread per connection, `Connection: close`.
/// Stops accepting when dropped.
#[derive(Debug)]
pub struct StaticServer {
    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub url: String,
    instead: Bodies,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StaticServer {
    pub fn start(root: &Path) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr()?);
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let instead = Bodies::default();
        let (root, flag, bodies) = (root.to_owned(), stop.clone(), instead.clone());
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (root, bodies) = (root.clone(), bodies.clone());
                        std::thread::spawn(move || {
                            let _ = serve(stream, &root, &bodies);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(Self {
            url,
            instead,
            stop,
            thread: Some(thread),
        })
    }

    /// From now on, answers `path` (relative to the folder, e.g. `images/x.sqfs`) with `body`
    /// instead of the file: an image changed, grown or cut short in transit. `Content-Length`
    /// is `body`'s.
    pub fn serve_instead(&self, path: &str, body: Vec<u8>) {
        self.instead
            .lock()
            .unwrap()
            .insert(path.trim_start_matches('/').to_owned(), body);
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(stream: TcpStream, root: &Path, instead: &Bodies) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let path = request
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .trim_start_matches('/');
    let mut out = stream;
    if let Some(body) = instead.lock().unwrap().get(path).cloned() {
        head(&mut out, "200 OK", body.len() as u64)?;
        return out.write_all(&body);
    }
    match file(root, path) {
        Some((mut file, len)) => {
            head(&mut out, "200 OK", len)?;
            std::io::copy(&mut file, &mut out).map(drop)
        }
        None => head(&mut out, "404 Not Found", 0),
    }
}

/// The regular file at `path` under `root` and its length; none for a path leaving `root`.
fn file(root: &Path, path: &str) -> Option<(std::fs::File, u64)> {
    let rel = Path::new(path);
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    let full: PathBuf = root.join(rel);
    let file = std::fs::File::open(full).ok()?;
    let meta = file.metadata().ok()?;
    meta.is_file().then_some((file, meta.len()))
}

fn head(out: &mut TcpStream, status: &str, len: u64) -> std::io::Result<()> {
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(url: &str) -> (u16, Vec<u8>) {
        let mut response = crate::agent(None).get(url).call().unwrap();
        let body = response.body_mut().read_to_vec().unwrap();
        (response.status().as_u16(), body)
    }

    #[test]
    fn serves_files_and_bodies_given_instead() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("images")).unwrap();
        std::fs::write(dir.path().join("images/a.sqfs"), b"image").unwrap();
        std::fs::write(dir.path().join("index.json"), b"{}").unwrap();
        let server = StaticServer::start(dir.path()).unwrap();
        let url = |p: &str| format!("{}/{p}", server.url);
        assert_eq!(get(&url("index.json")), (200, b"{}".to_vec()));
        assert_eq!(get(&url("images/a.sqfs")), (200, b"image".to_vec()));
        assert_eq!(get(&url("images/missing")).0, 404);
        assert_eq!(get(&url("images")).0, 404, "a folder is not a file");
        assert_eq!(get(&url("images/../index.json")).0, 404);

        server.serve_instead("images/a.sqfs", b"tampered".to_vec());
        assert_eq!(get(&url("images/a.sqfs")), (200, b"tampered".to_vec()));
        assert_eq!(get(&url("index.json")), (200, b"{}".to_vec()));
    }
}
