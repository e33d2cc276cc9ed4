//! DHCP and DNS per network, and ports for workloads qrouter does not run: a namespace stands
//! in for a VM, plugs the tap `port create` named, runs busybox udhcpc, and must get the
//! port's address, gateway, DNS server, MTU and host routes from the network's dnsmasq.

mod common;

use common::vm::{fake_vm, ps_dnsmasq, udhcpc};
use common::*;

#[test]
fn a_vm_on_a_port_gets_its_lease_and_reaches_upstream() {
    sandboxed(|| {
        seed_topology();
        set_gateway();
        // The seed's subnets: DHCP on for tenant networks, off for the external one.
        assert_eq!(value(&["subnet", "show", "vlan101"], "enable_dhcp"), "true");
        assert_eq!(value(&["subnet", "show", "ext"], "enable_dhcp"), "false");
        let show = json(&["network", "show", "vlan101"]);
        assert_eq!(show["dhcp_addresses"][0], "172.16.101.2/24", "{show}");
        assert_eq!(show["dnsmasq"], "running", "{show}");

        ok(&["network", "create", "web", "--mtu", "1400"]);
        ok(&[
            "subnet",
            "create",
            "web",
            "--network",
            "web",
            "--subnet-range",
            "172.16.50.0/24",
            "--host-route",
            "destination=10.9.0.0/16,gateway=172.16.50.254",
        ]);
        ok(&["router", "add", "interface", "router_100_101", "web"]);
        ok(&["instance", "create", "db1", "--network", "web"]);
        let port = json(&["port", "create", "web1", "--network", "web"]);
        let (tap, mac) = (
            port["device_name"].as_str().unwrap(),
            port["mac_address"].as_str().unwrap(),
        );
        assert!(
            port["status"].as_str().unwrap().starts_with("DOWN"),
            "{port}"
        );
        assert!(port["libvirt_interface"]
            .as_str()
            .unwrap()
            .contains(&format!("<target dev='{tap}'/>")));
        let bridge = port["bridge"].as_str().unwrap();

        fake_vm("vm1", tap, bridge, mac);
        assert_eq!(value(&["port", "show", "web1"], "status"), "ACTIVE");
        // The name `port list` prints is the one `port show` takes.
        let listed = json(&["port", "list", "--network", "web"]);
        let row = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["Name"] == "web1");
        let id = row.expect("web1 listed by its name")["ID"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(value(&["port", "show", "web1"], "id"), id);
        // openstackclient's filters.
        let names = |args: &[&str]| -> Vec<String> {
            let mut all = vec!["port", "list"];
            all.extend(args);
            let rows = json(&all);
            let ids = rows.as_array().unwrap().iter();
            ids.map(|r| r["ID"].as_str().unwrap().to_string()).collect()
        };
        let mac = value(&["port", "show", "web1"], "mac_address");
        assert_eq!(names(&["--mac-address", &mac]), [id.as_str()]);
        let shown = json(&["port", "show", "web1"]);
        let ip = shown["fixed_ips"][0]["ip_address"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            names(&["--fixed-ip", &format!("ip-address={ip}")]),
            [id.as_str()]
        );
        let owners = json(&["port", "list", "--device-owner", "network:router_interface"]);
        let owners = owners.as_array().unwrap();
        assert!(!owners.is_empty());
        assert!(owners
            .iter()
            .all(|r| r["Device Owner"] == "network:router_interface"));
        let bad = qrouter(&["port", "list", "--fixed-ip", "ip-address=nope"]);
        assert_eq!(bad.status.code(), Some(2));
        let (got, log) = udhcpc("vm1");
        println!("udhcpc in vm1: {log}");
        assert!(got, "no lease: {log}");
        let web1_ip = value(&["port", "show", "web1"], "fixed_ips");
        assert!(web1_ip.contains("172.16.50.4"), "{web1_ip}");
        assert!(
            log.contains("bound ip=172.16.50.4/24 router=172.16.50.1 dns=172.16.50.2 mtu=1400 domain=openstacklocal hostname=web1 staticroutes=10.9.0.0/16 172.16.50.254 0.0.0.0/0 172.16.50.1"),
            "{log}"
        );
        let routes = sh_ok("ip -n vm1 route");
        assert!(routes.contains("default via 172.16.50.1"), "{routes}");
        assert!(routes.contains("10.9.0.0/16 via 172.16.50.254"), "{routes}");
        assert!(sh_ok("ip -n vm1 link show eth0").contains("mtu 1400"));

        // Upstream through the router, SNAT'ed to the gateway port's 10.10.10.2.
        sh_ok("ip netns exec vm1 ping -c 1 -W 2 10.10.10.1");
        let upstream = namespace_of("instance", "upstream");
        let seen = tcp_probe(&upstream, "10.10.10.1:8080", "vm1");
        assert_eq!(
            seen.map(|a| a.ip().to_string()).as_deref(),
            Some("10.10.10.2")
        );

        // The network's DNS answers for an instance's name and a port's.
        let answer =
            sh("ip netns exec vm1 busybox nslookup -type=a db1.openstacklocal 172.16.50.2").1;
        println!("nslookup db1: {answer}");
        assert!(answer.contains("Address: 172.16.50.3"), "{answer}");
        let answer = sh("ip netns exec vm1 busybox nslookup -type=a web1 172.16.50.2").1;
        assert!(answer.contains("Address: 172.16.50.4"), "{answer}");

        // Reachable from upstream through a floating IP on its port.
        let fip = value(
            &["floating", "ip", "create", "ext_net", "--port", "web1"],
            "floating_ip_address",
        );
        let seen = tcp_probe_to("vm1", "172.16.50.4:80", &format!("{fip}:80"), &upstream);
        assert_eq!(
            seen.map(|a| a.ip().to_string()).as_deref(),
            Some("10.10.10.1")
        );

        // A MAC with no port gets no lease.
        fake_vm("vm2", "tapnoport", bridge, "fa:16:3e:99:99:99");
        let (got, log) = udhcpc("vm2");
        assert!(!got, "a MAC with no port got a lease: {log}");

        // In use: refused with the owner named, nothing changed.
        let out = qrouter(&[
            "port",
            "delete",
            &value(&["instance", "show", "db1"], "port_id"),
        ]);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("in use by instance db1"));
        let out = qrouter(&["port", "delete", "web1"]);
        assert_eq!(out.status.code(), Some(2));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(&format!("in use by floating IP {fip}"))
        );

        // Teardown by qrouter itself: no dnsmasq survives its network.
        sh_ok("ip netns del vm1; ip netns del vm2");
        ok(&["floating", "ip", "delete", &fip]);
        ok(&["port", "delete", "web1"]);
        ok(&["instance", "delete", "db1"]);
        ok(&["router", "remove", "subnet", "router_100_101", "web"]);
        let web = value(&["network", "show", "web"], "id");
        ok(&["network", "delete", "web"]);
        assert!(!ps_dnsmasq().contains(&web), "{}", ps_dnsmasq());
        teardown_seed();
    });
}

