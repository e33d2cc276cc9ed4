//! The announcer: one helper process per qrouter process, forked the first time that process
//! needs it, that does after a change what the change need not wait for, and finishes after
//! qrouter exits.
//! - Gratuitous ARP (`arp.rs`): one record per namespace over a socket pair; it sends from a
//!   packet socket opened inside each namespace, in rounds. Forked once rather than per
//!   change: a fork per change cost a `batch` of 100 routers 1.2-3.5 s (its page tables,
//!   then copy-on-write faults in qrouter; measured with and without, bench/README.md).
//! - Closing nf_tables sockets (`close_later`): the last close of one waits until the
//!   kernel has freed what earlier commits replaced, an RCU grace period (the
//!   NETLINK_URELEASE notifier flushes nf_tables' destroy work), 6-10 ms of a 17 ms
//!   `floating ip delete` here. Handed over, the wait is the announcer's.
//! - Netlink requests (`request`): deleting a device unlists it at once, then the sending
//!   call waits for an RCU grace period (`rcu_barrier` in `netdev_run_todo`), 15-35 ms here.
//!   Sent from the announcer, the wait is its own; the caller awaits the effect it needs
//!   (`link::delete_soon`).

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Mutex;

use anyhow::Context;
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult};

const ETH_P_ARP: u16 = 0x0806;
const BROADCAST: [u8; 6] = [0xff; 6];
const FRAME_LEN: usize = 42;

#[derive(Clone, Copy)]
enum Op {
    /// `arping -U`: an ARP request for our own address.
    Request = 1,
    /// `arping -A`: an unsolicited ARP reply.
    Reply = 2,
}

/// The Ethernet frame of one gratuitous ARP for `ip` at `mac` (no allocation: the announcer
/// builds it after a fork).
fn frame(mac: [u8; 6], ip: [u8; 4], op: Op) -> [u8; FRAME_LEN] {
    let mut f = [0u8; FRAME_LEN];
    f[..6].copy_from_slice(&BROADCAST);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[14..20].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4]); // Ethernet, IPv4, address lengths
    f[20..22].copy_from_slice(&(op as u16).to_be_bytes());
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip);
    if let Op::Reply = op {
        f[32..38].copy_from_slice(&BROADCAST);
    }
    f[38..42].copy_from_slice(&ip);
    f
}

/// When each round of frames goes, from the record's arrival: as `arping -c 3` repeats
/// itself. The first round can be lost: a veth's carrier, and with it the host end's bridge
/// port, comes on asynchronously (the kernel's link watch batches such events up to a second
/// apart), and a frame sent before the port forwards is dropped, the kernel's own
/// announcement as the device comes up included. The last round comes after that second.
pub const ROUNDS_MS: [u64; 3] = [0, 200, 1100];

/// Addresses per record; a namespace with more is sent as several records.
pub const MAX_ITEMS: usize = 16;
/// Room for a namespace's path (`/run/netns/qrouter-<id>`) and its NUL.
pub const PATH_LEN: usize = 128;
/// Namespaces the announcer holds rounds for at once: if a change comes while all are in use,
/// the oldest one's remaining rounds are dropped (it has had at least its first).
const SLOTS: usize = 512;

/// One address, as the announcer needs it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Item {
    pub index: u32,
    pub mac: [u8; 6],
    pub ip: [u8; 4],
    /// Zero: a record is sent as its bytes, so it has no padding the compiler may leave
    /// undefined.
    pub pad: [u8; 2],
}

/// The addresses to announce in one namespace: a datagram of fixed size, plain data.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Record {
    /// The namespace's path, NUL-terminated.
    pub path: [u8; PATH_LEN],
    pub count: u32,
    pub items: [Item; MAX_ITEMS],
}

impl Record {
    pub const EMPTY: Record = Record {
        path: [0; PATH_LEN],
        count: 0,
        items: [Item {
            index: 0,
            mac: [0; 6],
            ip: [0; 4],
            pad: [0; 2],
        }; MAX_ITEMS],
    };
}

