//! The sync planner: from base, local and remote, the operations that bring the folder
//! and the bucket to one state, each with the precondition it must be applied under.
//!
//! Pure: no I/O, no clock. The caller lists the bucket, resolves every remote content id
//! it can (metadata, an (ETag, size) cache, or hashing a download), scans the folder,
//! and hands the results over. The planner builds the remote side as a tree too, then
//! walks the three trees together, descending only into subtrees whose ids differ, so
//! its cost grows with the number of changes times the depth. The JSON form of a
//! [`Plan`] is specified in `format-spec/plan.md`.

mod build;
mod json;
mod passes;
mod renames;
mod types;

use std::collections::{BTreeMap, BTreeSet};

use unicode_normalization::UnicodeNormalization;

pub use build::{BuildTreeError, build_tree};
use passes::keep_last_copies;
pub use renames::{MAX_SIMILAR_BYTES, MAX_SIMILAR_PAIRS, RENAME_SIMILARITY, Similarity, similarity};
pub use types::*;

use super::diff::Leaf;
use super::merge::Merge;
use super::source::{Overlay, TreeReadError, TreeSource};
use crate::id::ObjectId;
use crate::object::{EntryKind, Manifest, Tree, TreeRef, check_path, join_path, path_order};

/// Whether `path` or a folder above it is in `set`.
fn covered(set: &BTreeSet<String>, path: &str) -> bool {
    !set.is_empty() && (set.contains(path) || path.match_indices('/').any(|(i, _)| set.contains(&path[..i])))
}

/// The listing's differences from the base manifest, in one pass over both (both are in
/// path order): the listed objects that are not exactly as the manifest records them
/// (another ETag, kind or size, or content the listing or the manifest does not agree
/// on), and the manifest's paths the listing no longer holds.
fn listing_changes<'r>(
    remote: &'r BTreeMap<String, RemoteObject>,
    manifest: &Manifest,
) -> (Vec<(&'r String, &'r RemoteObject)>, Vec<String>) {
    let (mut changed, mut gone) = (Vec::new(), Vec::new());
    let mut base = manifest.entries().iter().peekable();
    for (path, obj) in remote {
        while let Some(e) = base.next_if(|e| e.path.as_str() < path.as_str()) {
            gone.push(e.path.clone());
        }
        let same = base.next_if(|e| e.path == *path).is_some_and(|e| {
            e.etag == obj.etag
                && e.kind == obj.kind
                && e.size == obj.size
                && e.content.is_some_and(|c| obj.content.unwrap_or(c) == c)
        });
        if !same {
            changed.push((path, obj));
        }
    }
    gone.extend(base.map(|e| e.path.clone()));
    (changed, gone)
}

/// The tree `id` among those loaded for one node (`None` stays `None`).
fn decode(loaded: &[(ObjectId, Vec<u8>)], id: Option<ObjectId>) -> Result<Option<TreeRef<'_>>, PlanError> {
    let Some(id) = id else { return Ok(None) };
    let bytes = &loaded.iter().find(|(x, _)| *x == id).expect("every side's tree was loaded").1;
    let tree = TreeRef::decode(bytes).map_err(|e| TreeReadError::Corrupt { id, reason: e.to_string() })?;
    Ok(Some(tree))
}

