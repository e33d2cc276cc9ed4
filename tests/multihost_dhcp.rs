//! DHCP across hosts, as Neutron's DHCP agent serves it: each network's dnsmasq runs on one
//! network host (placed like a router, recorded on its DHCP port), and instances on compute
//! hosts get their leases from it over VXLAN. Real leases, real DNS answers, real pings.

mod common;
mod etcd;
mod hosts;

use std::time::{Duration, Instant};

use common::*;
use hosts::*;

/// What instance `id`'s DHCP client recorded of its lease on `host`, as `key=value` lines.
fn lease(host: &Host, id: &str) -> String {
    host.sh(&format!("cat /run/qrouter/udhcpc/{id}.lease")).1
}

/// The address of a lease, without its prefix length.
fn leased(lease: &str) -> String {
    let line = lease.lines().find_map(|l| l.strip_prefix("address="));
    let address = line.and_then(|a| a.split('/').next());
    address
        .unwrap_or_else(|| panic!("no address in {lease}"))
        .to_string()
}

#[test]
fn instances_on_compute_hosts_get_leases_from_the_network_hosts_dnsmasq() {
    sandboxed(|| {
        let mut rig = MultiHost::started(
            &[
                ("network1", "192.168.50.11", "network"),
                ("compute1", "192.168.50.12", "compute"),
                ("compute2", "192.168.50.13", "compute"),
            ],
            &[],
        );
        let [network1, compute1, compute2] = &rig.hosts[..] else {
            unreachable!("three hosts")
        };
        ok(&["network", "create", "web"]);
        ok(&[
            "subnet",
            "create",
            "web",
            "--network",
            "web",
            "--subnet-range",
            "172.16.60.0/24",
        ]);
        // The DHCP server went to the network host, and runs there only.
        let net = value(&["network", "show", "web"], "id");
        assert_eq!(value(&["network", "show", "web"], "dhcp_host"), "network1");
        assert_eq!(value(&["network", "show", "web"], "dhcp_status"), "ACTIVE");
        let qdhcp = format!("qdhcp-{net}");
        assert!(namespaces(network1).contains(&qdhcp));
        assert_eq!(network1.dnsmasqs().len(), 1);
        for c in [compute1, compute2] {
            assert!(!namespaces(c).contains(&qdhcp));
            assert!(c.dnsmasqs().is_empty());
        }
        let hosts_json = ok(&["host", "show", "network1", "-f", "json"]);
        assert!(hosts_json.contains("\"web\""), "{hosts_json}");

        // An instance on compute1 takes its address by DHCP: the command returns once
        // compute1's agent has run its client, which got the lease from network1.
        let started = Instant::now();
        ok(&[
            "instance",
            "create",
            "vm1",
            "--network",
            "web",
            "--dhcp",
            "--host",
            "compute1",
        ]);
        let took = started.elapsed();
        println!(
            "instance create --dhcp across hosts: {} ms",
            took.as_millis()
        );
        let vm1 = value(&["instance", "show", "vm1"], "id");
        assert_eq!(value(&["instance", "show", "vm1"], "status"), "ACTIVE");
        let got = lease(compute1, &vm1);
        let address = leased(&got);
        let port = ok(&["port", "list", "--device-id", &vm1, "-f", "json"]);
        assert!(port.contains(&format!("\"{address}\"")), "{port}");
        assert!(
            got.contains(&format!("address={address}/24"))
                && got.contains("server=172.16.60.2")
                && got.contains("mtu=1450"),
            "vm1's lease ({address}): {got}"
        );
        // instance show asks compute1's agent for the lease it holds.
        let shown: serde_json::Value =
            serde_json::from_str(&ok(&["instance", "show", "vm1", "-f", "json"])).unwrap();
        assert_eq!(
            shown["dhcp_lease"]["address"],
            format!("{address}/24"),
            "{shown}"
        );
        assert_eq!(shown["dhcp_lease"]["server"], "172.16.60.2", "{shown}");
        let inside = compute1.sh_ok(&format!("ip -n qinstance-{vm1} -4 addr show eth0"));
        assert!(inside.contains(&format!("{address}/24")), "{inside}");
        // Real traffic to the DHCP server's address on network1, over VXLAN.
        assert!(pings(compute1, &vm1, "172.16.60.2"));

        // A second instance on compute2; vm1 resolves its name through network1's dnsmasq.
        ok(&[
            "instance",
            "create",
            "vm2",
            "--network",
            "web",
            "--dhcp",
            "--host",
            "compute2",
        ]);
        let vm2 = value(&["instance", "show", "vm2"], "id");
        let got2 = lease(compute2, &vm2);
        assert!(got2.contains("server=172.16.60.2"), "{got2}");
        let addr2 = leased(&got2);
        let (_, answer) = compute1.sh(&format!(
            "ip netns exec qinstance-{vm1} busybox nslookup -type=a vm2.openstacklocal 172.16.60.2"
        ));
        assert!(answer.contains(&format!("Address: {addr2}")), "{answer}");
        assert!(pings(compute1, &vm1, &addr2));

        // A workload other software runs on compute2 (a namespace standing in for a VM),
        // bound there with port create --host: compute2's agent brings the network and
        // plugs its tap, and the workload's own DHCP client gets its lease from network1.
        let port: serde_json::Value = serde_json::from_str(&ok(&[
            "port",
            "create",
            "w1",
            "--network",
            "web",
            "--host",
            "compute2",
            "-f",
            "json",
        ]))
        .unwrap();
        assert_eq!(port["binding_host_id"], "compute2", "{port}");
        let (tap, mac) = (
            port["device_name"].as_str().unwrap(),
            port["mac_address"].as_str().unwrap(),
        );
        // The VM starts once compute2's agent has the port (a sync of it has returned):
        // its agent plugs the tap as the kernel announces it, with no sync asked.
        ok(&["sync", "--host", "compute2"]);
        compute2.sh_ok(&format!(
            "ip netns add w1 && ip link add {tap} type veth peer name eth0 netns w1 && \
                 ip link set {tap} up && ip -n w1 link set lo up && \
                 ip -n w1 link set eth0 address {mac} up"
        ));
        let bridge = value(&["port", "show", "w1"], "bridge");
        wait_for("compute2's agent plugs the workload's tap", || {
            let (_, link) = compute2.sh(&format!("ip -o link show {tap}"));
            link.contains(&format!("master {bridge}")) && link.contains("state UP")
        });
        let out = qrouter(&["sync", "--host", "compute2"]);
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && !said.contains(&format!("plug {tap}")),
            "{said}"
        );
        let got = compute2.sh_ok(
            "ip netns exec w1 env QROUTER_LEASE=/run/w1.lease busybox udhcpc -i eth0 -f -q -n \
                 -t 5 -T 1 -s /run/qrouter/udhcpc/script >/dev/null 2>&1; cat /run/w1.lease",
        );
        let w1 = leased(&got);
        assert!(
            port.to_string().contains(&format!("\"{w1}\"")),
            "{got} {port}"
        );
        assert!(got.contains("server=172.16.60.2"), "{got}");
        assert!(compute2.sh("ip netns exec w1 ping -c 1 -W 1 172.16.60.2").0);
        compute2.sh_ok("ip netns delete w1");
        ok(&["port", "delete", "w1"]);
        let bad = qrouter(&[
            "port",
            "create",
            "w2",
            "--network",
            "web",
            "--host",
            "nosuch",
        ]);
        assert_eq!(bad.status.code(), Some(2));
        let err = String::from_utf8_lossy(&bad.stderr);
        assert!(
            err.contains("port w2: --host nosuch: no such host"),
            "{err}"
        );

        // The DHCP host down: a change on its network names it, and is stored.
        let hosts = &mut rig.hosts;
        hosts[0].kill_agent();
        wait_for("network1 down", || {
            value(&["host", "show", "network1"], "alive") == "false"
        });
        assert_eq!(value(&["network", "show", "web"], "dhcp_status"), "DOWN");
        let out = qrouter(&["port", "create", "p1", "--network", "web"]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("host network1 is down"), "{err}");
        // Back: its agent serves the new port too.
        hosts[0].start_agent();
        wait_for("network1's dnsmasq knows p1", || {
            let mac = value(&["port", "show", "p1"], "mac_address");
            hosts[0]
                .sh(&format!("cat /run/qrouter/dhcp/{net}/host"))
                .1
                .contains(&mac)
        });
        assert_eq!(hosts[0].dnsmasqs().len(), 1, "one dnsmasq, not two");

        // The network's DHCP off (its instances gone first, as they need it): dnsmasq and
        // its namespace go from network1.
        ok(&["instance", "delete", "vm1", "vm2"]);
        assert!(namespaces(&hosts[1]).is_empty() && namespaces(&hosts[2]).is_empty());
        ok(&["subnet", "set", "web", "--no-dhcp"]);
        assert!(!namespaces(&hosts[0]).contains(&qdhcp));
        let stopped = Instant::now();
        while !hosts[0].dnsmasqs().is_empty() && stopped.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(hosts[0].dnsmasqs().is_empty());

        rig.finish();
    });
}
