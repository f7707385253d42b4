//! Renames, reconciled three ways: after every path is decided on its own, a deletion and
//! an addition on one side that hold the same content (or, for text, similar content) are
//! one rename, and the other side follows it. The rules are those of
//! `format-spec/plan.md`, "Renames".

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use super::{Action, LocalCond, Op, Reason, RemoteCond, RemoteObject, mergeable};
use crate::id::ObjectId;
use crate::object::{EntryKind, TreeRef};
use crate::reconcile::diff::Leaf;
use crate::reconcile::merge::Merge;
use crate::reconcile::source::TreeSource;

/// A file is taken for a renamed and edited one when at least this share (in percent) of
/// its lines are the old file's, as git's rename detection does by default.
pub const RENAME_SIMILARITY: u8 = 50;

/// Files larger than this are paired only when their content is the same.
pub const MAX_SIMILAR_BYTES: u64 = 1 << 20;

/// A folder counts as renamed only when at least this many of its files moved to the
/// new folder (one file moved out is a move of that file).
pub const MIN_FOLDER_RENAME: usize = 2;

/// Similarity is looked for among at most this many (deletion, addition) pairs on a side;
/// beyond it only exact renames are paired (git's `diff.renameLimit` plays this part).
pub const MAX_SIMILAR_PAIRS: usize = 100_000;

/// Judges how much of a new file's content is an old file's, for pairing edited renames.
/// The planner asks only about files of one kind, neither over [`MAX_SIMILAR_BYTES`], that
/// no exact rename explains. An implementation reads bytes (the store, the folder), so it
/// is the caller's; [`similarity`] is the measure it should apply.
pub trait Similarity {
    /// The share of `new`'s lines found in `old`, in percent; `None` when either's bytes
    /// are not at hand or are not text.
    fn score(&self, old: ObjectId, new: ObjectId) -> Option<u8>;
}

/// The share of lines two texts have in common, in percent (0 to 100): twice the lines
/// kept, over the lines of both. Bytes that are not UTF-8 text (or hold a NUL) score
/// `None`.
pub fn similarity(old: &[u8], new: &[u8]) -> Option<u8> {
    fn text(b: &[u8]) -> Option<&str> {
        std::str::from_utf8(b).ok().filter(|t| !t.contains('\0'))
    }
    let (o, n) = (text(old)?, text(new)?);
    let ratio =
        similar::TextDiff::configure().timeout(std::time::Duration::from_millis(50)).diff_lines(o, n).ratio();
    // ratio() is in 0.0..=1.0, so the percentage fits a u8 and is never negative.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let percent = (ratio * 100.0).floor().clamp(0.0, 100.0) as u8;
    Some(percent)
}

/// Which side renamed (or moves).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Side {
    Local,
    Remote,
}

impl Side {
    fn leaf(self, op: &Op) -> Option<&Leaf> {
        match self {
            Self::Local => op.sides.local.as_ref(),
            Self::Remote => op.sides.remote.as_ref(),
        }
    }
    const fn other(self) -> Self {
        match self {
            Self::Local => Self::Remote,
            Self::Remote => Self::Local,
        }
    }
}

/// What the pass needs besides the operations.
pub(super) struct Context<'a> {
    pub(super) trees: &'a dyn TreeSource,
    pub(super) local_root: Option<ObjectId>,
    pub(super) remote_root: Option<ObjectId>,
    pub(super) remote: &'a BTreeMap<String, RemoteObject>,
    pub(super) similarity: Option<&'a dyn Similarity>,
    /// Paths no operation may touch (protected or ignored): a file never follows its
    /// folder there.
    pub(super) off_limits: [&'a BTreeSet<String>; 2],
}

impl Context<'_> {
    /// Whether `path` (a file or a folder) is in a side's tree. A tree that cannot be
    /// read counts as holding it: no folder rename is inferred from what is not known.
    fn exists(&self, side: Side, path: &str) -> bool {
        let root = match side {
            Side::Local => self.local_root,
            Side::Remote => self.remote_root,
        };
        let Some(mut id) = root else { return false };
        let mut parts = path.split('/').peekable();
        while let Some(name) = parts.next() {
            let Ok(bytes) = self.trees.tree_bytes(&id) else { return true };
            let Ok(tree) = TreeRef::decode(&bytes) else { return true };
            let Some(e) = tree.find(name) else { return false };
            if parts.peek().is_none() {
                return true;
            }
            if !e.kind.is_tree() {
                return false;
            }
            id = e.id;
        }
        true
    }

    fn etag(&self, path: &str) -> Option<RemoteCond> {
        self.remote.get(path).map(|o| RemoteCond::IfMatch(o.etag.clone()))
    }
}

