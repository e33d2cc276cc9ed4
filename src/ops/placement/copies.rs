//! Where an HA router's copies run. A router made HA gets its copies on distinct live
//! network hosts with the change. A copy on a host that is gone (confirmed dead by an agent
//! with `--allow-automatic-failover`, or deleted with `host delete --force`) is placed again
//! on another live network host running none of the router, and goes; with no such host the
//! router keeps running on its other copies, degraded (`Ha::degraded`), until a network host
//! is free: an agent's `place_unplaced`, or the next change, gives it the copies it lacks.

use std::collections::BTreeSet;
use std::rc::Rc;

use crate::bail_invalid;
use crate::model::ha::Copy;
use crate::model::host::HostInfo;
use crate::model::{new_mac, Router, State};

/// Each HA router short of copies, or with copies on `gone` hosts, gets copies on the live
/// network hosts it runs none on, those running the fewest routers first (ties: by name),
/// each with an `ha-` address and MAC of its own; then its copies on `gone` hosts go. In
/// that order, so a new copy never takes the address of one that goes, which the other
/// copies' neighbour caches (and a host that is only cut off) may still hold.
/// A router `strict` names (made HA by this change) must get all its copies: too few hosts
/// is an error, as it would not be highly available. Another takes what is free. What
/// changed, one line each.
pub fn place(
    hosts: &[HostInfo],
    new: &mut State,
    gone: &BTreeSet<&str>,
    strict: impl Fn(&Router) -> bool,
) -> anyhow::Result<Vec<String>> {
    let mut lines = vec![];
    for i in 0..new.routers.len() {
        let r = new.routers[i].clone();
        let Some(ha) = &r.ha else { continue };
        let kept = (ha.copies.iter())
            .filter(|c| !gone.contains(c.host.as_str()))
            .count();
        let missing = (ha.wanted as usize).saturating_sub(kept);
        if missing == 0 && kept == ha.copies.len() {
            continue;
        }
        let free = free_hosts(hosts, new, &r);
        if free.len() < missing && strict(&r) {
            bail_invalid!(
                "router {}: --ha-hosts {}: needs {} live network hosts, {} available ({})",
                r.name,
                ha.wanted,
                ha.wanted,
                free.len() + kept,
                if free.is_empty() {
                    "none".to_string()
                } else {
                    free.join(", ")
                }
            );
        }
        for host in free.into_iter().take(missing) {
            let Some(address) = new.free_ha_address() else {
                bail_invalid!("router {}: the HA network has no address left", r.name);
            };
            lines.push(format!("router {}: HA copy placed on {host}", r.name));
            let router = Rc::make_mut(&mut new.routers[i]);
            let copies = &mut router.ha.as_mut().expect("HA").copies;
            copies.push(Copy {
                host,
                address,
                mac: new_mac(),
            });
        }
        let router = Rc::make_mut(&mut new.routers[i]);
        let ha = router.ha.as_mut().expect("HA");
        for c in ha.copies.iter().filter(|c| gone.contains(c.host.as_str())) {
            lines.push(format!("router {}: its HA copy on {} went", r.name, c.host));
        }
        ha.copies.retain(|c| !gone.contains(c.host.as_str()));
        if ha.degraded() {
            lines.push(format!(
                "router {}: degraded, {} of {} copies: no other live network host to run one",
                r.name,
                ha.copies.len(),
                ha.wanted
            ));
        }
    }
    Ok(lines)
}

/// Whether `place` has something to do for router `r`: a copy on a `gone` host, or fewer
/// copies than it wants and a live network host free to run one.
pub fn due(r: &Router, hosts: &[HostInfo], gone: &BTreeSet<&str>) -> bool {
    let Some(ha) = &r.ha else { return false };
    ha.copies.iter().any(|c| gone.contains(c.host.as_str()))
        || (ha.degraded() && hosts.iter().any(|h| free(h, r)))
}

/// A live network host running no copy of `r`.
fn free(h: &HostInfo, r: &Router) -> bool {
    h.alive && h.role.routes() && !r.runs_on(&h.name)
}

