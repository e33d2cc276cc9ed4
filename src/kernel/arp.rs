//! Gratuitous ARP for a new address, as Neutron sends with `arping -U` and `arping -A`:
//! neighbours that cached another MAC for the address (a floating IP that moved, a router
//! rebuilt with new MACs) update it at once instead of after their cache times out.
//! Sent from a packet socket opened inside the namespace, by a forked grandchild of qrouter:
//! no program is run per address.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};

use anyhow::Context;
use nix::fcntl::OFlag;
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
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

/// Announce `ip` on device `index` (MAC `mac`) in namespace `ns`: one request, one reply,
/// sent in the background (see `send_in_background`). Errors are those of opening the socket.
pub fn announce(ns: &str, index: u32, mac: &str, ip: Ipv4Addr) -> anyhow::Result<()> {
    let mac: [u8; 6] = parse_mac(mac)?.try_into().expect("six bytes");
    // The socket belongs to the namespace of the thread that opens it.
    let sock = netns::run_in(ns, || {
        socket(
            AddressFamily::Packet,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
    })?
    .with_context(|| format!("gratuitous ARP for {ip} in {ns}"))?;
    // SAFETY: an all-zero sockaddr_ll is valid; the fields that matter are set below.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = ETH_P_ARP.to_be();
    to.sll_ifindex = index as i32;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&BROADCAST);
    send_in_background(
        sock,
        [Op::Request, Op::Reply].map(|op| frame(mac, ip, op)),
        to,
    );
    Ok(())
}

/// Send `frames` from `sock` to `to` in a grandchild that nobody waits for. A broadcast on
/// the external bridge reaches every router on it, and the kernel processes each copy in the
/// sender's time (5-6 ms for the two frames with 1000 routers); closing a packet socket then waits
/// out an RCU grace period (`synchronize_net` in `packet_release`, 10-15 ms here). Neutron
/// leaves its arping running in the background too.
fn send_in_background(sock: OwnedFd, frames: [Vec<u8>; 2], to: libc::sockaddr_ll) {
    // The grandchild holds the socket until every write end is closed: after the parent's
    // copy of the socket, so that its own close is the last, slow one.
    let Ok((parent_gone, parent_end)) = pipe2(OFlag::O_CLOEXEC) else {
        return;
    };
    let to_len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: the children only call fork, sendto, close, read and _exit, which are
    // async-signal-safe, on memory prepared before the fork.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => unsafe {
            if let Ok(ForkResult::Child) = fork() {
                libc::close(parent_end.as_raw_fd());
                for f in &frames {
                    let dest = (&raw const to).cast::<libc::sockaddr>();
                    libc::sendto(
                        sock.as_raw_fd(),
                        f.as_ptr().cast(),
                        f.len(),
                        0,
                        dest,
                        to_len,
                    );
                }
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
        // Not announced: a neighbour's stale entry times out on its own.
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
