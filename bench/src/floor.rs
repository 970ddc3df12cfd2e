//! The floor: what a round trip costs with no policy work at all, served by a child
//! process built like stepupd (tokio, two workers). `raw.sock` is a bare Unix socket
//! (accept, read one byte, write one byte, close); `dbus.sock` is a zbus peer-to-peer
//! server whose `Evaluate` answers "allow" at once, set up per connection as stepupd's
//! `serve_socket` did before it served the socket by hand (stepupd/src/p2p.rs): kept
//! as the reference the hand-written server is compared with. The module's own client
//! calls it.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use stepup_proto::{Decision, EvaluateRequest, OBJECT_PATH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

struct Trivial;

#[zbus::interface(name = "org.stepup.Stepupd1")]
impl Trivial {
    async fn evaluate(&self, _request: EvaluateRequest) -> zbus::fdo::Result<Decision> {
        Ok(Decision {
            outcome: stepup_proto::outcome::ALLOW.into(),
            ..Decision::default()
        })
    }
}

/// Serves `<dir>/raw.sock` and `<dir>/dbus.sock` until killed; prints `ready` once
/// both are bound.
pub fn serve(dir: &Path) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let raw = UnixListener::bind(dir.join("raw.sock")).map_err(|e| e.to_string())?;
        let dbus = UnixListener::bind(dir.join("dbus.sock")).map_err(|e| e.to_string())?;
        println!("ready");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = raw.accept().await {
                tokio::spawn(async move {
                    let mut b = [0u8; 1];
                    if s.read_exact(&mut b).await.is_ok() {
                        let _ = s.write_all(&b).await;
                    }
                });
            }
        });
        while let Ok((s, _)) = dbus.accept().await {
            tokio::spawn(async move {
                let Ok(std_stream) = s.into_std() else {
                    return;
                };
                let built = zbus::connection::Builder::unix_stream(std_stream)
                    .server(zbus::Guid::generate())
                    .p2p()
                    .serve_at(OBJECT_PATH, Trivial)
                    .build();
                if let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_secs(10), built).await {
                    conn.closed().await;
                }
            });
        }
        Ok(())
    })
}

/// One bare round trip on `raw.sock`: connect, one byte each way, close.
pub fn raw_round_trip(socket: &Path) -> Result<Duration, String> {
    let start = Instant::now();
    let mut s = UnixStream::connect(socket).map_err(|e| format!("{}: {e}", socket.display()))?;
    s.write_all(b"x").map_err(|e| e.to_string())?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b).map_err(|e| e.to_string())?;
    drop(s);
    Ok(start.elapsed())
}
