//! Operations: what each mutating command does to the desired state, as functions of the
//! state and a plain request that return what they touched (`Outcome`), with no command-line
//! types; and the `Session` that applies them to the store and the kernel.

pub mod floating_ip;
pub mod instance;
pub mod network;
pub mod port;
pub mod router;
mod session;
pub mod subnet;
mod sync;

pub use session::{connected, Done, Outcome, Session};
pub use sync::HostSync;

mod agents;
pub mod ask;
pub mod placement;
#[cfg(test)]
pub(crate) mod tests;
mod vxlan;

/// What `create`, `set` and `unset` ask of the fields every object has (`model::Meta`).
#[derive(Debug, Default, Clone)]
pub struct MetaEdit {
    pub description: Option<String>,
    pub admin_state_up: Option<bool>,
    /// `--no-tag`, `--all-tag`: clear the tags first.
    pub clear_tags: bool,
    pub remove_tags: Vec<String>,
    pub add_tags: Vec<String>,
}

impl MetaEdit {
    /// Whether it asks for nothing.
    pub fn is_empty(&self) -> bool {
        self.description.is_none()
            && self.admin_state_up.is_none()
            && !self.clear_tags
            && self.remove_tags.is_empty()
            && self.add_tags.is_empty()
    }

    /// The fields changed, without counting a revision (a new object's).
    pub fn apply_fields(&self, meta: &mut crate::model::Meta) {
        if let Some(d) = &self.description {
            meta.description = d.clone();
        }
        if let Some(up) = self.admin_state_up {
            meta.admin_state_up = up;
        }
        meta.edit_tags(self.clear_tags, &self.remove_tags, &self.add_tags);
    }

    /// The fields changed, as a new revision.
    pub fn apply(&self, meta: &mut crate::model::Meta) {
        self.apply_fields(meta);
        meta.touch();
    }
}
