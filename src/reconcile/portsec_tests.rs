use super::*;
use crate::model::{FixedIp, PortRole};

fn port(id: &str, mac: &str, ip: &str) -> Port {
    Port {
        id: id.into(),
        name: format!("p-{id}"),
        network_id: "n1".into(),
        role: PortRole::Workload,
        device_id: String::new(),
        mac: mac.into(),
        fixed_ips: vec![FixedIp {
            subnet_id: "s1".into(),
            ip: ip.parse().unwrap(),
        }],
        host: None,
        security: Default::default(),
        meta: Default::default(),
    }
}

fn state(ports: Vec<Port>) -> State {
    State {
        ports: ports.into_iter().map(std::rc::Rc::new).collect(),
        ..Default::default()
    }
}

/// The table as the kernel would hold it after `steps` made it from nothing.
fn made(steps: &[Step]) -> Seen {
    let mut seen = Seen::default();
    for (change, _) in steps {
        match change {
            Change::CreateTable { comment } => {
                seen.comment = Some(comment.clone());
                seen.base = kernel::base_rules();
            }
            Change::WriteChain { tap, rules } => {
                seen.chains
                    .insert(tap.clone(), rules.iter().map(kernel::render).collect());
            }
            Change::AddElement(tap) => drop(seen.elements.insert(tap.clone())),
            other => panic!("not expected from nothing: {other:?}"),
        }
    }
    seen
}

const COMMENT: &str = "qrouter:s1:port-security";

#[test]
fn from_nothing_then_in_sync_then_gone_with_the_last_port() {
    let s = state(vec![
        port("aaaaaaaa-0001", "fa:16:3e:00:00:01", "10.0.0.3"),
        port("bbbbbbbb-0002", "fa:16:3e:00:00:02", "10.0.0.4"),
    ]);
    let want = wanted(&s, s.ports.iter().map(AsRef::as_ref));
    let steps = diff("qrouter-s1", COMMENT, &want, None, false).unwrap();
    let kinds: Vec<String> = steps.iter().map(|(_, w)| w.clone()).collect();
    assert_eq!(kinds.len(), 5, "{kinds:#?}");
    assert!(kinds[0].contains("create table bridge qrouter-s1"));
    let seen = made(&steps);
    // A second converge changes nothing.
    assert_eq!(
        diff("qrouter-s1", COMMENT, &want, Some(&seen), true).unwrap(),
        vec![]
    );

    // One port goes: its element, then its chain; the table stays for the other.
    let left = state(vec![port("bbbbbbbb-0002", "fa:16:3e:00:00:02", "10.0.0.4")]);
    let mut after = wanted(&left, left.ports.iter().map(AsRef::as_ref));
    after
        .scope
        .insert("tapaaaaaaaa-00".into(), "port p-aaaaaaaa-0001".into());
    let steps = diff("qrouter-s1", COMMENT, &after, Some(&seen), false).unwrap();
    let changes: Vec<&Change> = steps.iter().map(|(c, _)| c).collect();
    assert_eq!(
        changes,
        [
            &Change::DeleteElement("tapaaaaaaaa-00".into()),
            &Change::DeleteChain("tapaaaaaaaa-00".into())
        ]
    );
    // None left: the table goes whole.
    let none = state(vec![]);
    let mut empty = wanted(&none, none.ports.iter().map(AsRef::as_ref));
    empty.scope = want.scope.clone();
    let steps = diff("qrouter-s1", COMMENT, &empty, Some(&seen), false).unwrap();
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].0, Change::DeleteTable);
}

#[test]
fn drift_names_the_rules_missing_and_extra_and_orphans_go_in_a_sync() {
    let s = state(vec![port("aaaaaaaa-0001", "fa:16:3e:00:00:01", "10.0.0.3")]);
    let want = wanted(&s, s.ports.iter().map(AsRef::as_ref));
    let mut seen = made(&diff("qrouter-s1", COMMENT, &want, None, false).unwrap());
    let chain = seen.chains.get_mut("tapaaaaaaaa-00").unwrap();
    chain.pop();
    chain.push("ether type ip accept".into());
    seen.chains.insert("tapstale-0000".into(), vec![]);
    seen.elements.insert("tapstale-0000".into());
    seen.base.clear();
    let steps = diff("qrouter-s1", COMMENT, &want, Some(&seen), true).unwrap();
    let lines: Vec<&str> = steps.iter().map(|(_, w)| w.as_str()).collect();
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(lines[0].contains("restore its base chain"));
    assert!(
        lines[1].contains("missing `ether type ip6 drop`, extra `ether type ip accept`"),
        "{lines:#?}"
    );
    assert!(lines[2].contains("tapstale-0000 (port gone): remove it from map ports"));
    assert!(lines[3].contains("tapstale-0000 (port gone): delete its chain"));
    // Without a full sync, a tap no change is about is left alone.
    let steps = diff("qrouter-s1", COMMENT, &want, Some(&seen), false).unwrap();
    assert_eq!(steps.len(), 2);
}

#[test]
fn another_stores_table_is_never_touched() {
    let s = state(vec![port("aaaaaaaa-0001", "fa:16:3e:00:00:01", "10.0.0.3")]);
    let want = wanted(&s, s.ports.iter().map(AsRef::as_ref));
    let seen = Seen {
        comment: Some("someone else's".into()),
        ..Default::default()
    };
    let e = diff("qrouter-s1", COMMENT, &want, Some(&seen), true).unwrap_err();
    assert!(
        format!("{e}").contains("carries no mark of this store"),
        "{e}"
    );
}

#[test]
fn a_port_with_security_off_is_not_guarded() {
    let mut p = port("aaaaaaaa-0001", "fa:16:3e:00:00:01", "10.0.0.3");
    p.security.enabled = false;
    let s = state(vec![p]);
    let want = wanted(&s, s.ports.iter().map(AsRef::as_ref));
    assert!(want.guards.is_empty());
    assert_eq!(want.scope.len(), 1);
}
