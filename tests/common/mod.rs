//! Test harness: every test re-runs itself inside a private sandbox (new network + mount
//! namespace with a private /run), so nothing it makes touches the machine's own network.
//! Inside, tests drive the real `qrouter` binary and check with real traffic and kernel dumps.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const INSIDE: &str = "QROUTER_TEST_SANDBOX";
pub const STATE_DIR: &str = "/run/qrouter-test";

/// Run `body` in a private sandbox. `name` must be the test function's name.
pub fn sandboxed(name: &str, body: fn()) {
    if std::env::var(INSIDE).as_deref() == Ok(name) {
        body();
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let status = Command::new("unshare")
        // A PID namespace too: whatever daemon a test leaves (dnsmasq, udhcpc) dies with it.
        .args(["--net", "--mount", "--propagation", "private", "--pid", "--fork", "--mount-proc"])
        .args(["sh", "-c"])
        .arg("mount -t tmpfs sandbox /run && mkdir -p /run/netns && ip link set lo up && exec \"$@\"")
        .arg("sandbox")
        .arg(exe)
        .args([name, "--exact", "--nocapture", "--test-threads", "1"])
        .env(INSIDE, name)
        .status()
        .expect("unshare runs (util-linux)");
    assert!(status.success(), "test {name} failed inside its sandbox");
}

/// `qrouter ARGS` on the test's store, with no terminal.
pub fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qrouter"));
    cmd.args(args)
        .env("QROUTER_STATE_DIR", STATE_DIR)
        .stdin(Stdio::null());
    cmd
}

pub fn qrouter(args: &[&str]) -> Output {
    command(args).output().unwrap()
}

/// Run qrouter, assert success, return stdout.
pub fn ok(args: &[&str]) -> String {
    let out = qrouter(args);
    assert!(
        out.status.success(),
        "qrouter {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-f", "json"]);
    serde_json::from_str(&ok(&all)).unwrap()
}

pub fn value(args: &[&str], column: &str) -> String {
    let mut all = args.to_vec();
    all.extend(["-f", "value", "-c", column]);
    ok(&all).trim().to_string()
}