/// Delete the seed topology with qrouter's own commands: every dnsmasq must go with it.
fn teardown_seed() {
    for ip in value(&["floating", "ip", "list"], "Floating IP Address").lines() {
        ok(&["floating", "ip", "delete", ip.trim()]);
    }
    ok(&["instance", "delete", "cirros-vm3", "upstream"]);
    ok(&["router", "delete", "router_100_101", "--force"]);
    ok(&["network", "delete", "vlan100", "vlan101", "ext_net"]);
    assert_eq!(ps_dnsmasq(), "", "dnsmasq left running");
    assert!(!sh_ok("ip netns list").contains("qdhcp-"));
}

#[test]
fn a_dead_dnsmasq_is_marked_and_sync_restarts_it_also_after_a_reboot() {
    sandboxed(|| {
        // Two networks with the same (overlapping) subnet: each dnsmasq answers its own.
        for (net, mac) in [
            ("blue", "fa:16:3e:00:00:b1"),
            ("green", "fa:16:3e:00:00:91"),
        ] {
            tenant_network(net, "192.168.7.0/24");
            let port = json(&[
                "port",
                "create",
                &format!("{net}1"),
                "--network",
                net,
                "--mac-address",
                mac,
            ]);
            fake_vm(
                net,
                port["device_name"].as_str().unwrap(),
                port["bridge"].as_str().unwrap(),
                mac,
            );
        }
        // The same address on each, each from its own network's dnsmasq.
        let (got, log) = udhcpc("blue");
        assert!(got && log.contains("bound ip=192.168.7.3/24"), "{log}");
        let (got, log) = udhcpc("green");
        assert!(got && log.contains("bound ip=192.168.7.3/24"), "{log}");
        println!("green: {log}");

        // Killed behind qrouter's back: marked, listed, restarted.
        let pid = value(&["network", "show", "blue"], "dnsmasq_pid");
        sh_ok(&format!("kill {pid}"));
        std::thread::sleep(std::time::Duration::from_millis(200));
        // Running as nobody it cannot remove its pid file (DEAD); in an unprivileged
        // sandbox it stays the sandbox's root and removes it as it exits (MISSING).
        let state = value(&["network", "show", "blue"], "dnsmasq");
        assert!(
            state.starts_with("DEAD: pid") || state.starts_with("MISSING"),
            "{state}"
        );
        let dry = command(&["sync", "--dry-run"]).output().unwrap();
        let dry = String::from_utf8_lossy(&dry.stdout).to_string();
        println!("{dry}");
        assert!(dry.contains("start dnsmasq"), "{dry}");
        ok(&["sync"]);
        assert_eq!(value(&["network", "show", "blue"], "dnsmasq"), "running");
        assert_ne!(value(&["network", "show", "blue"], "dnsmasq_pid"), pid);
        let (got, log) = udhcpc("blue");
        assert!(got && log.contains("bound ip=192.168.7.3/24"), "{log}");

        // A reboot: processes and namespaces gone, the store and pid files remain.
        for net in ["blue", "green"] {
            sh_ok(&format!(
                "kill {}",
                value(&["network", "show", net], "dnsmasq_pid")
            ));
        }
        sh_ok("sleep 0.2; for n in $(ip netns list | cut -d' ' -f1 | grep qdhcp-); do ip netns del $n; done");
        let state = value(&["network", "show", "green"], "dnsmasq");
        assert!(
            state.starts_with("DEAD") || state.starts_with("MISSING"),
            "{state}"
        );
        let out = ok(&["sync"]);
        println!("{out}");
        assert!(out.contains("start dnsmasq"), "{out}");
        assert_eq!(ps_dnsmasq().lines().count(), 2, "{}", ps_dnsmasq());
        // Clients renew: the same address again, from the restarted server.
        let (got, log) = udhcpc("green");
        assert!(got && log.contains("bound ip=192.168.7.3/24"), "{log}");
        assert_eq!(
            ok(&["sync", "--dry-run"]).trim(),
            "in sync: the kernel matches the store"
        );

        sh_ok("ip netns del blue; ip netns del green");
        ok(&["port", "delete", "blue1", "green1"]);
        ok(&["network", "delete", "blue", "green"]);
        assert_eq!(ps_dnsmasq(), "", "dnsmasq left running");
    });
}

