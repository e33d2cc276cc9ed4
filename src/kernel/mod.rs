//! The only code that touches the host: namespaces, links, addresses, routes, sysctls, iptables.
//! One netlink connection per namespace, created inside it and kept for the whole command.
//! The kernel facts this layer relies on, and their measured costs: docs/kernel.md.

pub mod addr;
pub mod announcer;
pub mod arp;
pub mod conntrack;
mod daemon;
pub mod dhclient;
pub mod dnsmasq;
pub mod events;
mod fdb;
pub mod identity;
pub mod iptables;
pub mod keepalived;
pub mod link;
pub mod netns;
pub mod nft;
pub mod nft_expr;
pub mod portsec;
pub mod probe;
pub mod radvd;
mod rawlink;
pub mod route;
pub mod sysctl;
pub mod udhcpc;
pub mod vxlan;

use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use anyhow::{bail, Context};
use rtnetlink::Handle;

pub struct Kernel {
    host: Handle,
    /// nf_tables in the host's namespace, opened when first needed.
    host_nft: Option<netlink_sys::Socket>,
    /// One namespace's connection at a time (a router's commands in a batch share it).
    ns: Option<NsConnection>,
}

struct NsConnection {
    name: String,
    /// The namespace's inode: a namespace deleted and made again under the same name (by
    /// another qrouter, between two commands of a batch) is another namespace.
    inode: u64,
    handle: Handle,
    /// nf_tables in the namespace: its rules are read and written on it.
    nft: netlink_sys::Socket,
    /// The task that drives the connection.
    driver: tokio::task::JoinHandle<()>,
    /// Whether the nf_tables socket's last close may be left to the announcer (not for a
    /// namespace about to be deleted, which the socket would keep alive).
    linger: bool,
}

impl Kernel {
    /// Connect to the host namespace; must run inside the tokio runtime.
    pub fn connect() -> anyhow::Result<Kernel> {
        let (conn, host, _) =
            rtnetlink::new_connection().context("netlink: cannot open a socket")?;
        tokio::spawn(conn);
        Ok(Kernel {
            host,
            host_nft: None,
            ns: None,
        })
    }

    /// nf_tables in the host's namespace.
    pub fn host_nft(&mut self) -> anyhow::Result<&netlink_sys::Socket> {
        if self.host_nft.is_none() {
            self.host_nft = Some(nft::socket().context("nf_tables: cannot open a socket")?);
        }
        Ok(self.host_nft.as_ref().expect("just opened"))
    }

    /// nf_tables in namespace `name`, on the connection `ns` keeps.
    pub fn nft(&mut self, name: &str) -> anyhow::Result<&netlink_sys::Socket> {
        self.ns(name)?;
        Ok(&self.ns.as_ref().expect("just opened").nft)
    }

    pub fn host(&self) -> &Handle {
        &self.host
    }

    /// The netlink connection of namespace `name`, opened inside it unless the last one
    /// opened is to the same namespace. Opening another closes that one.
    pub fn ns(&mut self, name: &str) -> anyhow::Result<Handle> {
        let file = netns::open(name)?;
        let inode = file
            .metadata()
            .with_context(|| format!("namespace {name}: cannot stat it"))?
            .ino();
        if let Some(c) = self
            .ns
            .as_ref()
            .filter(|c| c.name == name && c.inode == inode)
        {
            return Ok(c.handle.clone());
        }
        self.close_ns(true);
        let rt = tokio::runtime::Handle::current();
        let connection = netns::run_in_opened(&file, name, || {
            NsConnection::open_here(name.to_string(), &rt)
        })?
        .with_context(|| format!("namespace {name}: cannot open netlink in it"))?;
        let handle = connection.handle.clone();
        self.ns = Some(connection);
        Ok(handle)
    }

    /// Close the connection of a namespace about to be deleted: an open socket keeps it alive.
    pub fn forget(&mut self, name: &str) {
        if self.ns.as_ref().is_some_and(|c| c.name == name) {
            self.close_ns(false);
        }
    }

    /// Close the namespace's connection; with `linger`, its nf_tables socket's last close (and
    /// its wait, see `announcer::close_later`) is left to the announcer.
    fn close_ns(&mut self, linger: bool) {
        if let Some(mut c) = self.ns.take() {
            c.linger = linger;
            drop(c);
            // Each connection allocates and frees large buffers; without handing the freed
            // pages back, `sync` of a thousand routers would hold a fragmented heap of 100 MB.
            // SAFETY: malloc_trim only releases memory that is free.
            unsafe { libc::malloc_trim(0) };
        }
    }
}

impl NsConnection {
    /// A connection to the namespace the calling thread is in; its driver runs on `rt`.
    fn open_here(name: String, rt: &tokio::runtime::Handle) -> anyhow::Result<NsConnection> {
        let inode = std::fs::metadata("/proc/thread-self/ns/net")?.ino();
        let _entered = rt.enter();
        let (conn, handle, _) = rtnetlink::new_connection()?;
        Ok(NsConnection {
            name,
            inode,
            handle,
            nft: nft::socket()?,
            driver: rt.spawn(conn),
            linger: true,
        })
    }
}

