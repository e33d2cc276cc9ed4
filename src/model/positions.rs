//! Lookups by id without a scan: where each object of one of `State`'s vectors sits.
//!
//! `sync` and `batch --atomic` of 1000 routers looked up networks, subnets and ports by id
//! for every router, each lookup a scan of thousands of ids: string comparisons were 18 %
//! of a `sync` with nothing to do and 6 % of building 1000 routers (perf, release build).

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::rc::Rc;

use super::Object;

/// The position of each object by the hash of its id, built from the vector when first
/// needed, and again when found out of date. A found position is used only when the
/// object there has the id asked for, so an object added, removed or moved since the map
/// was built is never missed or mistaken: the map is rebuilt, and an id still not found
/// (none there, or one whose hash another id shares) is looked for the old way.
#[derive(Default)]
pub struct Positions {
    map: RefCell<HashMap<u64, usize>>,
    /// How many objects the vector had when the map was built.
    built_for: std::cell::Cell<Option<usize>>,
}

fn hash(id: &str) -> u64 {
    BuildHasherDefault::<DefaultHasher>::default().hash_one(id)
}

impl Positions {
    /// The object with `id` in `objects`, the vector these are the positions of.
    pub fn find<'a, T: Object>(&self, objects: &'a [Rc<T>], id: &str) -> Option<&'a T> {
        let key = hash(id);
        let at = |map: &HashMap<u64, usize>| {
            let i = *map.get(&key)?;
            objects.get(i).filter(|o| o.id() == id).map(Rc::as_ref)
        };
        let fresh = self.built_for.get() == Some(objects.len());
        if fresh {
            let map = self.map.borrow();
            if let Some(found) = at(&map) {
                return Some(found);
            }
            if !map.contains_key(&key) {
                // Not there when the map was built: added since with as many removed, or
                // not there at all.
                return objects.iter().find(|o| o.id() == id).map(Rc::as_ref);
            }
        }
        let mut map = self.map.borrow_mut();
        map.clear();
        map.extend(objects.iter().enumerate().map(|(i, o)| (hash(o.id()), i)));
        self.built_for.set(Some(objects.len()));
        at(&map).or_else(|| objects.iter().find(|o| o.id() == id).map(Rc::as_ref))
    }
}

/// A copy starts without positions (they are built again when needed), and positions never
/// make two states differ.
impl Clone for Positions {
    fn clone(&self) -> Positions {
        Positions::default()
    }
}

impl PartialEq for Positions {
    fn eq(&self, _: &Positions) -> bool {
        true
    }
}

impl std::fmt::Debug for Positions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Positions")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures;

    #[test]
    fn finds_what_a_scan_finds_as_the_vector_changes() {
        let positions = Positions::default();
        let mut routers: Vec<Rc<crate::model::Router>> = (0..50)
            .map(|i| Rc::new(fixtures::router(&format!("id-{i}"), &format!("r{i}"))))
            .collect();
        let scan = |v: &[Rc<crate::model::Router>], id: &str| {
            v.iter().find(|r| r.id == id).map(|r| r.id.clone())
        };
        let check = |v: &[Rc<crate::model::Router>]| {
            for id in v.iter().map(|r| r.id.clone()).chain(["none".to_string()]) {
                assert_eq!(positions.find(v, &id).map(|r| r.id.clone()), scan(v, &id));
            }
        };
        check(&routers);
        // One removed and another added: as many as before, positions moved.
        let gone = routers.remove(3);
        routers.push(Rc::new(fixtures::router("id-late", "late")));
        check(&routers);
        assert!(positions.find(&routers, &gone.id).is_none());
        routers.swap(0, 10);
        check(&routers);
        routers.truncate(5);
        check(&routers);
    }
}
