//! HA routers, as Neutron's L3 HA makes them: a copy of the router on several network hosts,
//! each in its own `qrouter-<id>` namespace with the same `qr-`/`qg-` devices and MACs, and
//! keepalived (VRRP) in each copy deciding which one holds the router's addresses. The
//! copies speak VRRP over a hidden HA network: an `ha-` device per copy, each with an
//! address of its own from 169.254.192.0/18.
//!
//! Neutron makes one HA network per project; qrouter has no projects, so a store has one
//! HA network (a VXLAN segment like a tenant network), made with its first HA router and
//! removed with its last. A VRRP router id (VRID) per HA router is unique in it, so a store
//! has at most 254 HA routers, as a Neutron project does.
//!
//! The keepalived configuration is data here (`Vrrp`) and text by `Vrrp::render`: the
//! parameters are those measured in /work/research/ha.md (VRRPv3 with 0.5 s adverts, the
//! VRRP process on SCHED_RR, `nopreempt` and equal priorities, unicast peers with a source
//! check, every router address and route `no_track`, a GARP refresh every 5 s).

use std::net::{IpAddr, Ipv4Addr};
use std::ops::RangeInclusive;
use std::rc::Rc;

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};

use super::{Network, Router, State};

/// What makes a router HA (`Router::ha`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ha {
    /// Its VRRP router id, unique in the store's HA network (Neutron's `ha_vr_id`).
    pub vrid: u8,
    /// How many copies it runs, on distinct network hosts (`--ha-hosts`, Neutron's
    /// `max_l3_agents_per_router`).
    pub wanted: u8,
    /// The copies placed so far, one per host.
    pub copies: Vec<Copy>,
}

impl Ha {
    /// Fewer copies than it wants: a host it ran on went and no other was free to take its
    /// copy (`ops::placement`).
    pub fn degraded(&self) -> bool {
        self.copies.len() < self.wanted as usize
    }
}

/// One copy of an HA router: where it runs, and its `ha-` device's address and MAC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Copy {
    pub host: String,
    pub address: Ipv4Addr,
    pub mac: String,
}

/// What keepalived made of a copy, in openstackclient's words (`network agent list
/// --router R --long`: active, standby, fault).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HaState {
    /// keepalived's MASTER: holds the router's addresses and forwards.
    #[serde(rename = "active")]
    Master,
    /// BACKUP: holds nothing; takes over when the master's adverts stop.
    #[serde(rename = "standby")]
    Backup,
    /// FAULT: a tracked interface is down (or keepalived is not running): it cannot take
    /// over.
    #[serde(rename = "fault")]
    Fault,
}

impl HaState {
    /// As openstackclient prints an HA router's agents (`active`, `standby`, `fault`).
    pub fn as_str(self) -> &'static str {
        match self {
            HaState::Master => "active",
            HaState::Backup => "standby",
            HaState::Fault => "fault",
        }
    }

    /// keepalived's word, as its notify script gets it.
    pub fn parse_keepalived(word: &str) -> Option<HaState> {
        match word.trim() {
            "MASTER" => Some(HaState::Master),
            "BACKUP" => Some(HaState::Backup),
            "FAULT" | "STOP" => Some(HaState::Fault),
            _ => None,
        }
    }
}

impl std::fmt::Display for HaState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The VRRP router ids (0 and 255 are not router ids).
pub const VRIDS: RangeInclusive<u8> = 1..=254;
/// How many copies an HA router may ask for: two at least (one copy is no redundancy).
pub const COPIES: RangeInclusive<u8> = 2..=8;
/// `--ha-hosts` by default, Neutron's `max_l3_agents_per_router` default.
pub const DEFAULT_COPIES: u8 = 2;
/// The HA network's name (Neutron's is "HA network tenant <project>").
pub const NETWORK_NAME: &str = "ha-network";
/// The advert interval, in seconds: with VRRPv3 a dead master is replaced after about
/// 3.8 intervals (1.7-1.9 s measured), against 5.8-6.6 s with Neutron's 2 s.
pub const ADVERT_INTERVAL: &str = "0.5";
/// Every copy has the same priority: with `nopreempt` a copy that returns stays backup.
pub const PRIORITY: u8 = 50;

