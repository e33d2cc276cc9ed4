//! Options several nouns share, as openstackclient spells them: tags, `--enable/--disable`,
//! the tag filters of lists, and deleting several objects one by one.

use clap::Args;

use crate::model::Meta;
use crate::ops::MetaEdit;

// `--tag`/`--no-tag` of `create` and `set`.
#[derive(Args, Clone, Debug, Default)]
pub struct TagArgs {
    /// Add this tag (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tag: Vec<String>,
    /// No tags: on create, none; on set, clear the tags first (then add any --tag).
    #[arg(long)]
    pub no_tag: bool,
}

// `--tag`/`--all-tag` of `unset`.
#[derive(Args, Clone, Debug, Default)]
pub struct UntagArgs {
    /// Remove this tag (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tag: Vec<String>,
    /// Remove every tag.
    #[arg(long)]
    pub all_tag: bool,
}

// `--enable`/`--disable`.
#[derive(Args, Clone, Debug, Default)]
pub struct StateArgs {
    /// Enable it (admin state up; the default on create).
    #[arg(long, conflicts_with = "disable")]
    pub enable: bool,
    /// Disable it (admin state down).
    #[arg(long)]
    pub disable: bool,
}

impl StateArgs {
    pub fn up(&self) -> Option<bool> {
        either(self.enable, self.disable)
    }
}

/// A pair of flags such as `--share`/`--no-share`: which one was given, if any.
pub fn either(yes: bool, no: bool) -> Option<bool> {
    match (yes, no) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

// `--enable-port-security`/`--disable-port-security`, as openstackclient spells them.
#[derive(Args, Clone, Debug, Default)]
pub struct PortSecurityArgs {
    /// Port security on (the default): only the port's MAC, its fixed IPs and its allowed
    /// address pairs may leave its tap, and no DHCP server reply; on a network, the default
    /// of the ports made on it.
    #[arg(long, conflicts_with = "disable_port_security")]
    pub enable_port_security: bool,
    /// Port security off: anything may leave the port's tap (on a network: for the ports
    /// made on it).
    #[arg(long)]
    pub disable_port_security: bool,
}

impl PortSecurityArgs {
    pub fn on(&self) -> Option<bool> {
        match (self.enable_port_security, self.disable_port_security) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        }
    }
}

// The tag filters of every `list`, as Neutron applies them.
#[derive(Args, Clone, Debug, Default)]
pub struct TagFilter {
    /// Only objects that have all these tags (comma-separated).
    #[arg(long, value_name = "TAG[,TAG...]", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Only objects that have any of these tags (comma-separated).
    #[arg(long, value_name = "TAG[,TAG...]", value_delimiter = ',')]
    pub any_tags: Vec<String>,
    /// Leave out objects that have all these tags (comma-separated).
    #[arg(long, value_name = "TAG[,TAG...]", value_delimiter = ',')]
    pub not_tags: Vec<String>,
    /// Leave out objects that have any of these tags (comma-separated).
    #[arg(long, value_name = "TAG[,TAG...]", value_delimiter = ',')]
    pub not_any_tags: Vec<String>,
}

impl TagFilter {
    pub fn matches(&self, tags: &[String]) -> bool {
        let has = |t: &String| tags.contains(t);
        (self.tags.is_empty() || self.tags.iter().all(has))
            && (self.any_tags.is_empty() || self.any_tags.iter().any(has))
            && (self.not_tags.is_empty() || !self.not_tags.iter().all(has))
            && !self.not_any_tags.iter().any(has)
    }
}

/// What `set` asks of the shared fields.
pub fn set_edit(description: Option<String>, state: Option<bool>, tags: &TagArgs) -> MetaEdit {
    MetaEdit {
        description,
        admin_state_up: state,
        clear_tags: tags.no_tag,
        remove_tags: vec![],
        add_tags: tags.tag.clone(),
    }
}

/// What `unset` asks of the shared fields.
pub fn unset_edit(tags: &UntagArgs) -> MetaEdit {
    MetaEdit {
        clear_tags: tags.all_tag,
        remove_tags: tags.tag.clone(),
        ..MetaEdit::default()
    }
}

/// A new object's shared fields.
pub fn new_meta(description: Option<String>, state: Option<bool>, tags: &TagArgs) -> Meta {
    let mut meta = Meta::new();
    set_edit(description, state, tags).apply_fields(&mut meta);
    meta
}

/// The end of deleting `total` objects one by one, going on past failures as
/// openstackclient does: one object's failure is its own error (and exit code); with several,
/// each failure is reported, then `N of M <kind>s failed to delete.` (exit 1).
pub fn deletes_done(
    kind: &str,
    mut errors: Vec<anyhow::Error>,
    total: usize,
) -> anyhow::Result<()> {
    if total == 1 {
        return errors.pop().map_or(Ok(()), Err);
    }
    if errors.is_empty() {
        return Ok(());
    }
    for e in &errors {
        crate::error::print(e);
    }
    anyhow::bail!("{} of {total} {kind}s failed to delete.", errors.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_filters_as_neutron_applies_them() {
        let tags: Vec<String> = ["red", "blue"].map(String::from).to_vec();
        let f = |field: &str, list: &[&str]| {
            let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
            let mut f = TagFilter::default();
            match field {
                "tags" => f.tags = list,
                "any" => f.any_tags = list,
                "not" => f.not_tags = list,
                _ => f.not_any_tags = list,
            }
            f.matches(&tags)
        };
        assert!(TagFilter::default().matches(&tags));
        assert!(f("tags", &["red", "blue"]) && !f("tags", &["red", "green"]));
        assert!(f("any", &["red", "green"]) && !f("any", &["green"]));
        assert!(!f("not", &["red", "blue"]) && f("not", &["red", "green"]));
        assert!(!f("notany", &["red", "green"]) && f("notany", &["green"]));
    }
}
