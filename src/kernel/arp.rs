//! Gratuitous ARP for a new address, as Neutron sends with `arping -U` and `arping -A`:
//! neighbours that cached another MAC for the address (a floating IP that moved, a router
//! rebuilt with new MACs) update it at once instead of after their cache times out. The
//! frames go out from this process's announcer (`announcer.rs`), after the change.

use anyhow::Context;
use std::net::Ipv4Addr;

use super::announcer::{self, Record, MAX_ITEMS};
use super::link::parse_mac;

/// One address to announce: on device `index` (of the namespace announced in), at `mac`.
pub struct Announcement {
    pub index: u32,
    pub mac: String,
    pub ip: Ipv4Addr,
}

/// Announce `items` in namespace `ns`: for each, a request and a reply, in rounds (see
/// `announcer::ROUNDS_MS`), sent by this process's announcer so that the change does not
/// wait for them. Errors are those of handing them over; what happens after is not worth
/// failing a change for (Neutron does not either): a neighbour's stale entry times out on
/// its own.
pub fn announce_all(ns: &str, items: &[Announcement]) -> anyhow::Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    let path = announcer::path_of(ns).context("gratuitous ARP")?;
    let mut records = vec![];
    for chunk in items.chunks(MAX_ITEMS) {
        let mut r = Record::EMPTY;
        r.path = path;
        for (slot, a) in r.items.iter_mut().zip(chunk) {
            let mac = parse_mac(&a.mac)?;
            slot.mac = mac.try_into().ok().context("a MAC of six bytes")?;
            slot.index = a.index;
            slot.ip = a.ip.octets();
        }
        r.count = chunk.len() as u32;
        records.push(r);
    }
    announcer::send(&records).with_context(|| format!("gratuitous ARP in {ns}"))
}