/// Dropping the handle is not enough: the driver only notices when a message arrives, so it
/// is stopped here.
impl Drop for NsConnection {
    fn drop(&mut self) {
        self.driver.abort();
        if self.linger {
            close_nft_later(&self.nft);
        }
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        if let Some(nft) = &self.host_nft {
            close_nft_later(nft);
        }
    }
}

/// Leave the last close of nf_tables socket `nft` to the announcer where it would wait
/// (`announcer::close_later`); the caller's own close is then not the last.
fn close_nft_later(nft: &netlink_sys::Socket) {
    if nft::committed_here() {
        // Not worth failing for: the close then waits here.
        if let Err(e) = announcer::close_later(nft.as_fd()) {
            log::debug!("{e:#}");
        }
    }
}

/// Rules to write in one namespace, all or none: one nf_tables batch, or where the host uses
/// iptables-legacy (`iptables::uses_nf_tables`), an `iptables-restore --noflush` batch and
/// an `ip6tables-restore --noflush` one (each all or none).
pub enum RulesBatch {
    Nft(nft::Batch),
    Restore(Vec<iptables::Restore>),
}

/// A namespace being made on a thread of its own, while the caller does other work: the
/// namespace, its sysctls, its netlink connection and its first rules (an
/// `iptables-restore` is started, not waited for). Dropped unfinished, the thread is still
/// waited for.
pub struct NewNamespace {
    thread: Option<std::thread::JoinHandle<anyhow::Result<(Made, NsConnection)>>>,
}

/// What `NewNamespace` made.
pub struct Made {
    /// The sysctls set.
    pub sysctls: Vec<String>,
    /// The rules being applied.
    pub rules: Vec<iptables::Running>,
}

impl NewNamespace {
    /// Start making namespace `name`; must run inside the tokio runtime.
    pub fn start(
        name: &str,
        mark: String,
        sysctls: Vec<(String, String)>,
        rules: Option<RulesBatch>,
    ) -> NewNamespace {
        let rt = tokio::runtime::Handle::current();
        let name = name.to_string();
        let thread = std::thread::spawn(move || -> anyhow::Result<_> {
            netns::create_here(&name, &mark)?;
            let sysctls = sysctl::ensure_here(&sysctls, false)
                .with_context(|| format!("namespace {name}"))?;
            let connection = NsConnection::open_here(name.clone(), &rt)
                .with_context(|| format!("namespace {name}: cannot open netlink in it"))?;
            let rules = match rules {
                Some(RulesBatch::Nft(batch)) => {
                    batch
                        .commit(&connection.nft)
                        .with_context(|| format!("{name}: nf_tables refused the rules"))?;
                    vec![]
                }
                Some(RulesBatch::Restore(batches)) => batches
                    .iter()
                    .map(|b| iptables::start_restore_here(&name, b.v6, &b.text))
                    .collect::<anyhow::Result<_>>()?,
                None => vec![],
            };
            Ok((Made { sysctls, rules }, connection))
        });
        NewNamespace {
            thread: Some(thread),
        }
    }

    /// Wait until it is made; its netlink connection becomes the one `k` keeps.
    pub fn finish(mut self, k: &mut Kernel) -> anyhow::Result<Made> {
        let (made, connection) = self.join()?;
        k.close_ns(true);
        k.ns = Some(connection);
        Ok(made)
    }

    fn join(&mut self) -> anyhow::Result<(Made, NsConnection)> {
        self.thread
            .take()
            .expect("joined once")
            .join()
            .expect("namespace thread does not panic")
    }
}

impl Drop for NewNamespace {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.join();
        }
    }
}

/// What a process without CAP_NET_ADMIN is told.
pub const NEEDS_ROOT: &str =
    "qrouter changes network namespaces, links and iptables: run it as root (it needs CAP_NET_ADMIN)";

/// Whether this process may change the network (CAP_NET_ADMIN in its effective set).
pub fn has_net_admin() -> bool {
    const CAP_NET_ADMIN: u32 = 12;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    effective & (1 << CAP_NET_ADMIN) != 0
}

/// What qrouter needs before it changes anything: CAP_NET_ADMIN and the iptables tools.
/// Checked once per process: a batch makes thousands of changes.
pub fn preflight() -> anyhow::Result<()> {
    static READY: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    if READY.get().is_some() {
        return Ok(());
    }
    if !has_net_admin() {
        bail!(NEEDS_ROOT);
    }
    for tool in ["iptables-save", "iptables-restore"] {
        if find_program(tool).is_none() {
            bail!("{tool} not found in PATH: install the Debian package 'iptables'");
        }
    }
    READY.get_or_init(|| ());
    Ok(())
}

/// Where `name` is in PATH, looked up once per process: a process started by bare name
/// tries each PATH directory in turn, eight failed execs on a root shell's PATH here.
pub fn find_program(name: &str) -> Option<std::path::PathBuf> {
    type Found = Vec<(String, Option<std::path::PathBuf>)>;
    static FOUND: std::sync::Mutex<Found> = std::sync::Mutex::new(Vec::new());
    let mut found = FOUND.lock().expect("no panic holds it");
    if let Some((_, path)) = found.iter().find(|(n, _)| n == name) {
        return path.clone();
    }
    let path = std::env::var_os("PATH").and_then(|dirs| {
        std::env::split_paths(&dirs)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    found.push((name.to_string(), path.clone()));
    path
}
