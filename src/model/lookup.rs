//! Finding an object by what an operator types: an id, a name, or an id prefix.

use std::rc::Rc;

use super::Object;
use crate::error::invalid;

/// Find one object as openstackclient does: an exact id wins, then an exact name (a name
/// several objects share is an error that lists them), then a unique id prefix.
pub fn find<'a, T: Object>(items: &'a [Rc<T>], key: &str) -> anyhow::Result<&'a T> {
    if let Some(found) = items.iter().find(|o| o.id() == key) {
        return Ok(found);
    }
    let named: Vec<&T> = items
        .iter()
        .map(|o| &**o)
        .filter(|o| !o.name().is_empty() && o.name() == key)
        .collect();
    match named.as_slice() {
        [one] => return Ok(one),
        [] => {}
        many => {
            let ids: Vec<&str> = many.iter().map(|o| o.id()).collect();
            return Err(invalid(format!(
                "More than one {} exists with the name '{key}': {}; use an id",
                T::KIND,
                ids.join(", ")
            )));
        }
    }
    let by_prefix: Vec<&T> = items
        .iter()
        .map(|o| &**o)
        .filter(|o| key.len() >= 4 && o.id().starts_with(key))
        .collect();
    match by_prefix.as_slice() {
        [one] => Ok(one),
        [] => {
            let hint = suggest(
                items.iter().map(|o| o.name()).filter(|n| !n.is_empty()),
                key,
            )
            .map(|n| format!("; did you mean '{n}'?"))
            .unwrap_or_default();
            Err(invalid(format!(
                "{} {key}: no such {}{hint}",
                T::KIND,
                T::KIND
            )))
        }
        _ => Err(invalid(format!(
            "{} {key}: more than one {} has an id starting with it",
            T::KIND,
            T::KIND
        ))),
    }
}

/// The closest name by edit distance, when it is close enough to be a likely typo.
fn suggest<'a>(names: impl Iterator<Item = &'a str>, key: &str) -> Option<&'a str> {
    names
        .map(|n| (edit_distance(n, key), n))
        .filter(|(d, n)| *d <= 2.max(n.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
