//! The event catalogue: every event type stepupd writes, with its journal
//! `MESSAGE_ID`. docs/audit.md documents the fields of each; a test checks that every
//! `Event::new("…")` in the daemon's source is listed here and in that document.
//!
//! Version 1 of the catalogue. Field names and MESSAGE_IDs are stable within a
//! version: a rename or a change of meaning bumps `v=` in every record; adding an
//! event type or an optional field does not.

/// The catalogue version, written as `v=` in every record.
pub const VERSION: u32 = 1;

/// One event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventType {
    /// The `event=` value.
    pub name: &'static str,
    /// The journal MESSAGE_ID (128 bits, hex), fixed for the name.
    pub message_id: &'static str,
}

/// Every event type stepupd writes.
pub const EVENTS: &[EventType] = &[
    EventType {
        name: "daemon_start",
        message_id: "2aa9ea1492bd146306c78d3e387acfee",
    },
    EventType {
        name: "daemon_stop",
        message_id: "1ddc6957f02bc574e8b7c479be01a4f5",
    },
    EventType {
        name: "audit_start",
        message_id: "b6db8e7b2a23395077b609e129eea8bc",
    },
    EventType {
        name: "audit_overflow",
        message_id: "4ba37032c988bfe1e14fffb260f8f926",
    },
    EventType {
        name: "config_loaded",
        message_id: "c21b98bcf2f6d341614d6385e197a547",
    },
    EventType {
        name: "config_rejected",
        message_id: "a76e0444a9e6f763210f11499996fc44",
    },
    EventType {
        name: "bus_unavailable",
        message_id: "e2ce689065bdfe4bb5215ccd0f4ef0ba",
    },
    EventType {
        name: "decision",
        message_id: "87ec120ca8838eb5b765089980b591dc",
    },
    EventType {
        name: "verify",
        message_id: "221e5029e2f6ac7d00de91e5a1199c4c",
    },
    EventType {
        name: "lockout",
        message_id: "e21772bb85f839ada4e215b474a2195f",
    },
    EventType {
        name: "unlock",
        message_id: "a1d3a32b609afe6a435b8eafa4919bf1",
    },
    EventType {
        name: "enrol",
        message_id: "2eeca2afc151fa6951ec23384b371cdb",
    },
    EventType {
        name: "factor_removed",
        message_id: "2d2548546b15f845635ebce7fbe584af",
    },
    EventType {
        name: "grant_created",
        message_id: "74a7a0acdf753f2d7dae539eac5903aa",
    },
    EventType {
        name: "grant_expired",
        message_id: "f2e4d03b89dfffd4996b75f4c2ebc5bc",
    },
    EventType {
        name: "grant_revoked",
        message_id: "921773acbeb6c343679f63e138b50e4e",
    },
    EventType {
        name: "access_denied",
        message_id: "897efae28003ff84d5092fe0bba6f63a",
    },
    EventType {
        name: "bad_request",
        message_id: "ece1571a83d4f4ad4e6bec1e639bbd52",
    },
    EventType {
        name: "error",
        message_id: "fb855593b72e847c94258e21be362b9c",
    },
];

/// Events the PAM module writes through `pam_syslog` (no chain, no MESSAGE_ID: the
/// module holds no key and speaks plain syslog from inside sudo or sshd).
pub const MODULE_EVENTS: &[&str] = &["failmode", "bad_input", "challenge_unanswered"];

/// Field names every chained record ends with, in this order.
pub const TRAILER: &[&str] = &["v", "time", "epoch", "seq", "mac"];

/// The MESSAGE_ID of an event type, if it is in the catalogue.
pub fn message_id(name: &str) -> Option<&'static str> {
    EVENTS.iter().find(|e| e.name == name).map(|e| e.message_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_distinct_128_bit_hex() {
        let mut seen = std::collections::HashSet::new();
        for e in EVENTS {
            assert_eq!(e.message_id.len(), 32, "{}", e.name);
            assert!(e.message_id.bytes().all(|b| b.is_ascii_hexdigit()));
            assert!(seen.insert(e.message_id), "{} reuses an id", e.name);
        }
    }

    /// Every `Event::new("…")` in the daemon's sources (and the kinds passed to the
    /// decision builder) is in the catalogue, and every catalogue entry is documented in
    /// docs/audit.md with its MESSAGE_ID.
    #[test]
    fn every_event_the_daemon_writes_is_catalogued_and_documented() {
        let sources = [
            include_str!("../service.rs"),
            include_str!("../daemon.rs"),
            include_str!("mod.rs"),
            include_str!("writer.rs"),
        ];
        let mut names = std::collections::BTreeSet::new();
        for src in sources {
            // Events made up by unit tests do not count.
            let src = src.split("#[cfg(test)]").next().unwrap_or(src);
            for marker in ["Event::new(\"", "base_event(\"", "grant_event(\""] {
                for part in src.split(marker).skip(1) {
                    if let Some(end) = part.find('"') {
                        names.insert(part[..end].to_string());
                    }
                }
            }
        }
        assert!(names.contains("decision") && names.contains("daemon_start"));
        let doc = include_str!("../../../docs/audit.md");
        for name in &names {
            assert!(
                message_id(name).is_some(),
                "event {name:?} is written but not in the catalogue"
            );
        }
        for e in EVENTS {
            assert!(
                doc.contains(&format!("### `{}`", e.name)),
                "docs/audit.md has no section for {}",
                e.name
            );
            assert!(
                doc.contains(e.message_id),
                "docs/audit.md does not list the MESSAGE_ID of {}",
                e.name
            );
        }
        for name in MODULE_EVENTS {
            assert!(doc.contains(&format!("### `{name}`")), "{name}");
        }
        for key in TRAILER {
            assert!(
                !sources
                    .iter()
                    .any(|s| s.contains(&format!(".field(\"{key}\""))),
                "an event field named {key:?} would collide with the chain trailer"
            );
        }
    }
}
