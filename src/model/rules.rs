//! The router's iptables rules as typed data: a rule is its matches and its target, with
//! interface names validated and addresses as `std::net` / `ipnet` values, so nothing read
//! from the store is ever spliced into rules text. Two renderings come from one rule: the
//! text `iptables-save` prints for it (what is compared, shown and fed to
//! `iptables-restore` on hosts that use iptables-legacy) and the nf_tables expressions
//! iptables-nft writes for it (`rules_nft.rs`). Layout follows Neutron's legacy router
//! (see design.md), in chains named `qrouter-*`; how a table is edited: `rules_edit.rs`.

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The address family of a table: iptables' or ip6tables'.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The key of one of its tables among a namespace's (`filter`, `ip6 filter`), as
    /// `nft list tables` names the family.
    pub fn key(self, table: &str) -> String {
        match self {
            Family::V4 => table.to_string(),
            Family::V6 => format!("ip6 {table}"),
        }
    }
}

/// A protocol as `-p` names it in ip6tables' tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    /// ICMPv6 (`ipv6-icmp`); `icmp` on the command line.
    Icmp,
}

impl Proto {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Icmp => 58,
        }
    }

    pub fn from_number(n: u8) -> Option<Proto> {
        [Proto::Tcp, Proto::Udp, Proto::Icmp]
            .into_iter()
            .find(|p| p.number() == n)
    }

    /// As ip6tables-save prints it.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "ipv6-icmp",
        }
    }
}

/// A hole the operator opens in a router's IPv6 inbound protection (`router set
/// --allow-inbound`): new connections from outside to `destination` (tenant addresses), of
/// one protocol (and one destination port) or of any. IPv4 is opened by floating IPs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inbound {
    pub destination: ipnet::Ipv6Net,
    /// None: any protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Proto>,
    /// The destination port (TCP and UDP only); None: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

impl Inbound {
    /// Its ACCEPT rule on the gateway device `qg`.
    pub fn rule(&self, qg: &IfName) -> Rule {
        Rule {
            proto: self.protocol,
            dport: self.port,
            ..Rule::to(Target::Accept)
                .dst(IpNet::V6(self.destination))
                .iif(qg)
        }
    }

    /// `destination=CIDR[,protocol=tcp|udp|icmp][,port=N]`, as `--allow-inbound` takes it.
    pub fn parse(text: &str) -> Result<Inbound, String> {
        let (mut destination, mut protocol, mut port) = (None, None, None);
        for part in text.split(',') {
            match part.split_once('=') {
                Some(("destination", v)) => {
                    let net: IpNet = v
                        .parse()
                        .or_else(|_| v.parse::<std::net::IpAddr>().map(IpNet::from))
                        .map_err(|_| format!("'{v}' is not an IPv6 address or CIDR"))?;
                    let IpNet::V6(net) = net else {
                        return Err(format!(
                            "'{v}' is IPv4: IPv4 is opened by floating IPs, --allow-inbound is for IPv6"
                        ));
                    };
                    if net.trunc() != net {
                        return Err(format!(
                            "'{v}' has host bits set; did you mean {}?",
                            net.trunc()
                        ));
                    }
                    destination = Some(net);
                }
                Some(("protocol", "tcp")) => protocol = Some(Proto::Tcp),
                Some(("protocol", "udp")) => protocol = Some(Proto::Udp),
                Some(("protocol", "icmp" | "ipv6-icmp" | "icmpv6")) => protocol = Some(Proto::Icmp),
                Some(("protocol", v)) => {
                    return Err(format!("protocol '{v}' is not one of tcp, udp, icmp"))
                }
                Some(("port", v)) => {
                    port = Some(
                        v.parse::<u16>()
                            .ok()
                            .filter(|p| *p > 0)
                            .ok_or_else(|| format!("port '{v}' is not a port number (1-65535)"))?,
                    )
                }
                _ => {
                    return Err(format!(
                        "'{part}' is not destination=CIDR, protocol=P or port=N"
                    ))
                }
            }
        }
        let inbound = Inbound {
            destination: destination.ok_or("destination=CIDR is missing")?,
            protocol,
            port,
        };
        inbound.check()?;
        Ok(inbound)
    }

    /// A port only with TCP or UDP.
    pub fn check(&self) -> Result<(), String> {
        match (self.port, self.protocol) {
            (Some(_), Some(Proto::Tcp | Proto::Udp)) | (None, _) => Ok(()),
            _ => Err("a port needs protocol=tcp or protocol=udp".into()),
        }
    }
}

