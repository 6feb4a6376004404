//! The control socket: one JSON object per line each way, over a Unix
//! stream socket (`ike.control_socket`).
//!
//! Requests (`cmd` names the command):
//! `{"cmd":"list-sas"}`, `{"cmd":"initiate","conn":"rw"}`,
//! `{"cmd":"terminate","ike_sa":3}`, `{"cmd":"rekey-child","child_sa":5}`,
//! `{"cmd":"rekey-ike","ike_sa":3}`, `{"cmd":"reload"}`, `{"cmd":"stats"}`.
//! Every answer is `{"ok":true,"data":...}` or `{"ok":false,"error":"..."}`.
//!
//! Guarantees: the socket file is created mode 0600 (it can start and stop
//! tunnels); a malformed request gets an error answer and the connection
//! stays usable; requests are carried out one at a time on the daemon's
//! event loop, so an answer reflects every request before it.
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A command for the daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case", rename_all_fields = "snake_case", deny_unknown_fields)]
pub enum Request {
    ListSas,
    Initiate { conn: String },
    Terminate { ike_sa: u64 },
    RekeyChild { child_sa: u64 },
    RekeyIke { ike_sa: u64 },
    Reload,
    Stats,
    /// `esprit-ctl cluster status`: members, leases, owned IKE SAs.
    ClusterStatus,
    /// `esprit-ctl cluster drain`: no new IKE SA, hand the owned ones over.
    ClusterDrain,
    /// RFC 9838: groups served (GCKS) and joined (GM).
    ListGroups,
    GroupRekey { group: String },
    GroupExclude { group: String, member: String },
}

/// The daemon's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    pub fn ok(data: serde_json::Value) -> Self {
        Self { ok: true, data: Some(data), error: None }
    }

    pub fn err(e: impl ToString) -> Self {
        Self { ok: false, data: None, error: Some(e.to_string()) }
    }
}

/// A request on its way to the event loop, with where to answer.
pub struct ControlRequest {
    pub request: Request,
    pub reply: Sender<Response>,
}

/// Binds `path` (replacing a stale socket file) and serves it on threads,
/// handing each parsed request to `to_loop`: a bounded channel, so a
/// connection waits while it is full (a request is never dropped).
/// The listener stops (and removes the socket file) once `stop` is raised.
pub fn serve(path: &Path, to_loop: crossbeam::channel::Sender<ControlRequest>, stop: Arc<AtomicBool>) -> std::io::Result<JoinHandle<()>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if UnixStream::connect(path).is_ok() {
        return Err(std::io::Error::new(std::io::ErrorKind::AddrInUse, format!("{} is served by another process", path.display())));
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    let path = path.to_path_buf();
    std::thread::Builder::new().name("ike-control".into()).spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((s, _)) => {
                    let tx = to_loop.clone();
                    let _ = std::thread::Builder::new().name("ike-control-conn".into()).spawn(move || {
                        let _ = s.set_nonblocking(false).and_then(|()| serve_conn(s, &tx));
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        let _ = std::fs::remove_file(&path);
    })
}

fn serve_conn(s: UnixStream, to_loop: &crossbeam::channel::Sender<ControlRequest>) -> std::io::Result<()> {
    let mut w = s.try_clone()?;
    for line in BufReader::new(s).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let resp = match serde_json::from_str::<Request>(&line) {
            Err(e) => Response::err(format!("bad request: {e}")),
            Ok(request) => {
                let (tx, rx) = mpsc::channel();
                if to_loop.send(ControlRequest { request, reply: tx }).is_err() {
                    Response::err("the daemon is stopping")
                } else {
                    rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| Response::err("no answer from the event loop"))
                }
            }
        };
        let mut text = serde_json::to_string(&resp).unwrap_or_else(|_| r#"{"ok":false,"error":"unencodable answer"}"#.into());
        text.push('\n');
        w.write_all(text.as_bytes())?;
    }
    Ok(())
}

/// Why a control call failed on the client side.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("control socket {path}: {err}")]
    Io { path: String, err: std::io::Error },
    #[error("bad answer from the daemon: {0}")]
    Decode(String),
}

/// One request, one answer (what esprit-ctl and the tests use).
pub fn call(path: &Path, req: &Request) -> Result<Response, ClientError> {
    let io = |err| ClientError::Io { path: path.display().to_string(), err };
    let mut s = UnixStream::connect(path).map_err(io)?;
    s.set_read_timeout(Some(Duration::from_secs(35))).map_err(io)?;
    let mut line = serde_json::to_string(req).map_err(|e| ClientError::Decode(e.to_string()))?;
    line.push('\n');
    s.write_all(line.as_bytes()).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(s).read_line(&mut answer).map_err(io)?;
    serde_json::from_str(&answer).map_err(|e| ClientError::Decode(format!("{e}: {answer:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_one_line_of_json() {
        for r in [
            Request::ListSas,
            Request::Initiate { conn: "rw".into() },
            Request::Terminate { ike_sa: 3 },
            Request::RekeyChild { child_sa: 5 },
            Request::RekeyIke { ike_sa: 1 },
            Request::Reload,
            Request::Stats,
        ] {
            let s = serde_json::to_string(&r).unwrap();
            assert!(!s.contains('\n'));
            assert_eq!(serde_json::from_str::<Request>(&s).unwrap(), r);
        }
        assert_eq!(serde_json::to_string(&Request::ListSas).unwrap(), r#"{"cmd":"list-sas"}"#);
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"initiate"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"terminate","ike_sa":1,"x":1}"#).is_err());
    }
}