/// Plans a sync. Refuses (never guesses) when the listing is incomplete or suspicious,
/// when a remote object's content is unknown, or when it would delete too much.
pub fn plan(input: &PlanInput<'_>) -> Result<Plan, PlanError> {
    match &input.listing {
        ListingStatus::Complete => {}
        ListingStatus::Incomplete { reason } => {
            return Err(PlanError::ListingIncomplete { reason: reason.clone() });
        }
        ListingStatus::PrefixMissing => return Err(PlanError::PrefixMissing),
    }
    let empty = Manifest::default();
    let manifest = input.base.map_or(&empty, |b| b.manifest);
    let base_tree = input.base.and_then(|b| b.tree).filter(|t| *t != Tree::default().id());
    let base_files = manifest.entries().len();
    if input.remote.is_empty() && !input.allow_empty_remote && (base_files > 0 || base_tree.is_some()) {
        return Err(PlanError::EmptyRemote { base_files });
    }

    let mut p = Planner {
        input,
        mode: if input.base.is_some() { Mode::ThreeWay } else { Mode::Union },
        protected: BTreeSet::new(),
        ops: Vec::new(),
        stats: PlanStats { base_files, ..PlanStats::default() },
    };
    let ((remote_tree, built), etag_only) =
        p.remote_side(manifest, input.base.and_then(|b| b.manifest_tree))?;
    p.stats.remote_trees_built = built.len();
    let src = Overlay { mem: &built, inner: input.trees };
    p.walk(&src, "", Merge::new(base_tree, input.local, remote_tree))?;

    // Same content under a new ETag: record it, so the manifest learns the new ETag.
    let touched: BTreeSet<String> = p.ops.iter().map(|o| o.path.clone()).collect();
    for (path, leaf) in etag_only {
        if !covered(&touched, &path) {
            p.ops.push(Op::new(path, Action::Record, Reason::RemoteEtagChanged, Merge::resolved(Some(leaf))));
        }
    }
    p.ops.sort_by(|a, b| path_order(&a.path, &b.path));
    // A colliding key's skip gives way to the type-change conflict the walk found there:
    // one operation per path.
    p.ops.dedup_by(|later, earlier| {
        later.path == earlier.path && earlier.reason == Reason::RemoteKeyCollision && {
            std::mem::swap(later, earlier);
            true
        }
    });
    let ctx = renames::Context {
        trees: &src,
        local_root: input.local,
        remote_root: remote_tree,
        remote: input.remote,
        similarity: input.similarity,
        off_limits: [input.protected, input.ignored],
    };
    let mut ops = if p.mode == Mode::ThreeWay { renames::follow_renames(p.ops, &ctx) } else { p.ops };
    keep_last_copies(&mut ops, input.remote, manifest);

    check_deletions(&ops, base_files, input.max_delete, |_| true)?;
    let mut stats = p.stats;
    stats.deletions = ops.iter().filter(|o| o.is_deletion()).count();
    stats.conflicts = ops.iter().filter(|o| o.is_conflict()).count();
    stats.skipped = ops.iter().filter(|o| o.action == Action::Skip).count();
    stats.merges = ops.iter().filter(|o| o.action == Action::Merge || o.then == Some(Action::Merge)).count();
    stats.moves = ops.iter().filter(|o| matches!(o.action, Action::MoveLocal | Action::MoveRemote)).count();
    Ok(Plan { mode: p.mode, ops, stats })
}

/// The mass-delete guard: refuses `ops` when the deletions among them that `counted`
/// accepts (those a run carries out) are more than `max_delete` (`None`: half of the
/// base's `base_files`). Each side's share is in the error, and the paths.
pub fn check_deletions(
    ops: &[Op],
    base_files: usize,
    max_delete: Option<usize>,
    counted: impl Fn(&Op) -> bool,
) -> Result<(), PlanError> {
    let deleting: Vec<&Op> = ops.iter().filter(|o| o.is_deletion() && counted(o)).collect();
    let limit = max_delete.unwrap_or(base_files / 2);
    if deleting.len() <= limit {
        return Ok(());
    }
    Err(PlanError::TooManyDeletions {
        deletions: deleting.len(),
        here: deleting.iter().filter(|o| o.action == Action::DeleteLocal).count(),
        base_files,
        limit,
        paths: deleting.iter().map(|o| o.path.clone()).collect(),
    })
}

type Leaves = Vec<(String, Leaf)>;

struct Planner<'a> {
    input: &'a PlanInput<'a>,
    mode: Mode,
    /// Protected by the planner itself: NFC forms of non-NFC keys, colliding keys.
    protected: BTreeSet<String>,
    ops: Vec<Op>,
    stats: PlanStats,
}