/// The unicast peer of a copy that has no other (a router degraded to one copy): an address
/// of the HA subnet that no copy is given (`free_ha_address` skips it). keepalived without
/// a unicast peer falls back to multicast, and the reload that switches resets the instance
/// to BACKUP: the master dropped the router's addresses for 2 s (measured: 9 pings lost at
/// 0.2 s). A change of peers is reloaded without a transition.
pub const NO_PEER: Ipv4Addr = Ipv4Addr::new(169, 254, 255, 254);

/// The HA network's subnet (Neutron's `l3_ha_net_cidr`).
pub fn cidr() -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(169, 254, 192, 0), 18).expect("a valid prefix")
}

/// The address keepalived holds on a master's `ha-` device only (Neutron's primary VIP):
/// it never changes, so a reload never leaves the instance without a virtual address, and
/// its presence is how a copy is known to be the master. 169.254.0.0/24 overlaps neither
/// the HA subnet nor the metadata address 169.254.169.254.
pub fn primary_vip(vrid: u8) -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(169, 254, 0, vrid), 24).expect("a valid prefix")
}

impl Router {
    /// The hosts the router runs on: each copy's if it is HA, else its host.
    pub fn hosts(&self) -> Vec<&str> {
        match &self.ha {
            Some(ha) => ha.copies.iter().map(|c| c.host.as_str()).collect(),
            None => self.host.as_deref().into_iter().collect(),
        }
    }

    /// Whether one of its copies (or it) runs on `host`.
    pub fn runs_on(&self, host: &str) -> bool {
        self.hosts().contains(&host)
    }

    /// Its copy on `host`, if it is HA and has one there.
    pub fn copy_on(&self, host: &str) -> Option<&Copy> {
        self.ha.as_ref()?.copies.iter().find(|c| c.host == host)
    }
}

impl State {
    /// The store's HA network, if it has an HA router.
    pub fn ha_network(&self) -> Option<&Network> {
        self.networks.iter().find(|n| n.ha).map(Rc::as_ref)
    }

    /// The lowest VRID no HA router holds.
    pub fn free_vrid(&self) -> Option<u8> {
        let taken: Vec<u8> = self
            .routers
            .iter()
            .filter_map(|r| r.ha.as_ref())
            .map(|h| h.vrid)
            .collect();
        VRIDS.into_iter().find(|v| !taken.contains(v))
    }

    /// The lowest address of the HA subnet no copy holds (the network and broadcast
    /// addresses and `NO_PEER` aside).
    pub fn free_ha_address(&self) -> Option<Ipv4Addr> {
        let taken: Vec<Ipv4Addr> = (self.routers.iter())
            .filter_map(|r| r.ha.as_ref())
            .flat_map(|h| h.copies.iter().map(|c| c.address))
            .chain([NO_PEER])
            .collect();
        let net = cidr();
        net.hosts().find(|a| !taken.contains(a))
    }
}

/// The device of a copy's HA port in the router namespace (Neutron's `ha-<port id[:11]>`;
/// here the router's id: one copy per host).
pub fn device(router_id: &str) -> String {
    format!("ha-{}", &router_id[..router_id.len().min(11)])
}

/// Its host end, on the HA network's bridge.
pub fn tap(router_id: &str) -> String {
    format!("tha{}", &router_id[..router_id.len().min(11)])
}

