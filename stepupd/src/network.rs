//! Named networks for `origin` conditions: CIDR blocks and the client address.
//!
//! A network is a list of CIDR blocks (`10.1.0.0/16`, `2001:db8:1::/48`, or a bare
//! address meaning that one host). Blocks must be written as networks: an address with
//! host bits set (`10.1.2.3/16`) is a config error whose message names the block the
//! admin probably meant, because silently masking it would hide a typo.
//!
//! IPv4 and IPv6 are kept apart, with one exception: sshd on a dual-stack socket reports
//! IPv4 clients as IPv4-mapped IPv6 addresses (`::ffff:10.1.2.3`), and those are
//! IPv4 clients, so they are matched as the IPv4 address they carry. Likewise a block
//! written inside the mapped range (`::ffff:10.0.0.0/104`) is read as the IPv4 block it
//! describes (`10.0.0.0/8`). Apart from that, an IPv4 client never matches an IPv6
//! block and an IPv6 client never matches an IPv4 block; in particular `::/0` means
//! "every IPv6 client" and does not cover IPv4 clients (add `0.0.0.0/0` for those).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One CIDR block, IPv4 or IPv6.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cidr {
    /// The network address: host bits are always zero. Never an IPv4-mapped IPv6
    /// block (those are stored as the IPv4 block they describe).
    addr: IpAddr,
    /// Prefix length: at most 32 for IPv4, 128 for IPv6.
    len: u8,
}

impl Cidr {
    /// Parses "10.1.0.0/16", "2001:db8:1::/48", or a bare address (= /32 or /128).
    /// Host bits set is an error naming the network the admin probably meant:
    /// `10.1.2.3/16 has host bits set; write 10.1.0.0/16`. Bad prefix lengths, bad
    /// addresses, spaces: errors saying so.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        if text.trim().is_empty() {
            return Err(
                "empty network; write a block such as \"10.1.0.0/16\" or \"2001:db8::/48\", \
                 or a bare address for a single host"
                    .into(),
            );
        }
        if text.chars().any(char::is_whitespace) {
            let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            return Err(match Cidr::parse(&compact) {
                Ok(_) => format!("{text:?} contains spaces; write {compact:?}"),
                Err(_) => format!(
                    "{text:?} contains spaces; write the block without them, \
                     e.g. \"10.1.0.0/16\""
                ),
            });
        }
        let (addr_text, len_text) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        if addr_text.is_empty() {
            return Err(format!(
                "{text:?} has no address before the '/'; write e.g. \"10.0.0.0{}\"",
                &text[addr_text.len()..]
            ));
        }
        let addr = parse_block_address(addr_text, len_text)?;
        let max = max_len(addr);
        let len = match len_text {
            None => max,
            Some(l) => parse_prefix_len(text, addr_text, l, max)?,
        };
        let network = mask(addr, len);
        if network != addr {
            return Err(format!("{text} has host bits set; write {network}/{len}"));
        }
        Ok(canonical_block(network, len))
    }

    /// Whether `addr` lies inside this block. An IPv4-mapped IPv6 address
    /// (`::ffff:10.1.2.3`) is judged as the IPv4 address it carries.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        match (self.addr, addr) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(addr, self.len) == self.addr
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    /// The canonical form, e.g. `10.1.0.0/16` or `2001:db8:1::/48`; a single host
    /// keeps its `/32` or `/128`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// A named list of CIDRs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub name: String,
    pub cidrs: Vec<Cidr>,
}

impl Network {
    /// Whether `addr` lies inside any of the network's blocks (an empty network
    /// contains nothing).
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.cidrs.iter().any(|c| c.contains(addr))
    }
}

