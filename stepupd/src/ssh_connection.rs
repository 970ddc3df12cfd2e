//! Checks a claimed ssh login (`SSH_CONNECTION`) against the kernel's TCP table.
//!
//! sudo inherits `SSH_CONNECTION` ("client-address client-port server-address
//! server-port") from the ssh session, but it is an environment variable: the user can
//! write anything into it. Where the client address decides something that reaches
//! beyond this host (a fleet-scope grant is found by it on every host), the claim is
//! believed only if this host has that very TCP connection established, with the
//! server end owned by root as sshd's is. A user cannot make a connection from
//! another machine's address appear, so a forged value names no live login.
//!
//! The table is read from `/proc/<pid>/net/tcp` and `tcp6` of the caller, so it is
//! the caller's network namespace that is searched even when stepupd runs with a
//! private network of its own.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A parsed `SSH_CONNECTION` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SshConnection {
    /// The ssh client's address (canonical: an IPv4-mapped address is its IPv4 form).
    pub client: IpAddr,
    /// The client's port.
    pub client_port: u16,
    /// The address sshd accepted the connection on.
    pub server: IpAddr,
    /// sshd's port.
    pub server_port: u16,
}

impl SshConnection {
    /// Parses "client-address client-port server-address server-port"; `None` for
    /// anything else (a different number of fields, a bad address or port).
    pub fn parse(text: &str) -> Option<SshConnection> {
        let mut fields = text.split_ascii_whitespace();
        let client = crate::network::parse_rhost(fields.next()?)?.to_canonical();
        let client_port = fields.next()?.parse().ok()?;
        let server = crate::network::parse_rhost(fields.next()?)?.to_canonical();
        let server_port = fields.next()?.parse().ok()?;
        if fields.next().is_some() {
            return None;
        }
        Some(SshConnection {
            client,
            client_port,
            server,
            server_port,
        })
    }

    /// Whether `table` (the text of `/proc/net/tcp` or `/proc/net/tcp6`) holds this
    /// connection as seen by the server: local end the server address and port,
    /// remote end the client's, established, the socket owned by root.
    pub fn is_in_tcp_table(&self, table: &str) -> bool {
        table.lines().skip(1).any(|line| {
            TcpRow::parse(line).is_some_and(|row| {
                row.state == TCP_ESTABLISHED
                    && row.uid == 0
                    && row.local == (self.server, self.server_port)
                    && row.remote == (self.client, self.client_port)
            })
        })
    }

    /// Whether the network namespace of process `pid` has this connection
    /// established (see [`SshConnection::is_in_tcp_table`]). Unreadable tables count
    /// as not having it.
    pub fn is_live_for(&self, pid: u32) -> bool {
        ["tcp", "tcp6"].iter().any(|name| {
            std::fs::read_to_string(format!("/proc/{pid}/net/{name}"))
                .is_ok_and(|table| self.is_in_tcp_table(&table))
        })
    }
}

/// `st` of an established connection in /proc/net/tcp.
const TCP_ESTABLISHED: u8 = 0x01;

/// The columns of one /proc/net/tcp row that matter here.
struct TcpRow {
    local: (IpAddr, u16),
    remote: (IpAddr, u16),
    state: u8,
    uid: u32,
}

impl TcpRow {
    /// "  sl  local_address rem_address   st tx_queue:rx_queue tr:tm->when retrnsmt uid …"
    fn parse(line: &str) -> Option<TcpRow> {
        let mut cols = line.split_ascii_whitespace();
        cols.next()?; // sl
        let local = endpoint(cols.next()?)?;
        let remote = endpoint(cols.next()?)?;
        let state = u8::from_str_radix(cols.next()?, 16).ok()?;
        let uid = cols.nth(3)?.parse().ok()?;
        Some(TcpRow {
            local,
            remote,
            state,
            uid,
        })
    }
}

