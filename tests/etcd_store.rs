//! The desired state in etcd (`--store etcd://...`): the same commands and output as the
//! embedded store, one guarded transaction per change, one key per address, and clear
//! failures when etcd is away. etcd runs in the test's sandbox and is killed when it ends.

mod common;
mod etcd;

use std::collections::BTreeSet;
use std::process::Command;

use common::*;
use etcd::EtcdServer;

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
        let mut client = qrouter::store::etcd::client::Client::new(&server.addr).unwrap();
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
        assert!(client.get("/qrouter/lock").unwrap().is_none());
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
        let mut client = qrouter::store::etcd::client::Client::new(&server.addr).unwrap();
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
        let mut raw = qrouter::store::etcd::client::Client::new(&server.addr).unwrap();
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
        assert!(raw.get("/qrouter/lock").unwrap().is_none());
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
fn a_killed_writers_lock_is_broken_after_its_time() {
    sandboxed(|| {
        let server = EtcdServer::start();
        let url = server.url();
        let mut raw = qrouter::store::etcd::client::Client::new(&server.addr).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        // A lock left by a writer that died, held until 2 s from now.
        raw.put(
            "/qrouter/lock",
            format!("{} pid 1 on gone", now + 2).as_bytes(),
            0,
        )
        .unwrap();
        let start = std::time::Instant::now();
        etcd_ok(&url, &["network", "create", "n1"]);
        let waited = start.elapsed();
        assert!(waited >= std::time::Duration::from_secs(1), "{waited:?}");
        assert!(waited < std::time::Duration::from_secs(10), "{waited:?}");
        assert!(raw.get("/qrouter/lock").unwrap().is_none());
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