/// Parses a PAM_RHOST value as an IP address: plain IPv4/IPv6, "[::1]", and an
/// IPv6 zone suffix "fe80::1%eth0" (zone dropped). A host name returns None.
///
/// Anything else that is not exactly an address (surrounding spaces, a port, an IPv4
/// address in brackets, an empty zone) also returns None: the caller treats the
/// origin as unknown rather than guessing. The address is returned as written; an
/// IPv4-mapped address stays IPv6 here and is matched as IPv4 by [`Cidr::contains`].
pub fn parse_rhost(rhost: &str) -> Option<IpAddr> {
    let inner = match rhost.strip_prefix('[') {
        Some(rest) => {
            let inner = rest.strip_suffix(']')?;
            // Brackets are IPv6 syntax; refuse anything else inside them.
            return parse_v6_with_zone(inner).map(IpAddr::V6);
        }
        None => rhost,
    };
    if let Ok(addr) = inner.parse::<IpAddr>() {
        return Some(addr);
    }
    parse_v6_with_zone(inner).map(IpAddr::V6)
}

/// An IPv6 address, optionally followed by a non-empty `%zone` that is dropped.
fn parse_v6_with_zone(text: &str) -> Option<Ipv6Addr> {
    let addr = match text.split_once('%') {
        Some((addr, zone)) => {
            if zone.is_empty() || zone.chars().any(|c| c.is_whitespace() || c == '%') {
                return None;
            }
            addr
        }
        None => text,
    };
    addr.parse().ok()
}

/// The address part of a block; `len_text` is only used to build suggestions.
fn parse_block_address(addr_text: &str, len_text: Option<&str>) -> Result<IpAddr, String> {
    if let Ok(addr) = addr_text.parse::<IpAddr>() {
        return Ok(addr);
    }
    let slash_len = len_text.map(|l| format!("/{l}")).unwrap_or_default();
    if addr_text.contains('%') {
        return Err(format!(
            "{addr_text:?} has an interface zone; networks are written without one, \
             e.g. \"fe80::/10\""
        ));
    }
    if let Some(padded) = pad_short_ipv4(addr_text) {
        return Err(format!(
            "{addr_text} is not a complete IPv4 address (it needs four numbers); \
             write {padded}{slash_len}"
        ));
    }
    Err(format!(
        "{addr_text:?} is not an IPv4 or IPv6 address; write e.g. \"10.1.0.0/16\" or \
         \"2001:db8::/48\" (host names are not allowed)"
    ))
}

/// "10.1.0" -> "10.1.0.0": a dotted IPv4 address with one to three numbers, each at
/// most 255, padded with zeros. None if the text is anything else.
fn pad_short_ipv4(text: &str) -> Option<String> {
    let parts: Vec<&str> = text.split('.').collect();
    if parts.len() >= 4 {
        return None;
    }
    for part in &parts {
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if part.parse::<u16>().ok()? > 255 {
            return None;
        }
    }
    let mut padded = text.to_string();
    for _ in parts.len()..4 {
        padded.push_str(".0");
    }
    Some(padded)
}

fn parse_prefix_len(text: &str, addr_text: &str, l: &str, max: u8) -> Result<u8, String> {
    let family = if max == 32 { "IPv4" } else { "IPv6" };
    if l.is_empty() {
        return Err(format!(
            "{text:?} has no prefix length after the '/'; write one from 0 to {max} \
             (e.g. \"10.1.0.0/16\"), or the bare address {addr_text} for a single host"
        ));
    }
    if !l.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{text:?}: prefix length {l:?} is not a number; write a number from 0 to {max} \
             after the '/', e.g. \"10.1.0.0/16\""
        ));
    }
    match l.parse::<u8>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(format!(
            "{text:?}: prefix length {l} is too long for an {family} address \
             (at most {max})"
        )),
    }
}