impl fmt::Display for Inbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "destination={}", self.destination)?;
        if let Some(p) = self.protocol {
            let name = if p == Proto::Icmp { "icmp" } else { p.name() };
            write!(f, ",protocol={name}")?;
        }
        if let Some(port) = self.port {
            write!(f, ",port={port}")?;
        }
        Ok(())
    }
}

/// An interface name as the kernel takes it (IFNAMSIZ): 1-15 bytes of `[A-Za-z0-9_.-]`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct IfName(String);

impl IfName {
    pub fn new(name: &str) -> Result<IfName, String> {
        let fits = (1..=15).contains(&name.len());
        let plain = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if fits && plain {
            Ok(IfName(name.to_string()))
        } else {
            Err(format!(
                "interface name '{}': 1-15 of A-Z a-z 0-9 _ . - expected",
                name.escape_debug()
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A match, or with `negated` its opposite (`! -o qg-…`).
#[derive(Clone, Debug, PartialEq)]
pub struct Cond<T> {
    pub negated: bool,
    pub value: T,
}

/// conntrack states as `-m conntrack --ctstate` names them (the kernel's bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtStates(pub u16);

impl CtStates {
    pub const INVALID: CtStates = CtStates(1);
    pub const ESTABLISHED: CtStates = CtStates(1 << 1);
    pub const RELATED: CtStates = CtStates(1 << 2);
    pub const NEW: CtStates = CtStates(1 << 3);
    pub const SNAT: CtStates = CtStates(1 << 6);
    pub const DNAT: CtStates = CtStates(1 << 7);
    pub const UNTRACKED: CtStates = CtStates(1 << 8);
    /// In the order iptables prints them.
    const NAMES: [(CtStates, &'static str); 7] = [
        (CtStates::INVALID, "INVALID"),
        (CtStates::NEW, "NEW"),
        (CtStates::RELATED, "RELATED"),
        (CtStates::ESTABLISHED, "ESTABLISHED"),
        (CtStates::UNTRACKED, "UNTRACKED"),
        (CtStates::SNAT, "SNAT"),
        (CtStates::DNAT, "DNAT"),
    ];

    pub fn contains(self, other: CtStates) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for CtStates {
    type Output = CtStates;
    fn bitor(self, other: CtStates) -> CtStates {
        CtStates(self.0 | other.0)
    }
}

impl fmt::Display for CtStates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = CtStates::NAMES
            .iter()
            .filter(|(s, _)| self.contains(*s))
            .map(|(_, n)| *n)
            .collect();
        f.write_str(&names.join(","))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    Accept,
    Drop,
    Return,
    /// Into another chain of the same table (qrouter's own, named by `chain`).
    Jump(String),
    Snat {
        to: Ipv4Addr,
        random_fully: bool,
    },
    Dnat {
        to: Ipv4Addr,
    },
}

/// One rule: its matches, each at most once, and its target.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub src: Option<Cond<IpNet>>,
    pub dst: Option<Cond<IpNet>>,
    pub iif: Option<Cond<IfName>>,
    pub oif: Option<Cond<IfName>>,
    /// `-p` (ip6tables' tables only).
    pub proto: Option<Proto>,
    /// `-m tcp --dport N` (`-m udp`), with `-p tcp` (`udp`).
    pub dport: Option<u16>,
    /// `-m icmp6 --icmpv6-type N`, with `-p ipv6-icmp`: a number, as ip6tables-save prints
    /// every type.
    pub icmpv6_type: Option<u8>,
    pub ctstate: Option<Cond<CtStates>>,
    pub target: Target,
}

fn cond<T>(negated: bool, value: T) -> Option<Cond<T>> {
    Some(Cond { negated, value })
}

/// An address match; 0.0.0.0/0 matches everything, and iptables writes no match for it.
fn net(negated: bool, net: IpNet) -> Option<Cond<IpNet>> {
    (negated || net.prefix_len() > 0).then(|| Cond {
        negated,
        value: net.trunc(),
    })
}

impl Rule {
    pub fn to(target: Target) -> Rule {
        Rule {
            src: None,
            dst: None,
            iif: None,
            oif: None,
            proto: None,
            dport: None,
            icmpv6_type: None,
            ctstate: None,
            target,
        }
    }

    pub fn jump(chain: &str) -> Rule {
        Rule::to(Target::Jump(chain.to_string()))
    }

    pub fn src(self, n: IpNet) -> Rule {
        Rule {
            src: net(false, n),
            ..self
        }
    }

    pub fn dst(self, n: IpNet) -> Rule {
        Rule {
            dst: net(false, n),
            ..self
        }
    }

    pub fn iif(self, name: &IfName) -> Rule {
        Rule {
            iif: cond(false, name.clone()),
            ..self
        }
    }

    pub fn oif(self, negated: bool, name: &IfName) -> Rule {
        Rule {
            oif: cond(negated, name.clone()),
            ..self
        }
    }

    pub fn ctstate(self, negated: bool, states: CtStates) -> Rule {
        Rule {
            ctstate: cond(negated, states),
            ..self
        }
    }
}

/// The rule as `iptables-save` prints it, without `-A CHAIN `.
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn put(words: &mut Vec<String>, negated: bool, flag: &str, value: String) {
            if negated {
                words.push("!".into());
            }
            words.push(flag.into());
            words.push(value);
        }
        let mut words: Vec<String> = Vec::new();
        if let Some(c) = &self.src {
            put(&mut words, c.negated, "-s", c.value.to_string());
        }
        if let Some(c) = &self.dst {
            put(&mut words, c.negated, "-d", c.value.to_string());
        }
        if let Some(c) = &self.iif {
            put(&mut words, c.negated, "-i", c.value.to_string());
        }
        if let Some(c) = &self.oif {
            put(&mut words, c.negated, "-o", c.value.to_string());
        }
        if let Some(p) = self.proto {
            words.extend(["-p".into(), p.name().into()]);
            if let Some(port) = self.dport {
                words.extend(["-m".into(), p.name().into(), "--dport".into()]);
                words.push(port.to_string());
            }
            if let Some(t) = self.icmpv6_type {
                words.extend(["-m", "icmp6", "--icmpv6-type"].map(String::from));
                words.push(t.to_string());
            }
        }
        if let Some(c) = &self.ctstate {
            words.extend(["-m".into(), "conntrack".into()]);
            put(&mut words, c.negated, "--ctstate", c.value.to_string());
        }
        words.push("-j".into());
        match &self.target {
            Target::Accept => words.push("ACCEPT".into()),
            Target::Drop => words.push("DROP".into()),
            Target::Return => words.push("RETURN".into()),
            Target::Jump(chain) => words.push(chain.clone()),
            Target::Snat { to, random_fully } => {
                words.extend(["SNAT".into(), "--to-source".into(), to.to_string()]);
                if *random_fully {
                    words.push("--random-fully".into());
                }
            }
            Target::Dnat { to } => {
                words.extend(["DNAT".into(), "--to-destination".into(), to.to_string()])
            }
        }
        f.write_str(&words.join(" "))
    }
}

/// One table: our chains with their rules, and the jumps from built-in chains into them.
#[derive(Debug, PartialEq)]
pub struct Table {
    pub name: &'static str,
    pub family: Family,
    pub chains: Vec<(String, Vec<Rule>)>,
    /// (built-in chain, our chain)
    pub jumps: Vec<(&'static str, String)>,
}

pub const PREFIX: &str = "qrouter-";

pub fn chain(name: &str) -> String {
    format!("{PREFIX}{name}")
}

/// The policy of a built-in chain, from `iptables-save` (`:FORWARD DROP [0:0]`).
pub fn policy<'a>(save: &'a str, table: &str, chain: &str) -> Option<&'a str> {
    let start = save.find(&format!("*{table}\n"))?;
    save[start..]
        .lines()
        .take_while(|l| *l != "COMMIT")
        .find_map(|l| l.strip_prefix(&format!(":{chain} ")))
        .and_then(|rest| rest.split_whitespace().next())
}

impl Table {
    /// An IPv4 table where qrouter wants nothing: applied, it removes our chains and jumps.
    pub fn empty(name: &'static str) -> Table {
        Table::empty_of(Family::V4, name)
    }

    pub fn empty_of(family: Family, name: &'static str) -> Table {
        Table {
            name,
            family,
            chains: vec![],
            jumps: vec![],
        }
    }

    /// Its key among a namespace's tables (`filter`, `ip6 filter`).
    pub fn key(&self) -> String {
        self.family.key(self.name)
    }

    /// Every rule of the table as (chain, rule): the jumps, then our chains' rules.
    pub fn rules(&self) -> impl Iterator<Item = (&str, Rule)> + '_ {
        let jumps = self.jumps.iter().map(|(b, o)| (*b, Rule::jump(o)));
        let ours = self
            .chains
            .iter()
            .flat_map(|(c, rules)| rules.iter().map(move |r| (c.as_str(), r.clone())));
        jumps.chain(ours)
    }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
