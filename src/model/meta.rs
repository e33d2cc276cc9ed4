//! The fields every Neutron resource carries besides its own: description, tags,
//! administrative state, timestamps and revision.

use serde::{Deserialize, Serialize};

/// What every Neutron resource carries besides its own fields: a description, tags, its
/// administrative state and its history. Stores written before these fields existed read
/// with the defaults (enabled, no description, no tags, no timestamps).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Meta {
    pub description: String,
    pub tags: Vec<String>,
    /// `--enable`/`--disable`: a disabled router forwards nothing.
    pub admin_state_up: bool,
    /// RFC 3339, UTC, as Neutron prints it: `2024-05-01T12:00:00Z`.
    pub created_at: String,
    pub updated_at: String,
    /// Raised by every change to the object.
    pub revision_number: u64,
}

impl Default for Meta {
    fn default() -> Self {
        Meta {
            description: String::new(),
            tags: Vec::new(),
            admin_state_up: true,
            created_at: String::new(),
            updated_at: String::new(),
            revision_number: 0,
        }
    }
}

impl Meta {
    /// A new object's: created now.
    pub fn new() -> Self {
        let now = now();
        Meta {
            created_at: now.clone(),
            updated_at: now,
            ..Meta::default()
        }
    }

    /// Record a change: a new revision, updated now.
    pub fn touch(&mut self) {
        self.revision_number += 1;
        self.updated_at = now();
    }

    /// Tags as `set --tag`/`--no-tag` and `unset --tag`/`--all-tag` edit them: cleared first
    /// when `clear`, then `remove`d, then `add`ed (without duplicates).
    pub fn edit_tags(&mut self, clear: bool, remove: &[String], add: &[String]) {
        if clear {
            self.tags.clear();
        }
        self.tags.retain(|t| !remove.contains(t));
        for tag in add {
            if !self.tags.contains(tag) {
                self.tags.push(tag.clone());
            }
        }
    }
}

/// The time now as Neutron writes it: `2024-05-01T12:00:00Z`.
pub fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