/// Namespace `ns`'s path as a record or request carries it, NUL-terminated.
pub fn path_of(ns: &str) -> anyhow::Result<[u8; PATH_LEN]> {
    use std::os::unix::ffi::OsStrExt;
    let path = super::netns::path(ns);
    let path = path.as_os_str().as_bytes();
    anyhow::ensure!(
        path.len() < PATH_LEN && !path.contains(&0),
        "{ns}: the namespace's path is not one the announcer takes"
    );
    let mut carried = [0; PATH_LEN];
    carried[..path.len()].copy_from_slice(path);
    Ok(carried)
}

/// Netlink bytes a request carries at most (a deletion of a device group is 40).
pub const REQUEST_LEN: usize = 64;

/// A netlink request for the announcer to send from a socket of its own in a namespace, its
/// answer unread (sent without NLM_F_ACK; the caller looks at the effect instead).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Request {
    /// The namespace's path, NUL-terminated; empty for the announcer's own (qrouter's).
    pub path: [u8; PATH_LEN],
    pub len: u32,
    pub bytes: [u8; REQUEST_LEN],
}

impl Request {
    pub const EMPTY: Request = Request {
        path: [0; PATH_LEN],
        len: 0,
        bytes: [0; REQUEST_LEN],
    };
}

/// The bytes of `value`, which must be plain data without padding (`Record`, `Request`: byte
/// arrays and u32s at multiples of four), so that none of them is undefined.
fn bytes_of<T: Copy>(value: &T) -> &[u8] {
    // SAFETY: see above; the slice lives as long as the borrow of `value`.
    unsafe { std::slice::from_raw_parts((value as *const T).cast(), std::mem::size_of::<T>()) }
}

/// The message that comes with a descriptor to close: one byte, told from a record by length.
const CLOSE: [u8; 1] = [b'c'];

/// Hand `records` to this process's announcer.
pub fn send(records: &[Record]) -> anyhow::Result<()> {
    let mut announcer = ANNOUNCER.lock().unwrap_or_else(|e| e.into_inner());
    for r in records {
        hand_over(&mut announcer, bytes_of(r), None)?;
    }
    Ok(())
}

/// Have the announcer close (a duplicate of) `fd`, so that the wait of its last close is
/// not this process's. Only for what keeps nothing alive that a change still waits for:
/// a socket in a namespace about to be deleted would keep that namespace alive meanwhile.
pub fn close_later(fd: BorrowedFd) -> anyhow::Result<()> {
    let mut announcer = ANNOUNCER.lock().unwrap_or_else(|e| e.into_inner());
    hand_over(&mut announcer, &CLOSE, Some(fd.as_raw_fd()))
}

/// Have the announcer send `request` (see `Request`).
pub fn request(request: &Request) -> anyhow::Result<()> {
    let mut announcer = ANNOUNCER.lock().unwrap_or_else(|e| e.into_inner());
    hand_over(&mut announcer, bytes_of(request), None)
}

/// This process's end of the socket pair to its announcer, once started.
static ANNOUNCER: Mutex<Option<OwnedFd>> = Mutex::new(None);

