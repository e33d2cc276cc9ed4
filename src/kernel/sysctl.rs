//! Sysctls of a namespace: /proc/sys/net follows the thread that entered it.

use anyhow::Context;

use super::netns;

/// Set each `key=value` in namespace `ns` where it differs (only find them with `dry_run`);
/// returns those keys. Keys of modules not loaded in the namespace yet (nf_conntrack) are skipped.
pub fn ensure(
    ns: &str,
    settings: &'static [(&'static str, &'static str)],
    dry_run: bool,
) -> anyhow::Result<Vec<&'static str>> {
    netns::run_in(ns, move || -> anyhow::Result<Vec<&'static str>> {
        let mut differ = Vec::new();
        for (key, value) in settings {
            let path = format!("/proc/sys/{}", key.replace('.', "/"));
            let Ok(current) = std::fs::read_to_string(&path) else {
                continue;
            };
            if current.trim() == *value {
                continue;
            }
            if !dry_run {
                std::fs::write(&path, value)
                    .with_context(|| format!("sysctl {key}: cannot set it to {value}"))?;
            }
            differ.push(*key);
        }
        Ok(differ)
    })?
}
