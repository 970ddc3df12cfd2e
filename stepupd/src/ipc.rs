//! D-Bus: the one interface, served on the peer-to-peer socket and the system bus.
//!
//! The system bus is served by zbus (`StepupdInterface`); the socket by the
//! hand-written server in [`crate::p2p`], which calls the same service methods with
//! the same error names. The transport establishes who the caller is: on the socket,
//! the kernel's `SO_PEERCRED` at accept; on the bus, the bus daemon's
//! `GetConnectionCredentials` for the sender. The service then authorizes each method
//! itself.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use stepup_proto::{
    Decision, EvaluateRequest, ExplainRequest, Explanation, FactorInfo, GrantInfo, OBJECT_PATH,
    RespondResult, Status, TotpEnrolment, TotpParams, YubicoOtpCredential,
};
use tokio::net::UnixListener;
use zbus::message::Header;
use zbus::{Connection, fdo, interface};

use crate::audit::{Event, Severity};
use crate::service::{Peer, Service, ServiceError};

/// The exported object on the system bus.
#[derive(Debug, Clone)]
pub struct StepupdInterface {
    service: Arc<Service>,
}

impl StepupdInterface {
    /// The interface over `service`, for the system bus.
    pub fn new(service: Arc<Service>) -> Self {
        StepupdInterface { service }
    }

    /// The caller, as the bus daemon knows it.
    async fn peer(&self, conn: &Connection, header: &Header<'_>) -> fdo::Result<Peer> {
        let sender = header
            .sender()
            .ok_or_else(|| fdo::Error::AccessDenied("message has no sender".into()))?;
        let creds = fdo::DBusProxy::new(conn)
            .await?
            .get_connection_credentials(sender.clone().into())
            .await?;
        match (creds.unix_user_id(), creds.process_id()) {
            (Some(uid), Some(pid)) => Ok(Peer { uid, pid }),
            _ => Err(fdo::Error::AccessDenied(
                "the caller's uid and pid could not be established".into(),
            )),
        }
    }
}

/// The error names and messages [`crate::p2p`] sends too.
pub(crate) fn to_fdo(e: ServiceError) -> fdo::Error {
    match e {
        ServiceError::AccessDenied(m) => fdo::Error::AccessDenied(m),
        ServiceError::InvalidArgs(m) => fdo::Error::InvalidArgs(m),
        ServiceError::Failed(m) => fdo::Error::Failed(m),
    }
}