/// Send `message` (and `fd`, as SCM_RIGHTS) to the announcer, starting one if there is none
/// or the last one is gone.
fn hand_over(
    announcer: &mut Option<OwnedFd>,
    message: &[u8],
    fd: Option<i32>,
) -> anyhow::Result<()> {
    for _ in 0..2 {
        let sock = match announcer {
            Some(sock) => sock.as_raw_fd(),
            None => announcer.insert(start()?).as_raw_fd(),
        };
        let mut iov = libc::iovec {
            iov_base: message.as_ptr() as *mut libc::c_void,
            iov_len: message.len(),
        };
        // SAFETY: an all-zero msghdr is valid; the buffers named below outlive the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        let mut control = [0u64; 4];
        if let Some(fd) = fd {
            // SAFETY: `control` has room for one descriptor's control message.
            unsafe {
                msg.msg_control = control.as_mut_ptr().cast();
                msg.msg_controllen = libc::CMSG_SPACE(4) as usize;
                let c = libc::CMSG_FIRSTHDR(&msg);
                (*c).cmsg_level = libc::SOL_SOCKET;
                (*c).cmsg_type = libc::SCM_RIGHTS;
                (*c).cmsg_len = libc::CMSG_LEN(4) as usize;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<i32>(), fd);
            }
        }
        // SAFETY: `msg` is complete.
        let sent = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
        if sent == message.len() as isize {
            return Ok(());
        }
        let error = std::io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EPIPE | libc::ECONNRESET | libc::ECONNREFUSED) => *announcer = None,
            _ => return Err(error).context("cannot hand it to the announcer"),
        }
    }
    anyhow::bail!("the announcer ended twice")
}

/// A record with its rounds under way.
#[derive(Clone, Copy)]
struct Slot {
    record: Record,
    /// When it came, in milliseconds of the monotonic clock.
    since: u64,
    /// The next of `ROUNDS_MS` to send.
    round: usize,
    used: bool,
}

/// The announcer's process name (`/proc/PID/comm`), so `ps` and `ip netns pids` tell it from
/// the command that started it.
const GARP_COMM: &std::ffi::CStr = c"qrouter-garp";

/// Fork the announcer as a grandchild nobody waits for, and return the socket to feed it.
/// It closes every descriptor it inherited but its end of the pair and this namespace's
/// handle first, so a pipe reading qrouter's output, or a lock, is never held past
/// qrouter's own exit; it ends when qrouter has closed its end and its work is done.
fn start() -> anyhow::Result<OwnedFd> {
    let mut pair = [0; 2];
    let kind = libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC;
    // SAFETY: `pair` has room for the two descriptors.
    if unsafe { libc::socketpair(libc::AF_UNIX, kind, 0, pair.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot make a socket pair");
    }
    // SAFETY: both were just made and belong to nobody else.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(pair[0]), OwnedFd::from_raw_fd(pair[1])) };
    // Where the announcer comes back to between namespaces: this process's own namespace.
    let home = std::fs::File::open("/proc/self/ns/net").context("cannot open this namespace")?;
    // Prepared before the fork: the child allocates nothing.
    let mut slots = vec![
        Slot {
            record: Record::EMPTY,
            since: 0,
            round: 0,
            used: false
        };
        SLOTS
    ];
    // SAFETY: the children only call fork, prctl, close_range, socket, recvmsg, poll, open,
    // setns, send, sendto, close, clock_gettime, nanosleep and _exit, which are async-signal-safe,
    // on memory prepared before the fork.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => unsafe {
            if let Ok(ForkResult::Child) = fork() {
                let (sock, home) = (theirs.as_raw_fd(), home.as_raw_fd());
                keep_only(sock.min(home) as u32, sock.max(home) as u32);
                libc::prctl(libc::PR_SET_NAME, GARP_COMM.as_ptr());
                Announcer {
                    sock,
                    home,
                    open: true,
                    slots: &mut slots,
                }
                .run();
            }
            libc::_exit(0)
        },
        Ok(ForkResult::Parent { child }) => {
            while waitpid(child, None) == Err(nix::errno::Errno::EINTR) {}
            Ok(ours)
        }
        Err(e) => Err(e).context("cannot fork the announcer"),
    }
}

/// Close every descriptor but `low` and `high` (`low < high`).
unsafe fn keep_only(low: u32, high: u32) {
    let close_range = |from: u32, to: u32| {
        if from <= to {
            libc::syscall(libc::SYS_close_range, from, to, 0u32);
        }
    };
    if low > 0 {
        close_range(0, low - 1);
    }
    close_range(low + 1, high - 1);
    close_range(high + 1, u32::MAX);
}

