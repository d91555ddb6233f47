//! Which addresses may send webhooks of a source. Customer.io publishes the addresses its
//! webhooks leave from, so an operator can refuse every other address before any
//! verification work (`CIO_ALLOWED_SOURCE_IPS`); ingest checks it against the address the
//! connection came from (`ingest::source_ip`).

use std::fmt;
use std::net::IpAddr;

/// An address or a CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Block {
    network: IpAddr,
    prefix: u8,
}

impl Block {
    fn parse(text: &str) -> Result<Self, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr =
            address.trim().parse().map_err(|_| format!("`{text}` is not an IP address or a CIDR block"))?;
        let network = canonical_ip(network);
        let longest = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => longest,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= longest)
                .ok_or_else(|| format!("`{text}` has a prefix length that is not 0 to {longest}"))?,
        };
        Ok(Block { network, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical_ip(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                same_prefix(u32::from(net).into(), u32::from(ip).into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => same_prefix(u128::from(net), u128::from(ip), self.prefix, 128),
            _ => false,
        }
    }
}

fn same_prefix(a: u128, b: u128, prefix: u8, bits: u32) -> bool {
    let shift = bits - u32::from(prefix);
    shift >= bits || (a >> shift) == (b >> shift)
}

/// IPv4 peers of a dual-stack listener arrive as `::ffff:a.b.c.d`.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The addresses allowed to post to a source: comma-separated IPs and CIDR blocks.
#[derive(Clone, PartialEq, Eq)]
pub struct IpAllowList(Vec<Block>);

impl IpAllowList {
    /// `None` for an empty list (the check is off).
    pub fn parse(text: &str) -> Result<Option<Self>, String> {
        let blocks = text
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(Block::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((!blocks.is_empty()).then_some(IpAllowList(blocks)))
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|b| b.contains(ip))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for IpAllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let blocks: Vec<String> = self.0.iter().map(|b| format!("{}/{}", b.network, b.prefix)).collect();
        f.debug_tuple("IpAllowList").field(&blocks).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_and_blocks_of_both_families() {
        let list = IpAllowList::parse(" 34.71.200.0/24, 35.188.196.183 ,2600:1900::/28").unwrap().unwrap();
        assert!(list.allows(ip("34.71.200.9")));
        assert!(list.allows(ip("35.188.196.183")));
        assert!(list.allows(ip("::ffff:35.188.196.183")), "an IPv4 peer of a dual-stack listener");
        assert!(list.allows(ip("2600:1900:4000::1")));
        assert!(!list.allows(ip("34.71.201.9")));
        assert!(!list.allows(ip("35.188.196.184")));
        assert!(!list.allows(ip("2600:1910::1")));
        assert!(IpAllowList::parse("0.0.0.0/0").unwrap().unwrap().allows(ip("8.8.8.8")));
    }

    #[test]
    fn an_empty_list_is_off_and_bad_entries_are_named() {
        assert_eq!(IpAllowList::parse("  , ").unwrap(), None);
        assert!(IpAllowList::parse("34.71.200.0/33").unwrap_err().contains("34.71.200.0/33"));
        assert!(IpAllowList::parse("customer.io").unwrap_err().contains("customer.io"));
    }
}