/// A shell command in the sandbox; returns (success, stdout).
pub fn sh(cmd: &str) -> (bool, String) {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

pub fn sh_ok(cmd: &str) -> String {
    let (ok, out) = sh(cmd);
    assert!(ok, "`{cmd}` failed");
    out
}

/// The seed topology: vlan100, vlan101, ext_net on br-ex, router_100_101 on both tenant
/// subnets, cirros-vm3 at 172.16.101.3, and the upstream gateway 10.10.10.1 as a namespace.
pub fn seed_topology() {
    for args in [
        &["network", "create", "vlan100"][..],
        &["network", "create", "vlan101"],
        &[
            "network",
            "create",
            "ext_net",
            "--external",
            "--bridge",
            "br-ex",
        ],
        &[
            "subnet",
            "create",
            "vlan100",
            "--network",
            "vlan100",
            "--subnet-range",
            "172.16.100.0/24",
        ],
        &[
            "subnet",
            "create",
            "vlan101",
            "--network",
            "vlan101",
            "--subnet-range",
            "172.16.101.0/24",
        ],
        &[
            "subnet",
            "create",
            "ext",
            "--network",
            "ext_net",
            "--subnet-range",
            "10.10.10.0/24",
            "--gateway",
            "10.10.10.1",
        ],
        &["router", "create", "router_100_101"],
        &["router", "add", "interface", "router_100_101", "vlan100"],
        &["router", "add", "subnet", "router_100_101", "vlan101"],
        &[
            "instance",
            "create",
            "cirros-vm3",
            "--network",
            "vlan101",
            "--fixed-ip",
            "172.16.101.3",
        ],
        &[
            "instance",
            "create",
            "upstream",
            "--network",
            "ext_net",
            "--fixed-ip",
            "10.10.10.1",
        ],
    ] {
        ok(args);
    }
}

/// A tenant network and its subnet, both called `name`.
pub fn tenant_network(name: &str, cidr: &str) {
    ok(&["network", "create", name]);
    ok(&[
        "subnet",
        "create",
        name,
        "--network",
        name,
        "--subnet-range",
        cidr,
    ]);
}

/// Seed step 1: the router's gateway on ext_net.
pub fn set_gateway() {
    ok(&[
        "router",
        "set",
        "router_100_101",
        "--external-gateway",
        "ext_net",
    ]);
}

/// cirros-vm3 reaches the upstream gateway through the router.
pub fn vm3_pings_upstream() {
    pings_upstream("cirros-vm3");
}

/// `instance` reaches the upstream gateway 10.10.10.1.
pub fn pings_upstream(instance: &str) {
    ok(&[
        "instance",
        "exec",
        instance,
        "--",
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        "10.10.10.1",
    ]);
}

pub fn namespace_of(kind: &str, name: &str) -> String {
    value(&[kind, "show", name], "namespace")
}

/// The `qr-`/`qg-` device of `router` that holds `ip`, from `port list`.
pub fn router_device(router: &str, ip: &str) -> String {
    let ports = json(&["port", "list", "--router", router]);
    let port = ports
        .as_array()
        .unwrap()
        .iter()
        .find(|p| {
            p["Fixed IP Addresses"]
                .to_string()
                .contains(&format!("ip_address='{ip}'"))
        })
        .unwrap_or_else(|| panic!("router {router} has no port with {ip}: {ports}"));
    port["Name"].as_str().unwrap().to_string()
}

/// Everything the kernel holds in the sandbox, for before/after comparisons: namespaces,
/// links, addresses, routes and rules in the sandbox and in each namespace. A link's
/// operstate and IPv6 DAD's `tentative` change on their own over time, so they are left out.
pub fn kernel_snapshot() -> String {
    const DUMP: &str = "ip -o link | sed -E 's/^[0-9]+: //; s/ state [A-Z]+//'; \
                        ip -o addr | sed 's/ tentative//'; ip route; iptables-save | sed '/^#/d'";
    let mut snap = sh_ok(&format!("ip netns list; {DUMP}"));
    for ns in sh_ok("ip netns list | cut -d' ' -f1").lines() {
        snap += &sh_ok(&format!("ip netns exec {ns} sh -c \"{DUMP}\""));
    }
    snap
}

/// Everything the store holds, as the list commands print it.
pub fn store_snapshot() -> String {
    ["network", "subnet", "router", "port", "instance"]
        .iter()
        .map(|noun| ok(&[noun, "list", "-f", "json"]))
        .collect()
}

fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let file = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
    std::thread::spawn(move || {
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// Listen on `addr` in `server_ns` and connect to it from `client_ns`: the peer address the
/// server saw, or None when no connection arrived within two seconds.
pub fn tcp_probe(server_ns: &str, addr: &str, client_ns: &str) -> Option<SocketAddr> {
    tcp_probe_to(server_ns, addr, addr, client_ns)
}

/// Like `tcp_probe`, but the client connects to `target` (a floating IP in front of `listen`).
pub fn tcp_probe_to(
    server_ns: &str,
    listen: &str,
    target: &str,
    client_ns: &str,
) -> Option<SocketAddr> {
    let (listen, target): (SocketAddr, SocketAddr) =
        (listen.parse().unwrap(), target.parse().unwrap());
    let listener = in_netns(server_ns, move || TcpListener::bind(listen).unwrap());
    listener.set_nonblocking(true).unwrap();
    let connected = in_netns(client_ns, move || {
        TcpStream::connect_timeout(&target, Duration::from_secs(2)).map(|mut s| s.write_all(b"hi"))
    });
    if connected.is_err() {
        return None;
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if let Ok((_, peer)) = listener.accept() {
            return Some(peer);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// The first ICMP packet tcpdump prints on `dev` in `ns` while `traffic` runs.
pub fn capture_icmp(ns: &str, dev: &str, traffic: impl FnOnce()) -> String {
    capture(ns, dev, "icmp", traffic)
}

/// The first packet matching `filter` that tcpdump prints on `dev` in `ns` while `traffic` runs.
pub fn capture(ns: &str, dev: &str, filter: &str, traffic: impl FnOnce()) -> String {
    let mut child = Command::new("ip")
        .args([
            "netns", "exec", ns, "tcpdump", "-n", "-l", "-c", "1", "-i", dev, filter,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Keep stderr open: tcpdump writes its statistics there as it exits.
    let mut stderr = child.stderr.take().unwrap();
    let said = wait_listening(&mut stderr);
    traffic();
    let deadline = Instant::now() + Duration::from_secs(5);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let _ = child.wait();
    if out.is_empty() {
        format!("(nothing captured; tcpdump said: {said})")
    } else {
        out
    }
}

/// tcpdump prints "listening on" once its capture is open; the lines before come earlier.
fn wait_listening(mut stderr: impl Read) -> String {
    let (mut seen, mut byte) = (Vec::new(), [0u8; 1]);
    while !String::from_utf8_lossy(&seen).contains("listening on")
        && matches!(stderr.read(&mut byte), Ok(1))
    {
        seen.push(byte[0]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}