/// The announcer's state; every method runs after the fork (see `start`).
struct Announcer<'a> {
    sock: i32,
    home: i32,
    /// Whether qrouter may still send (its end of the pair is open).
    open: bool,
    slots: &'a mut [Slot],
}

impl Announcer<'_> {
    /// Take messages and send rounds until qrouter is gone and every round is sent.
    unsafe fn run(&mut self) {
        loop {
            self.take_messages();
            let now = now_ms();
            self.send_due(now);
            let next = (self.slots.iter().filter(|s| s.used))
                .map(|s| s.since + ROUNDS_MS[s.round])
                .min();
            let wait = next.map(|at| at.saturating_sub(now_ms()));
            match (self.open, wait) {
                (false, None) => return,
                (false, Some(ms)) => sleep_ms(ms),
                (true, wait) => {
                    let mut fds = libc::pollfd {
                        fd: self.sock,
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    let timeout = wait.map_or(-1, |ms| ms.min(i32::MAX as u64) as i32);
                    libc::poll(&mut fds, 1, timeout);
                }
            }
        }
    }

    /// Take every message waiting on the socket, without blocking: records are queued,
    /// requests sent, descriptors closed.
    unsafe fn take_messages(&mut self) {
        // Room for the largest message, aligned for reading a record or a request out of it.
        const WORDS: usize = std::mem::size_of::<Record>().div_ceil(4);
        while self.open {
            let mut buf = [0u32; WORDS];
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: std::mem::size_of_val(&buf),
            };
            let mut control = [0u64; 4];
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control);
            let got = libc::recvmsg(
                self.sock,
                &mut msg,
                libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC,
            );
            if got < 0 {
                match std::io::Error::last_os_error().raw_os_error() {
                    Some(libc::EAGAIN) => return,
                    Some(libc::EINTR) => continue,
                    _ => {}
                }
            }
            // Any descriptor that came is closed: this is where its last close waits.
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                    libc::close(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<i32>()));
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
            match got as usize {
                n if n == CLOSE.len() => {}
                n if n == std::mem::size_of::<Request>() => {
                    self.perform(std::ptr::read(buf.as_ptr().cast::<Request>()));
                }
                n if n == std::mem::size_of::<Record>() => {
                    self.queue(std::ptr::read(buf.as_ptr().cast::<Record>()));
                }
                // The end (0), or something else: qrouter is gone or broken.
                _ => self.open = false,
            }
        }
    }

    /// Start `r`'s rounds, in a free slot or the oldest one's.
    fn queue(&mut self, mut r: Record) {
        r.path[PATH_LEN - 1] = 0;
        r.count = r.count.min(MAX_ITEMS as u32);
        let free = match self.slots.iter().position(|s| !s.used) {
            Some(i) => i,
            None => (0..self.slots.len())
                .min_by_key(|&i| self.slots[i].since)
                .unwrap_or(0),
        };
        self.slots[free] = Slot {
            record: r,
            since: now_ms(),
            round: 0,
            used: true,
        };
    }

    /// Send `r`'s netlink request from a socket opened in its namespace.
    unsafe fn perform(&self, mut r: Request) {
        r.path[PATH_LEN - 1] = 0;
        let away = r.path[0] != 0;
        if away && !enter(&r.path) {
            return;
        }
        let sock = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        );
        if sock >= 0 {
            let len = (r.len as usize).min(REQUEST_LEN);
            libc::send(sock, r.bytes.as_ptr().cast(), len, 0);
            libc::close(sock);
        }
        if away {
            self.go_home();
        }
    }

    /// Back to this process's own namespace, where a request without a path is meant; an
    /// announcer that cannot get back ends (qrouter starts another).
    unsafe fn go_home(&self) {
        if libc::setns(self.home, libc::CLONE_NEWNET) != 0 {
            libc::_exit(1);
        }
    }

    /// Send every round that is due. Each namespace is entered, a packet socket opened there and
    /// the frames sent, then the announcer goes back home: between rounds it holds nothing of
    /// the namespace, which a command deleting it (or `ip netns del`) finds torn down as usual.
    /// Closing a packet socket waits out an RCU grace period (`synchronize_net` in
    /// `packet_release`, 10-15 ms here), and the socket keeps its namespace alive until then,
    /// so each is closed before the next namespace is entered: at most one namespace is held
    /// at a time (closed together at the end of a pass, the last of 64 sockets held its
    /// namespace 0.8 s, and a `router delete` meanwhile waited for it). The messages that
    /// came meanwhile are taken between namespaces.
    unsafe fn send_due(&mut self, now: u64) {
        for i in 0..self.slots.len() {
            let slot = &mut self.slots[i];
            if !slot.used || slot.since + ROUNDS_MS[slot.round] > now {
                continue;
            }
            slot.round += 1;
            slot.used = slot.round < ROUNDS_MS.len();
            if !enter(&slot.record.path) {
                // The namespace is gone: nothing left to announce there.
                slot.used = false;
                continue;
            }
            let sock = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
            if sock >= 0 {
                send_frames(sock, &slot.record);
                libc::close(sock);
            }
            self.go_home();
            self.take_messages();
        }
    }
}

