//! The desired state in etcd (`--store etcd://...`): the same commands and output as the
//! embedded store, one guarded transaction per change, one key per address, and clear
//! failures when etcd is away. etcd runs in the test's sandbox and is killed when it ends.

mod common;
mod etcd;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use etcd::EtcdServer;
use qrouter::store::etcd::client::{Client, Op};
use qrouter::store::etcd::{LEASE_TTL, LOCK};

fn etcd_cmd(url: &str, args: &[&str]) -> Command {
    let mut cmd = command(args);
    cmd.env("QROUTER_STORE", url);
    cmd
}

fn etcd_ok(url: &str, args: &[&str]) -> String {
    succeeded(args, etcd_cmd(url, args).output().unwrap())
}

#[test]
fn objects_live_in_etcd_one_key_each() {
    sandboxed(|| {
        let server = EtcdServer::start();
        let url = server.url();
        etcd_ok(&url, &["network", "create", "vlan101"]);
        etcd_ok(
            &url,
            &[
                "subnet",
                "create",
                "vlan101",
                "--network",
                "vlan101",
                "--subnet-range",
                "172.16.101.0/24",
                "--no-dhcp",
            ],
        );
        etcd_ok(&url, &["router", "create", "router_100_101"]);
        etcd_ok(
            &url,
            &["router", "add", "interface", "router_100_101", "vlan101"],
        );
        etcd_ok(
            &url,
            &[
                "instance",
                "create",
                "cirros-vm3",
                "--network",
                "vlan101",
                "--fixed-ip",
                "172.16.101.3",
            ],
        );
        // Nothing was made on this host: the agents converge (none runs here).
        assert!(!sh_ok("ip netns list").contains("qrouter-"));
        assert!(
            etcd_ok(&url, &["router", "list", "-f", "value", "-c", "Name"])
                .contains("router_100_101")
        );
        // The ports' devices are where their owners are placed, not here: no agent has
        // reported them yet (BUILD); a disabled network's are DOWN.
        let statuses = || {
            let list = etcd_ok(&url, &["port", "list", "-f", "value", "-c", "Status"]);
            list.lines().map(String::from).collect::<Vec<_>>()
        };
        assert_eq!(statuses(), ["BUILD", "BUILD"]);
        etcd_ok(&url, &["network", "set", "vlan101", "--disable"]);
        assert_eq!(statuses(), ["DOWN", "DOWN"]);
        etcd_ok(&url, &["network", "set", "vlan101", "--enable"]);
        // The embedded store was not touched.
        assert!(!std::path::Path::new(STATE_DIR).join("qrouter.db").exists());
        let mut client = server.client();
        let (_, kvs) = client.range_prefix("/qrouter/state/").unwrap();
        let keys: Vec<&str> = kvs.iter().map(|kv| kv.key.as_str()).collect();
        let count = |prefix: &str| keys.iter().filter(|k| k.starts_with(prefix)).count();
        assert_eq!(count("/qrouter/state/network/"), 1, "{keys:?}");
        assert_eq!(count("/qrouter/state/router/"), 1);
        assert_eq!(count("/qrouter/state/port/"), 2);
        // One key per address: the gateway .1 and the instance's .3.
        assert_eq!(count("/qrouter/state/ip/"), 2, "{keys:?}");
        assert!(keys.iter().any(|k| k.ends_with("/172.16.101.3")));
        // The store id lives in etcd too, and the lock was let go.
        assert!(client.get("/qrouter/meta/id").unwrap().is_some());
        assert!(client.range_prefix(LOCK).unwrap().1.is_empty());
        // Deleting frees the address key.
        etcd_ok(&url, &["instance", "delete", "cirros-vm3"]);
        let (_, kvs) = client.range_prefix("/qrouter/state/ip/").unwrap();
        assert_eq!(kvs.len(), 1);
    });
}

