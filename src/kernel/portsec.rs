//! Port security in the kernel: one nf_tables table of the bridge family per store, made and
//! read with the `nft` program. Its base chain hooks bridge prerouting (every frame entering
//! a bridge through a port) and sends a frame on to the chain named after its input tap
//! through the verdict map `ports`; each guarded tap's chain holds its port's rules
//! (`Rule`, built by `model::portsec`), rendered here in the form `nft list` prints them, so what is
//! read back compares with what is wanted.
//!
//! Frames are matched by the input device's name (`iifname`): a workload's tap is guarded
//! from its first frame, even when it appears after its rules. Stateless: this kernel has no
//! conntrack in the bridge family, and spoofing is judged frame by frame anyway.
//!
//! Cost, measured here: one `nft -f` of a change (a chain of seven rules and its map
//! element) takes 9-12 ms, of which the process start and nft's own cache load are most;
//! one `nft list table` 4-6 ms. The rules stay typed data until this module renders them:
//! an in-process nf_tables writer can replace the rendering without touching `reconcile`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use std::net::Ipv6Addr;

use ipnet::Ipv4Net;

/// One rule of a port's filter, in the order a frame meets them. Every frame not dropped
/// goes on to the bridge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Any frame whose source MAC is none of these.
    DropOtherMacs(Vec<String>),
    /// ARP whose sender MAC and IPv4 address are an allowed pair, or a probe (RFC 5227,
    /// sender 0.0.0.0) from the port's MAC.
    AcceptArp(Vec<(String, Ipv4Net)>),
    /// Any other ARP: a forged reply for the router's address stops here.
    DropArp,
    /// A DHCP server's reply (UDP 67 to 68): only the network's DHCP port sends those.
    DropDhcpServer,
    /// IPv4 from an allowed pair of source MAC and source address.
    AcceptIpv4(Vec<(String, Ipv4Net)>),
    /// A DHCP client that has no address yet (0.0.0.0:68 to 255.255.255.255:67).
    AcceptDhcpDiscover,
    /// Any other IPv4.
    DropIpv4,
    /// A router advertisement: a VM is no router (a rogue one would take the network's
    /// default route).
    DropRouterAdvert,
    /// A DHCPv6 server's reply (UDP 547 to 546): only the network's DHCP port sends those.
    DropDhcpv6Server,
    /// A neighbour advertisement whose source MAC and target address are an allowed pair
    /// (the port's IPv6 addresses and link-local): a port answers for its own addresses.
    AcceptNeighbourAdvert(Vec<(String, Ipv6Addr)>),
    /// Any other neighbour advertisement: a forged one for the router's address stops here.
    DropNeighbourAdvert,
    /// IPv6 from an allowed pair of source MAC and source address.
    AcceptIpv6(Vec<(String, Ipv6Addr)>),
    /// What a host sends before it has an address: duplicate address detection's
    /// neighbour solicitations, multicast listener reports and router solicitations from
    /// `::` to a link-local multicast group (Neutron's firewall lets them through too).
    AcceptIpv6Unspecified,
    /// Any other IPv6.
    DropIpv6,
}

const PROGRAM: &str = "nft";

/// The verdict map from input tap to its chain, and the base chain that consults it.
const MAP: &str = "ports";
const BASE: &str = "prerouting";

/// The base chain as `nft list` prints it: its hook line and its one rule.
pub fn base_rules() -> Vec<String> {
    vec![
        "type filter hook prerouting priority filter; policy accept;".to_string(),
        format!("iifname vmap @{MAP}"),
    ]
}

/// A table as read back: its comment (the owner's mark), the base chain's lines, the taps
/// in the map, and every other chain's rules.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Seen {
    pub comment: Option<String>,
    pub base: Vec<String>,
    pub elements: BTreeSet<String>,
    pub chains: BTreeMap<String, Vec<String>>,
}

/// One change to the table; a list of them is one `nft -f` transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The table with its comment, the map and the base chain.
    CreateTable {
        comment: String,
    },
    /// The base chain's rule, put back.
    RewriteBase,
    /// A tap's chain, made or emptied, and filled with these rules.
    WriteChain {
        tap: String,
        rules: Vec<Rule>,
    },
    AddElement(String),
    DeleteElement(String),
    DeleteChain(String),
    DeleteTable,
}

