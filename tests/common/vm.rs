//! Fake VMs for the DHCP, DNS and port security tests: a namespace on a tap that stands in
//! for a VM another program runs, busybox udhcpc in it, a DNS query from it, and the
//! dnsmasq processes alive.

use std::net::{Ipv4Addr, Ipv6Addr, UdpSocket};
use std::time::Duration;

use super::{sh, sh_ok};

/// udhcpc's event script: configure the interface from the lease, and log what came.
const SCRIPT: &str = r#"#!/bin/sh
echo "$1 ip=$ip/$mask router=$router dns=$dns mtu=$mtu domain=$domain hostname=$hostname staticroutes=$staticroutes" >> "/run/udhcpc-$interface-$(cat /proc/sys/kernel/hostname).log"
case "$1" in
deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
bound|renew)
  ip addr replace "$ip/$mask" dev "$interface"
  [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
  if [ -n "$staticroutes" ]; then
    set -- $staticroutes
    while [ $# -ge 2 ]; do ip route replace "$1" via "$2" dev "$interface"; shift 2; done
  elif [ -n "$router" ]; then
    for r in $router; do ip route replace default via "$r" dev "$interface"; break; done
  fi ;;
esac
exit 0
"#;

/// A namespace `ns` standing in for a VM: a veth whose host end is `tap` on `bridge`, its
/// eth0 with `mac`.
pub fn fake_vm(ns: &str, tap: &str, bridge: &str, mac: &str) {
    sh_ok(&format!(
        "ip netns add {ns} && ip link add {tap} type veth peer name eth0 netns {ns} && \
         ip link set {tap} master {bridge} up && ip -n {ns} link set lo up && \
         ip -n {ns} link set eth0 address {mac} up"
    ));
}

/// Run udhcpc once in `ns` (exit when a lease is bound, or fail after 3 tries): the lines
/// the script logged.
pub fn udhcpc(ns: &str) -> (bool, String) {
    std::fs::write("/run/udhcpc.sh", SCRIPT).unwrap();
    sh_ok("chmod 755 /run/udhcpc.sh");
    let log = format!("/run/udhcpc-eth0-{ns}.log");
    let _ = std::fs::remove_file(&log);
    // The script names its log after the namespace through a private UTS hostname.
    let (got, _) = sh(&format!(
        "ip netns exec {ns} unshare --uts sh -c 'hostname {ns}; busybox udhcpc -i eth0 -s /run/udhcpc.sh -q -n -t 3 -T 1 -O staticroutes -O mtu' 2>&1"
    ));
    (got, std::fs::read_to_string(&log).unwrap_or_default())
}

/// The dnsmasq processes alive (the sandbox's pid 1, the test, reaps no zombie).
pub fn ps_dnsmasq() -> String {
    sh("ps -eo stat=,pid=,args= | awk '$1 !~ /^Z/ && $3 ~ /dnsmasq/'").1
}

/// A DNS answer: its response code (0 NOERROR, 3 NXDOMAIN, 5 REFUSED), how many answers
/// it has, and the IPv4 addresses among them.
#[derive(Debug)]
pub struct DnsAnswer {
    pub rcode: u8,
    pub addresses: Vec<Ipv4Addr>,
    /// The answers' AAAA records.
    pub addresses6: Vec<Ipv6Addr>,
    pub answers: u16,
}

/// Ask `server` from namespace `ns` for `name` of type `qtype` (1 A, 28 AAAA); None when no
/// answer came within two seconds.
pub fn dns_query(ns: &str, server: &str, name: &str, qtype: u16) -> Option<DnsAnswer> {
    let mut q = vec![0x51, 0x72, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend(label.as_bytes());
    }
    q.push(0);
    q.extend(qtype.to_be_bytes());
    q.extend([0, 1]);
    let server: Ipv4Addr = server.parse().unwrap();
    let reply = qrouter::kernel::netns::run_in(ns, move || -> std::io::Result<Vec<u8>> {
        let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        sock.set_read_timeout(Some(Duration::from_secs(2)))?;
        sock.send_to(&q, (server, 53))?;
        let mut buf = vec![0u8; 1500];
        let n = sock.recv(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    })
    .unwrap()
    .ok()?;
    let answers = u16::from_be_bytes([reply[6], reply[7]]);
    // The answers' A records: each ends with type, class, TTL, length 4 and the address.
    let addresses = (12..reply.len().saturating_sub(13))
        .filter(|&i| reply[i..i + 4] == [0, 1, 0, 1] && reply[i + 8..i + 10] == [0, 4])
        .map(|i| Ipv4Addr::new(reply[i + 10], reply[i + 11], reply[i + 12], reply[i + 13]))
        .collect();
    // And their AAAA records: type 28, class 1, TTL, length 16 and the address.
    let addresses6 = (12..reply.len().saturating_sub(25))
        .filter(|&i| reply[i..i + 4] == [0, 28, 0, 1] && reply[i + 8..i + 10] == [0, 16])
        .map(|i| Ipv6Addr::from(<[u8; 16]>::try_from(&reply[i + 10..i + 26]).unwrap()))
        .collect();
    Some(DnsAnswer {
        rcode: reply[3] & 0x0f,
        addresses,
        addresses6,
        answers,
    })
}
