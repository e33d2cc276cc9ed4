//! Gratuitous ARP for a new address, as Neutron sends with `arping -U` and `arping -A`:
//! neighbours that cached another MAC for the address (a floating IP that moved, a router
//! rebuilt with new MACs) update it at once instead of after their cache times out.
//! Sent from a packet socket opened inside the namespace by a detached grandchild of qrouter,
//! one per namespace a change touches: no program is run per address.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStringExt;

use anyhow::Context;
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult};

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

/// One address to announce: on device `index` (of the namespace announced in), at `mac`.
pub struct Announcement {
    pub index: u32,
    pub mac: String,
    pub ip: Ipv4Addr,
}

/// When each round of frames goes, from the start: as `arping -c 3` repeats itself. The first
/// round can be lost: a veth's carrier, and with it the host end's bridge port, comes on
/// asynchronously (the kernel's link watch batches such events up to a second apart), and a
/// frame sent before the port forwards is dropped, the kernel's own announcement as the
/// device comes up included. The last round comes after that second.
const ROUNDS_MS: [u64; 3] = [0, 200, 1100];

/// Announce `items` in namespace `ns`: for each, a request and a reply, in rounds (see
/// `ROUNDS_MS`), sent by a detached grandchild so that the change does not wait for them.
/// Errors are those of preparing it; what happens after is not worth failing a change for
/// (Neutron does not either): a neighbour's stale entry times out on its own.
pub fn announce_all(ns: &str, items: &[Announcement]) -> anyhow::Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    let mut frames = Vec::with_capacity(items.len());
    for a in items {
        let mac: [u8; 6] = parse_mac(&a.mac)?.try_into().expect("six bytes");
        let (request, reply) = (frame(mac, a.ip, Op::Request), frame(mac, a.ip, Op::Reply));
        frames.push((destination(a.index), [request, reply]));
    }
    let path = std::ffi::CString::new(netns::path(ns).into_os_string().into_vec())
        .with_context(|| format!("gratuitous ARP in {ns}: a namespace name with a NUL"))?;
    // Where the sender comes back to between rounds: this process's own namespace.
    let home = std::fs::File::open("/proc/self/ns/net")
        .with_context(|| format!("gratuitous ARP in {ns}: cannot open this namespace"))?;
    send_detached(&path, home.as_raw_fd(), &frames);
    Ok(())
}

/// Where a frame on device `index` goes: the broadcast address.
fn destination(index: u32) -> libc::sockaddr_ll {
    // SAFETY: an all-zero sockaddr_ll is valid; the fields that matter are set below.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = ETH_P_ARP.to_be();
    to.sll_ifindex = index as i32;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&BROADCAST);
    to
}

/// Send `frames` from a grandchild that nobody waits for, in rounds (`ROUNDS_MS`). For each
/// round it enters the namespace at `path` (it stops if the namespace is gone), opens a packet
/// socket there, sends, closes it and goes back to `home`: between rounds it holds nothing of
/// the namespace, which a command deleting it (or `ip netns del`) finds torn down as usual.
/// It closes every descriptor it inherited but `home` first, so a pipe reading qrouter's
/// output, or a lock, is never held past qrouter's own exit. Closing a packet socket waits
/// out an RCU grace period (`synchronize_net` in `packet_release`, 10-15 ms here), and a
/// broadcast reaches every router on the external bridge, processed in the sender's time
/// (5-6 ms for two frames with 1000 routers): neither is the change's to wait for.
/// The sender's process name (`/proc/PID/comm`).
const GARP_COMM: &std::ffi::CStr = c"qrouter-garp";

fn send_detached(path: &std::ffi::CStr, home: i32, frames: &[(libc::sockaddr_ll, [Vec<u8>; 2])]) {
    let to_len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: the children only call fork, prctl, open, setns, close, close_range, socket, sendto,
    // nanosleep and _exit, which are async-signal-safe, on memory prepared before the fork.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => unsafe {
            if let Ok(ForkResult::Child) = fork() {
                let last = home as u32;
                libc::syscall(libc::SYS_close_range, 0u32, last.saturating_sub(1), 0u32);
                libc::syscall(libc::SYS_close_range, last + 1, u32::MAX, 0u32);
                // Named so `ps` and `ip netns pids` tell it from the command that started it.
                libc::prctl(libc::PR_SET_NAME, GARP_COMM.as_ptr());
                let mut waited = 0;
                for at in ROUNDS_MS {
                    let pause = libc::timespec {
                        tv_sec: ((at - waited) / 1000) as libc::time_t,
                        tv_nsec: (((at - waited) % 1000) * 1_000_000) as libc::c_long,
                    };
                    libc::nanosleep(&pause, std::ptr::null_mut());
                    waited = at;
                    let ns = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                    if ns < 0 || libc::setns(ns, libc::CLONE_NEWNET) != 0 {
                        break;
                    }
                    libc::close(ns);
                    let sock = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
                    for (to, pair) in frames.iter().filter(|_| sock >= 0) {
                        for f in pair {
                            let dest = (to as *const libc::sockaddr_ll).cast::<libc::sockaddr>();
                            libc::sendto(sock, f.as_ptr().cast(), f.len(), 0, dest, to_len);
                        }
                    }
                    libc::close(sock);
                    if libc::setns(home, libc::CLONE_NEWNET) != 0 {
                        break;
                    }
                }
            }
            libc::_exit(0)
        },
        Ok(ForkResult::Parent { child }) => {
            while waitpid(child, None) == Err(nix::errno::Errno::EINTR) {}
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