fn max_len(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// `addr` with every bit after the first `len` cleared (`len` within the family's
/// maximum).
fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

/// A block inside `::ffff:0:0/96` becomes the IPv4 block it describes.
fn canonical_block(addr: IpAddr, len: u8) -> Cidr {
    if let IpAddr::V6(a) = addr
        && len >= 96
        && let Some(v4) = a.to_ipv4_mapped()
    {
        return Cidr {
            addr: IpAddr::V4(v4),
            len: len - 96,
        };
    }
    Cidr { addr, len }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cidr(s: &str) -> Cidr {
        Cidr::parse(s).unwrap()
    }

    #[test]
    fn parses_ipv4_and_ipv6_blocks_and_prints_them_canonically() {
        assert_eq!(cidr("10.1.0.0/16").to_string(), "10.1.0.0/16");
        assert_eq!(cidr("2001:db8:1::/48").to_string(), "2001:db8:1::/48");
        assert_eq!(
            cidr("2001:0DB8:0001:0000::/48").to_string(),
            "2001:db8:1::/48"
        );
        assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(cidr("::/0").to_string(), "::/0");
    }

    #[test]
    fn a_bare_address_is_a_single_host_block() {
        assert_eq!(cidr("10.1.2.3"), cidr("10.1.2.3/32"));
        assert_eq!(cidr("10.1.2.3").to_string(), "10.1.2.3/32");
        assert_eq!(cidr("2001:db8::1"), cidr("2001:db8::1/128"));
        assert_eq!(cidr("2001:db8::1").to_string(), "2001:db8::1/128");
    }

    #[test]
    fn host_bits_set_is_an_error_naming_the_intended_network() {
        assert_eq!(
            Cidr::parse("10.1.2.3/16").unwrap_err(),
            "10.1.2.3/16 has host bits set; write 10.1.0.0/16"
        );
        assert_eq!(
            Cidr::parse("2001:db8:1::1/48").unwrap_err(),
            "2001:db8:1::1/48 has host bits set; write 2001:db8:1::/48"
        );
        assert_eq!(
            Cidr::parse("192.168.1.1/0").unwrap_err(),
            "192.168.1.1/0 has host bits set; write 0.0.0.0/0"
        );
        assert_eq!(
            Cidr::parse("10.0.0.1/31").unwrap_err(),
            "10.0.0.1/31 has host bits set; write 10.0.0.0/31"
        );
    }

    #[test]
    fn prefix_zero_contains_every_address_of_its_family() {
        let all4 = cidr("0.0.0.0/0");
        for a in ["0.0.0.0", "10.1.2.3", "255.255.255.255"] {
            assert!(all4.contains(ip(a)), "{a}");
        }
        assert!(!all4.contains(ip("2001:db8::1")));
        let all6 = cidr("::/0");
        for a in [
            "::",
            "2001:db8::1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            assert!(all6.contains(ip(a)), "{a}");
        }
        assert!(!all6.contains(ip("10.1.2.3")));
    }

    #[test]
    fn ipv6_any_does_not_cover_ipv4_clients_on_dual_stack_sockets() {
        // ::ffff:10.1.2.3 is an IPv4 client; ::/0 means "every IPv6 client".
        assert!(!cidr("::/0").contains(ip("::ffff:10.1.2.3")));
        assert!(cidr("0.0.0.0/0").contains(ip("::ffff:10.1.2.3")));
    }

    #[test]
    fn host_blocks_contain_exactly_their_address() {
        let h4 = cidr("10.1.2.3/32");
        assert!(h4.contains(ip("10.1.2.3")));
        assert!(!h4.contains(ip("10.1.2.2")));
        assert!(!h4.contains(ip("10.1.2.4")));
        let h6 = cidr("2001:db8::1/128");
        assert!(h6.contains(ip("2001:db8::1")));
        assert!(!h6.contains(ip("2001:db8::")));
        assert!(!h6.contains(ip("2001:db8::2")));
    }

    #[test]
    fn ipv4_block_contains_its_first_and_last_address_but_not_the_neighbours() {
        let c = cidr("10.1.0.0/16");
        assert!(c.contains(ip("10.1.0.0")));
        assert!(c.contains(ip("10.1.255.255")));
        assert!(c.contains(ip("10.1.128.7")));
        assert!(!c.contains(ip("10.0.255.255")));
        assert!(!c.contains(ip("10.2.0.0")));
        let odd = cidr("192.168.1.64/26");
        assert!(odd.contains(ip("192.168.1.64")));
        assert!(odd.contains(ip("192.168.1.127")));
        assert!(!odd.contains(ip("192.168.1.63")));
        assert!(!odd.contains(ip("192.168.1.128")));
    }

    #[test]
    fn ipv6_block_contains_its_first_and_last_address_but_not_the_neighbours() {
        let c = cidr("2001:db8:1::/48");
        assert!(c.contains(ip("2001:db8:1::")));
        assert!(c.contains(ip("2001:db8:1:ffff:ffff:ffff:ffff:ffff")));
        assert!(!c.contains(ip("2001:db8:0:ffff:ffff:ffff:ffff:ffff")));
        assert!(!c.contains(ip("2001:db8:2::")));
        let odd = cidr("2001:db8::/127");
        assert!(odd.contains(ip("2001:db8::")));
        assert!(odd.contains(ip("2001:db8::1")));
        assert!(!odd.contains(ip("2001:db8::2")));
    }

    #[test]
    fn ipv4_and_ipv6_never_match_each_other() {
        assert!(!cidr("10.0.0.0/8").contains(ip("2001:db8::1")));
        assert!(!cidr("10.0.0.0/8").contains(ip("::10.1.2.3"))); // IPv4-compatible, not mapped
        assert!(!cidr("::/96").contains(ip("10.1.2.3")));
        assert!(!cidr("2001:db8::/32").contains(ip("10.1.2.3")));
        // The IPv6 address whose low bits equal an IPv4 address is not that address.
        assert!(!cidr("0.0.0.0/0").contains(ip("::a01:203")));
    }

    #[test]
    fn ipv4_mapped_ipv6_addresses_match_ipv4_blocks() {
        let c = cidr("10.1.0.0/16");
        assert!(c.contains(ip("::ffff:10.1.2.3")));
        assert!(c.contains(ip("::ffff:a01:203")));
        assert!(c.contains(ip("::ffff:10.1.0.0")));
        assert!(c.contains(ip("::ffff:10.1.255.255")));
        assert!(!c.contains(ip("::ffff:10.2.0.0")));
        assert!(cidr("10.1.2.3").contains(ip("::ffff:10.1.2.3")));
    }

    #[test]
    fn blocks_written_in_the_mapped_range_are_read_as_ipv4_blocks() {
        assert_eq!(cidr("::ffff:10.0.0.0/104"), cidr("10.0.0.0/8"));
        assert_eq!(cidr("::ffff:10.0.0.0/104").to_string(), "10.0.0.0/8");
        assert_eq!(cidr("::ffff:10.1.2.3").to_string(), "10.1.2.3/32");
        assert_eq!(cidr("::ffff:0:0/96").to_string(), "0.0.0.0/0");
        let c = cidr("::ffff:10.0.0.0/104");
        assert!(c.contains(ip("10.9.9.9")));
        assert!(c.contains(ip("::ffff:10.9.9.9")));
        assert!(!c.contains(ip("11.0.0.0")));
        assert_eq!(
            Cidr::parse("::ffff:10.1.2.3/104").unwrap_err(),
            "::ffff:10.1.2.3/104 has host bits set; write ::ffff:10.0.0.0/104"
        );
    }

    #[test]
    fn prefix_lengths_beyond_the_family_maximum_are_rejected() {
        let e = Cidr::parse("10.1.0.0/33").unwrap_err();
        assert!(
            e.contains("too long for an IPv4 address (at most 32)"),
            "{e}"
        );
        let e = Cidr::parse("2001:db8::/129").unwrap_err();
        assert!(
            e.contains("too long for an IPv6 address (at most 128)"),
            "{e}"
        );
        assert!(
            Cidr::parse("10.0.0.0/99999")
                .unwrap_err()
                .contains("too long")
        );
        assert!(Cidr::parse("::/128").is_ok());
        assert!(Cidr::parse("0.0.0.0/32").is_ok());
    }

    #[test]
    fn missing_or_non_numeric_prefix_lengths_are_rejected() {
        let e = Cidr::parse("10.1.0.0/").unwrap_err();
        assert!(e.contains("no prefix length after the '/'"), "{e}");
        assert!(e.contains("write one from 0 to 32"), "{e}");
        assert!(
            e.contains("or the bare address 10.1.0.0 for a single host"),
            "{e}"
        );
        assert!(
            Cidr::parse("2001:db8::/")
                .unwrap_err()
                .contains("from 0 to 128")
        );
        for bad in ["10.0.0.0/x", "10.0.0.0/+8", "10.0.0.0/-1", "10.0.0.0/8/9"] {
            let e = Cidr::parse(bad).unwrap_err();
            assert!(e.contains("is not a number"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_missing_address_is_rejected() {
        let e = Cidr::parse("/8").unwrap_err();
        assert_eq!(
            e,
            "\"/8\" has no address before the '/'; write e.g. \"10.0.0.0/8\""
        );
    }

    #[test]
    fn short_ipv4_addresses_are_rejected_with_the_padded_form() {
        assert_eq!(
            Cidr::parse("10.1.0/16").unwrap_err(),
            "10.1.0 is not a complete IPv4 address (it needs four numbers); write 10.1.0.0/16"
        );
        assert!(
            Cidr::parse("10/8")
                .unwrap_err()
                .contains("write 10.0.0.0/8")
        );
        assert!(Cidr::parse("10.1").unwrap_err().contains("write 10.1.0.0"));
    }

    #[test]
    fn garbage_addresses_and_host_names_are_rejected() {
        for bad in [
            "10.1.0.256/16",
            "10.1.0.0.0/16",
            "010.1.0.0/16",
            "office.example.com",
            "2001:db8:::/48",
            "2001:db8::g/48",
            "10.1.0.0-10.1.255.255",
        ] {
            let e = Cidr::parse(bad).unwrap_err();
            assert!(e.contains("not an IPv4 or IPv6 address"), "{bad}: {e}");
        }
        let e = Cidr::parse("fe80::%eth0/64").unwrap_err();
        assert!(e.contains("interface zone"), "{e}");
    }

    #[test]
    fn spaces_are_rejected_with_the_compact_form() {
        assert_eq!(
            Cidr::parse(" 10.0.0.0/8").unwrap_err(),
            "\" 10.0.0.0/8\" contains spaces; write \"10.0.0.0/8\""
        );
        assert_eq!(
            Cidr::parse("10.0.0.0/8 ").unwrap_err(),
            "\"10.0.0.0/8 \" contains spaces; write \"10.0.0.0/8\""
        );
        assert!(
            Cidr::parse("10.0.0.0 / 8")
                .unwrap_err()
                .contains("write \"10.0.0.0/8\"")
        );
        assert!(
            Cidr::parse("10.0.0.0/8 10.1.0.0/16")
                .unwrap_err()
                .contains("without them")
        );
        assert!(Cidr::parse("10.0.0.0/8\t").is_err());
    }

    #[test]
    fn empty_text_is_rejected() {
        assert!(Cidr::parse("").unwrap_err().starts_with("empty network"));
        assert!(Cidr::parse("   ").unwrap_err().starts_with("empty network"));
    }

    #[test]
    fn a_network_contains_an_address_in_any_of_its_blocks() {
        let office = Network {
            name: "office".into(),
            cidrs: vec![cidr("10.1.0.0/16"), cidr("2001:db8:1::/48")],
        };
        assert!(office.contains(ip("10.1.2.3")));
        assert!(office.contains(ip("::ffff:10.1.2.3")));
        assert!(office.contains(ip("2001:db8:1::42")));
        assert!(!office.contains(ip("10.2.0.1")));
        assert!(!office.contains(ip("2001:db8:2::42")));
        let empty = Network {
            name: "nowhere".into(),
            cidrs: vec![],
        };
        assert!(!empty.contains(ip("10.1.2.3")));
    }

    #[test]
    fn rhost_plain_addresses_parse() {
        assert_eq!(parse_rhost("10.1.2.3"), Some(ip("10.1.2.3")));
        assert_eq!(parse_rhost("2001:db8::1"), Some(ip("2001:db8::1")));
        assert_eq!(parse_rhost("::1"), Some(ip("::1")));
        assert_eq!(parse_rhost("::ffff:10.1.2.3"), Some(ip("::ffff:10.1.2.3")));
    }

    #[test]
    fn rhost_bracketed_ipv6_parses() {
        assert_eq!(parse_rhost("[::1]"), Some(ip("::1")));
        assert_eq!(parse_rhost("[2001:db8::1]"), Some(ip("2001:db8::1")));
        assert_eq!(parse_rhost("[fe80::1%eth0]"), Some(ip("fe80::1")));
    }

    #[test]
    fn rhost_ipv6_zone_is_dropped() {
        assert_eq!(parse_rhost("fe80::1%eth0"), Some(ip("fe80::1")));
        assert_eq!(parse_rhost("fe80::1%2"), Some(ip("fe80::1")));
    }

    #[test]
    fn rhost_host_names_and_malformed_values_are_not_addresses() {
        for bad in [
            "",
            "localhost",
            "bastion.example.com",
            "10.1.2",
            "10.1.2.3%eth0",
            "fe80::1%",
            "[::1",
            "::1]",
            "[10.1.2.3]",
            "[::1]:22",
            "10.1.2.3:22",
            " 10.1.2.3",
            "10.1.2.3 ",
            "fe80::1%eth0%x",
        ] {
            assert_eq!(parse_rhost(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rhost_mapped_addresses_match_ipv4_networks() {
        let addr = parse_rhost("::ffff:10.1.2.3").unwrap();
        assert!(cidr("10.1.0.0/16").contains(addr));
    }

    proptest! {
        #[test]
        fn ipv4_block_contains_exactly_the_addresses_sharing_its_prefix(
            base in any::<u32>(),
            len in 0u8..=32,
            host in any::<u32>(),
            flip in any::<u32>(),
        ) {
            let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            let net = base & m;
            let c = Cidr::parse(&format!("{}/{len}", Ipv4Addr::from(net))).unwrap();
            prop_assert_eq!(c.to_string(), format!("{}/{len}", Ipv4Addr::from(net)));

            let inside = Ipv4Addr::from(net | (host & !m));
            prop_assert!(c.contains(IpAddr::V4(inside)));
            prop_assert!(c.contains(IpAddr::V6(inside.to_ipv6_mapped())));

            if len > 0 {
                // Flip one of the top `len` bits: the address leaves the block.
                let bit = 31 - (flip % u32::from(len));
                let outside = Ipv4Addr::from(u32::from(inside) ^ (1 << bit));
                prop_assert!(!c.contains(IpAddr::V4(outside)));
                prop_assert!(!c.contains(IpAddr::V6(outside.to_ipv6_mapped())));
            }
        }

        #[test]
        fn ipv4_host_bits_are_always_reported_with_the_masked_network(
            base in any::<u32>(),
            len in 0u8..32,
        ) {
            let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            prop_assume!(base & !m != 0);
            let text = format!("{}/{len}", Ipv4Addr::from(base));
            prop_assert_eq!(
                Cidr::parse(&text).unwrap_err(),
                format!("{text} has host bits set; write {}/{len}", Ipv4Addr::from(base & m))
            );
        }
    }
}
