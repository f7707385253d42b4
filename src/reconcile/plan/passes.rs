//! A pass over the walk's operations: keeping a last copy.

use std::collections::{BTreeMap, BTreeSet};

use super::{Action, Op, Reason, RemoteCond, RemoteObject};
use crate::id::ObjectId;
use crate::object::Manifest;

/// Crossed deletions: each side deleted a different path holding the same content (a
/// duplicate, or what a crash left recorded at two paths), and each deletion, right on
/// its own, would be carried to the other side, leaving the content nowhere. Unless the
/// content stays at a path this plan leaves alone, the first of those paths (in path
/// order, whichever side deleted it, so the rule is the same seen from either side) is
/// restored from the side that still has it: one copy survives.
pub(super) fn keep_last_copies(ops: &mut [Op], remote: &BTreeMap<String, RemoteObject>, base: &Manifest) {
    // The content each deletion removes, and which side deleted it.
    let removed = |o: &Op| match o.action {
        Action::DeleteLocal => o.sides.local.as_ref().map(|l| (l.id, true)),
        Action::DeleteRemote => o.sides.remote.as_ref().map(|r| (r.id, false)),
        _ => None,
    };
    let mut sides_deleting: BTreeMap<ObjectId, (bool, bool)> = BTreeMap::new();
    for (c, remote_deleted) in ops.iter().filter_map(removed) {
        let e = sides_deleting.entry(c).or_default();
        if remote_deleted { e.0 = true } else { e.1 = true }
    }
    sides_deleting.retain(|_, (r, l)| *r && *l);
    if sides_deleting.is_empty() {
        return;
    }
    let touched: BTreeSet<String> = ops
        .iter()
        .filter(|o| o.action != Action::Record)
        .flat_map(|o| std::iter::once(o.path.clone()).chain(o.from.clone()))
        .collect();
    // A listed object's content: its own, or the base's when the ETag is the base's.
    let content = |p: &str, r: &RemoteObject| {
        r.content.or_else(|| base.get(p).and_then(|e| e.content.filter(|_| e.etag == r.etag)))
    };
    // Untouched paths hold the same content on both sides, so the listing tells. A path
    // under a touched one (a folder in a type-change conflict) is not untouched.
    let untouched =
        |p: &str| !p.match_indices('/').map(|(i, _)| &p[..i]).chain([p]).any(|a| touched.contains(a));
    let survives = |c: ObjectId| remote.iter().any(|(p, r)| content(p, r) == Some(c) && untouched(p));
    let mut saved = BTreeSet::new();
    for op in ops.iter_mut() {
        let Some((c, _)) = removed(op) else { continue };
        if !sides_deleting.contains_key(&c) || saved.contains(&c) || survives(c) {
            continue;
        }
        saved.insert(c);
        op.reason = Reason::LastCopy;
        if op.action == Action::DeleteRemote {
            // Deleted here, kept there: bring it back here.
            op.action = Action::Download;
        } else {
            // Deleted there, kept here: send it back there.
            op.action = Action::Upload;
            op.precondition.remote = Some(RemoteCond::IfAbsent);
        }
    }
}
