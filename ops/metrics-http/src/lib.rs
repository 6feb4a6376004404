//! The `/metrics` endpoint of both esprit processes, on `tiny_http`.
//!
//! `GET /metrics` (or `HEAD`) answers with whatever the render function
//! returns, as the Prometheus text exposition format 0.0.4; every other
//! path is a 404 that names the right one. The server runs on its own
//! threads and stops when dropped.
//!
//! This is a library both binaries link: it shares code, not state. At run
//! time the dataplane and the control plane still share only the SA table.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

/// The content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A running `/metrics` listener; dropping it stops it and frees the port.
pub struct MetricsServer {
    addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `addr` (port 0 picks a free one) and serves `render()` on
    /// `GET /metrics` from a thread called `name`.
    pub fn start<F>(addr: SocketAddr, name: &str, render: F) -> std::io::Result<MetricsServer>
    where
        F: Fn() -> String + Send + 'static,
    {
        let server = Arc::new(tiny_http::Server::http(addr).map_err(std::io::Error::other)?);
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| std::io::Error::other("metrics listener has no IP address"))?;
        let srv = server.clone();
        let who = name.to_string();
        let thread = std::thread::Builder::new().name(name.into()).spawn(move || {
            // Ends when `unblock` is called on drop.
            for req in srv.incoming_requests() {
                let _ = answer(req, &who, &render);
            }
        })?;
        Ok(MetricsServer { addr, server, thread: Some(thread) })
    }

    /// The bound address (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

fn answer(req: tiny_http::Request, who: &str, render: &dyn Fn() -> String) -> std::io::Result<()> {
    use tiny_http::{Header, Method, Response};
    let path = req.url().split('?').next().unwrap_or("");
    let ok = matches!(req.method(), Method::Get | Method::Head) && path == "/metrics";
    let (code, ctype, body) = if ok {
        (200, CONTENT_TYPE, render())
    } else {
        (404, "text/plain; charset=utf-8", format!("{who}: try GET /metrics\n"))
    };
    let header = Header::from_bytes("Content-Type", ctype).expect("a valid header");
    req.respond(Response::from_string(body).with_status_code(code).with_header(header))
}

/// One scrape: `GET /metrics` from `addr`, the body if the answer is 200.
/// For clients of the endpoint (`esprit-ctl top`, tests); the server is
/// tiny_http, the client this plain HTTP/1.0 exchange (a request line and a
/// read to the end: nothing an HTTP client library would add is needed).
pub fn scrape(addr: SocketAddr, timeout: std::time::Duration) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: esprit\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8(raw).map_err(|_| std::io::Error::other("metrics are not UTF-8"))?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| std::io::Error::other("no HTTP header end"))?;
    let status = head.lines().next().unwrap_or("");
    if status.split(' ').nth(1) != Some("200") {
        return Err(std::io::Error::other(format!("{addr}: {status}")));
    }
    Ok(body.to_string())
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    fn get(addr: SocketAddr, line: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "{line} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_metrics_and_404_elsewhere_and_frees_the_port_on_drop() {
        let n = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let n2 = n.clone();
        let srv = MetricsServer::start("127.0.0.1:0".parse().unwrap(), "test-metrics", move || {
            format!("# TYPE x_total counter\nx_total {}\n", n2.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
        })
        .unwrap();
        let addr = srv.local_addr();
        assert_ne!(addr.port(), 0);
        let r = get(addr, "GET /metrics");
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(r.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"), "{r}");
        assert!(r.ends_with("x_total 0\n"), "{r}");
        assert!(get(addr, "GET /metrics?x=1").ends_with("x_total 1\n"), "a query string is ignored");
        let r = get(addr, "GET /");
        assert!(r.starts_with("HTTP/1.1 404") && r.contains("test-metrics: try GET /metrics"), "{r}");
        assert!(get(addr, "POST /metrics").starts_with("HTTP/1.1 404"));
        assert_eq!(scrape(addr, std::time::Duration::from_secs(2)).unwrap(), "# TYPE x_total counter\nx_total 2\n");
        drop(srv);
        // The listener is closed: the same port binds again. tiny_http's
        // accept thread lets the socket go once it wakes from accept(),
        // which on a loaded machine can take a moment: wait up to 5 s.
        let t0 = std::time::Instant::now();
        loop {
            match std::net::TcpListener::bind(addr) {
                Ok(_) => break,
                Err(_) if t0.elapsed() < std::time::Duration::from_secs(5) => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("port still taken 5 s after drop: {e}"),
            }
        }
    }
}
