//! IPv6 as Neutron has it: the address modes of a subnet (`ipv6_ra_mode`,
//! `ipv6_address_mode`), their rules, and the EUI-64 addresses that SLAAC gives a port from
//! its MAC (oslo's `get_ipv6_addr_by_EUI64`). Pure: no kernel access.

use std::net::Ipv6Addr;

use ipnet::{IpNet, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::bail_invalid;

/// How hosts on a v6 subnet get their addresses and options (Neutron's IPV6_MODES).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Addresses from the router's advertisements (EUI-64 of the MAC), options from them too.
    Slaac,
    /// Addresses and options from DHCPv6 (dnsmasq, static leases of the store's ports).
    Dhcpv6Stateful,
    /// Addresses by SLAAC, options (DNS) from DHCPv6.
    Dhcpv6Stateless,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Dhcpv6Stateful, Mode::Dhcpv6Stateless, Mode::Slaac];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Slaac => "slaac",
            Mode::Dhcpv6Stateful => "dhcpv6-stateful",
            Mode::Dhcpv6Stateless => "dhcpv6-stateless",
        }
    }

    /// A mode as the command line gives it; `what` names the option in the error.
    pub fn parse(what: &str, text: &str) -> anyhow::Result<Mode> {
        match Mode::ALL.into_iter().find(|m| m.as_str() == text) {
            Some(m) => Ok(m),
            None => {
                let valid: Vec<String> = Mode::ALL
                    .iter()
                    .map(|m| format!("'{}'", m.as_str()))
                    .collect();
                bail_invalid!("{what}: '{text}' is not in [{}]", valid.join(", "))
            }
        }
    }

    /// Whether hosts form their own address from the prefix (Neutron's
    /// `is_auto_address_subnet`): SLAAC and DHCPv6-stateless.
    pub fn is_auto(self) -> bool {
        matches!(self, Mode::Slaac | Mode::Dhcpv6Stateless)
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A subnet's two modes, as Neutron checks them at `subnet create` (its messages, in
/// substance): only on v6 subnets, only with DHCP on, the same value where both are given,
/// and a /64 wherever hosts form EUI-64 addresses.
pub fn check_modes(
    name: &str,
    cidr: IpNet,
    ra_mode: Option<Mode>,
    address_mode: Option<Mode>,
    dhcp: bool,
) -> anyhow::Result<()> {
    if let IpNet::V4(_) = cidr {
        if ra_mode.is_some() {
            bail_invalid!("subnet {name}: ipv6_ra_mode is not valid when ip_version is 4");
        }
        if address_mode.is_some() {
            bail_invalid!("subnet {name}: ipv6_address_mode is not valid when ip_version is 4");
        }
        return Ok(());
    }
    if (ra_mode.is_some() || address_mode.is_some()) && !dhcp {
        bail_invalid!(
            "subnet {name}: ipv6_ra_mode or ipv6_address_mode cannot be set when enable_dhcp is set to False"
        );
    }
    if let (Some(ra), Some(addr)) = (ra_mode, address_mode) {
        if ra != addr {
            bail_invalid!(
                "subnet {name}: ipv6_ra_mode set to '{ra}' with ipv6_address_mode set to '{addr}' is not valid. If both attributes are set, they must be the same value"
            );
        }
    }
    let auto = ra_mode.or(address_mode).is_some_and(Mode::is_auto);
    if auto && cidr.prefix_len() != 64 {
        bail_invalid!(
            "subnet {name}: Invalid CIDR {cidr} for IPv6 address mode. OpenStack uses the EUI-64 address format, which requires the prefix to be /64"
        );
    }
    Ok(())
}

/// The six bytes of a MAC written as qrouter stores it (`fa:16:3e:2d:7a:13`).
pub fn mac_bytes(mac: &str) -> Option<[u8; 6]> {
    let bytes: Vec<u8> = mac
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).ok().filter(|_| b.len() == 2))
        .collect::<Option<_>>()?;
    bytes.try_into().ok()
}

