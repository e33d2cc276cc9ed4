//! A new port's addresses on its network, as Neutron's IPAM hands them out: what
//! `--fixed-ip` asks for, or one address of the network's first IPv4 subnet and one of its
//! first stateful IPv6 subnet; and on every auto-address (SLAAC, DHCPv6-stateless) subnet,
//! implicitly, the EUI-64 address of the port's MAC, except for a router interface, which
//! holds its subnet's gateway.

use std::net::IpAddr;

use ipnet::IpNet;

use super::{
    ipam, ipv6, new_id, new_mac, portsec, FixedIp, Meta, Network, Port, PortRole, State, Subnet,
};
use crate::bail_invalid;
use crate::error::invalid;

/// A `--fixed-ip subnet=S,ip-address=IP`: either part may be left out.
pub type FixedIpSpec = (Option<String>, Option<IpAddr>);

/// What a new port asks for on its network.
pub struct PortRequest<'a> {
    pub network: &'a Network,
    pub role: PortRole,
    pub device_id: &'a str,
    /// The addresses asked for; none: Neutron's choice (see the module's comment).
    pub fixed: &'a [FixedIpSpec],
    /// The MAC of a port that has one already (its EUI-64 addresses are formed from it);
    /// None: a new one in Neutron's range.
    pub mac: Option<&'a str>,
    /// An instance on an external network may stand in for the upstream gateway itself.
    pub may_take_gateway: bool,
}

impl State {
    /// A port with its fixed IPs: those asked for, validated, or Neutron's choice.
    pub fn new_port(&self, req: PortRequest) -> anyhow::Result<Port> {
        let mac = req.mac.map_or_else(new_mac, str::to_string);
        let fixed_ips = self.port_addresses(&req, &mac)?;
        let net = req.network;
        Ok(Port {
            id: new_id(),
            name: String::new(),
            network_id: net.id.clone(),
            role: req.role,
            device_id: req.device_id.to_string(),
            mac,
            host: None,
            fixed_ips,
            security: portsec::PortSecurity::enabled(net.port_security),
            meta: Meta::new(),
        })
    }

    /// The fixed IPs `req` asks for, for a port whose MAC is `mac`: the asked ones first, in
    /// their order, then the auto addresses.
    fn port_addresses(&self, req: &PortRequest, mac: &str) -> anyhow::Result<Vec<FixedIp>> {
        let net = req.network;
        let mut fixed: Vec<FixedIp> = Vec::new();
        if req.fixed.is_empty() {
            let first = |v6: bool| {
                self.subnets_of(&net.id)
                    .find(|s| s.is_v6() == v6 && !s.is_auto_address())
            };
            for subnet in [first(false), first(true)].into_iter().flatten() {
                fixed.push(self.address_on(subnet, req, mac, None)?);
            }
        }
        for (key, ip) in req.fixed {
            let subnet = self.subnet_for(net, key.as_deref(), *ip)?;
            if fixed.iter().any(|f| f.subnet_id == subnet.id) {
                bail_invalid!(
                    "subnet {}: a port takes one address of it; --fixed-ip names it twice",
                    subnet.name
                );
            }
            fixed.push(self.address_on(subnet, req, mac, *ip)?);
        }
        for auto in self.auto_addresses(net, req.role, mac) {
            if !fixed.iter().any(|f| f.subnet_id == auto.subnet_id) {
                self.check_free(auto.ip, self.subnet_by_id(&auto.subnet_id), false)?;
                fixed.push(auto);
            }
        }
        if fixed.is_empty() {
            bail_invalid!("network {}: has no subnet; create one first", net.name);
        }
        Ok(fixed)
    }