/// An address as nft prints it: a host address without its /32.
fn address(net: &Ipv4Net) -> String {
    match net.prefix_len() {
        32 => net.addr().to_string(),
        _ => net.to_string(),
    }
}

fn pairs(pairs: &[(String, Ipv4Net)]) -> String {
    let items: Vec<String> = pairs
        .iter()
        .map(|(mac, net)| format!("{mac} . {}", address(net)))
        .collect();
    format!("{{ {} }}", items.join(", "))
}

/// A rule as `nft list` prints it.
pub fn render(rule: &Rule) -> String {
    match rule {
        Rule::DropOtherMacs(macs) => match macs.as_slice() {
            [one] => format!("ether saddr != {one} drop"),
            many => format!("ether saddr != {{ {} }} drop", many.join(", ")),
        },
        Rule::AcceptArp(p) => format!("arp saddr ether . arp saddr ip {} accept", pairs(p)),
        Rule::DropArp => "ether type arp drop".to_string(),
        Rule::DropDhcpServer => "udp sport 67 udp dport 68 drop".to_string(),
        Rule::AcceptIpv4(p) => format!("ether saddr . ip saddr {} accept", pairs(p)),
        Rule::AcceptDhcpDiscover => {
            "ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept".to_string()
        }
        Rule::DropIpv4 => "ether type ip drop".to_string(),
        // nft 1.0.6 has no name for the advertisement's target: it is the 16 bytes after
        // the ICMPv6 header's 8, as a raw payload (`@th,64,128`), which nft prints in hex.
        Rule::AcceptNeighbourAdvert(p) => {
            let items: Vec<String> = p
                .iter()
                .map(|(mac, ip)| format!("{mac} . 0x{:x}", u128::from(*ip)))
                .collect();
            format!(
                "icmpv6 type nd-neighbor-advert ether saddr . @th,64,128 {{ {} }} accept",
                items.join(", ")
            )
        }
        Rule::DropNeighbourAdvert => "icmpv6 type nd-neighbor-advert drop".to_string(),
        Rule::DropRouterAdvert => "icmpv6 type nd-router-advert drop".to_string(),
        Rule::DropDhcpv6Server => "udp sport 547 udp dport 546 drop".to_string(),
        Rule::AcceptIpv6(p) => {
            let items: Vec<String> = p.iter().map(|(mac, ip)| format!("{mac} . {ip}")).collect();
            format!("ether saddr . ip6 saddr {{ {} }} accept", items.join(", "))
        }
        Rule::AcceptIpv6Unspecified => "ip6 saddr :: ip6 daddr ff02::/16 icmpv6 type { nd-router-solicit, nd-neighbor-solicit, mld2-listener-report } accept".to_string(),
        Rule::DropIpv6 => "ether type ip6 drop".to_string(),
    }
}

/// A rule line with the elements of each `{ … }` sorted: nft prints a set's elements in
/// the kernel's order, not in the order they were given.
pub fn normal(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(open) = rest.find("{ ") {
        let Some(close) = rest[open..].find(" }") else {
            break;
        };
        let mut items: Vec<&str> = rest[open + 2..open + close].split(", ").collect();
        items.sort_unstable();
        out += &rest[..open];
        out += &format!("{{ {} }}", items.join(", "));
        rest = &rest[open + close + 2..];
    }
    out + rest
}