/// The udhcpc processes alive (none may outlive the command that ran one).
fn ps_udhcpc() -> String {
    sh("ps -eo stat=,pid=,args= | awk '$1 !~ /^Z/ && $0 ~ /udhcpc/ && $0 !~ /awk/'").1
}

#[test]
fn an_instance_created_with_dhcp_gets_its_lease_and_pings_upstream() {
    sandboxed(|| {
        for args in testbed::seed_with_dhcp() {
            ok(args);
        }
        set_gateway();
        // The lease, as the client's script recorded it: the port's address, the
        // subnet's gateway, the DHCP port as DNS server.
        let vm3 = json(&["instance", "show", "cirros-vm3"]);
        println!("{vm3:#}");
        assert_eq!(vm3["dhcp"], true, "{vm3}");
        assert_eq!(vm3["fixed_ip"], "172.16.101.3", "{vm3}");
        let lease = &vm3["dhcp_lease"];
        assert_eq!(lease["address"], "172.16.101.3/24", "{vm3}");
        assert_eq!(lease["router"], "172.16.101.1", "{vm3}");
        assert_eq!(lease["dns"], "172.16.101.2", "{vm3}");
        assert_eq!(lease["domain"], "openstacklocal", "{vm3}");
        assert_eq!(lease["server"], "172.16.101.2", "{vm3}");
        // Set by the client, not by qrouter: the default route is the DHCP client's.
        let ns = namespace_of("instance", "cirros-vm3");
        let addr = sh_ok(&format!("ip -n {ns} -o -4 addr show dev eth0"));
        assert!(addr.contains("inet 172.16.101.3/24"), "{addr}");
        let routes = sh_ok(&format!("ip -n {ns} route"));
        assert!(
            routes.contains("default via 172.16.101.1 dev eth0 proto dhcp"),
            "{routes}"
        );
        assert_eq!(ps_udhcpc(), "", "a DHCP client was left running");

        // Through the router, SNAT'ed to 10.10.10.2; the network's DNS knows the VM.
        vm3_pings_upstream();
        let upstream = namespace_of("instance", "upstream");
        let seen = tcp_probe(&upstream, "10.10.10.1:8080", &ns);
        assert_eq!(
            seen.map(|a| a.ip().to_string()).as_deref(),
            Some("10.10.10.2")
        );
        let answer = sh(&format!(
            "ip netns exec {ns} busybox nslookup -type=a cirros-vm3.openstacklocal {}",
            lease["dns"].as_str().unwrap()
        ))
        .1;
        assert!(answer.contains("Address: 172.16.101.3"), "{answer}");
        let trace = ok(&["trace", "cirros-vm3", "10.10.10.1"]);
        assert!(trace.contains("10.10.10.2"), "{trace}");

        // What the client set is no drift; a lost address is got back by DHCP.
        assert_eq!(
            ok(&["sync", "--dry-run"]).trim(),
            "in sync: the kernel matches the store"
        );
        sh_ok(&format!("ip -n {ns} addr flush dev eth0"));
        let dry = String::from_utf8(qrouter(&["sync", "--dry-run"]).stdout).unwrap();
        assert!(
            dry.contains("run udhcpc on eth0 (lease 172.16.101.3/24"),
            "{dry}"
        );
        ok(&["sync"]);
        vm3_pings_upstream();
        assert_eq!(ps_udhcpc(), "", "a DHCP client was left running");

        // Only where a subnet serves DHCP.
        let out = qrouter(&[
            "instance",
            "create",
            "vm9",
            "--network",
            "ext_net",
            "--dhcp",
        ]);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("subnet ext serves no DHCP"), "{err}");
        teardown_seed();
        assert!(!sh_ok("ls /run/qrouter/udhcpc").contains(".lease"));
    });
}

