//! The fields every Neutron resource carries besides its own: description, tags,
//! administrative state, timestamps and revision.

use serde::{Deserialize, Serialize};

/// What every Neutron resource carries besides its own fields: a description, tags, its
/// administrative state and its history. Stores written before these fields existed read
/// with the defaults (enabled, no description, no tags, no timestamps).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Meta {
    // What every object has by default is not stored: the store's bodies stay short, and
    // reading them fast.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// `--enable`/`--disable`: a disabled router forwards nothing.
    #[serde(skip_serializing_if = "is_enabled")]
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

/// A Neutron resource: its own fields and `meta`, stored flat beside them as Neutron's API
/// shows them. Read through a flat twin struct: serde's `flatten` buffers the fields it does
/// not know first, which made reading a store of 8000 objects 18% slower (90 M instructions
/// against 76 M).
macro_rules! resource {
    (
        $(#[$attr:meta])*
        pub struct $name:ident {
            $( $(#[$field_attr:meta])* pub $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$attr])*
        #[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
        pub struct $name {
            $( $(#[$field_attr])* pub $field: $ty, )*
            #[serde(flatten)]
            pub meta: $crate::model::Meta,
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                #[derive(serde::Deserialize)]
                struct Flat {
                    $( $(#[$field_attr])* $field: $ty, )*
                    #[serde(default)]
                    description: String,
                    #[serde(default)]
                    tags: Vec<String>,
                    #[serde(default = "crate::model::meta::enabled")]
                    admin_state_up: bool,
                    #[serde(default)]
                    created_at: String,
                    #[serde(default)]
                    updated_at: String,
                    #[serde(default)]
                    revision_number: u64,
                }
                let f = Flat::deserialize(d)?;
                Ok($name {
                    $( $field: f.$field, )*
                    meta: $crate::model::Meta {
                        description: f.description,
                        tags: f.tags,
                        admin_state_up: f.admin_state_up,
                        created_at: f.created_at,
                        updated_at: f.updated_at,
                        revision_number: f.revision_number,
                    },
                })
            }
        }
    };
}
pub(crate) use resource;

/// What a resource stored without `admin_state_up` has: enabled.
pub(crate) fn enabled() -> bool {
    true
}

pub(crate) fn is_enabled(up: &bool) -> bool {
    *up
}