/// Enter the namespace at `path` (NUL-terminated); false if it is gone.
unsafe fn enter(path: &[u8; PATH_LEN]) -> bool {
    let ns = libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC);
    if ns < 0 {
        return false;
    }
    let entered = libc::setns(ns, libc::CLONE_NEWNET) == 0;
    libc::close(ns);
    entered
}

/// A request and a reply for each of `record`'s addresses, on packet socket `sock`.
unsafe fn send_frames(sock: i32, record: &Record) {
    let to_len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    for item in &record.items[..record.count as usize] {
        let to = destination(item.index);
        let dest = (&to as *const libc::sockaddr_ll).cast::<libc::sockaddr>();
        for op in [Op::Request, Op::Reply] {
            let f = frame(item.mac, item.ip, op);
            libc::sendto(sock, f.as_ptr().cast(), f.len(), 0, dest, to_len);
        }
    }
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

/// Milliseconds of the monotonic clock.
fn now_ms() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1000 + t.tv_nsec as u64 / 1_000_000
}

fn sleep_ms(ms: u64) {
    let pause = libc::timespec {
        tv_sec: (ms / 1000) as libc::time_t,
        tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long,
    };
    // SAFETY: a valid timespec; an interruption only shortens the pause.
    unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_what_arping_sends() {
        let mac = [0xfa, 0x16, 0x3e, 1, 2, 3];
        let ip = [10, 10, 10, 3];
        let req = frame(mac, ip, Op::Request);
        assert_eq!(&req[..6], &BROADCAST);
        assert_eq!(&req[6..12], &mac);
        assert_eq!(&req[12..14], &[0x08, 0x06]);
        assert_eq!(&req[20..22], &[0, 1]);
        // Sender and target protocol address are both the announced address.
        assert_eq!(&req[22..28], &mac);
        assert_eq!(&req[28..32], &[10, 10, 10, 3]);
        assert_eq!(&req[38..42], &[10, 10, 10, 3]);
        assert_eq!(&req[32..38], &[0; 6]);
        let reply = frame(mac, ip, Op::Reply);
        assert_eq!(&reply[20..22], &[0, 2]);
        assert_eq!(&reply[32..38], &BROADCAST);
    }

    #[test]
    fn messages_are_datagrams_told_apart_by_length() {
        assert_eq!(
            bytes_of(&Record::EMPTY).len(),
            std::mem::size_of::<Record>()
        );
        assert_eq!(
            bytes_of(&Request::EMPTY).len(),
            std::mem::size_of::<Request>()
        );
        assert!(std::mem::size_of::<Record>() < libc::PIPE_BUF);
        // Messages are told apart by their length; a request fits the receiving buffer.
        let lengths = [size_of::<Record>(), size_of::<Request>(), CLOSE.len()];
        assert!(lengths[1] < lengths[0] && lengths[2] < lengths[1]);
    }
}
