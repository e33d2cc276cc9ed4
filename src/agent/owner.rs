//! Whose objects an agent converges, and what it must leave alone.

use std::collections::HashSet;

use crate::model::naming;
use crate::reconcile::Changes;

/// Whose objects a pass converges: the store's id (what its marks carry), and the objects
/// it must leave alone (`held`: the store has them, but their keys failed their checks).
#[derive(Default)]
pub struct Owner {
    pub id: String,
    pub held: HashSet<String>,
}

impl Owner {
    /// A log of changes for this owner, which removes nothing of what it holds.
    pub fn changes(&self) -> Changes {
        let mut log = Changes::new(&self.id);
        log.held = self.held.clone();
        log
    }

    /// Whether a device's alias marks it as this store's, for an object not held.
    pub fn marked(&self, alias: Option<&str>) -> bool {
        let held = naming::marked_for(alias, &self.id).is_some_and(|id| self.held.contains(id));
        naming::marked_by(alias, &self.id) && !held
    }
}