/// "0100007F:0016" (IPv4) or 32 hex digits ":" port (IPv6). The kernel prints each
/// 32-bit word of the address as the number it is in memory, so the bytes of each
/// word come out in native order; the port is printed as a plain number.
fn endpoint(text: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    if !addr.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let word = |i: usize| -> Option<[u8; 4]> {
        Some(
            u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16)
                .ok()?
                .to_ne_bytes(),
        )
    };
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes)).to_canonical()
        }
        _ => return None,
    };
    Some((ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The /proc/net/tcp text of `rows` (local, remote, state, uid), printed the
    /// way the kernel prints it on this machine.
    fn table(rows: &[(&str, u16, &str, u16, u8, u32)]) -> String {
        fn hex(ip: &str) -> String {
            match ip.parse::<IpAddr>().unwrap() {
                IpAddr::V4(a) => format!("{:08X}", u32::from_ne_bytes(a.octets())),
                IpAddr::V6(a) => a
                    .octets()
                    .chunks(4)
                    .map(|w| format!("{:08X}", u32::from_ne_bytes(w.try_into().unwrap())))
                    .collect(),
            }
        }
        let mut out = String::from(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n",
        );
        for (i, (l, lp, r, rp, st, uid)) in rows.iter().enumerate() {
            out.push_str(&format!(
                "{i:4}: {}:{lp:04X} {}:{rp:04X} {st:02X} 00000000:00000000 00:00000000 00000000 {uid:5}        0 {} 1 0000000000000000 20 4 30 10 -1\n",
                hex(l),
                hex(r),
                1000 + i
            ));
        }
        out
    }

    #[test]
    fn ssh_connection_is_four_fields_of_addresses_and_ports() {
        let c = SshConnection::parse("192.0.2.7 50122 10.0.0.1 22").unwrap();
        assert_eq!(c.client, "192.0.2.7".parse::<IpAddr>().unwrap());
        assert_eq!((c.client_port, c.server_port), (50122, 22));
        let mapped = SshConnection::parse("::ffff:192.0.2.7 50122 2001:db8::1 22").unwrap();
        assert_eq!(mapped.client, "192.0.2.7".parse::<IpAddr>().unwrap());
        for bad in [
            "",
            "192.0.2.7 50122 10.0.0.1",
            "192.0.2.7 50122 10.0.0.1 22 extra",
            "192.0.2.7 70000 10.0.0.1 22",
            "host.example 50122 10.0.0.1 22",
            "192.0.2.7 -1 10.0.0.1 22",
        ] {
            assert_eq!(SshConnection::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn only_an_established_root_owned_server_end_with_both_endpoints_counts() {
        let c = SshConnection::parse("192.0.2.7 50122 10.0.0.1 22").unwrap();
        let live = ("10.0.0.1", 22, "192.0.2.7", 50122, TCP_ESTABLISHED, 0);
        assert!(c.is_in_tcp_table(&table(&[live])));
        let mut listening = live;
        listening.4 = 0x0A;
        let mut users_own = live;
        users_own.5 = 1000;
        let mut other_port = live;
        other_port.3 = 50123;
        let mut other_client = live;
        other_client.2 = "192.0.2.8";
        let client_end = ("192.0.2.7", 50122, "10.0.0.1", 22, TCP_ESTABLISHED, 0);
        for (what, row) in [
            ("listening", listening),
            ("owned by a user", users_own),
            ("another client port", other_port),
            ("another client", other_client),
            ("the client's end", client_end),
        ] {
            assert!(!c.is_in_tcp_table(&table(&[row])), "{what}");
        }
        assert!(!c.is_in_tcp_table(""), "an empty table");
        assert!(
            c.is_in_tcp_table(&table(&[listening, users_own, live])),
            "found among others"
        );
    }

    #[test]
    fn ipv6_rows_and_ipv4_mapped_clients_are_read() {
        let c = SshConnection::parse("2001:db8::7 40000 2001:db8::1 22").unwrap();
        let row = ("2001:db8::1", 22, "2001:db8::7", 40000, TCP_ESTABLISHED, 0);
        assert!(c.is_in_tcp_table(&table(&[row])));
        // A dual-stack sshd socket shows an IPv4 client as mapped; sshd itself
        // reports the plain IPv4 address.
        let v4 = SshConnection::parse("192.0.2.7 40000 10.0.0.1 22").unwrap();
        let mapped = (
            "::ffff:10.0.0.1",
            22,
            "::ffff:192.0.2.7",
            40000,
            TCP_ESTABLISHED,
            0,
        );
        assert!(v4.is_in_tcp_table(&table(&[mapped])));
    }

    #[test]
    fn garbage_rows_are_skipped_not_trusted() {
        let c = SshConnection::parse("192.0.2.7 50122 10.0.0.1 22").unwrap();
        let good = table(&[("10.0.0.1", 22, "192.0.2.7", 50122, TCP_ESTABLISHED, 0)]);
        let row = good.lines().nth(1).unwrap();
        for bad in [
            row.replacen(":0016", ":ZZZZ", 1),
            row.replacen("0100000A", "0100000", 1),
            row.split_whitespace().take(5).collect::<Vec<_>>().join(" "),
            "header\n".into(),
        ] {
            assert!(!c.is_in_tcp_table(&format!("header\n{bad}\n")), "{bad}");
        }
    }

    #[test]
    fn a_connection_of_this_process_is_seen_as_live_and_a_made_up_one_is_not() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let claim = format!(
            "127.0.0.1 {} 127.0.0.1 {}",
            client.local_addr().unwrap().port(),
            listener.local_addr().unwrap().port()
        );
        let c = SshConnection::parse(&claim).unwrap();
        let me = std::process::id();
        // SAFETY: geteuid cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        assert_eq!(
            c.is_live_for(me),
            root,
            "live only when the socket is root's"
        );
        let made_up = SshConnection {
            client_port: c.client_port.wrapping_add(1),
            ..c
        };
        assert!(!made_up.is_live_for(me));
    }
}