#[test]
fn subnet_set_reconfigures_dnsmasq_and_a_new_port_is_served_without_a_restart() {
    sandboxed(|| {
        tenant_network("red", "192.168.9.0/24");
        let net = value(&["network", "show", "red"], "id");
        let plug = |name: &str, mac: &str| {
            let port = json(&[
                "port",
                "create",
                name,
                "--network",
                "red",
                "--mac-address",
                mac,
            ]);
            fake_vm(
                &format!("vm{name}"),
                port["device_name"].as_str().unwrap(),
                port["bridge"].as_str().unwrap(),
                mac,
            );
        };
        plug("a", "fa:16:3e:00:00:0a");
        let (got, log) = udhcpc("vma");
        assert!(got && log.contains("bound ip=192.168.9.3/24"), "{log}");
        let pid = value(&["network", "show", "red"], "dnsmasq_pid");

        // A second port: its static lease is in the hosts file and served after a
        // SIGHUP; the same dnsmasq still runs, and the first client keeps its address.
        plug("b", "fa:16:3e:00:00:0b");
        let hosts = sh_ok(&format!("cat /run/qrouter/dhcp/{net}/host"));
        println!("hosts file after port create b:\n{hosts}");
        assert!(
            hosts.contains("fa:16:3e:00:00:0b,b.openstacklocal,192.168.9.4"),
            "{hosts}"
        );
        assert_eq!(value(&["network", "show", "red"], "dnsmasq_pid"), pid);
        let (got, log) = udhcpc("vmb");
        println!("vmb: {log}");
        assert!(got && log.contains("bound ip=192.168.9.4/24"), "{log}");
        let (got, log) = udhcpc("vma");
        assert!(got && log.contains("bound ip=192.168.9.3/24"), "{log}");

        // DNS servers and host routes: the options file changes, the same dnsmasq
        // hands them out.
        ok(&[
            "subnet",
            "set",
            "red",
            "--dns-nameserver",
            "9.9.9.9",
            "--host-route",
            "destination=10.9.0.0/16,gateway=192.168.9.254",
        ]);
        let show = json(&["subnet", "show", "red"]);
        assert_eq!(show["dns_nameservers"][0], "9.9.9.9", "{show}");
        assert_eq!(show["host_routes"][0]["nexthop"], "192.168.9.254", "{show}");
        let (got, log) = udhcpc("vma");
        assert!(
                got && log.contains(
                    "router=192.168.9.1 dns=9.9.9.9 mtu=1500 domain=openstacklocal hostname=a staticroutes=10.9.0.0/16 192.168.9.254 0.0.0.0/0 192.168.9.1"
                ),
                "{log}"
            );
        ok(&[
            "subnet",
            "unset",
            "red",
            "--dns-nameserver",
            "9.9.9.9",
            "--host-route",
            "destination=10.9.0.0/16,gateway=192.168.9.254",
        ]);
        let (got, log) = udhcpc("vma");
        assert!(got && log.contains("dns=192.168.9.2 "), "{log}");
        assert!(log.trim_end().ends_with("staticroutes="), "{log}");
        ok(&["subnet", "set", "red", "--dns-nameserver", "9.9.9.9"]);
        ok(&["subnet", "set", "red", "--no-dns-nameservers"]);
        assert_eq!(
            json(&["subnet", "show", "red"])["dns_nameservers"],
            serde_json::json!([])
        );
        assert_eq!(value(&["network", "show", "red"], "dnsmasq_pid"), pid);

        // DHCP off: dnsmasq stops and its namespace goes; no lease any more. On again:
        // a new one serves the same static leases.
        ok(&["subnet", "set", "red", "--no-dhcp"]);
        assert_eq!(ps_dnsmasq(), "", "dnsmasq left running");
        assert!(!sh_ok("ip netns list").contains("qdhcp-"));
        assert!(value(&["network", "show", "red"], "dhcp").starts_with("off"));
        let (got, log) = udhcpc("vma");
        assert!(!got, "a lease with DHCP off: {log}");
        ok(&["subnet", "set", "red", "--dhcp"]);
        assert_eq!(value(&["network", "show", "red"], "dnsmasq"), "running");
        let (got, log) = udhcpc("vmb");
        assert!(got && log.contains("bound ip=192.168.9.4/24"), "{log}");

        sh_ok("ip netns del vma; ip netns del vmb");
        ok(&["port", "delete", "a", "b"]);
        ok(&["network", "delete", "red"]);
        assert_eq!(ps_dnsmasq(), "", "dnsmasq left running");
    });
}