/// The modified EUI-64 interface identifier of a MAC (RFC 4291 appendix A): `ff:fe` in the
/// middle, the universal/local bit flipped. `fa:16:3e:2d:7a:13` -> `f816:3eff:fe2d:7a13`.
fn interface_id(mac: [u8; 6]) -> u64 {
    u64::from_be_bytes([
        mac[0] ^ 0x02,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ])
}

/// The address SLAAC forms on a /64 for a MAC, as Neutron computes a port's address on an
/// auto-address subnet and as the guest's kernel forms it: `2001:db8:101::/64` and
/// `fa:16:3e:2d:7a:13` give `2001:db8:101:0:f816:3eff:fe2d:7a13`. None for a prefix that is
/// not a /64 or a MAC that does not parse.
pub fn eui64(prefix: Ipv6Net, mac: &str) -> Option<Ipv6Addr> {
    if prefix.prefix_len() != 64 {
        return None;
    }
    let id = interface_id(mac_bytes(mac)?);
    Some(Ipv6Addr::from(
        u128::from(prefix.network()) | u128::from(id),
    ))
}

/// The link-local address a device with this MAC forms (`fe80::` + its EUI-64 interface
/// id): what a router port advertises from and instances route through.
pub fn link_local(mac: &str) -> Option<Ipv6Net> {
    let net: Ipv6Net = "fe80::/64".parse().expect("a valid prefix");
    Some(Ipv6Net::new(eui64(net, mac)?, 64).expect("64 is a valid length"))
}

/// Whether an address is link-local unicast (fe80::/10).
pub fn is_link_local(ip: Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(r: anyhow::Result<()>) -> String {
        let e = r.unwrap_err();
        assert_eq!(crate::error::exit_code(&e), 2);
        e.to_string()
    }

    #[test]
    fn eui64_is_neutrons() {
        let net: Ipv6Net = "2001:db8:101::/64".parse().unwrap();
        assert_eq!(
            eui64(net, "fa:16:3e:2d:7a:13").unwrap().to_string(),
            "2001:db8:101:0:f816:3eff:fe2d:7a13"
        );
        assert_eq!(
            link_local("fa:16:3e:00:01:01").unwrap().to_string(),
            "fe80::f816:3eff:fe00:101/64"
        );
        assert_eq!(
            eui64("2001:db8::/56".parse().unwrap(), "fa:16:3e:2d:7a:13"),
            None
        );
        assert_eq!(mac_bytes("fa:16:3e:2d:7a"), None);
        assert!(is_link_local("fe80::1".parse().unwrap()));
        assert!(!is_link_local("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn modes_follow_neutrons_rules() {
        let v6: IpNet = "2001:db8:101::/64".parse().unwrap();
        let v4: IpNet = "10.0.0.0/24".parse().unwrap();
        let (s, st) = (Some(Mode::Slaac), Some(Mode::Dhcpv6Stateful));
        assert!(check_modes("a", v6, s, s, true).is_ok());
        assert!(check_modes("a", v6, None, None, false).is_ok());
        assert!(err(check_modes("a", v4, s, None, true))
            .contains("ipv6_ra_mode is not valid when ip_version is 4"));
        assert!(err(check_modes("a", v4, None, s, true))
            .contains("ipv6_address_mode is not valid when ip_version is 4"));
        assert!(
            err(check_modes("a", v6, s, None, false)).contains("cannot be set when enable_dhcp")
        );
        assert!(err(check_modes("a", v6, s, st, true))
            .contains("ipv6_ra_mode set to 'slaac' with ipv6_address_mode set to 'dhcpv6-stateful' is not valid"));
        let long: IpNet = "2001:db8:101::/80".parse().unwrap();
        assert!(err(check_modes("a", long, s, s, true)).contains("requires the prefix to be /64"));
        assert!(check_modes("a", long, st, st, true).is_ok());
        assert!(Mode::parse("--ipv6-ra-mode", "slaac").is_ok());
        assert!(err(Mode::parse("--ipv6-ra-mode", "auto").map(drop))
            .contains("'auto' is not in ['dhcpv6-stateful', 'dhcpv6-stateless', 'slaac']"));
        assert_eq!(
            serde_json::to_string(&Mode::Dhcpv6Stateless).unwrap(),
            "\"dhcpv6-stateless\""
        );
    }
}