    /// The subnet a `--fixed-ip` names, or whose range holds its address, on `net`.
    fn subnet_for<'a>(
        &'a self,
        net: &'a Network,
        key: Option<&str>,
        ip: Option<IpAddr>,
    ) -> anyhow::Result<&'a Subnet> {
        match (key, ip) {
            (Some(key), _) => {
                let s = self.subnet(key)?;
                if s.network_id != net.id {
                    bail_invalid!("subnet {}: not on network {}", s.name, net.name);
                }
                Ok(s)
            }
            (None, Some(ip)) => self
                .subnets_of(&net.id)
                .find(|s| s.cidr.contains(&ip))
                .ok_or_else(|| {
                    invalid(format!(
                        "network {}: {ip} is in none of its subnets",
                        net.name
                    ))
                }),
            (None, None) => self.subnets_of(&net.id).next().ok_or_else(|| {
                invalid(format!(
                    "network {}: has no subnet; create one first",
                    net.name
                ))
            }),
        }
    }

    /// The EUI-64 addresses a port with `mac` holds on the network's auto-address subnets
    /// (none for a router interface, which holds gateways).
    pub fn auto_addresses(&self, net: &Network, role: PortRole, mac: &str) -> Vec<FixedIp> {
        if role == PortRole::RouterInterface {
            return vec![];
        }
        self.subnets_of(&net.id)
            .filter(|s| s.is_auto_address())
            .filter_map(|s| {
                let IpNet::V6(prefix) = s.cidr else {
                    return None;
                };
                Some(FixedIp {
                    subnet_id: s.id.clone(),
                    ip: IpAddr::V6(ipv6::eui64(prefix, mac)?),
                })
            })
            .collect()
    }

    /// One address of `subnet` for the port of `req` (with `mac`): `ip`, validated, the
    /// EUI-64 of the MAC on an auto-address subnet, or the first free pool address.
    fn address_on(
        &self,
        subnet: &Subnet,
        req: &PortRequest,
        mac: &str,
        ip: Option<IpAddr>,
    ) -> anyhow::Result<FixedIp> {
        let net = req.network;
        let fixed = |ip| FixedIp {
            subnet_id: subnet.id.clone(),
            ip,
        };
        if subnet.is_auto_address() && req.role != PortRole::RouterInterface {
            let eui64 = self.auto_addresses(net, req.role, mac);
            let own = eui64.into_iter().find(|f| f.subnet_id == subnet.id);
            let Some(own) = own else {
                bail_invalid!(
                    "port: MAC {mac} gives no EUI-64 address on subnet {}",
                    subnet.name
                );
            };
            if let Some(ip) = ip.filter(|ip| *ip != own.ip) {
                bail_invalid!(
                    "subnet {}: IPv6 address {ip} cannot be directly assigned to a port on it as the subnet is configured for automatic addresses (this port's is {}, the EUI-64 of its MAC)",
                    subnet.name,
                    own.ip
                );
            }
            self.check_free(own.ip, Some(subnet), false)?;
            return Ok(own);
        }
        let Some(ip) = ip else {
            let used = self.used_addresses(subnet);
            return ipam::first_free(subnet, &used).map(fixed).ok_or_else(|| {
                invalid(format!(
                    "subnet {}: no free address left in its allocation pools",
                    subnet.name
                ))
            });
        };
        let upstream = req.may_take_gateway && net.external && subnet.gateway == Some(ip);
        if !subnet.cidr.contains(&ip) {
            bail_invalid!("subnet {}: {ip} is outside {}", subnet.name, subnet.cidr);
        }
        if !upstream && !ipam::in_pools(&subnet.pools, ip) {
            let pools: Vec<String> = subnet
                .pools
                .iter()
                .map(|p| format!("{}-{}", p.start, p.end))
                .collect();
            bail_invalid!(
                "subnet {}: {ip} is outside its allocation pools ({})",
                subnet.name,
                pools.join(", ")
            );
        }
        self.check_free(ip, Some(subnet), upstream)?;
        Ok(fixed(ip))
    }

    /// `ip` is no other port's on `subnet`, nor (unless `upstream`) its gateway or a
    /// floating IP.
    fn check_free(
        &self,
        ip: IpAddr,
        subnet: Option<&Subnet>,
        upstream: bool,
    ) -> anyhow::Result<()> {
        let Some(subnet) = subnet else { return Ok(()) };
        let taken = self.ports.iter().any(|p| {
            p.fixed_ips
                .iter()
                .any(|f| f.ip == ip && f.subnet_id == subnet.id)
        });
        if taken || (!upstream && self.used_addresses(subnet).contains(&ip)) {
            bail_invalid!("subnet {}: {ip} is already in use", subnet.name);
        }
        Ok(())
    }
}
