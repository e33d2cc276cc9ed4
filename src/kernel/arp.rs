//! Gratuitous ARP for a new address, as Neutron sends with `arping -U` and `arping -A`:
//! neighbours that cached another MAC for the address (a floating IP that moved, a router
//! rebuilt with new MACs) update it at once instead of after their cache times out.
//! Sent in-process from a packet socket opened inside the namespace: no process per address.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};

use anyhow::Context;
use nix::fcntl::OFlag;
use nix::sys::socket::{
    sendto, socket, AddressFamily, LinkAddr, MsgFlags, SockFlag, SockType, SockaddrLike,
};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe2, ForkResult};

use super::{link::parse_mac, netns};

const ETH_P_ARP: u16 = 0x0806;
const BROADCAST: [u8; 6] = [0xff; 6];

#[derive(Clone, Copy)]
enum Op {
    /// `arping -U`: an ARP request for our own address.
    Request = 1,
    /// `arping -A`: an unsolicited ARP reply.
    Reply = 2,
}

/// The Ethernet frame of one gratuitous ARP for `ip` at `mac`.
fn frame(mac: [u8; 6], ip: Ipv4Addr, op: Op) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend(BROADCAST);
    f.extend(mac);
    f.extend(ETH_P_ARP.to_be_bytes());
    f.extend([0, 1, 0x08, 0x00, 6, 4]); // Ethernet, IPv4, address lengths
    f.extend((op as u16).to_be_bytes());
    f.extend(mac);
    f.extend(ip.octets());
    f.extend(match op {
        Op::Request => [0; 6],
        Op::Reply => BROADCAST,
    });
    f.extend(ip.octets());
    f
}

/// Announce `ip` on device `index` (MAC `mac`) in namespace `ns`: one request, one reply.
pub fn announce(ns: &str, index: u32, mac: &str, ip: Ipv4Addr) -> anyhow::Result<()> {
    let mac: [u8; 6] = parse_mac(mac)?.try_into().expect("six bytes");
    let sock = netns::run_in(ns, move || -> anyhow::Result<OwnedFd> {
        // The socket belongs to the namespace of the thread that opens it.
        let sock = socket(
            AddressFamily::Packet,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        let mut ll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        ll.sll_family = libc::AF_PACKET as u16;
        ll.sll_protocol = ETH_P_ARP.to_be();
        ll.sll_ifindex = index as i32;
        ll.sll_halen = 6;
        ll.sll_addr[..6].copy_from_slice(&BROADCAST);
        let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: `ll` is a fully initialised sockaddr_ll of `len` bytes.
        let to = unsafe { LinkAddr::from_raw(std::ptr::addr_of!(ll).cast(), Some(len)) }
            .expect("a sockaddr_ll");
        for op in [Op::Request, Op::Reply] {
            sendto(
                sock.as_raw_fd(),
                &frame(mac, ip, op),
                &to,
                MsgFlags::empty(),
            )?;
        }
        Ok(sock)
    })?
    .with_context(|| format!("gratuitous ARP for {ip} in {ns}"))?;
    close_in_background(sock);
    Ok(())
}

/// Closing a packet socket waits out an RCU grace period (`synchronize_net` in
/// `packet_release`: 10-15 ms here, more than the rest of a floating IP's change). A
/// grandchild that nobody waits for holds the socket last and pays for it instead, as
/// Neutron leaves its arping running in the background.
fn close_in_background(sock: OwnedFd) {
    // The grandchild lets go once every write end is closed: after the parent's copy.
    let Ok((parent_gone, parent_end)) = pipe2(OFlag::O_CLOEXEC) else {
        return;
    };
    // SAFETY: the children only call fork, close, read and _exit, all async-signal-safe.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => unsafe {
            if let Ok(ForkResult::Child) = fork() {
                libc::close(parent_end.as_raw_fd());
                let mut byte = 0u8;
                loop {
                    let n = libc::read(parent_gone.as_raw_fd(), (&raw mut byte).cast(), 1);
                    if n == 0 || (n < 0 && nix::errno::Errno::last() != nix::errno::Errno::EINTR) {
                        break;
                    }
                }
            }
            libc::_exit(0)
        },
        Ok(ForkResult::Parent { child }) => {
            while waitpid(child, None) == Err(nix::errno::Errno::EINTR) {}
            drop(sock);
            drop(parent_end);
        }
        // Closed here, just later.
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_what_arping_sends() {
        let mac = [0xfa, 0x16, 0x3e, 1, 2, 3];
        let ip: Ipv4Addr = "10.10.10.3".parse().unwrap();
        let req = frame(mac, ip, Op::Request);
        assert_eq!(req.len(), 42);
        assert_eq!(&req[..6], &BROADCAST);
        assert_eq!(&req[12..14], &[0x08, 0x06]);
        assert_eq!(&req[20..22], &[0, 1]);
        // Sender and target protocol address are both the announced address.
        assert_eq!(&req[28..32], &[10, 10, 10, 3]);
        assert_eq!(&req[38..42], &[10, 10, 10, 3]);
        assert_eq!(&req[32..38], &[0; 6]);
        let reply = frame(mac, ip, Op::Reply);
        assert_eq!(&reply[20..22], &[0, 2]);
        assert_eq!(&reply[32..38], &BROADCAST);
    }
}