#[test]
fn sync_plugs_a_workload_tap_made_later_and_never_deletes_it() {
    sandboxed(|| {
        tenant_network("tan", "192.168.11.0/24");
        let port = json(&["port", "create", "w1", "--network", "tan"]);
        let (tap, mac, bridge) = (
            port["device_name"].as_str().unwrap(),
            port["mac_address"].as_str().unwrap(),
            port["bridge"].as_str().unwrap(),
        );
        // Another program makes the workload's veth, named as port create said, and
        // leaves it off the bridge and down.
        sh_ok(&format!(
            "ip netns add vmw && ip link add {tap} type veth peer name eth0 netns vmw && \
                 ip -n vmw link set eth0 address {mac} up && ip -n vmw link set lo up"
        ));
        let status = value(&["port", "show", "w1"], "status");
        assert!(status.starts_with("DOWN"), "{status}");
        let dry = String::from_utf8(qrouter(&["sync", "--dry-run"]).stdout).unwrap();
        println!("{dry}");
        assert!(
            dry.contains(&format!(
                "host: plug {tap} (port w1) into {bridge} and set it up"
            )),
            "{dry}"
        );
        ok(&["sync"]);
        assert_eq!(value(&["port", "show", "w1"], "status"), "ACTIVE");
        let link = sh_ok(&format!("ip -o link show {tap}"));
        assert!(link.contains(&format!("master {bridge}")), "{link}");
        assert!(link.contains(",UP"), "{link}");
        assert_eq!(
            ok(&["sync", "--dry-run"]).trim(),
            "in sync: the kernel matches the store"
        );
        // Real traffic through it: the workload gets its port's lease.
        let (got, log) = udhcpc("vmw");
        assert!(got && log.contains("bound ip=192.168.11.3/24"), "{log}");

        // Not qrouter's: a port delete and a sync leave it in place.
        ok(&["port", "delete", "w1"]);
        let out = ok(&["sync"]);
        println!("{out}");
        assert!(sh(&format!("ip link show {tap}")).0, "{tap} was deleted");
        sh_ok("ip netns del vmw");
        ok(&["network", "delete", "tan"]);
        assert_eq!(ps_dnsmasq(), "", "dnsmasq left running");
    });
}
