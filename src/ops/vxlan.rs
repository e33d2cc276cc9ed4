//! The provider type of a new network: flat (one host's bridge) or vxlan (a segment that
//! spans hosts). 802.1Q VLANs are refused: these hosts' kernels have no 8021q module, so
//! nothing could test them.
//!
//! With no type given: flat on one host; with a store shared by hosts (etcd), vxlan for a
//! tenant network, as Neutron's ML2 `tenant_network_types = vxlan` makes it. An external
//! network stays flat: it is the bridge to the physical upstream (br-ex) on the network
//! hosts, as in Neutron, where the provider networks are flat or vlan, never a tenant
//! segment; so does a network given `--bridge` or `--provider-interface`, which name a
//! host's devices. `--provider-network-type vxlan` still makes any of them a segment.

use crate::bail_invalid;
use crate::model::State;

/// What a new network asks of its provider type.
#[derive(Clone, Debug, Default)]
pub struct Provider<'a> {
    pub name: &'a str,
    pub external: bool,
    /// `--bridge` or `--provider-interface`: it names a host's own devices.
    pub host_devices: bool,
    /// `--provider-network-type`: flat, vxlan; vlan is refused.
    pub network_type: Option<&'a str>,
    /// `--provider-segment`: the VNI of a vxlan network (else the lowest free one).
    pub segment: Option<u32>,
    /// The store is shared by several hosts (etcd).
    pub spans_hosts: bool,
}

/// The highest VNI (24 bits).
const VNI_MAX: u32 = *crate::model::trust::VNIS.end();

/// The VNI of the network `args` asks for, None for a flat one.
pub fn segment(state: &State, args: &Provider) -> anyhow::Result<Option<u32>> {
    let name = args.name;
    let host_devices = args.host_devices;
    let default = match args.spans_hosts && !args.external && !host_devices {
        true => "vxlan",
        false => "flat",
    };
    match args.network_type.or(Some(default)) {
        None | Some("flat") => {
            if args.segment.is_some() {
                bail_invalid!(
                    "network {name}: --provider-segment needs --provider-network-type vxlan"
                );
            }
            Ok(None)
        }
        Some("vlan") => bail_invalid!(
            "network {name}: --provider-network-type vlan is not supported yet: this kernel has \
             no 802.1Q support (module 8021q) to test it on; use vxlan"
        ),
        Some("vxlan") => {
            if host_devices {
                bail_invalid!(
                    "network {name}: a vxlan network has a bridge of its own on each host; \
                     --provider-interface and --bridge are for flat networks"
                );
            }
            let used = |vni: u32| state.networks.iter().any(|n| n.vni == Some(vni));
            match args.segment {
                Some(vni) if !(1..=VNI_MAX).contains(&vni) => {
                    bail_invalid!(
                        "network {name}: --provider-segment {vni}: a VNI is 1..={VNI_MAX}"
                    )
                }
                Some(vni) if used(vni) => {
                    bail_invalid!("network {name}: VNI {vni} is used by another network")
                }
                Some(vni) => Ok(Some(vni)),
                None => Ok((1..=VNI_MAX).find(|v| !used(*v))),
            }
        }
        Some(other) => {
            bail_invalid!("network {name}: --provider-network-type {other}: flat or vxlan")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(kind: &str, segment: Option<u32>) -> Provider<'_> {
        Provider {
            name: "n",
            network_type: Some(kind),
            segment,
            ..Default::default()
        }
    }

    #[test]
    fn vxlan_takes_the_lowest_free_vni_and_vlan_is_refused() {
        let mut state = crate::ops::tests::seed_state();
        assert_eq!(segment(&state, &create("vxlan", None)).unwrap(), Some(1));
        std::rc::Rc::make_mut(&mut state.networks[0]).vni = Some(1);
        assert_eq!(segment(&state, &create("vxlan", None)).unwrap(), Some(2));
        let err = segment(&state, &create("vxlan", Some(1))).unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 2);
        let err = segment(&state, &create("vlan", Some(100))).unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 2);
        assert!(err.to_string().contains("802.1Q"), "{err}");
        assert_eq!(segment(&state, &create("flat", None)).unwrap(), None);
    }

    #[test]
    fn with_an_etcd_store_a_tenant_network_is_vxlan_by_default() {
        let state = crate::ops::tests::seed_state();
        let mut args = Provider {
            name: "n",
            ..Default::default()
        };
        assert_eq!(segment(&state, &args).unwrap(), None, "one host: flat");
        args.spans_hosts = true;
        assert_eq!(segment(&state, &args).unwrap(), Some(1));
        args.segment = Some(7);
        assert_eq!(segment(&state, &args).unwrap(), Some(7));
        args.segment = None;
        // External, or on a host's own devices: flat unless vxlan is asked for.
        let ext = Provider {
            external: true,
            ..args
        };
        assert_eq!(segment(&state, &ext).unwrap(), None);
        let ext_vxlan = Provider {
            network_type: Some("vxlan"),
            ..ext
        };
        assert_eq!(segment(&state, &ext_vxlan).unwrap(), Some(1));
        let bridged = Provider {
            name: "b",
            host_devices: true,
            spans_hosts: true,
            ..Default::default()
        };
        assert_eq!(segment(&state, &bridged).unwrap(), None);
        // An explicit flat stays flat.
        let flat = Provider {
            name: "f",
            network_type: Some("flat"),
            spans_hosts: true,
            ..Default::default()
        };
        assert_eq!(segment(&state, &flat).unwrap(), None);
    }
}
