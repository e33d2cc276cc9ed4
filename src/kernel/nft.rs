//! One question asked of nf_tables over netlink, without a process: the policy of a chain
//! that iptables-nft keeps (`ip filter FORWARD`), and whether a chain exists. Reading the
//! host's FORWARD chain this way spares an `iptables-save` on every network made or deleted.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NETLINK_NETFILTER: libc::c_int = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_GETCHAIN: u16 = 4;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_POLICY: u16 = 5;
const NF_DROP: u32 = 0;
const NLMSG_ERROR: u16 = 2;
const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;

#[derive(Debug, PartialEq)]
pub enum Chain {
    Missing,
    /// A user chain, or a base chain that does not drop by default.
    Accepts,
    Drops,
}

/// The chain `name` of IPv4 table `table` in the calling thread's namespace.
pub fn ipv4_chain(table: &str, name: &str) -> io::Result<Chain> {
    // SAFETY: a plain socket(2); the fd is owned from here on.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_NETFILTER,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let request = get_chain(table, name);
    // SAFETY: the buffer outlives the call; the kernel is the default destination.
    let sent = unsafe { libc::send(sock.as_raw_fd(), request.as_ptr().cast(), request.len(), 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut reply = vec![0u8; 8192];
    // SAFETY: the buffer is writable for its whole length.
    let got = unsafe { libc::recv(sock.as_raw_fd(), reply.as_mut_ptr().cast(), reply.len(), 0) };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    reply.truncate(got as usize);
    parse_reply(&reply)
}

fn get_chain(table: &str, name: &str) -> Vec<u8> {
    let mut msg = vec![0u8; NLMSG_HDRLEN];
    msg.extend([libc::AF_INET as u8, 0, 0, 0]); // nfgenmsg: family, version 0, res_id 0
    for (kind, value) in [(NFTA_CHAIN_TABLE, table), (NFTA_CHAIN_NAME, name)] {
        let len = 4 + value.len() + 1;
        msg.extend((len as u16).to_ne_bytes());
        msg.extend(kind.to_ne_bytes());
        msg.extend(value.as_bytes());
        msg.push(0);
        msg.resize(msg.len().next_multiple_of(4), 0);
    }
    let len = msg.len() as u32;
    let kind = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETCHAIN;
    msg[0..4].copy_from_slice(&len.to_ne_bytes());
    msg[4..6].copy_from_slice(&kind.to_ne_bytes());
    msg[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    msg
}

fn parse_reply(reply: &[u8]) -> io::Result<Chain> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "nf_tables: malformed reply");
    let kind = u16::from_ne_bytes(reply.get(4..6).ok_or_else(bad)?.try_into().unwrap());
    let body = reply.get(NLMSG_HDRLEN..).ok_or_else(bad)?;
    if kind == NLMSG_ERROR {
        let code = i32::from_ne_bytes(body.get(0..4).ok_or_else(bad)?.try_into().unwrap());
        return match -code {
            libc::ENOENT => Ok(Chain::Missing),
            errno => Err(io::Error::from_raw_os_error(errno)),
        };
    }
    if kind != (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWCHAIN {
        return Err(bad());
    }
    let mut attrs = body.get(NFGENMSG_LEN..).ok_or_else(bad)?;
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff; // without NLA_F_ flags
        let value = attrs.get(4..len).ok_or_else(bad)?;
        if kind == NFTA_CHAIN_POLICY {
            let policy = u32::from_be_bytes(value.try_into().map_err(|_| bad())?);
            return Ok(if policy == NF_DROP {
                Chain::Drops
            } else {
                Chain::Accepts
            });
        }
        attrs = attrs.get(len.next_multiple_of(4)..).unwrap_or_default();
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
        let mut enoent = vec![0u8; 16];
        enoent[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        enoent.extend((-libc::ENOENT).to_ne_bytes());
        assert_eq!(parse_reply(&enoent).unwrap(), Chain::Missing);
        enoent[16..20].copy_from_slice(&(-libc::EPERM).to_ne_bytes());
        assert!(parse_reply(&enoent).is_err());
    }
}
