//! The demo's IPv6 act (research/ipv6.md 7): vlan101 becomes dual-stack, cirros-vm3 forms
//! its address by SLAAC from the router's advertisements, and its traffic reaches the
//! upstream with its own address (no NAT66), while the upstream cannot open a connection
//! to it. The external network has no IPv6 subnet: the upstream's link-local address is
//! the routers' IPv6 gateway (Neutron's `ipv6_gateway`), as in many real deployments.

use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use anyhow::Context;
use ipnet::IpNet;

use super::{testbed, Demo};
use crate::kernel::{addr, link, route, Kernel};

/// The upstream switch's global address, set by hand as the demo sets its IPv4 route.
const UPSTREAM: &str = "2001:db8:10::1";

impl Demo {
    pub(super) async fn ipv6_act(
        &mut self,
        k: &mut Kernel,
        vm_ns: &str,
        up_ns: &str,
    ) -> anyhow::Result<()> {
        println!("\n== IPv6: vlan101 gains 2001:db8:101::/64 (SLAAC), routed without NAT");
        let up_lla = link_local(k, up_ns, "eth0")
            .await?
            .context("the upstream has no link-local address")?;
        let up = k.ns(up_ns)?;
        let eth0 = link::list(&up)
            .await?
            .into_iter()
            .find(|l| l.name == "eth0");
        let eth0 = eth0.context("the upstream has no eth0")?.index;
        addr::add(&up, eth0, format!("{UPSTREAM}/64").parse()?).await?;
        println!("(the upstream switch now also answers on {UPSTREAM}, link-local {up_lla})");
        let up_lla = up_lla.to_string();
        // The switch is no VM: port security would drop what it sends from an address the
        // store did not give its port (IPv6's source check, as Neutron's).
        let up_port = self.json(&["instance", "show", "upstream"])?["port_id"]
            .as_str()
            .context("the upstream has no port")?
            .to_string();
        for args in [
            &["port", "set", up_port.as_str(), "--disable-port-security"][..],
            &[
                "network",
                "set",
                "ext_net",
                "--ipv6-gateway",
                up_lla.as_str(),
            ],
            &[
                "subnet",
                "create",
                "vlan101-v6",
                "--network",
                "vlan101",
                "--subnet-range",
                "2001:db8:101::/64",
                "--ipv6-ra-mode",
                "slaac",
                "--ipv6-address-mode",
                "slaac",
            ],
            &["router", "add", "subnet", "router_100_101", "vlan101-v6"],
            &["router", "show", "router_100_101"],
        ] {
            self.step(args)?;
        }
        let vm3 = self.json(&["instance", "show", "cirros-vm3"])?;
        let eui64: Option<Ipv6Addr> = vm3["fixed_ips"]
            .as_str()
            .unwrap_or_default()
            .split(", ")
            .find_map(|a| {
                a.parse()
                    .ok()
                    .filter(|a: &Ipv6Addr| a.segments()[0] == 0x2001)
            });
        let eui64 = eui64.context("the store gave cirros-vm3 no SLAAC address")?;
        let show = self.json(&["router", "show", "router_100_101"])?;
        let router_ns = show["namespace"].as_str().unwrap_or_default().to_string();
        let device_of = |ip: &str| -> Option<String> {
            let ifaces = show["interfaces_live"].as_array()?;
            let has = |i: &&serde_json::Value| {
                i["Fixed IPs"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == ip))
            };
            Some(ifaces.iter().find(has)?["Device"].as_str()?.to_string())
        };
        let (Some(qr), Some(qg)) = (device_of("2001:db8:101::1/64"), device_of("10.10.10.2/24"))
        else {
            anyhow::bail!("router_100_101 shows no qr- with 2001:db8:101::1 or no qg-");
        };
        let qr_lla = link_local(k, &router_ns, &qr).await?;
        let qg_lla = link_local(k, &router_ns, &qg).await?;
        let (Some(qr_lla), Some(qg_lla)) = (qr_lla, qg_lla) else {
            anyhow::bail!("router_100_101's {qr} or {qg} has no link-local address");
        };

