//! An example in every command's --help and man page. Commands whose definition carries its
//! own (`after_help` in the noun's file) keep it; the rest get theirs from this table.

use clap::Command;

const EXAMPLES: &[(&str, &str)] = &[
    ("", "qrouter demo                        # the seed scenario in a private sandbox\n  qrouter router show router_100_101\n  qrouter                             # an interactive shell, on a terminal"),
    ("demo", "sudo qrouter demo"),
    ("floating", "qrouter floating ip list"),
    ("floating ip", "qrouter floating ip create ext_net --instance cirros-vm3"),
    ("floating ip delete", "qrouter floating ip delete 10.10.10.3"),
    ("floating ip list", "qrouter floating ip list -f json"),
    ("floating ip show", "qrouter floating ip show 10.10.10.3"),
    ("floating ip unset", "qrouter floating ip unset 10.10.10.3 --port"),
    ("instance", "qrouter instance create cirros-vm3 --network vlan101 --fixed-ip 172.16.101.3"),
    ("instance delete", "qrouter instance delete cirros-vm3"),
    ("instance list", "qrouter instance list -f value -c Name"),
    ("instance show", "qrouter instance show cirros-vm3 -f yaml"),
    ("network", "qrouter network create ext_net --external --bridge br-ex"),
    ("network delete", "qrouter network delete vlan100 vlan101"),
    ("network list", "qrouter network list --sort-column Name"),
    ("network show", "qrouter network show ext_net"),
    ("port", "qrouter port list --router router_100_101"),
    ("port show", "qrouter port show $(qrouter port list -f value -c ID | head -1)"),
    ("router", "qrouter router set router_100_101 --external-gateway ext_net"),
    ("router add", "qrouter router add interface router_100_101 vlan101"),
    ("router delete", "qrouter router delete router_100_101 --force"),
    ("router list", "qrouter router list -f value -c Name"),
    ("router remove", "qrouter router remove interface router_100_101 vlan101"),
    ("router remove route", "qrouter router remove route r1 --route destination=192.168.50.0/24,gateway=172.16.101.254"),
    ("store", "qrouter --store etcd://10.0.0.10:2379 store unlock"),
    ("subnet", "qrouter subnet create vlan101 --network vlan101 --subnet-range 172.16.101.0/24"),
    ("subnet delete", "qrouter subnet delete vlan101"),
    ("subnet list", "qrouter subnet list --network vlan101"),
    ("subnet show", "qrouter subnet show vlan101 -f json"),
];

pub fn add(cmd: Command) -> Command {
    annotate(cmd, "")
}

fn annotate(cmd: Command, path: &str) -> Command {
    let cmd = match EXAMPLES.iter().find(|(p, _)| *p == path) {
        Some((_, example)) if cmd.get_after_help().is_none() => {
            let plural = if example.contains('\n') {
                "Examples"
            } else {
                "Example"
            };
            cmd.after_help(format!("{plural}:\n  {example}"))
        }
        _ => cmd,
    };
    cmd.mut_subcommands(|sub| {
        let path = format!("{path} {}", sub.get_name());
        annotate(sub, path.trim_start())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_command_has_an_example() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let text = cmd
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            if !cmd.is_hide_set() && cmd.get_name() != "help" && !text.contains("Example") {
                missing.push(path.to_string());
            }
            // clap's own `help` subcommands, and what they list, are not ours to document.
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                walk(
                    sub,
                    format!("{path} {}", sub.get_name()).trim_start(),
                    missing,
                );
            }
        }
        let mut missing = vec![];
        walk(&super::super::command(), "", &mut missing);
        assert!(missing.is_empty(), "no example in --help of: {missing:?}");
    }
}

#[cfg(test)]
mod help_tests {
    /// Issue 15 item 17: every option and argument says what it is in --help and the man
    /// pages.
    #[test]
    fn every_option_and_argument_has_a_description() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.is_hide_set() || id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path}: {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_name() != "help" {
                    walk(sub, &format!("{path} {}", sub.get_name()), missing);
                }
            }
        }
        let mut missing = Vec::new();
        walk(&super::super::command(), "qrouter", &mut missing);
        assert!(missing.is_empty(), "no description: {missing:?}");
    }
}