/// The hosts free to run a copy of `r`, those running the fewest routers first (ties: by
/// name).
fn free_hosts(hosts: &[HostInfo], state: &State, r: &Router) -> Vec<String> {
    let load = |h: &str| state.routers.iter().filter(|r| r.runs_on(h)).count();
    let mut free: Vec<&HostInfo> = hosts.iter().filter(|h| free(h, r)).collect();
    free.sort_by_key(|h| (load(&h.name), h.name.clone()));
    free.into_iter().map(|h| h.name.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::host;
    use crate::model::ha::Ha;
    use crate::model::host::Role;

    fn ha_router(copies: &[&str]) -> State {
        let mut state = crate::ops::tests::seed_state();
        let r = Rc::make_mut(&mut state.routers[0]);
        r.host = None;
        r.ha = Some(Ha {
            vrid: 1,
            wanted: 2,
            copies: vec![],
        });
        for host in copies {
            let address = state.free_ha_address().unwrap();
            let r = Rc::make_mut(&mut state.routers[0]);
            r.ha.as_mut().unwrap().copies.push(Copy {
                host: host.to_string(),
                address,
                mac: new_mac(),
            });
        }
        state
    }

    fn copies(state: &State) -> Vec<(String, String)> {
        let ha = state.routers[0].ha.as_ref().unwrap();
        (ha.copies.iter())
            .map(|c| (c.host.clone(), c.address.to_string()))
            .collect()
    }

    #[test]
    fn a_copy_on_a_gone_host_is_placed_again_with_a_new_address_or_the_router_is_degraded() {
        let mut state = ha_router(&["net1", "net2"]);
        let mut hosts = vec![
            host("net1", Role::Network, false),
            host("net2", Role::Network, true),
            host("net3", Role::Network, true),
            host("cmp1", Role::Compute, true),
        ];
        let none = BTreeSet::new();
        let gone = BTreeSet::from(["net1"]);
        assert!(!due(&state.routers[0], &hosts, &none), "down, not gone");
        assert!(due(&state.routers[0], &hosts, &gone));
        let lines = place(&hosts, &mut state, &gone, |_| false).unwrap();
        assert_eq!(
            lines,
            [
                "router router_100_101: HA copy placed on net3",
                "router router_100_101: its HA copy on net1 went"
            ]
        );
        // net1's address is not handed to net3's copy.
        let placed = copies(&state);
        assert_eq!(
            placed,
            [
                ("net2".into(), "169.254.192.2".into()),
                ("net3".into(), "169.254.192.3".into())
            ]
        );
        assert!(!due(&state.routers[0], &hosts, &BTreeSet::new()));

        // net3 goes too, no host is free: degraded, on net2 alone; a strict placement
        // (a router made HA by the change) is refused instead.
        hosts[2].alive = false;
        let gone = BTreeSet::from(["net3"]);
        let mut refused = state.clone();
        assert!(place(&hosts, &mut refused, &gone, |_| true).is_err());
        let lines = place(&hosts, &mut state, &gone, |_| false).unwrap();
        assert_eq!(
            lines,
            [
                "router router_100_101: its HA copy on net3 went",
                "router router_100_101: degraded, 1 of 2 copies: no other live network host to run one"
            ]
        );
        assert!(state.routers[0].ha.as_ref().unwrap().degraded());
        assert!(!due(&state.routers[0], &hosts, &BTreeSet::new()));
        // net1 returns: the router gets its second copy there.
        hosts[0].alive = true;
        assert!(due(&state.routers[0], &hosts, &BTreeSet::new()));
        place(&hosts, &mut state, &BTreeSet::new(), |_| false).unwrap();
        let hosts_of: Vec<String> = copies(&state).into_iter().map(|c| c.0).collect();
        assert_eq!(hosts_of, ["net2", "net1"]);
        assert!(!state.routers[0].ha.as_ref().unwrap().degraded());
    }
}
