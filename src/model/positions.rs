//! Lookups by id without a scan: where each object of one of `State`'s vectors sits.
//!
//! `sync` and `batch --atomic` of 1000 routers looked up networks, subnets and ports by id
//! for every router, each lookup a scan of thousands of ids: string comparisons were 18 %
//! of a `sync` with nothing to do and 6 % of building 1000 routers (perf, release build).

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

use super::Object;

/// The position of each object by the hash of its id, built from the vector when first
/// needed, and again when found out of date. A found position is used only when the
/// object there has the id asked for, so an object added, removed or moved since the map
/// was built is never missed or mistaken: the map is rebuilt, and an id still not found
/// (none there, or one whose hash another id shares) is looked for the old way. A vector
/// grown by a few objects since (a change appends what it makes) keeps its map: an id the
/// map does not know is looked for among the new ones first. A copy keeps the positions (a
/// copy of the map: a change copies the state it starts from, and building the map again
/// cost each line of a `batch` with 500 routers a pass over every network, subnet and port).
#[derive(Clone, Default)]
pub struct Positions {
    map: RefCell<HashMap<u64, usize, BuildHasherDefault<AlreadyHashed>>>,
    /// How many objects the vector had when the map was built.
    built_for: std::cell::Cell<Option<usize>>,
}

/// How many objects a vector may have gained since its map was built before the map is
/// built again: each lookup of an id the map does not know scans them.
const GROWN: usize = 32;

/// A hash of `id`, eight bytes at a time (FxHash's step, then a finaliser that spreads
/// every bit into the low ones the map's buckets use). Each map built hashes every id; with
/// SipHash, for the id and again for the map's key, that was 4 % of a `batch` with 500
/// routers present. A collision costs only a scan (see `Positions`).
fn hash(id: &str) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut chunks = id.as_bytes().chunks_exact(8);
    let mut h = id.len() as u64;
    for c in &mut chunks {
        let word = u64::from_le_bytes(c.try_into().expect("eight bytes"));
        h = (h.rotate_left(5) ^ word).wrapping_mul(K);
    }
    for &b in chunks.remainder() {
        h = (h.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// The map's hasher: its keys are hashes already.
#[derive(Default)]
struct AlreadyHashed(u64);

impl Hasher for AlreadyHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys come here (`write_u64`); anything else is folded in all the same.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8)) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl Positions {
    /// The object with `id` in `objects`, the vector these are the positions of.
    pub fn find<'a, T: Object>(&self, objects: &'a [Rc<T>], id: &str) -> Option<&'a T> {
        let key = hash(id);
        let at = |map: &HashMap<u64, usize, _>| {
            let i = *map.get(&key)?;
            objects.get(i).filter(|o| o.id() == id).map(Rc::as_ref)
        };
        let scan = |some: &'a [Rc<T>]| some.iter().find(|o| o.id() == id).map(Rc::as_ref);
        let usable = self
            .built_for
            .get()
            .filter(|&n| (n..=n + GROWN).contains(&objects.len()));
        if let Some(built_for) = usable {
            let map = self.map.borrow();
            if let Some(found) = at(&map) {
                return Some(found);
            }
            if !map.contains_key(&key) {
                // Not there when the map was built: added since (among the last, or in the
                // place of one removed), or not there at all.
                let (before, since) = objects.split_at(built_for);
                return scan(since).or_else(|| scan(before));
            }
        }
        let mut map = self.map.borrow_mut();
        map.clear();
        map.extend(objects.iter().enumerate().map(|(i, o)| (hash(o.id()), i)));
        self.built_for.set(Some(objects.len()));
        at(&map).or_else(|| scan(objects))
    }
}

/// Positions never make two states differ.
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
    fn ids_alike_hash_apart() {
        // Ids as qrouter makes them (uuids), differing in one place or another.
        let ids: Vec<String> = (0..20_000u32)
            .map(|i| format!("{i:08x}-4b3c-4d2e-9f10-{:012x}", u64::from(i) * 7919))
            .chain((0..1000).map(|i| format!("7f1c0e2a-4b3c-4d2e-9f10-{i:012x}")))
            .collect();
        let hashes: std::collections::HashSet<u64> = ids.iter().map(|id| hash(id)).collect();
        assert_eq!(hashes.len(), ids.len());
        // The low bits, which pick a bucket, are spread too.
        let low: std::collections::HashSet<u64> = hashes.iter().map(|h| h & 0xffff).collect();
        assert!(low.len() > 15_000, "{} distinct low halves", low.len());
        let owned = String::from("abc");
        assert_eq!(hash("abc"), hash(&owned));
    }

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
        // A few added at the end (the map kept), then one removed before them and two more
        // added: more than when the map was built, positions moved.
        for i in 0..3 {
            routers.push(Rc::new(fixtures::router(&format!("id-new{i}"), "new")));
            check(&routers);
        }
        routers.remove(7);
        routers.push(Rc::new(fixtures::router("id-new3", "new")));
        routers.push(Rc::new(fixtures::router("id-new4", "new")));
        check(&routers);
        // Grown past what a kept map covers.
        routers.extend((0..2 * GROWN).map(|i| Rc::new(fixtures::router(&format!("g{i}"), "g"))));
        check(&routers);
        routers.truncate(5);
        check(&routers);
    }

    #[test]
    fn a_copy_keeps_positions_that_stay_right_for_both() {
        let positions = Positions::default();
        let old: Vec<Rc<crate::model::Router>> = (0..40)
            .map(|i| Rc::new(fixtures::router(&format!("id-{i}"), &format!("r{i}"))))
            .collect();
        assert_eq!(
            positions.find(&old, "id-7").map(|r| r.name.as_str()),
            Some("r7")
        );
        let copied = positions.clone();
        let mut new = old.clone();
        new.remove(0);
        new.push(Rc::new(fixtures::router("id-40", "r40")));
        for v in [&old, &new] {
            for (p, id) in [
                (&positions, "id-39"),
                (&copied, "id-39"),
                (&copied, "id-40"),
            ] {
                let want = v.iter().find(|r| r.id == id).map(|r| r.name.clone());
                assert_eq!(p.find(v, id).map(|r| r.name.clone()), want);
            }
        }
    }
}