#[test]
fn twenty_clis_at_once_never_share_an_address() {
    sandboxed(|| {
        let server = EtcdServer::start();
        let url = server.url();
        etcd_ok(&url, &["network", "create", "n1"]);
        etcd_ok(
            &url,
            &[
                "subnet",
                "create",
                "s1",
                "--network",
                "n1",
                "--subnet-range",
                "10.0.0.0/24",
                "--no-dhcp",
            ],
        );
        let children: Vec<_> = (0..20)
            .map(|i| {
                etcd_cmd(
                    &url,
                    &["instance", "create", &format!("vm{i}"), "--network", "n1"],
                )
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let ports = etcd_ok(&url, &["port", "list", "-f", "json"]);
        let ports: serde_json::Value = serde_json::from_str(&ports).unwrap();
        let ips: Vec<String> = ports
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["Fixed IP Addresses"].to_string())
            .collect();
        assert_eq!(ips.len(), 20);
        let distinct: BTreeSet<&String> = ips.iter().collect();
        assert_eq!(distinct.len(), 20, "{ips:?}");
        let mut client = server.client();
        assert_eq!(
            client.range_prefix("/qrouter/state/ip/").unwrap().1.len(),
            20
        );
    });
}

#[test]
fn a_change_whose_reads_went_stale_writes_nothing() {
    sandboxed(|| {
        let server = EtcdServer::start();
        let url = server.url();
        etcd_ok(&url, &["network", "create", "n1"]);
        let spec = Some(url.as_str());
        let dir = std::path::Path::new(STATE_DIR);
        let mut a = qrouter::store::Store::open_spec(spec, dir, true).unwrap();
        let (txn, old) = a.begin().unwrap();
        let mut mine = (*old).clone();
        let mut net = (*mine.networks[0]).clone();
        net.name = "renamed-by-a".into();
        mine.networks[0] = std::rc::Rc::new(net);
        // Another writer changes the network meanwhile, ignoring the lock.
        let mut raw = server.client();
        let key = format!("/qrouter/state/network/{}", old.networks[0].id);
        let mut theirs = (*old.networks[0]).clone();
        theirs.mtu = Some(1400);
        raw.put(&key, &serde_json::to_vec(&theirs).unwrap(), 0)
            .unwrap();
        txn.save(&old, &mine).unwrap();
        let err = txn.commit(&std::rc::Rc::new(mine)).unwrap_err();
        assert!(
            format!("{err:#}").contains("nothing was changed"),
            "{err:#}"
        );
        let state = a.load().unwrap();
        assert_eq!(state.networks[0].name, "n1");
        assert_eq!(state.networks[0].mtu, Some(1400));
        // The refused change let go of the lock: the next one goes through at once.
        assert!(raw.range_prefix(LOCK).unwrap().1.is_empty());
        etcd_ok(&url, &["network", "create", "n2"]);

        // An address taken behind this command's back (its key exists) is never handed out
        // again: the change that would is refused whole.
        etcd_ok(
            &url,
            &[
                "subnet",
                "create",
                "s2",
                "--network",
                "n2",
                "--subnet-range",
                "10.0.0.0/24",
                "--no-dhcp",
            ],
        );
        let subnet = etcd_ok(&url, &["subnet", "show", "s2", "-f", "value", "-c", "id"]);
        let ip_key = format!("/qrouter/state/ip/{}/10.0.0.7", subnet.trim());
        raw.put(&ip_key, b"port elsewhere", 0).unwrap();
        let out = etcd_cmd(
            &url,
            &[
                "instance",
                "create",
                "vm",
                "--network",
                "n2",
                "--fixed-ip",
                "10.0.0.7",
            ],
        )
        .output()
        .unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(etcd_ok(&url, &["instance", "list", "-f", "value"]).is_empty());
        assert!(etcd_ok(&url, &["port", "list", "-f", "value"]).is_empty());
        assert_eq!(raw.get(&ip_key).unwrap().unwrap().value, b"port elsewhere");
    });
}

#[test]
fn a_dead_writers_lock_ends_with_its_lease() {
    sandboxed(|| {
        let server = EtcdServer::start();
        let url = server.url();
        etcd_ok(&url, &["network", "create", "n0"]);
        let mut raw = server.client();
        // A state big enough that a writer takes a while between taking the lock and
        // committing (reading the state it took, checking the change against it).
        filler_networks(&mut raw, 5000);
        // The writer killed (SIGKILL) as soon as its key appears; once more if it had
        // committed already.
        let (pid, held) = (0..5)
            .find_map(|_| {
                let (revision, _) = raw.range_prefix(LOCK).unwrap();
                let mut watch = raw.watch(LOCK, revision + 1).unwrap();
                watch.set_timeout(Duration::from_secs(60)).unwrap();
                let mut writer = etcd_cmd(&url, &["network", "create", "killed"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                let held = loop {
                    let batch = watch.recv().unwrap();
                    if let Some((false, kv)) = batch.events.first() {
                        break kv.clone();
                    }
                };
                writer.kill().unwrap();
                writer.wait().unwrap();
                let still = raw.get(&held.key).unwrap().is_some();
                still.then_some((writer.id(), held))
            })
            .expect("the writer was killed holding the lock once in five");
        // Its key, under its lease, says who holds it.
        assert_ne!(held.lease, 0);
        let value = String::from_utf8_lossy(&held.value).into_owned();
        assert!(value.starts_with(&format!("pid {pid} on ")), "{value}");
        // The next change waits for the lease to end (its TTL), says for whom, and goes on.
        let start = Instant::now();
        let out = etcd_cmd(&url, &["network", "create", "n1"])
            .output()
            .unwrap();
        let waited = start.elapsed();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(err.contains(&format!("pid {pid} on ")), "{err}");
        assert!(
            waited < Duration::from_secs(LEASE_TTL as u64 + 5),
            "{waited:?}"
        );
        // The killed writer's change was not written, and the lock is free.
        let names = etcd_ok(&url, &["network", "list", "-f", "value", "-c", "Name"]);
        assert!(names.contains("n1\n") && !names.contains("killed"));
        assert!(raw.range_prefix(LOCK).unwrap().1.is_empty());
    });
}

/// `n` networks written straight into etcd, as copies of the first one with ids and names
/// of their own.
fn filler_networks(raw: &mut Client, n: usize) {
    let (_, kvs) = raw.range_prefix("/qrouter/state/network/").unwrap();
    let template: serde_json::Value = serde_json::from_slice(&kvs[0].value).unwrap();
    let puts: Vec<Op> = (0..n)
        .map(|i| {
            let mut net = template.clone();
            let id = format!("00000000-0000-4000-8000-{i:012}");
            net["id"] = id.clone().into();
            net["name"] = format!("filler{i}").into();
            net["bridge"] = format!("brqfill{i:05}").into();
            net["vni"] = serde_json::Value::Null;
            Op::Put {
                key: format!("/qrouter/state/network/{id}"),
                value: net.to_string().into_bytes(),
                lease: 0,
            }
        })
        .collect();
    assert!(raw.txn(&[], &puts).unwrap().0);
}

#[test]
fn a_garbage_lock_is_reported_and_broken_by_store_unlock() {
    sandboxed(|| {
        let server = EtcdServer::start();
        let url = server.url();
        etcd_ok(&url, &["network", "create", "n0"]);
        let mut raw = server.client();
        // A lock of a qrouter before leases, and a key set by hand: no lease ends either.
        raw.put(LOCK, b"1700000000 pid 1 on gone", 0).unwrap();
        raw.put("/qrouter/lock/junk", b"not a lock {", 0).unwrap();
        let keys = |raw: &mut Client| -> Vec<String> {
            let (_, kvs) = raw.range_prefix(LOCK).unwrap();
            kvs.into_iter().map(|kv| kv.key).collect()
        };
        // Reported at once with what it holds, not waited for.
        let start = Instant::now();
        let out = etcd_cmd(&url, &["network", "create", "n1"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(start.elapsed() < Duration::from_secs(10));
        for told in [
            "/qrouter/lock ",
            "pid 1 on gone",
            "no lease",
            "store unlock",
        ] {
            assert!(err.contains(told), "{told}: {err}");
        }
        // Nothing written; the refused writer's own key went.
        assert_eq!(keys(&mut raw), [LOCK, "/qrouter/lock/junk"]);
        // No terminal: only with -y.
        let unlock = |args: &[&str]| etcd_cmd(&url, args).output().unwrap();
        let out = unlock(&["store", "unlock"]);
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(keys(&mut raw).len(), 2);
        let out = unlock(&["store", "unlock", "-y"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(
            err.contains("not a lock {") && err.contains("pid 1 on gone"),
            "{err}"
        );
        assert!(keys(&mut raw).is_empty());
        // Nothing left to unlock: exit 2, as with the embedded store.
        assert_eq!(unlock(&["store", "unlock", "-y"]).status.code(), Some(2));
        let out = command(&["store", "unlock", "-y"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        etcd_ok(&url, &["network", "create", "n1"]);
    });
}

#[test]
fn etcd_away_is_a_clear_error_and_back_again_nothing_lost() {
    sandboxed(|| {
        let mut server = EtcdServer::start();
        let url = server.url();
        etcd_ok(&url, &["network", "create", "n1"]);
        server.stop();
        let two = format!("{url},127.0.0.1:23799");
        for args in [&["network", "create", "n2"][..], &["network", "list"][..]] {
            let out = etcd_cmd(&two, args).output().unwrap();
            assert_eq!(out.status.code(), Some(1));
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("127.0.0.1:23790,127.0.0.1:23799") && err.contains("unreachable"),
                "{err}"
            );
        }
        server.restart();
        let names = etcd_ok(&url, &["network", "list", "-f", "value", "-c", "Name"]);
        assert_eq!(names.trim(), "n1");
        etcd_ok(&url, &["network", "create", "n2"]);
    });
}
