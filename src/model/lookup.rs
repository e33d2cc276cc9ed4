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

/// Check `name` for an object of kind T, new or (`renamed`) renamed: a valid name, that no
/// other object of the kind has as its name, nor as its id: commands take either, and an
/// exact id wins, so that object would be found in its place. Any other name is taken, as
/// Neutron takes it: one of 32 hex digits too (openstackclient's functional tests make names
/// with `uuid.uuid4().hex`), or one shaped like a UUID that is no object's id.
pub fn check_new_name<T: Object>(
    items: &[Rc<T>],
    name: &str,
    renamed: Option<&T>,
) -> anyhow::Result<()> {
    let kind = T::KIND;
    super::validate::name(kind, name)?;
    let other = |o: &&Rc<T>| renamed.is_none_or(|r| r.id() != o.id());
    let why = if items.iter().filter(other).any(|o| o.name() == name) {
        format!("a{} {kind} with that name exists", article(kind))
    } else if let Some(owner) = items.iter().filter(other).find(|o| o.id() == name) {
        format!(
            "that is the id of {kind} {}, and commands take ids and names alike",
            shown(&**owner)
        )
    } else {
        return Ok(());
    };
    Err(invalid(match renamed {
        None => format!("{kind} {name}: {why}"),
        Some(r) => format!("{kind} {}: cannot rename to {name}: {why}", shown(r)),
    }))
}

/// An object as messages name it: its name, or its id where it has none.
fn shown<T: Object>(o: &T) -> &str {
    match o.name() {
        "" => o.id(),
        name => name,
    }
}

fn article(kind: &str) -> &'static str {
    match kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        true => "n",
        false => "",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Router;

    fn router(id: &str, name: &str) -> Rc<Router> {
        Rc::new(crate::model::fixtures::router(id, name))
    }

    fn refused(r: anyhow::Result<()>) -> String {
        let e = r.unwrap_err();
        assert_eq!(crate::error::exit_code(&e), 2);
        e.to_string()
    }

    #[test]
    fn a_name_of_32_hex_digits_is_a_name_unless_it_is_another_objects_id() {
        let hex = "4f2b1c0d9e8a4b7c8d6e5f4a3b2c1d0e";
        let uuid = "0f9c2d3e-1a2b-4c3d-8e4f-5a6b7c8d9e0f";
        let routers = vec![router(uuid, "r1"), router("7d1e-other", hex)];
        // An exact id first, then a name: both found, neither shadows the other.
        assert_eq!(find(&routers, uuid).unwrap().name, "r1");
        assert_eq!(find(&routers, hex).unwrap().id, "7d1e-other");
        assert!(check_new_name(&[router(uuid, "r1")], hex, None).is_ok());
        assert!(check_new_name(&routers, "0f9c2d3e-1a2b-4c3d-8e4f-000000000000", None).is_ok());
        assert_eq!(
            refused(check_new_name(&routers, hex, None)),
            format!("router {hex}: a router with that name exists")
        );
        assert_eq!(
            refused(check_new_name(&routers, uuid, None)),
            format!(
                "router {uuid}: that is the id of router r1, and commands take ids and names alike"
            )
        );
        let other = routers[1].clone();
        assert_eq!(
            refused(check_new_name(&routers, uuid, Some(&other))),
            format!("router {hex}: cannot rename to {uuid}: that is the id of router r1, and commands take ids and names alike")
        );
        // Its own id, or its own name again, is no conflict.
        assert!(check_new_name(&routers, uuid, Some(&routers[0])).is_ok());
        assert!(check_new_name(&routers, hex, Some(&other)).is_ok());
    }
}