/// The transaction that makes `changes` in table `table`, in `nft -f` syntax.
pub fn batch(table: &str, changes: &[Change]) -> String {
    let t = format!("bridge {table}");
    let mut out = String::new();
    for change in changes {
        match change {
            Change::CreateTable { comment } => {
                out += &format!("add table {t} {{ comment \"{comment}\"; }}\n");
                out += &format!("add map {t} {MAP} {{ type ifname : verdict; }}\n");
                out += &format!(
                    "add chain {t} {BASE} {{ type filter hook prerouting priority filter; policy accept; }}\n"
                );
                out += &format!("add rule {t} {BASE} iifname vmap @{MAP}\n");
            }
            Change::RewriteBase => {
                out += &format!("flush chain {t} {BASE}\n");
                out += &format!("add rule {t} {BASE} iifname vmap @{MAP}\n");
            }
            Change::WriteChain { tap, rules } => {
                out += &format!("add chain {t} {tap}\nflush chain {t} {tap}\n");
                for rule in rules {
                    out += &format!("add rule {t} {tap} {}\n", render(rule));
                }
            }
            Change::AddElement(tap) => {
                out += &format!("add element {t} {MAP} {{ \"{tap}\" : jump {tap} }}\n");
            }
            Change::DeleteElement(tap) => {
                out += &format!("delete element {t} {MAP} {{ \"{tap}\" }}\n");
            }
            Change::DeleteChain(tap) => out += &format!("delete chain {t} {tap}\n"),
            Change::DeleteTable => out += &format!("delete table {t}\n"),
        }
    }
    out
}

fn nft() -> Command {
    let path = super::find_program(PROGRAM).unwrap_or_else(|| PROGRAM.into());
    let mut cmd = Command::new(path);
    // Out of reach of a Ctrl-C at the terminal, as iptables is: qrouter defers the signal
    // until its change is done or undone.
    cmd.process_group(0);
    cmd
}

fn missing_nft(e: std::io::Error) -> anyhow::Error {
    anyhow::Error::new(e).context(
        "cannot run nft, which port security needs (install the Debian package 'nftables')",
    )
}

/// Table `table` of the bridge family as the kernel has it; None when there is none.
pub fn read(table: &str) -> anyhow::Result<Option<Seen>> {
    let out = nft()
        .args(["list", "table", "bridge", table])
        .stdin(Stdio::null())
        .output()
        .map_err(missing_nft)?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        if said.contains("No such file or directory") {
            return Ok(None);
        }
        bail!("nft list table bridge {table}: {}", said.trim());
    }
    Ok(Some(parse(&String::from_utf8_lossy(&out.stdout))))
}

/// What `nft list table` printed.
fn parse(text: &str) -> Seen {
    let mut seen = Seen::default();
    let mut chain: Option<(String, Vec<String>)> = None;
    let (mut in_map, mut elements) = (false, None::<String>);
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(elems) = elements.as_mut() {
            elems.push(' ');
            elems.push_str(line);
            if line.ends_with('}') {
                seen.elements = map_keys(elems);
                elements = None;
            }
            continue;
        }
        if let Some((name, rules)) = chain.as_mut() {
            if line == "}" {
                let (name, rules) = (std::mem::take(name), std::mem::take(rules));
                match name == BASE {
                    true => seen.base = rules,
                    false => drop(seen.chains.insert(name, rules)),
                }
                chain = None;
            } else {
                rules.push(line.to_string());
            }
            continue;
        }
        if in_map {
            if let Some(rest) = line.strip_prefix("elements = ") {
                match rest.ends_with('}') {
                    true => seen.elements = map_keys(rest),
                    false => elements = Some(rest.to_string()),
                }
            } else if line == "}" {
                in_map = false;
            }
        } else if let Some(name) = line
            .strip_prefix("chain ")
            .and_then(|l| l.strip_suffix(" {"))
        {
            chain = Some((name.to_string(), vec![]));
        } else if line.starts_with("map ") {
            in_map = true;
        } else if let Some(c) = line.strip_prefix("comment ") {
            seen.comment = Some(c.trim_matches('"').to_string());
        }
    }
    seen
}

/// The keys of a verdict map's `{ "k" : jump k, … }`.
fn map_keys(text: &str) -> BTreeSet<String> {
    text.trim_matches(|c| c == '{' || c == '}' || c == ' ')
        .split(',')
        .filter_map(|item| item.trim().split(" : ").next())
        .map(|k| k.trim_matches('"').to_string())
        .filter(|k| !k.is_empty())
        .collect()
}