/// Whether an operation takes part in rename detection: a plain decision about files, not
/// a skip, a type change or a folder.
fn usable(op: &Op) -> bool {
    op.action != Action::Skip && op.reason != Reason::TypeChange && !op.sides.any_some(|l| l.kind.is_tree())
}

fn deleted(op: &Op, side: Side) -> bool {
    usable(op) && op.sides.base.is_some() && side.leaf(op).is_none()
}

fn added(op: &Op, side: Side) -> bool {
    usable(op) && op.sides.base.is_none() && side.leaf(op).is_some()
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(d, _)| d)
}

fn name(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, n)| n)
}

/// One side's renames: deletion index → addition index. Exact content first (same kind
/// and id, in path order), then, among what is left, the most similar text above
/// [`RENAME_SIMILARITY`] (ties to the first in path order).
/// A protected or ignored path takes no part: no rename is read into what is not synced.
fn pair(ops: &[Op], side: Side, ctx: &Context<'_>) -> BTreeMap<usize, usize> {
    let similarity = ctx.similarity;
    let open = |o: &Op| !ctx.off_limits.iter().any(|set| super::covered(set, &o.path));
    let mut by_content: HashMap<(EntryKind, ObjectId), VecDeque<usize>> = HashMap::new();
    for (i, op) in ops.iter().enumerate().filter(|(_, o)| deleted(o, side) && open(o)) {
        let old = op.sides.base.as_ref().expect("a deletion has a base");
        by_content.entry((old.kind, old.id)).or_default().push_back(i);
    }
    let mut pairs = BTreeMap::new();
    let mut unpaired_adds = Vec::new();
    for (j, op) in ops.iter().enumerate().filter(|(_, o)| added(o, side) && open(o)) {
        let new = side.leaf(op).expect("an addition has the new leaf");
        match by_content.get_mut(&(new.kind, new.id)).and_then(VecDeque::pop_front) {
            Some(i) => {
                pairs.insert(i, j);
            }
            None => unpaired_adds.push(j),
        }
    }
    let Some(sim) = similarity else { return pairs };
    let small = |l: &Leaf| l.kind != EntryKind::Symlink && l.size <= MAX_SIMILAR_BYTES;
    let mut dels: Vec<usize> = by_content.into_values().flatten().collect();
    dels.sort_unstable();
    dels.retain(|&i| small(ops[i].sides.base.as_ref().expect("a deletion has a base")));
    unpaired_adds.retain(|&j| small(side.leaf(&ops[j]).expect("an addition has the new leaf")));
    if dels.len().saturating_mul(unpaired_adds.len()) > MAX_SIMILAR_PAIRS {
        return pairs;
    }
    for j in unpaired_adds {
        let new = side.leaf(&ops[j]).expect("an addition has the new leaf");
        let mut best: Option<(u8, usize)> = None;
        for &i in &dels {
            let old = ops[i].sides.base.as_ref().expect("a deletion has a base");
            // Twice the common lines over both sizes cannot reach the threshold when one
            // file is over three times the other.
            let (lo, hi) = (old.size.min(new.size), old.size.max(new.size));
            if old.kind != new.kind || hi > lo.saturating_mul(3).max(64) || pairs.contains_key(&i) {
                continue;
            }
            if let Some(s) = sim.score(old.id, new.id).filter(|s| *s >= RENAME_SIMILARITY)
                && best.is_none_or(|(b, _)| s > b)
            {
                best = Some((s, i));
            }
        }
        if let Some((_, i)) = best {
            pairs.insert(i, j);
        }
    }
    pairs
}

/// What must follow a move, from the renamed path's three sides: the side that differs
/// from the merged value is brought to it. `None`: the edits need a merge that cannot be
/// made (the rename is then left unpaired, and the paths conflict as they are).
#[allow(clippy::option_option)] // None: cannot follow; Some(None): nothing follows.
fn then(m: &Merge<Option<Leaf>>) -> Option<Option<Action>> {
    match m.resolve_trivial() {
        Some(t) if m.local != *t => Some(Some(Action::Download)),
        Some(t) if m.remote != *t => Some(Some(Action::Upload)),
        Some(_) => Some(None),
        None if mergeable(m) => Some(Some(Action::Merge)),
        None => None,
    }
}

