//! Network blocks from the policy (`[networks.office] cidrs = [...]`) and the remote
//! address sshd hands the module as `PAM_RHOST`.
//!
//! Checks: never a panic; an accepted block prints in a canonical form that parses
//! back to the same block and contains its own network address; an accepted rhost
//! prints as an address that parses back to itself, as a host block that contains it,
//! and is judged the same as its IPv4 form when it is IPv4-mapped.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stepupd::network::{Cidr, parse_rhost};

fuzz_target!(|data: &[u8]| {
    // "BLOCK\nRHOST".
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (block_text, rhost) = text.split_once('\n').unwrap_or((text, text));
    let block = Cidr::parse(block_text);
    if let Ok(c) = &block {
        let printed = c.to_string();
        assert_eq!(Cidr::parse(&printed).as_ref(), Ok(c), "{printed:?}");
        let (addr, _) = printed
            .split_once('/')
            .expect("printed with a prefix length");
        let network = addr.parse().expect("prints a valid address");
        assert!(
            c.contains(network),
            "{printed} does not contain its own address"
        );
    }

    if let Some(addr) = parse_rhost(rhost) {
        let printed = addr.to_string();
        assert_eq!(parse_rhost(&printed), Some(addr), "{printed:?}");
        let host = Cidr::parse(&printed).expect("an address is a host block");
        assert!(host.contains(addr));
        assert_eq!(host.contains(addr), host.contains(addr.to_canonical()));
        if let Ok(c) = &block {
            assert_eq!(c.contains(addr), c.contains(addr.to_canonical()));
        }
    }
});