/// Make the changes in one transaction: all of them or, when nft refuses one, none.
pub fn apply(table: &str, changes: &[Change]) -> anyhow::Result<()> {
    let text = batch(table, changes);
    let mut child = nft()
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(missing_nft)?;
    // Closed (the batch's end) before the process is waited for.
    { child.stdin.take().expect("piped stdin") }
        .write_all(text.as_bytes())
        .context("nft: cannot write the batch to it")?;
    let out = child
        .wait_with_output()
        .context("nft: cannot wait for it")?;
    if !out.status.success() {
        bail!(
            "nft refused the port security rules of table bridge {table}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `nft list table` printed here for a table of two guarded taps.
    const LISTED: &str = "table bridge qrouter-s1 {
	comment \"qrouter:s1:port-security\"
	map ports {
		type ifname : verdict
		elements = { \"tapd8437b91-0c\" : jump tapd8437b91-0c,
			     \"tapaaaaaaaa-0c\" : jump tapaaaaaaaa-0c }
	}

	chain prerouting {
		type filter hook prerouting priority filter; policy accept;
		iifname vmap @ports
	}

	chain tapd8437b91-0c {
		ether saddr != { 02:00:00:00:00:01, fa:16:3e:00:00:0a } drop
		arp saddr ether . arp saddr ip { fa:16:3e:00:00:0a . 172.16.101.3, fa:16:3e:00:00:0a . 0.0.0.0 } accept
	}

	chain tapaaaaaaaa-0c {
	}
}
";

    #[test]
    fn a_listing_reads_back() {
        let seen = parse(LISTED);
        assert_eq!(seen.comment.as_deref(), Some("qrouter:s1:port-security"));
        assert_eq!(seen.base, base_rules());
        assert_eq!(
            seen.elements.iter().collect::<Vec<_>>(),
            ["tapaaaaaaaa-0c", "tapd8437b91-0c"]
        );
        assert_eq!(seen.chains["tapaaaaaaaa-0c"], Vec::<String>::new());
        assert_eq!(seen.chains["tapd8437b91-0c"].len(), 2);
        let one = parse(&LISTED.replace(
            "{ \"tapd8437b91-0c\" : jump tapd8437b91-0c,\n\t\t\t     \"tapaaaaaaaa-0c\" : jump tapaaaaaaaa-0c }",
            "{ \"tapd8437b91-0c\" : jump tapd8437b91-0c }",
        ));
        assert_eq!(one.elements.len(), 1);
    }

    #[test]
    fn rules_render_as_nft_lists_them() {
        let mac = "fa:16:3e:00:00:0a".to_string();
        let pairs = vec![
            (mac.clone(), "0.0.0.0/32".parse().unwrap()),
            (mac.clone(), "172.16.101.3/32".parse().unwrap()),
        ];
        let listed = &parse(LISTED).chains["tapd8437b91-0c"];
        let wanted = [
            Rule::DropOtherMacs(vec![mac.clone(), "02:00:00:00:00:01".into()]),
            Rule::AcceptArp(pairs),
        ];
        for (rule, line) in wanted.iter().zip(listed) {
            assert_eq!(normal(&render(rule)), normal(line));
        }
        assert_eq!(
            render(&Rule::DropOtherMacs(vec![mac])),
            "ether saddr != fa:16:3e:00:00:0a drop"
        );
        let wide = vec![("02:00:00:00:00:01".into(), "10.0.0.0/8".parse().unwrap())];
        assert_eq!(
            render(&Rule::AcceptIpv4(wide)),
            "ether saddr . ip saddr { 02:00:00:00:00:01 . 10.0.0.0/8 } accept"
        );
    }

    #[test]
    fn a_change_is_one_transaction() {
        let text = batch(
            "qrouter-s1",
            &[
                Change::WriteChain {
                    tap: "tapx".into(),
                    rules: vec![Rule::DropArp],
                },
                Change::AddElement("tapx".into()),
                Change::DeleteElement("tapy".into()),
                Change::DeleteChain("tapy".into()),
            ],
        );
        assert_eq!(
            text,
            "add chain bridge qrouter-s1 tapx\nflush chain bridge qrouter-s1 tapx\n\
             add rule bridge qrouter-s1 tapx ether type arp drop\n\
             add element bridge qrouter-s1 ports { \"tapx\" : jump tapx }\n\
             delete element bridge qrouter-s1 ports { \"tapy\" }\n\
             delete chain bridge qrouter-s1 tapy\n"
        );
    }
}