impl Planner<'_> {
    /// The remote side as a tree: its root, the trees made for it, and the paths whose
    /// ETag changed but whose content did not. With the base manifest's tree at hand
    /// (`manifest_tree`), only the listing's differences from the manifest are looked at
    /// and patched into that tree, so the cost follows the changes; otherwise (or where
    /// the differences make a file and a folder of one name) the tree is built from the
    /// whole listing. Both give the same tree and the same operations.
    fn remote_side(
        &mut self,
        manifest: &Manifest,
        manifest_tree: Option<ObjectId>,
    ) -> Result<(build::Built, Leaves), PlanError> {
        if let Some(root) = manifest_tree.filter(|_| !manifest.entries().is_empty()) {
            let (ops, protected) = (self.ops.len(), self.protected.clone());
            let (changed, gone) = listing_changes(self.input.remote, manifest);
            let (leaves, etag_only) = self.remote_leaves(manifest, changed.iter().copied())?;
            // Every changed path the manifest held loses its old leaf unless it has a new one.
            let mut edits: BTreeMap<String, Option<Leaf>> = gone.into_iter().map(|p| (p, None)).collect();
            for (path, _) in &changed {
                if manifest.get(path).is_some() {
                    edits.insert((*path).clone(), None);
                }
            }
            edits.extend(leaves.into_iter().map(|(p, l)| (p, Some(l))));
            let edits: Vec<(String, Option<Leaf>)> = edits.into_iter().collect();
            // (A tree that cannot be read is only a hint lost: the full build follows.)
            if let Ok(Some(built)) = build::patch_tree(self.input.trees, Some(root), &edits) {
                return Ok((built, etag_only));
            }
            self.ops.truncate(ops);
            self.protected = protected;
        }
        let (leaves, etag_only) = self.remote_leaves(manifest, self.input.remote)?;
        Ok((build_tree(leaves)?, etag_only))
    }

    /// The listing as leaves with known content, plus the paths whose ETag changed but
    /// whose content did not. Keys that make no valid path are skipped and protect the
    /// path they would normalise to.
    fn remote_leaves<'r>(
        &mut self,
        manifest: &Manifest,
        objects: impl IntoIterator<Item = (&'r String, &'r RemoteObject)>,
    ) -> Result<(Leaves, Leaves), PlanError> {
        let base_entry = |path: &str| manifest.get(path);
        let (mut leaves, mut etag_only, mut unknown) = (Vec::new(), Vec::new(), Vec::new());
        for (path, obj) in objects {
            if check_path(path).is_err() || obj.kind.is_tree() {
                let nfc: String = path.nfc().collect();
                if nfc != *path && check_path(&nfc).is_ok() {
                    self.protected.insert(nfc);
                }
                let leaf = obj.content.map(|id| Leaf { kind: obj.kind, id, size: obj.size });
                self.skip(Op::new(
                    path.clone(),
                    Action::Download,
                    Reason::InvalidRemoteKey,
                    Merge::new(None, None, leaf),
                ));
                continue;
            }
            let base = base_entry(path);
            let same_etag = base.filter(|b| b.etag == obj.etag);
            let Some(id) = obj.content.or_else(|| same_etag.and_then(|b| b.content)) else {
                unknown.push(path.clone());
                continue;
            };
            let leaf = Leaf { kind: obj.kind, id, size: obj.size };
            if same_etag.is_none() && base.is_some_and(|b| b.content == Some(id)) {
                etag_only.push((path.clone(), leaf.clone()));
            }
            leaves.push((path.clone(), leaf));
        }
        if !unknown.is_empty() {
            return Err(PlanError::UnknownRemoteContent { paths: unknown });
        }
        // A key that is also a folder of other keys cannot be a file in a tree. Keep the
        // folder: the file's path then shows a type change, which deletes nothing.
        // (Hashed, and each folder's prefixes looked up once, not once per file in it: this
        // runs over the whole listing on every plan.)
        let files: std::collections::HashSet<&str> = leaves.iter().map(|(p, _)| p.as_str()).collect();
        let mut clashing: BTreeSet<String> = BTreeSet::new();
        let mut last_dir = None;
        for (p, _) in &leaves {
            let dir = p.rsplit_once('/').map(|(d, _)| d);
            if dir == last_dir {
                continue;
            }
            last_dir = dir;
            for dir in p.match_indices('/').map(|(i, _)| &p[..i]) {
                if files.contains(dir) {
                    clashing.insert(dir.to_owned());
                }
            }
        }
        let mut kept = Vec::with_capacity(leaves.len());
        for (path, leaf) in leaves {
            if clashing.contains(&path) {
                self.protected.insert(path.clone());
                // (A protected or ignored path says so: the sync never moves it aside.)
                let reason = if covered(self.input.protected, &path) {
                    Reason::Protected
                } else if covered(self.input.ignored, &path) {
                    Reason::Ignored
                } else {
                    Reason::RemoteKeyCollision
                };
                let op = Op::new(path, Action::Download, reason, Merge::new(None, None, Some(leaf)));
                self.skip(op);
            } else {
                kept.push((path, leaf));
            }
        }
        etag_only.retain(|(p, _)| !clashing.contains(p));
        Ok((kept, etag_only))
    }

    /// Walks the three trees under `prefix`, skipping every name equal on all sides.
    fn walk(
        &mut self,
        src: &dyn TreeSource,
        prefix: &str,
        trees: Merge<Option<ObjectId>>,
    ) -> Result<(), PlanError> {
        if trees.is_unchanged() {
            return Ok(());
        }
        // Load each distinct tree once: sides often share one.
        let mut loaded: Vec<(ObjectId, Vec<u8>)> = Vec::with_capacity(3);
        for id in trees.into_array().into_iter().flatten() {
            if !loaded.iter().any(|(x, _)| *x == id) {
                self.stats.trees_visited += 1;
                loaded.push((id, src.tree_bytes(&id)?));
            }
        }
        let sides =
            [decode(&loaded, trees.base)?, decode(&loaded, trees.local)?, decode(&loaded, trees.remote)?];
        // By name, not by entry order: a file and a folder of one name must meet.
        let mut names: BTreeMap<&str, Merge<Option<Leaf>>> = BTreeMap::new();
        for (side, tree) in sides.iter().enumerate() {
            for e in tree.iter().flat_map(TreeRef::entries) {
                let m = names.entry(e.name).or_default();
                let slot = match side {
                    0 => &mut m.base,
                    1 => &mut m.local,
                    _ => &mut m.remote,
                };
                *slot = Some(Leaf::from(e));
            }
        }
        for (name, mut m) in names {
            if m.is_unchanged() {
                continue;
            }
            let path = join_path(prefix, name);
            // Ignored paths are unknown locally, not deleted: take base for them.
            if m.local.is_none() && m.base.is_some() && covered(self.input.ignored, &path) {
                m.local.clone_from(&m.base);
                if m.is_unchanged() {
                    continue;
                }
            }
            let folder = m.any_some(|l| l.kind.is_tree());
            if folder && m.any_some(|l| !l.kind.is_tree()) {
                if m.local == m.remote {
                    // The same type change on both sides: no conflict. The old type's
                    // side is gone on both, the new one's is there on both.
                    self.leaf(path.clone(), m.clone().map(|n| n.filter(|l| !l.kind.is_tree())));
                    let dirs = m.map(|n| n.filter(|l| l.kind.is_tree()).map(|l| l.id));
                    self.walk(src, &path, dirs)?;
                } else {
                    self.push(Op::new(path, Action::Conflict, Reason::TypeChange, m));
                }
            } else if folder {
                self.walk(src, &path, m.map(|l| l.map(|l| l.id)))?;
            } else {
                self.leaf(path, m);
            }
        }
        Ok(())
    }

    /// Decides one path whose sides are leaves (or absent) and not all equal.
    fn leaf(&mut self, path: String, m: Merge<Option<Leaf>>) {
        let union = self.mode == Mode::Union;
        if let Some(local_exec) = exec_bit_only(&m) {
            // The same bytes on both sides, one executable: the execute bit is kept (as
            // if both had set it), never a conflict over identical text.
            let reason = if m.base.is_none() { Reason::BothAdded } else { Reason::BothChanged };
            let action = if local_exec { Action::Upload } else { Action::Download };
            return self.push(Op::new(path, action, reason, m));
        }
        let (action, reason) = match m.resolve_trivial() {
            // The local side must become the merged value.
            Some(target) if m.local != *target => match (target, &m.base) {
                (None, _) => (Action::DeleteLocal, Reason::RemoteDeleted),
                (Some(_), Some(_)) => (Action::Download, Reason::RemoteChanged),
                (Some(_), None) if union => (Action::Download, Reason::OnlyRemote),
                (Some(_), None) => (Action::Download, Reason::RemoteAdded),
            },
            // The remote side must become the merged value.
            Some(target) if m.remote != *target => match (target, &m.base) {
                (None, _) => (Action::DeleteRemote, Reason::LocalDeleted),
                (Some(_), Some(_)) => (Action::Upload, Reason::LocalChanged),
                (Some(_), None) if union => (Action::Upload, Reason::OnlyLocal),
                (Some(_), None) => (Action::Upload, Reason::LocalAdded),
            },
            // Both sides already hold it: the same change was made on both.
            Some(_) => match (&m.base, &m.local) {
                (_, None) => (Action::Record, Reason::BothDeleted),
                (None, _) => (Action::Record, Reason::BothAdded),
                _ => (Action::Record, Reason::BothChanged),
            },
            // All three differ. An edit beats a deletion: it is restored on the side
            // that deleted, so no one's work is lost.
            None => match (&m.base, &m.local, &m.remote) {
                (None, _, _) => (Action::Conflict, Reason::AddAdd),
                (_, None, _) => (Action::Download, Reason::DeleteEdit),
                (_, _, None) => (Action::Upload, Reason::EditDelete),
                _ if mergeable(&m) => (Action::Merge, Reason::EditEdit),
                _ => (Action::Conflict, Reason::EditEdit),
            },
        };
        self.push(Op::new(path, action, reason, m));
    }

    /// Adds an operation with its preconditions, or skips it when its path is protected
    /// or ignored.
    fn push(&mut self, mut op: Op) {
        // A conflict is resolved by writing (a copy, a download), so a protected path
        // keeps out of it too.
        // (Not the planner's own protections: a key beside a folder of its name is moved
        // aside by the type change at that path.)
        if op.action == Action::Conflict && covered(self.input.protected, &op.path) {
            op.reason = Reason::Protected;
            return self.skip(op);
        }
        if matches!(op.action, Action::Record | Action::Conflict) {
            self.ops.push(op);
            return;
        }
        if covered(self.input.protected, &op.path) || self.protected.contains(&op.path) {
            op.reason = Reason::Protected;
            return self.skip(op);
        }
        if covered(self.input.ignored, &op.path) {
            op.reason = Reason::Ignored;
            return self.skip(op);
        }
        // Each condition is the state this plan saw: the request must find it unchanged.
        let remote_now = match self.input.remote.get(&op.path) {
            Some(o) => RemoteCond::IfMatch(o.etag.clone()),
            None => RemoteCond::IfAbsent,
        };
        let local_now = op.sides.local.as_ref().map_or(LocalCond::Absent, |l| LocalCond::Content(l.id));
        let (remote, local) = match op.action {
            Action::Upload | Action::Download | Action::DeleteRemote | Action::Merge => {
                (Some(remote_now), Some(local_now))
            }
            _ => (None, Some(local_now)),
        };
        op.precondition = Precondition { remote, local, ..Precondition::default() };
        self.ops.push(op);
    }

    fn skip(&mut self, mut op: Op) {
        op.skipped = Some(op.action);
        op.action = Action::Skip;
        op.precondition = Precondition::default();
        self.ops.push(op);
    }
}

