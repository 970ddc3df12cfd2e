//! The daemon client used inside the host process (sudo, sshd).
//!
//! A current-thread tokio runtime is built for the one PAM call, the peer-to-peer
//! connection is made on it, and both are dropped before the hook returns: no thread,
//! fd or signal handler outlives the call in the host process. Every D-Bus step has
//! its own deadline; the PAM conversation runs between steps on the same connection.

use std::path::Path;
use std::time::Duration;

use stepup_proto::{Decision, EvaluateRequest, RespondResult, StepupdProxy};

use crate::flow::{ClientError, Daemon};

/// A connection to stepupd over its socket.
pub struct DbusDaemon {
    runtime: tokio::runtime::Runtime,
    conn: Option<zbus::Connection>,
    socket: std::path::PathBuf,
}

impl DbusDaemon {
    /// Prepares a client for `socket`; nothing is connected until the first call.
    pub fn new(socket: &Path) -> Result<DbusDaemon, ClientError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| ClientError::Unreachable(format!("cannot start a runtime: {e}")))?;
        Ok(DbusDaemon {
            runtime,
            conn: None,
            socket: socket.to_path_buf(),
        })
    }

    fn call<T, F>(&mut self, deadline: Duration, f: F) -> Result<T, ClientError>
    where
        F: AsyncFnOnce(&zbus::Connection) -> Result<T, ClientError>,
    {
        let socket = self.socket.clone();
        let conn_slot = &mut self.conn;
        self.runtime.block_on(async move {
            let work = async {
                if conn_slot.is_none() {
                    let stream = tokio::net::UnixStream::connect(&socket)
                        .await
                        .map_err(|e| {
                            ClientError::Unreachable(format!(
                                "cannot connect to {}: {e}",
                                socket.display()
                            ))
                        })?;
                    let stream = stream
                        .into_std()
                        .map_err(|e| ClientError::Unreachable(e.to_string()))?;
                    let conn = zbus::connection::Builder::unix_stream(stream)
                        .p2p()
                        .build()
                        .await
                        .map_err(|e| {
                            ClientError::Unreachable(format!("D-Bus handshake failed: {e}"))
                        })?;
                    *conn_slot = Some(conn);
                }
                match conn_slot.as_ref() {
                    Some(conn) => f(conn).await,
                    None => Err(ClientError::Unreachable("not connected".into())),
                }
            };
            match tokio::time::timeout(deadline, work).await {
                Ok(r) => r,
                Err(_) => Err(ClientError::Timeout(deadline)),
            }
        })
    }
}

async fn proxy(conn: &zbus::Connection) -> Result<StepupdProxy<'_>, ClientError> {
    StepupdProxy::builder(conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .map_err(|e| ClientError::Protocol(e.to_string()))
}

fn map_call_error(e: zbus::Error) -> ClientError {
    match e {
        zbus::Error::MethodError(name, msg, _) => {
            ClientError::Refused(format!("{}: {}", name.as_str(), msg.unwrap_or_default()))
        }
        other => ClientError::Protocol(other.to_string()),
    }
}

impl Daemon for DbusDaemon {
    fn evaluate(
        &mut self,
        request: &EvaluateRequest,
        deadline: Duration,
    ) -> Result<Decision, ClientError> {
        let request = request.clone();
        self.call(deadline, async move |conn: &zbus::Connection| {
            proxy(conn)
                .await?
                .evaluate(&request)
                .await
                .map_err(map_call_error)
        })
    }

    fn respond(
        &mut self,
        challenge_id: &str,
        answer: &str,
        deadline: Duration,
    ) -> Result<RespondResult, ClientError> {
        let id = challenge_id.to_string();
        let answer = zeroize::Zeroizing::new(answer.to_string());
        self.call(deadline, async move |conn: &zbus::Connection| {
            proxy(conn)
                .await?
                .respond(&id, &answer)
                .await
                .map_err(map_call_error)
        })
    }
}

impl Drop for DbusDaemon {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Close on the runtime that owns the connection's tasks, so nothing is
            // left for a runtime that no longer exists.
            let _ = self.runtime.block_on(async {
                tokio::time::timeout(Duration::from_millis(100), conn.close()).await
            });
        }
    }
}
