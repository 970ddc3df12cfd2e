//! stepupd: the step-up authentication daemon and its admin CLI.
//!
//! The daemon answers the PAM module's question "does this transaction need more
//! proof?" from the administrator's policy, runs the challenge, and records
//! everything for auditors. Pure logic (config, policy, glob, sudo command-line
//! parsing, factors) is kept apart from I/O (`context` reads /proc, `store` owns the
//! database, `audit` writes syslog, `ipc` speaks D-Bus) so it can be tested on its own.

pub mod audit;
pub mod config;
pub mod context;
pub mod crypto;
pub mod daemon;
pub mod duration;
pub mod events;
pub mod factors;
pub mod glob;
pub mod ipc;
pub mod network;
pub mod p2p;
pub mod policy;
pub mod recorder;
pub mod report;
pub mod schedule;
pub mod secure_path;
pub mod service;
pub mod simulate;
pub mod ssh_connection;
pub mod sshkey;
pub mod store;
pub mod sudo_args;
pub mod systemd;