/// One copy's VRRP instance, as data: what keepalived.conf says.
#[derive(Clone, Debug, PartialEq)]
pub struct Vrrp {
    pub vrid: u8,
    /// The `ha-` device and this copy's address on it.
    pub interface: String,
    pub address: Ipv4Addr,
    /// The other copies' `ha-` addresses (unicast peers), or `NO_PEER` alone.
    pub peers: Vec<Ipv4Addr>,
    /// The gateway device, tracked: a copy whose `qg-` loses its carrier goes FAULT.
    pub track: Option<String>,
    /// The router's addresses, each on its device: held by the master only.
    pub addresses: Vec<(IpNet, String)>,
    /// The router's routes: `destination`, next hop or device.
    pub routes: Vec<VirtualRoute>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VirtualRoute {
    pub destination: IpNet,
    pub via: Option<IpAddr>,
    pub device: Option<String>,
}

impl Vrrp {
    /// keepalived.conf for this copy; `notify` is the command keepalived runs on each
    /// transition (it appends the instance, its name, the state and the priority).
    pub fn render(&self, notify: &str) -> String {
        let mut c = String::new();
        c.push_str("global_defs {\n    router_id qrouter\n    vrrp_version 3\n");
        c.push_str("    script_user root\n");
        // The VRRP process belongs on SCHED_RR: the only setting that stopped false
        // failovers on a loaded machine (0 in 3 x 5 min x 18 pairs, against flaps at every
        // interval on CFS). But no vrrp_rt_priority: keepalived 2.2.7 then sets RLIMIT_RTTIME on its VRRP process,
        // and after a reload (SIGHUP) sets it to 0 ("child process cannot set realtime
        // rlimit"; /proc/PID/limits: 0 0), so the kernel kills it at its next busy tick
        // (measured: killed as it took over, respawned as backup, 2 s lost). The agent puts
        // the VRRP process on SCHED_RR itself (kernel::keepalived::realtime).
        c.push_str("}\n");
        c.push_str(&format!("vrrp_instance VR_{} {{\n", self.vrid));
        c.push_str("    state BACKUP\n");
        c.push_str(&format!("    interface {}\n", self.interface));
        c.push_str(&format!("    virtual_router_id {}\n", self.vrid));
        c.push_str(&format!("    priority {PRIORITY}\n"));
        c.push_str("    garp_master_delay 60\n    garp_master_refresh 5\n    nopreempt\n");
        c.push_str(&format!("    advert_int {ADVERT_INTERVAL}\n"));
        c.push_str(&format!("    unicast_src_ip {}\n", self.address));
        c.push_str("    unicast_peer {\n");
        for p in &self.peers {
            c.push_str(&format!("        {p}\n"));
        }
        c.push_str("    }\n    check_unicast_src\n");
        if let Some(qg) = &self.track {
            c.push_str(&format!("    track_interface {{\n        {qg}\n    }}\n"));
        }
        c.push_str(&format!(
            "    virtual_ipaddress {{\n        {} dev {}\n    }}\n",
            primary_vip(self.vrid),
            self.interface
        ));
        c.push_str("    virtual_ipaddress_excluded {\n");
        for (a, dev) in &self.addresses {
            c.push_str(&format!("        {a} dev {dev} no_track\n"));
        }
        c.push_str("    }\n    virtual_routes {\n");
        for r in &self.routes {
            c.push_str(&format!("        {}", r.destination));
            if let Some(via) = r.via {
                c.push_str(&format!(" via {via}"));
            }
            if let Some(dev) = &r.device {
                c.push_str(&format!(" dev {dev} scope link"));
            }
            c.push_str(" protocol static no_track\n");
        }
        c.push_str("    }\n");
        c.push_str(&format!("    notify \"{notify}\"\n}}\n"));
        c
    }
}

/// The notify script: keepalived runs it inside the router's namespace, where neither etcd
/// nor the agent can be reached, so it writes the state into a file (renamed into place:
/// a reader never sees half of it) beside it, and appends it to a log of transitions.
/// Its first argument is its directory.
pub const NOTIFY_SCRIPT: &str = "#!/bin/sh\n\
# qrouter: keepalived's state, for the agent (argument 1: this directory; keepalived\n\
# appends INSTANCE, the instance name, the state and the priority).\n\
printf %s \"$4\" > \"$1/state.tmp\" && mv \"$1/state.tmp\" \"$1/state\"\n\
echo \"$(date +%s.%N) $4\" >> \"$1/state.log\"\n\
# conntrackd: a new master sends its whole table to the others, a backup asks for the\n\
# master's (a copy that returns). Entries synced reach the kernel at once\n\
# (DisableExternalCache): nothing to commit as it takes over.\n\
ct=\"/usr/sbin/conntrackd -C $1/conntrackd.conf\"\n\
case $4 in\n\
MASTER) $ct -f; $ct -R; $ct -B ;;\n\
BACKUP) $ct -n ;;\n\
esac\n\
exit 0\n";

impl Vrrp {
    /// conntrackd.conf for this copy, its files in `dir`: FTFW sync of the connection
    /// table over the HA network, straight into the other copies' kernel tables
    /// (`DisableExternalCache`: measured, a `--random-fully` SNAT connection then survives
    /// the takeover, where with the external cache and a commit in the notify script the
    /// first packets raced the commit and got a new port). UDP to the one other copy,
    /// multicast to several.
    pub fn render_conntrackd(&self, dir: &str) -> String {
        let (a, dev) = (self.address, &self.interface);
        let transport = match self.peers[..] {
            [peer] => format!(
                "    UDP {{\n        IPv4_address {a}\n        IPv4_Destination_Address {peer}\n        \
                 Port 3781\n        Interface {dev}\n        Checksum on\n    }}\n"
            ),
            _ => format!(
                "    Multicast {{\n        IPv4_address 225.0.0.50\n        IPv4_interface {a}\n        \
                 Group {}\n        Interface {dev}\n        Checksum on\n    }}\n",
                3780 + u32::from(self.vrid)
            ),
        };
        format!(
            "Sync {{\n    Mode FTFW {{\n        DisableExternalCache on\n    }}\n{transport}}}\n\
             General {{\n    Systemd off\n    HashSize 32768\n    HashLimit 131072\n    \
             LogFile {dir}/conntrackd.log\n    Syslog off\n    LockFile {dir}/conntrackd.lock\n    \
             UNIX {{\n        Path {dir}/conntrackd.ctl\n    }}\n    \
             Filter From Kernelspace {{\n        Protocol Accept {{\n            TCP\n            UDP\n            ICMP\n        }}\n        \
             Address Ignore {{\n            IPv4_address 127.0.0.1\n            IPv4_address {a}\n        }}\n    }}\n}}\n"
        )
    }
}

/// Why `network` takes nothing a command asks to attach, if it is the HA network.
pub fn refuse_ha_network(network: &Network, what: &str) -> anyhow::Result<()> {
    if network.ha {
        crate::bail_invalid!(
            "network {}: it is the HA network of this store's HA routers (their VRRP); {what} \
             is not possible: it is made and removed with them",
            network.name
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_primary_vip_is_apart_from_the_ha_subnet() {
        assert_eq!(primary_vip(7).to_string(), "169.254.0.7/24");
        assert!(!cidr().contains(&primary_vip(254).addr()));
        assert!(!cidr().contains(&Ipv4Addr::new(169, 254, 169, 254)));
        assert_eq!(cidr().to_string(), "169.254.192.0/18");
    }

    #[test]
    fn vrids_and_addresses_are_handed_out_lowest_first() {
        let mut s = State::default();
        assert_eq!(s.free_vrid(), Some(1));
        assert_eq!(s.free_ha_address(), Some(Ipv4Addr::new(169, 254, 192, 1)));
        let copy = |host: &str, last: u8| Copy {
            host: host.into(),
            address: Ipv4Addr::new(169, 254, 192, last),
            mac: "fa:16:3e:00:00:01".into(),
        };
        s.routers.push(Rc::new(Router {
            inbound: vec![],
            id: "r1".into(),
            name: "r1".into(),
            gateway_port_id: None,
            snat: true,
            routes: vec![],
            meta: Default::default(),
            host: None,
            ha: Some(Ha {
                vrid: 1,
                wanted: 2,
                copies: vec![copy("n1", 1), copy("n2", 2)],
            }),
        }));
        assert_eq!(s.free_vrid(), Some(2));
        assert_eq!(s.free_ha_address(), Some(Ipv4Addr::new(169, 254, 192, 3)));
        assert_eq!(s.routers[0].hosts(), ["n1", "n2"]);
        assert!(s.routers[0].runs_on("n2") && !s.routers[0].runs_on("n3"));
    }

    #[test]
    fn the_config_gives_keepalived_every_address_and_route_untracked() {
        let v = Vrrp {
            vrid: 3,
            interface: "ha-abc".into(),
            address: Ipv4Addr::new(169, 254, 192, 1),
            peers: vec![Ipv4Addr::new(169, 254, 192, 2)],
            track: Some("qg-1".into()),
            addresses: vec![("10.10.10.2/24".parse().unwrap(), "qg-1".into())],
            routes: vec![VirtualRoute {
                destination: "0.0.0.0/0".parse().unwrap(),
                via: Some("10.10.10.1".parse().unwrap()),
                device: None,
            }],
        };
        let text = v.render("/s/notify.sh /s");
        for line in [
            "vrrp_version 3",
            "virtual_router_id 3",
            "nopreempt",
            "advert_int 0.5",
            "unicast_src_ip 169.254.192.1",
            "        169.254.192.2\n",
            "check_unicast_src",
            "        qg-1\n",
            "169.254.0.3/24 dev ha-abc\n",
            "10.10.10.2/24 dev qg-1 no_track",
            "0.0.0.0/0 via 10.10.10.1 protocol static no_track",
            "notify \"/s/notify.sh /s\"",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