        // SLAAC: the address out of DAD and the default route from the advertisement.
        let started = Instant::now();
        let mut formed = false;
        while !formed && started.elapsed() < Duration::from_secs(10) {
            let h = k.ns(vm_ns)?;
            let usable = addr::list(&h)
                .await?
                .iter()
                .any(|a| a.net.addr() == IpAddr::V6(eui64))
                && !self.tentative("cirros-vm3")?;
            let routes = route::list(&h).await?;
            let via_router = routes.iter().any(|r| {
                r.destination == "::/0".parse::<IpNet>().unwrap()
                    && r.gateways.contains(&IpAddr::V6(qr_lla))
            });
            formed = usable && via_router;
            if !formed {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        println!(
            "cirros-vm3: {eui64}/64 and default via {qr_lla} after {:.1} s",
            started.elapsed().as_secs_f64()
        );
        self.check(
            &format!(
                "cirros-vm3 forms {eui64} (the store's EUI-64) by SLAAC and routes via {qr}'s \
                 link-local {qr_lla}, within 10 s"
            ),
            formed,
        );

        // The upstream routes the tenant prefix to the router, as a neighbour router would.
        let up = k.ns(up_ns)?;
        route::replace(
            &up,
            "2001:db8:101::/64".parse()?,
            &[IpAddr::V6(qg_lla)],
            Some(eth0),
        )
        .await?;
        println!("(upstream now routes 2001:db8:101::/64 via {qg_lla} on eth0)");
        let (pinged, _) = self.output(&[
            "instance",
            "exec",
            "cirros-vm3",
            "--",
            "ping",
            "-6",
            "-c",
            "1",
            "-W",
            "2",
            UPSTREAM,
        ])?;
        self.check(&format!("cirros-vm3 pings {UPSTREAM} over IPv6"), pinged);
        let seen = testbed::tcp_probe(up_ns, &format!("[{UPSTREAM}]:8080"), vm_ns)?;
        println!("a TCP connection from cirros-vm3 to [{UPSTREAM}]:8080 arrives from {seen:?}");
        self.check(
            &format!("no NAT66: the upstream sees cirros-vm3's own address {eui64}"),
            seen.map(|a| a.ip()) == Some(IpAddr::V6(eui64)),
        );
        let inbound = testbed::tcp_probe(vm_ns, &format!("[{eui64}]:22"), up_ns)?;
        println!("a TCP connection from upstream to [{eui64}]:22 arrives from {inbound:?}");
        self.check(
            &format!("the upstream cannot connect to [{eui64}]:22 (ip6tables drops it)"),
            inbound.is_none(),
        );
        Ok(())
    }
}

impl Demo {
    /// Whether an address of `instance`'s eth0 is still in duplicate address detection
    /// (netlink's address list here carries no flags; `ip` prints them).
    fn tentative(&self, instance: &str) -> anyhow::Result<bool> {
        let args = [
            "instance",
            "exec",
            instance,
            "--",
            "ip",
            "-6",
            "-o",
            "addr",
            "show",
            "dev",
            "eth0",
            "tentative",
        ];
        let out = self.qrouter(&args).output()?;
        Ok(!out.status.success() || !out.stdout.is_empty())
    }
}

/// The link-local address of device `dev` in namespace `ns`.
async fn link_local(k: &mut Kernel, ns: &str, dev: &str) -> anyhow::Result<Option<Ipv6Addr>> {
    let h = k.ns(ns)?;
    let Some(index) = link::list(&h).await?.into_iter().find(|l| l.name == dev) else {
        return Ok(None);
    };
    Ok(addr::list(&h)
        .await?
        .into_iter()
        .find_map(|a| match a.net.addr() {
            IpAddr::V6(ip) if a.link_index == index.index && ip.is_unicast_link_local() => Some(ip),
            _ => None,
        }))
}
