//! The module fails closed whatever answers on its socket: an impostor that sends
//! garbage, one that accepts and says nothing, one that hangs up at once. Each time
//! the real `pam_stepup.so` in real libpam must return the failmode result within its
//! deadline (secure: deny; safe: ignore, which a stepup-only stack turns into an
//! error) and never success. Runs as any user: no daemon is involved.

mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use support::{
    Harness, PAM_AUTH_ERR, PAM_PERM_DENIED, PAM_SUCCESS, PamConfDir, stepup_args,
    stepup_only_stack, temp_dir,
};

/// How an impostor treats each connection.
#[derive(Clone, Copy, Debug)]
enum Impostor {
    /// Writes bytes that are not a D-Bus handshake, then waits.
    Garbage,
    /// Reads whatever comes and never answers.
    Silent,
    /// Closes the connection at once.
    HangUp,
}

/// Serves `socket` in a thread until the returned guard is dropped.
struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(socket: &Path, how: Impostor) -> Server {
    let listener = UnixListener::bind(socket).expect("bind the impostor socket");
    listener.set_nonblocking(true).expect("non-blocking");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        let mut held = Vec::new();
        while !flag.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((mut conn, _)) => match how {
                    Impostor::Garbage => {
                        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\n\r\n\x00\xff\xfe garbage\n");
                        held.push(conn);
                    }
                    Impostor::Silent => {
                        let _ = conn.set_nonblocking(true);
                        let mut buf = [0u8; 256];
                        let _ = conn.read(&mut buf);
                        held.push(conn);
                    }
                    Impostor::HangUp => drop(conn),
                },
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    Server {
        stop,
        thread: Some(thread),
    }
}

#[test]
fn an_impostor_on_the_socket_never_gets_a_login_through() {
    for how in [Impostor::Garbage, Impostor::Silent, Impostor::HangUp] {
        let dir = temp_dir();
        let socket = dir.path().join("pam.sock");
        let _server = serve(&socket, how);
        let pam = PamConfDir::new(dir.path());
        let socket_text = socket.display().to_string();
        for (failmode, phase, expected) in [
            ("secure", "account", Some(PAM_PERM_DENIED)),
            ("secure", "auth", Some(PAM_AUTH_ERR)),
            // PAM_IGNORE from the only module: libpam reports an error, not success.
            ("safe", "account", None),
        ] {
            let service = format!("impostor-{failmode}");
            pam.write(
                &service,
                &stepup_only_stack(&stepup_args(Path::new(&socket_text), 400, failmode)),
            );
            let run = Harness::new(&pam, &service).phase(phase).run();
            let code = run.out.code.unwrap_or(-1);
            assert_ne!(
                code,
                PAM_SUCCESS,
                "{how:?} {failmode}: never success\n{}",
                run.transcript()
            );
            if let Some(expected) = expected {
                run.assert_results(&[(phase, expected)]);
            }
            assert!(
                run.prompts().is_empty(),
                "{how:?}: nothing asked\n{}",
                run.transcript()
            );
            // A hang check, not a performance figure: timeout_ms=400.
            assert!(
                run.out.elapsed < Duration::from_secs(5),
                "{how:?} {failmode}: took {:?}",
                run.out.elapsed
            );
        }
    }
}