/// The operation that makes the other side follow `mover`'s rename of `from` to `path`,
/// with `m` the content's three sides (the base at `from`, each side where it now is).
fn follow(ctx: &Context<'_>, renamer: Side, from: &str, path: &str, m: Merge<Option<Leaf>>) -> Option<Op> {
    let next = then(&m)?;
    let (action, reason) = match renamer {
        Side::Local => (Action::MoveRemote, Reason::LocalRenamed),
        Side::Remote => (Action::MoveLocal, Reason::RemoteRenamed),
    };
    let mut op = Op::new(path.to_owned(), action, reason, m);
    op.from = Some(from.to_owned());
    op.then = next;
    let local_at = |l: Option<&Leaf>| l.map_or(LocalCond::Absent, |l| LocalCond::Content(l.id));
    match renamer {
        Side::Local => {
            op.precondition.remote = Some(RemoteCond::IfAbsent);
            op.precondition.local = Some(local_at(op.sides.local.as_ref()));
            op.precondition.from_remote = ctx.etag(from);
            op.precondition.from_local = Some(LocalCond::Absent);
        }
        Side::Remote => {
            op.precondition.remote = Some(ctx.etag(path).unwrap_or(RemoteCond::IfAbsent));
            op.precondition.local = Some(LocalCond::Absent);
            op.precondition.from_local = Some(local_at(op.sides.local.as_ref()));
        }
    }
    Some(op)
}

/// Replaces the operation at `at` by `op`, and drops those at `gone`, unless an earlier
/// rename already took one of them.
fn claim(replaced: &mut BTreeMap<usize, Option<Op>>, gone: &[usize], at: usize, op: Op) {
    if gone.iter().chain([&at]).any(|k| replaced.contains_key(k)) {
        return;
    }
    for &g in gone {
        replaced.insert(g, None);
    }
    replaced.insert(at, Some(op));
}

/// Reconciles renames. Expects `ops` in path order, each path once; returns them in path
/// order.
pub(super) fn follow_renames(ops: Vec<Op>, ctx: &Context<'_>) -> Vec<Op> {
    let local = pair(&ops, Side::Local, ctx);
    let remote = pair(&ops, Side::Remote, ctx);
    if local.is_empty() && remote.is_empty() {
        return ops;
    }
    let mut replaced: BTreeMap<usize, Option<Op>> = BTreeMap::new();
    let bases: BTreeSet<usize> = local.keys().chain(remote.keys()).copied().collect();
    for i in bases {
        let from = ops[i].path.as_str();
        let base = ops[i].sides.base.clone();
        match (local.get(&i), remote.get(&i)) {
            (Some(&j), None) | (None, Some(&j)) => {
                let renamer = if local.contains_key(&i) { Side::Local } else { Side::Remote };
                let add = &ops[j];
                let other = renamer.other();
                if other.leaf(add).is_some() {
                    // The other side has something else at the new path: left as it is.
                    continue;
                }
                let (Some(kept), Some(new)) = (other.leaf(&ops[i]).cloned(), renamer.leaf(add).cloned())
                else {
                    // Renamed on one side, deleted on the other: a rename is an intent to
                    // keep, so the addition stands, and says where it came from.
                    let mut op = add.clone();
                    op.reason = Reason::RenameDelete;
                    op.from = Some(from.to_owned());
                    claim(&mut replaced, &[], j, op);
                    continue;
                };
                let m = match renamer {
                    Side::Local => Merge::new(base, Some(new), Some(kept)),
                    Side::Remote => Merge::new(base, Some(kept), Some(new)),
                };
                if let Some(op) = follow(ctx, renamer, from, &add.path, m) {
                    claim(&mut replaced, &[i], j, op);
                }
            }
            (Some(&j), Some(&k)) if j == k => {
                // The same rename on both sides: one path, whose edits merge as any other.
                let add = &ops[j];
                let m = Merge::new(base, add.sides.local.clone(), add.sides.remote.clone());
                let (action, reason) = match then(&m) {
                    Some(Some(Action::Download)) => (Action::Download, Reason::RemoteChanged),
                    Some(Some(Action::Upload)) => (Action::Upload, Reason::LocalChanged),
                    Some(Some(_)) => (Action::Merge, Reason::EditEdit),
                    // The same content on both: the addition's own record says it.
                    Some(None) => continue,
                    None => (Action::Conflict, Reason::EditEdit),
                };
                let mut op = Op::new(add.path.clone(), action, reason, m);
                op.from = Some(from.to_owned());
                if action != Action::Conflict {
                    op.precondition.remote = ctx.etag(&add.path);
                    op.precondition.local =
                        Some(op.sides.local.as_ref().map_or(LocalCond::Absent, |l| LocalCond::Content(l.id)));
                }
                claim(&mut replaced, &[], j, op);
            }
            (Some(&j), Some(&k)) => {
                // Renamed on both sides to different paths: a conflict of intents. The
                // remote's path wins (a teammate synced it first), and the local file
                // follows it there; `conflicts` names both paths.
                let (mine, theirs) = (&ops[j], &ops[k]);
                if mine.sides.remote.is_some() || theirs.sides.local.is_some() {
                    continue;
                }
                let m = Merge::new(base, mine.sides.local.clone(), theirs.sides.remote.clone());
                if let Some(mut op) = follow(ctx, Side::Remote, &mine.path, &theirs.path, m) {
                    op.reason = Reason::RenameRename;
                    claim(&mut replaced, &[j], k, op);
                }
            }
            (None, None) => unreachable!("every index is a key of one of the maps"),
        }
    }
    follow_folders(&ops, ctx, &local, Side::Local, &mut replaced);
    follow_folders(&ops, ctx, &remote, Side::Remote, &mut replaced);
    let mut out: Vec<Op> = ops
        .into_iter()
        .enumerate()
        .filter_map(|(i, op)| match replaced.remove(&i) {
            Some(new) => new,
            None => Some(op),
        })
        .collect();
    out.sort_by(|a, b| crate::object::path_order(&a.path, &b.path));
    out
}