/// Whether an `edit_edit` may be merged: a plain file (or executable) of one kind on
/// both sides, from a plain base, none of the three over the merge limit. Whether the
/// bytes are text is only known when they are read; a file that is not falls back to a
/// conflict then.
pub(super) fn mergeable(m: &Merge<Option<Leaf>>) -> bool {
    let (Some(b), Some(l), Some(r)) = (&m.base, &m.local, &m.remote) else { return false };
    let plain = |k: EntryKind| matches!(k, EntryKind::File | EntryKind::Executable);
    let small = |x: &Leaf| x.size <= crate::merge::MAX_MERGE_BYTES as u64;
    plain(b.kind) && plain(l.kind) && l.kind == r.kind && small(b) && small(l) && small(r)
}

/// Whether both sides hold the same bytes and differ only in the execute bit, in a way a
/// plain merge would call a conflict (both differ from the base). `Some(true)`: the local
/// side is the executable one.
fn exec_bit_only(m: &Merge<Option<Leaf>>) -> Option<bool> {
    let (Some(l), Some(r)) = (&m.local, &m.remote) else { return None };
    let plain = |k: EntryKind| matches!(k, EntryKind::File | EntryKind::Executable);
    let one_side_is_base = m.base.as_ref().is_some_and(|b| b == l || b == r);
    (l.id == r.id && l.kind != r.kind && plain(l.kind) && plain(r.kind) && !one_side_is_base)
        .then_some(l.kind == EntryKind::Executable)
}
