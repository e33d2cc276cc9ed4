//! Test harness: every test re-runs itself inside a private sandbox (new network + mount
//! namespace with a private /run), so nothing it makes touches the machine's own network.
//! As an ordinary user the sandbox is also a user namespace in which the test is root
//! (`unshare --user --map-root-user`), so `cargo test` needs no root where the kernel allows
//! unprivileged user namespaces (docs/kernel.md, "Sandboxes").
//! Inside, tests drive the real `qrouter` binary and check with real traffic and kernel dumps.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};

// The test bed the demo uses too, included as a module of the tests: it is no part of the
// library's API.
#[path = "../../src/demo/testbed.rs"]
pub mod testbed;
use serde_json::Value;
pub use testbed::Filter;
pub mod dual_stack;
pub mod trace_check;
pub mod vm;

const INSIDE: &str = "QROUTER_TEST_SANDBOX";
pub const STATE_DIR: &str = "/run/qrouter-test";

/// Run `body`, the test's own closure, in a private sandbox: the test executable runs again
/// inside one, running only this test. The test's name comes from the closure's type
/// (`crate::module::test::{{closure}}`), so it cannot be mistyped; it is checked against the
/// name libtest gives the test's thread.
pub fn sandboxed<F: FnOnce()>(body: F) {
    let name = test_name::<F>();
    if std::env::var(INSIDE).as_deref() == Ok(name.as_str()) {
        body();
        return;
    }
    let exe = std::env::current_exe().unwrap();
    // Where the run inside says it skipped the test (it cannot pass that back otherwise).
    let skip_note = std::env::temp_dir().join(format!(
        "qrouter-test-skipped.{}.{}",
        std::process::id(),
        name.replace("::", ".")
    ));
    let _ = std::fs::remove_file(&skip_note);
    let mut unshare = Command::new("unshare");
    if !real_root() {
        // An ordinary user: a user namespace of its own, in which it is root, owns the new
        // network and mount namespaces (the kernel must allow unprivileged user namespaces).
        unshare.args(["--user", "--map-root-user"]);
    }
    let status = unshare
        .args(["--net", "--mount", "--propagation", "private"])
        // A PID namespace too: whatever daemon a test leaves (dnsmasq, udhcpc) dies with it.
        .args(["--pid", "--fork", "--mount-proc", "sh", "-c"])
        .arg("mount -t tmpfs sandbox /run && mkdir -p /run/netns && ip link set lo up && exec \"$@\"")
        .arg("sandbox")
        .arg(exe)
        .args([name.as_str(), "--exact", "--nocapture", "--test-threads", "1"])
        .env(INSIDE, &name)
        .env(OUTER_UID, nix::unistd::geteuid().to_string())
        .env(SKIP_NOTE, &skip_note)
        .status()
        .expect("unshare runs (util-linux)");
    assert!(
        status.success(),
        "test {name} failed inside its sandbox{}",
        if real_root() {
            ""
        } else {
            " (as an ordinary user it needs unprivileged user namespaces: if unshare said \
             'Operation not permitted', the kernel forbids them here; run the tests as root)"
        }
    );
    if let Ok(why) = std::fs::read_to_string(&skip_note) {
        let _ = std::fs::remove_file(&skip_note);
        report_skip(&name, why.trim());
    }
}

/// The libtest name of the test whose closure is `F`.
fn test_name<F>() -> String {
    let full = std::any::type_name::<F>();
    let path = full
        .strip_suffix("::{{closure}}")
        .unwrap_or_else(|| panic!("sandboxed takes the test's own closure, not {full}"));
    let (_crate, name) = path.split_once("::").expect("a path starts with its crate");
    if let Some(thread) = std::thread::current().name().filter(|t| *t != "main") {
        assert_eq!(
            thread, name,
            "sandboxed is called from the test's own function"
        );
    }
    name.to_string()
}

/// A skipped test says so where it cannot be missed: on the terminal (libtest captures only
/// the print macros of a passing test), and in the file `QROUTER_TEST_SKIPPED_LOG` names,
/// which `.ci/unprivileged-tests` counts in its summary.
fn report_skip(name: &str, why: &str) {
    use std::io::Write;
    let line = format!("skipped: {name}: {why}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Some(log) = std::env::var_os("QROUTER_TEST_SKIPPED_LOG") {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log);
        let _ = file.and_then(|mut f| f.write_all(line.as_bytes()));
    }
}

/// Where the run inside the sandbox notes that it skipped its test.
const SKIP_NOTE: &str = "QROUTER_TEST_SKIP_NOTE";

/// Whether the tests run as the machine's root (checked outside the sandbox; inside a user
/// namespace every process is root there).
pub fn real_root() -> bool {
    nix::unistd::geteuid().is_root() && std::env::var(OUTER_UID).map_or(true, |uid| uid == "0")
}