/// A folder renamed on one side carries what the other side added to it: the addition
/// moves to the new folder. A folder counts as renamed from `D` to `D2` when every file
/// renamed out of `D` (at least [`MIN_FOLDER_RENAME`]) went to `D2` under its own name
/// and the renaming side holds nothing at `D` any more (git's directory rename detection, one level per file).
fn follow_folders(
    ops: &[Op],
    ctx: &Context<'_>,
    pairs: &BTreeMap<usize, usize>,
    renamer: Side,
    replaced: &mut BTreeMap<usize, Option<Op>>,
) {
    let mut targets: BTreeMap<&str, (BTreeSet<&str>, usize)> = BTreeMap::new();
    for (&i, &j) in pairs {
        let (from, to) = (ops[i].path.as_str(), ops[j].path.as_str());
        let target = if name(from) == name(to) { parent(to) } else { "\0" };
        let t = targets.entry(parent(from)).or_default();
        t.0.insert(target);
        t.1 += 1;
    }
    let dirs: BTreeMap<&str, &str> = targets
        .into_iter()
        .filter_map(|(d, (t, n))| {
            // One file moved out of a folder is a move, not the folder's rename.
            let only = (t.len() == 1 && n >= MIN_FOLDER_RENAME).then(|| *t.first().expect("one target"))?;
            // (A folder emptied into the root is no folder rename: nothing names it.)
            (!d.is_empty() && !only.is_empty() && only != "\0" && only != d && !ctx.exists(renamer, d))
                .then_some((d, only))
        })
        .collect();
    if dirs.is_empty() {
        return;
    }
    let adder = renamer.other();
    let taken: BTreeSet<&str> = ops.iter().map(|o| o.path.as_str()).collect();
    for (j, op) in ops.iter().enumerate() {
        if !added(op, adder) || renamer.leaf(op).is_some() || replaced.contains_key(&j) {
            continue;
        }
        // The deepest renamed folder above it.
        let Some((dir, to)) = op
            .path
            .match_indices('/')
            .rev()
            .find_map(|(k, _)| dirs.get_key_value(&op.path[..k]).map(|(d, t)| (*d, *t)))
        else {
            continue;
        };
        let dest = format!("{to}{}", &op.path[dir.len()..]);
        if taken.contains(dest.as_str())
            || ctx.exists(Side::Local, &dest)
            || ctx.exists(Side::Remote, &dest)
            || ctx.off_limits.iter().any(|set| super::covered(set, &dest))
        {
            continue;
        }
        // The adding side moves its file: as if it followed the renamer.
        let Some(mut mv) = follow(ctx, renamer, &op.path, &dest, op.sides.clone()) else { continue };
        mv.reason = Reason::FolderRenamed;
        replaced.insert(j, Some(mv));
    }
}