#[interface(name = "org.stepup.Stepupd1")]
impl StepupdInterface {
    async fn evaluate(
        &self,
        request: EvaluateRequest,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> fdo::Result<Decision> {
        let peer = self.peer(conn, &header).await?;
        self.service.evaluate(peer, &request).map_err(to_fdo)
    }

    async fn respond(
        &self,
        challenge_id: String,
        answer: String,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> fdo::Result<RespondResult> {
        let answer = zeroize::Zeroizing::new(answer);
        let peer = self.peer(conn, &header).await?;
        // A PIV answer waits for a touch: keep it off the async workers.
        let service = self.service.clone();
        tokio::task::spawn_blocking(move || service.respond(peer, &challenge_id, &answer))
            .await
            .map_err(|e| fdo::Error::Failed(e.to_string()))?
            .map_err(to_fdo)
    }

    async fn enroll_totp_begin(
        &self,
        user: String,
        params: TotpParams,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> fdo::Result<TotpEnrolment> {
        let peer = self.peer(conn, &header).await?;
        self.service
            .enroll_totp_begin(peer, &user, &params)
            .map_err(to_fdo)
    }

    async fn enroll_totp_confirm(
        &self,
        enrolment_id: String,
        code: String,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> fdo::Result<i64> {
        let peer = self.peer(conn, &header).await?;
        self.service
            .enroll_totp_confirm(peer, &enrolment_id, &code)
            .map_err(to_fdo)
    }

    async fn enroll_totp(
        &self,
        user: String,
        secret_base32: String,
        params: TotpParams,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> fdo::Result<i64> {
        let secret = zeroize::Zeroizing::new(secret_base32);
        let peer = self.peer(conn, &header).await?;
        self.service
            .enroll_totp(peer, &user, &secret, &params)
            .map_err(to_fdo)
    }

    async fn enroll_yubico_otp(
        &self,
        user: String,
        credential: YubicoOtpCredential,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> fdo::Result<i64> {
        let peer = self.peer(conn, &header).await?;
        self.service
            .enroll_yubico_otp(peer, &user, &credential)
            .map_err(to_fdo)
    }

    async fn enroll_piv(
        &self,
        user: String,
        serial: u32,
        slot: String,
        label: String,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> fdo::Result<i64> {
        let peer = self.peer(conn, &header).await?;
        let service = self.service.clone();
        tokio::task::spawn_blocking(move || service.enroll_piv(peer, &user, serial, &slot, &label))
            .await
            .map_err(|e| fdo::Error::Failed(e.to_string()))?
            .map_err(to_fdo)
    }

    async fn unlock(
        &self,
        user: String,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> fdo::Result<bool> {
        let peer = self.peer(conn, &header).await?;
        self.service.unlock(peer, &user).map_err(to_fdo)
    }

    async fn list_factors(
        &self,
        user: String,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> fdo::Result<Vec<FactorInfo>> {
        let peer = self.peer(conn, &header).await?;
        self.service.list_factors(peer, &user).map_err(to_fdo)
    }

    async fn remove_factor(
        &self,
        id: i64,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> fdo::Result<()> {
        let peer = self.peer(conn, &header).await?;
        self.service.remove_factor(peer, id).map_err(to_fdo)
    }

    async fn explain(
        &self,
        request: ExplainRequest,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> fdo::Result<Explanation> {
        let peer = self.peer(conn, &header).await?;
        self.service.explain(peer, &request).map_err(to_fdo)
    }

    async fn reload(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> fdo::Result<String> {
        let peer = self.peer(conn, &header).await?;
        self.service.reload_method(peer).map_err(to_fdo)
    }

    async fn list_grants(
        &self,
        user: String,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> fdo::Result<Vec<GrantInfo>> {
        let peer = self.peer(conn, &header).await?;
        self.service.list_grants(peer, &user).map_err(to_fdo)
    }

    async fn revoke_grants(
        &self,
        user: String,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> fdo::Result<u32> {
        let peer = self.peer(conn, &header).await?;
        self.service.revoke_grants(peer, &user).map_err(to_fdo)
    }

    async fn event_history(
        &self,
        since: i64,
        after_id: i64,
        limit: u32,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> fdo::Result<Vec<stepup_proto::HistoryEvent>> {
        let peer = self.peer(conn, &header).await?;
        // Waits for the history writer and reads the database: off the async workers.
        let service = self.service.clone();
        tokio::task::spawn_blocking(move || service.event_history(peer, since, after_id, limit))
            .await
            .map_err(|e| fdo::Error::Failed(e.to_string()))?
            .map_err(to_fdo)
    }

    async fn status(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> fdo::Result<Status> {
        let peer = self.peer(conn, &header).await?;
        self.service.status(peer).map_err(to_fdo)
    }
}

/// Errors setting up a transport.
#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    /// The socket path is unsafe or cannot be bound.
    #[error("socket {path}: {message}")]
    Socket {
        /// The socket path.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// D-Bus failed.
    #[error("D-Bus: {0}")]
    Bus(#[from] zbus::Error),
}

/// Binds the peer-to-peer socket safely: the directory is created 0755 root-owned
/// (or must already be root-owned and not writable by others), a stale socket is
/// replaced only if it is a socket, symlinks are refused, and the socket ends 0600.
pub fn bind_socket(path: &Path) -> Result<UnixListener, IpcError> {
    let fail = |message: String| IpcError::Socket {
        path: path.display().to_string(),
        message,
    };
    let dir = path
        .parent()
        .ok_or_else(|| fail("has no parent directory".into()))?;
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(fail(format!("{} is a symlink; refusing it", dir.display())));
        }
        Ok(m) if !m.is_dir() => return Err(fail(format!("{} is not a directory", dir.display()))),
        Ok(m) => {
            // SAFETY: geteuid cannot fail.
            let me = unsafe { libc::geteuid() };
            if m.uid() != me || m.permissions().mode() & 0o022 != 0 {
                return Err(fail(format!(
                    "{} must be owned by uid {me} and not writable by group or others (mode {:o}, owner {})",
                    dir.display(),
                    m.permissions().mode() & 0o7777,
                    m.uid()
                )));
            }
        }
        Err(_) => {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            std::fs::remove_file(path)
                .map_err(|e| fail(format!("cannot remove stale socket: {e}")))?;
        }
        Ok(_) => {
            return Err(fail(
                "exists and is not a socket; refusing to replace it".into(),
            ));
        }
        Err(_) => {}
    }
    // SAFETY: umask only affects this process's creation mask; restored right after.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: restoring the previous mask.
    unsafe { libc::umask(old) };
    let listener = bound.map_err(|e| fail(format!("cannot bind: {e}")))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| fail(format!("cannot chmod: {e}")))?;
    Ok(listener)
}

/// Accepts peer-to-peer connections forever, each served by [`crate::p2p`] (not zbus:
/// a zbus server connection per PAM call cost more than the allow path's budget).
pub async fn serve_socket(listener: UnixListener, service: Arc<Service>) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                service.audit().emit(
                    Severity::Warning,
                    &Event::new("error")
                        .field("what", "accept")
                        .field("error", e.to_string()),
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        // The kernel's word on who connected (as of connect()); a socket that cannot
        // say is dropped.
        let peer = match stream.peer_cred() {
            Ok(c) => match c.pid().and_then(|p| u32::try_from(p).ok()) {
                Some(pid) => Peer { uid: c.uid(), pid },
                None => continue,
            },
            Err(_) => continue,
        };
        tokio::spawn(crate::p2p::serve_connection(stream, peer, service.clone()));
    }
}

/// Serves the interface on the system bus under `org.stepup.Stepupd1`.
pub async fn serve_system_bus(service: Arc<Service>) -> Result<Connection, IpcError> {
    let iface = StepupdInterface::new(service);
    let conn = zbus::connection::Builder::system()
        .name(stepup_proto::BUS_NAME)
        .serve_at(OBJECT_PATH, iface)
        .build()
        .await?;
    Ok(conn)
}
