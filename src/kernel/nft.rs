//! One question asked of nf_tables over netlink, without a process: the policy of a chain
//! that iptables-nft keeps (`ip filter FORWARD`), and whether a chain exists. Reading the
//! host's FORWARD chain this way spares an `iptables-save` on every network made or deleted.

use std::io;

use netlink_packet_core::{
    DefaultNla, Emitable, ErrorBuffer, NetlinkBuffer, NlasIterator, NLA_TYPE_MASK, NLMSG_ERROR,
    NLM_F_REQUEST,
};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_GETCHAIN: u16 = 4;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_POLICY: u16 = 5;
const NF_DROP: u32 = 0;
const NLMSG_HDRLEN: usize = 16;
/// nfgenmsg: address family, version, resource id.
const NFGENMSG_LEN: usize = 4;

#[derive(Debug, PartialEq)]
pub enum Chain {
    Missing,
    /// A user chain, or a base chain that does not drop by default.
    Accepts,
    Drops,
}

/// The chain `name` of IPv4 table `table` in the calling thread's namespace. The netlink
/// crates carry the socket and the message framing; nf_tables' few attributes are laid out
/// here, as no crate in the tree speaks them.
pub fn ipv4_chain(table: &str, name: &str) -> io::Result<Chain> {
    let sock = Socket::new(NETLINK_NETFILTER)?;
    sock.send(&get_chain(table, name), 0)?;
    let mut reply = Vec::with_capacity(8192);
    sock.recv(&mut reply, 0)?;
    parse_reply(&reply)
}

fn get_chain(table: &str, name: &str) -> Vec<u8> {
    let cstr = |s: &str| s.bytes().chain([0]).collect::<Vec<u8>>();
    let attrs = [
        DefaultNla::new(NFTA_CHAIN_TABLE, cstr(table)),
        DefaultNla::new(NFTA_CHAIN_NAME, cstr(name)),
    ];
    let attrs = attrs.as_slice();
    let mut msg = vec![0u8; NLMSG_HDRLEN + NFGENMSG_LEN + attrs.buffer_len()];
    let len = msg.len() as u32;
    let mut header = NetlinkBuffer::new(&mut msg[..]);
    header.set_length(len);
    header.set_message_type((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETCHAIN);
    header.set_flags(NLM_F_REQUEST);
    msg[NLMSG_HDRLEN] = libc::AF_INET as u8;
    attrs.emit(&mut msg[NLMSG_HDRLEN + NFGENMSG_LEN..]);
    msg
}

fn parse_reply(reply: &[u8]) -> io::Result<Chain> {
    fn bad<E>(_: E) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, "nf_tables: malformed reply")
    }
    let msg = NetlinkBuffer::new_checked(reply).map_err(bad)?;
    let body = msg.payload();
    if msg.message_type() == NLMSG_ERROR {
        let code = ErrorBuffer::new_checked(body).map_err(bad)?.code();
        return match code.map(|c| -c.get()) {
            Some(libc::ENOENT) => Ok(Chain::Missing),
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
            None => Err(bad(())),
        };
    }
    if msg.message_type() != (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWCHAIN {
        return Err(bad(()));
    }
    let attrs = body.get(NFGENMSG_LEN..).ok_or_else(|| bad(()))?;
    for attr in NlasIterator::new(attrs) {
        let attr = attr.map_err(bad)?;
        if attr.kind() & NLA_TYPE_MASK == NFTA_CHAIN_POLICY {
            let policy = u32::from_be_bytes(attr.value().try_into().map_err(bad)?);
            return Ok(if policy == NF_DROP {
                Chain::Drops
            } else {
                Chain::Accepts
            });
        }
    }
    Ok(Chain::Accepts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_names_table_and_chain() {
        let msg = get_chain("filter", "FORWARD");
        assert_eq!(msg.len(), 16 + 4 + 12 + 12);
        assert_eq!(u32::from_ne_bytes(msg[0..4].try_into().unwrap()), 44);
        assert_eq!(u16::from_ne_bytes([msg[4], msg[5]]), 0x0a04);
        assert_eq!(&msg[24..31], b"filter\0");
        assert_eq!(&msg[36..44], b"FORWARD\0");
    }

    fn reply(kind: u16, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut msg = vec![0u8; 16];
        msg[4..6].copy_from_slice(&kind.to_ne_bytes());
        msg.extend([2, 0, 0, 0]);
        for (k, v) in attrs {
            msg.extend(((4 + v.len()) as u16).to_ne_bytes());
            msg.extend(k.to_ne_bytes());
            msg.extend(*v);
            msg.resize(msg.len().next_multiple_of(4), 0);
        }
        let len = msg.len() as u32;
        msg[0..4].copy_from_slice(&len.to_ne_bytes());
        msg
    }

    #[test]
    fn policy_and_absence_are_read() {
        let table = (NFTA_CHAIN_TABLE, b"filter\0".as_slice());
        let drop = (NFTA_CHAIN_POLICY, [0u8, 0, 0, 0].as_slice());
        let accept = (NFTA_CHAIN_POLICY, [0u8, 0, 0, 1].as_slice());
        assert_eq!(
            parse_reply(&reply(0x0a03, &[table, drop])).unwrap(),
            Chain::Drops
        );
        assert_eq!(
            parse_reply(&reply(0x0a03, &[table, accept])).unwrap(),
            Chain::Accepts
        );
        assert_eq!(
            parse_reply(&reply(0x0a03, &[table])).unwrap(),
            Chain::Accepts
        );
        // An error: its code, then the header of the request it answers.
        let mut enoent = vec![0u8; 16];
        enoent[0..4].copy_from_slice(&36u32.to_ne_bytes());
        enoent[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        enoent.extend((-libc::ENOENT).to_ne_bytes());
        enoent.extend([0u8; 16]);
        assert_eq!(parse_reply(&enoent).unwrap(), Chain::Missing);
        enoent[16..20].copy_from_slice(&(-libc::EPERM).to_ne_bytes());
        assert!(parse_reply(&enoent).is_err());
    }
}