/// The euid the test process had before it entered its sandbox.
const OUTER_UID: &str = "QROUTER_TEST_OUTER_UID";

/// For a test that truly needs the machine's root: false when it runs as an ordinary user,
/// after noting the test as skipped (with `why`), so the run counts it as skipped, never as
/// passed.
pub fn needs_real_root(why: &str) -> bool {
    if real_root() {
        return true;
    }
    let why = format!("needs the real root ({why}); run it as root to check it");
    match std::env::var_os(SKIP_NOTE) {
        Some(note) => std::fs::write(note, &why).expect("the skip note is writable"),
        None => report_skip(&std::env::var(INSIDE).unwrap_or_default(), &why),
    }
    false
}

/// The qrouter binary under test: cargo's, or QROUTER_BIN where the test binaries were
/// copied elsewhere to run as another user (see .ci/run).
pub fn qrouter_bin() -> std::path::PathBuf {
    std::env::var_os("QROUTER_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_qrouter").into())
        .into()
}

/// The source tree (for checks of committed files): cargo's, or QROUTER_SOURCE_DIR.
pub fn source_dir() -> std::path::PathBuf {
    std::env::var_os("QROUTER_SOURCE_DIR")
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
        .into()
}

/// `qrouter ARGS` on the test's store, with no terminal.
pub fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(qrouter_bin());
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
    succeeded(args, qrouter(args))
}

/// The stdout of `qrouter ARGS`, asserting it succeeded (its stderr if not).
pub fn succeeded(args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "qrouter {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Run qrouter with `args`, which it must refuse as bad input (exit code 2) with an error
/// that says `message`; its stderr.
pub fn refused(args: &[&str], message: &str) -> String {
    let out = qrouter(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let line = args.join(" ");
    assert_eq!(out.status.code(), Some(2), "qrouter {line}: {err}");
    assert!(
        err.contains(message),
        "qrouter {line}: expected '{message}' in: {err}"
    );
    err
}

/// `qrouter batch ARGS` with `script` on its stdin.
pub fn batch(args: &[&str], script: &str) -> Output {
    use std::io::Write;
    let mut child = command(&[&["batch"][..], args].concat())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
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
    for args in testbed::SEED {
        ok(args);
    }
}

/// Router B beside the seed's router (see `testbed::SECOND_ROUTER`); its gateway address.
pub fn second_router() -> String {
    for args in testbed::SECOND_ROUTER {
        ok(args);
    }
    value(&["router", "show", "router_b"], "external_gateway_ip")
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
    ok(testbed::SET_GATEWAY);
}

/// cirros-vm3 reaches the upstream gateway through the router.
pub fn vm3_pings_upstream() {
    pings_upstream("cirros-vm3");
}

/// `instance` reaches the upstream gateway 10.10.10.1.
pub fn pings_upstream(instance: &str) {
    exec_pings(instance, "10.10.10.1");
}

/// One ping from `instance` to `target` (IPv4 or IPv6) is answered within 2 s.
pub fn exec_pings(instance: &str, target: &str) {
    ok(&[
        "instance", "exec", instance, "--", "ping", "-c", "1", "-W", "2", target,
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
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["ip_address"] == ip)
        })
        .unwrap_or_else(|| panic!("router {router} has no port with {ip}: {ports}"));
    port["Device Name"].as_str().unwrap().to_string()
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

/// Listen on `addr` in `server_ns` and connect to it from `client_ns`: the peer address the
/// server saw, or None when no connection arrived within two seconds.
pub fn tcp_probe(server_ns: &str, addr: &str, client_ns: &str) -> Option<SocketAddr> {
    testbed::tcp_probe(server_ns, addr, client_ns).unwrap()
}

/// Like `tcp_probe`, but the client connects to `target` (a floating IP in front of `listen`).
pub fn tcp_probe_to(
    server_ns: &str,
    listen: &str,
    target: &str,
    client_ns: &str,
) -> Option<SocketAddr> {
    testbed::tcp_probe_to(server_ns, listen, target, client_ns).unwrap()
}

/// The first ICMP packet tcpdump prints on `dev` in `ns` while `traffic` runs.
pub fn capture_icmp(ns: &str, dev: &str, traffic: impl FnOnce()) -> String {
    capture(ns, dev, Filter::Icmp, traffic)
}

/// The first packet matching `filter` that tcpdump prints on `dev` in `ns` while `traffic` runs.
pub fn capture(ns: &str, dev: &str, filter: Filter, traffic: impl FnOnce()) -> String {
    let out = testbed::capture(ns, dev, filter, traffic).unwrap();
    if out.is_empty() {
        format!("(nothing captured on {dev} in {ns})")
    } else {
        out
    }
}
