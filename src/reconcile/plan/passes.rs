//! Passes over the walk's operations: keeping a last copy, pairing moves.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use super::{Action, Op, Reason, RemoteCond, RemoteObject};
use crate::id::ObjectId;
use crate::object::{EntryKind, Manifest};

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

/// Pairs a deletion with an addition of the same content on the same side into one move,
/// first by path order. Expects `ops` in path order.
pub(super) fn pair_moves(ops: Vec<Op>) -> Vec<Op> {
    // (moves on the remote?, kind, content) → deletions, in path order.
    let mut deletions: HashMap<(bool, EntryKind, ObjectId), VecDeque<usize>> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        let on_remote = match (op.action, op.reason) {
            (Action::DeleteRemote, Reason::LocalDeleted) => true,
            (Action::DeleteLocal, Reason::RemoteDeleted) => false,
            _ => continue,
        };
        let old = op.sides.base.as_ref().expect("a deletion has a base");
        deletions.entry((on_remote, old.kind, old.id)).or_default().push_back(i);
    }
    let mut source: HashMap<usize, usize> = HashMap::new();
    for (j, op) in ops.iter().enumerate() {
        let (on_remote, new) = match (op.action, op.reason) {
            (Action::Upload, Reason::LocalAdded) => (true, &op.sides.local),
            (Action::Download, Reason::RemoteAdded) => (false, &op.sides.remote),
            _ => continue,
        };
        let new = new.as_ref().expect("an addition has the new leaf");
        if let Some(i) = deletions.get_mut(&(on_remote, new.kind, new.id)).and_then(VecDeque::pop_front) {
            source.insert(j, i);
        }
    }
    if source.is_empty() {
        return ops;
    }
    let consumed: BTreeSet<usize> = source.values().copied().collect();
    let mut out = Vec::with_capacity(ops.len() - consumed.len());
    for (j, op) in ops.iter().enumerate() {
        if consumed.contains(&j) {
            continue;
        }
        let Some(&i) = source.get(&j) else {
            out.push(op.clone());
            continue;
        };
        let del = &ops[i];
        let mut mv = op.clone();
        mv.from = Some(del.path.clone());
        if op.action == Action::Upload {
            // Copy with x-amz-copy-source-if-match, then delete the source If-Match.
            mv.action = Action::MoveRemote;
            mv.reason = Reason::LocalRenamed;
            mv.precondition.from_remote.clone_from(&del.precondition.remote);
            mv.precondition.from_local = del.precondition.local;
        } else {
            // A local rename: the bucket is not read.
            mv.action = Action::MoveLocal;
            mv.reason = Reason::RemoteRenamed;
            mv.precondition.remote = None;
            mv.precondition.from_local = del.precondition.local;
        }
        out.push(mv);
    }
    out
}
