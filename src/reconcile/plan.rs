//! The sync planner: from base, local and remote, the operations that bring the folder
//! and the bucket to one state, each with the precondition it must be applied under.
//!
//! Pure: no I/O, no clock. The caller lists the bucket, resolves every remote content id
//! it can (metadata, an (ETag, size) cache, or hashing a download), scans the folder,
//! and hands the results over. The planner builds the remote side as a tree too, then
//! walks the three trees together, descending only into subtrees whose ids differ, so
//! its cost grows with the number of changes times the depth. The JSON form of a
//! [`Plan`] is specified in `format-spec/plan.md`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use unicode_normalization::UnicodeNormalization;

use super::diff::Leaf;
use super::merge::Merge;
use super::source::{TreeReadError, TreeSource};
use crate::id::ObjectId;
use crate::object::{
    EntryKind, Manifest, ManifestEntry, NameError, Tree, TreeEntry, TreeRef, check_path, path_order,
};

/// The version of the plan's JSON form (`format-spec/plan.md`).
pub const PLAN_VERSION: u32 = 1;

/// One object of the remote listing, as of one consistent instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteObject {
    /// The object's full key in the bucket (prefix included), byte for byte.
    pub key: String,
    /// The ETag the listing reported, as sent (quotes included).
    pub etag: String,
    /// Object size in bytes.
    pub size: u64,
    /// File, executable or symlink, as bmsync's object metadata records it; `File` for
    /// objects without it. Never `Tree`.
    pub kind: EntryKind,
    /// BLAKE3 of the object's bytes, when known (from bmsync metadata, a cached
    /// (ETag, size) mapping, or hashing a download). May be `None` only when the ETag
    /// equals the base manifest's, which then supplies it.
    pub content: Option<ObjectId>,
}

/// How far the remote listing can be trusted. Anything but `Complete` refuses the plan:
/// an object missing from a partial listing must never be taken for a deletion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListingStatus {
    /// The listing ran to its end without an error.
    Complete,
    /// The listing failed or stopped early.
    Incomplete {
        /// What went wrong, for the error message.
        reason: String,
    },
    /// The remote's prefix (its marker of an initialised remote) is missing, so the
    /// listing may be of the wrong place.
    PrefixMissing,
}

/// The last sync: what both sides agreed on then.
#[derive(Clone, Copy, Debug)]
pub struct Base<'a> {
    /// Its root tree (`None` is the empty tree).
    pub tree: Option<ObjectId>,
    /// Its remote manifest: per path the key, ETag, size and content id then.
    pub manifest: &'a Manifest,
}

/// Everything the planner looks at.
pub struct PlanInput<'a> {
    /// Resolves base and local tree ids (the store, or an in-memory map).
    pub trees: &'a dyn TreeSource,
    /// The last sync, or `None` (first sync, new teammate, lost state): union mode,
    /// which copies what is missing on either side and never deletes.
    pub base: Option<Base<'a>>,
    /// The local root tree from a fresh scan (`None` is the empty tree).
    pub local: Option<ObjectId>,
    /// The remote listing: path → object. The path is the key without the remote's
    /// prefix, byte for byte.
    pub remote: &'a BTreeMap<String, RemoteObject>,
    /// Whether the listing is complete.
    pub listing: ListingStatus,
    /// Paths (or folders) that must never be deleted or overwritten on either side, such
    /// as NFC/NFD duplicates and case collisions the scan found.
    pub protected: &'a BTreeSet<String>,
    /// Paths (or folders) ignored now. A base path here that the scan did not see is
    /// "unknown locally", never "deleted locally".
    pub ignored: &'a BTreeSet<String>,
    /// The most deletions the plan may hold. `None`: at most half of the base's files.
    pub max_delete: Option<usize>,
    /// Accept an empty listing against a non-empty base as "everything was deleted there"
    /// (the user confirmed it). Otherwise such a plan is refused as a likely wrong prefix
    /// or failed listing.
    pub allow_empty_remote: bool,
}

/// Whether the plan had a base.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Base, local and remote: changes since base are carried to the other side.
    ThreeWay,
    /// No base: the union of both sides, with no deletions.
    Union,
}

/// What an operation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Put the local file to the remote key.
    Upload,
    /// Get the remote object into the local file.
    Download,
    /// Delete the remote object.
    DeleteRemote,
    /// Delete the local file.
    DeleteLocal,
    /// Copy the remote object at `from` to `path`, then delete `from`: one operation.
    MoveRemote,
    /// Rename the local file `from` to `path`: one operation.
    MoveLocal,
    /// Nothing to transfer: both sides already agree. Record the path as synced.
    Record,
    /// A conflict that leaves both sides as they are.
    Conflict,
    /// Nothing done, for the reason given (protected, ignored, a bad remote key).
    Skip,
}

/// Why an operation is planned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// New locally.
    LocalAdded,
    /// Edited locally.
    LocalChanged,
    /// Deleted locally.
    LocalDeleted,
    /// Moved locally (same content, new path).
    LocalRenamed,
    /// New on the remote.
    RemoteAdded,
    /// Edited on the remote.
    RemoteChanged,
    /// Deleted on the remote.
    RemoteDeleted,
    /// Moved on the remote.
    RemoteRenamed,
    /// Union mode: only on this machine.
    OnlyLocal,
    /// Union mode: only on the remote.
    OnlyRemote,
    /// Added on both sides with the same content (or present on both in union mode).
    BothAdded,
    /// Edited on both sides to the same content.
    BothChanged,
    /// Deleted on both sides.
    BothDeleted,
    /// The remote object has a new ETag but its content is unchanged.
    RemoteEtagChanged,
    /// Conflict: edited on both sides differently.
    EditEdit,
    /// Conflict: added on both sides (or present on both in union mode) differently.
    AddAdd,
    /// Conflict: deleted locally, edited on the remote. The remote edit is kept.
    DeleteEdit,
    /// Conflict: edited locally, deleted on the remote. The local edit is kept.
    EditDelete,
    /// Conflict: a file became a folder or a folder a file on one or both sides.
    TypeChange,
    /// Skipped: the path is protected.
    Protected,
    /// Skipped: the path is ignored locally.
    Ignored,
    /// Skipped: the remote key is not a valid path.
    InvalidRemoteKey,
    /// Skipped: the remote key is a file and also a folder of other keys.
    RemoteKeyCollision,
    /// Deleted on one side while the other side deleted another path holding the same
    /// content: carrying both deletions out would leave that content nowhere, so this
    /// path is restored from the side that still has it instead.
    LastCopy,
}

impl Reason {
    /// Whether this reason is a conflict.
    pub const fn is_conflict(self) -> bool {
        matches!(self, Self::EditEdit | Self::AddAdd | Self::DeleteEdit | Self::EditDelete | Self::TypeChange)
    }
}

/// A condition on the remote object at a path, checked by the request that changes it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RemoteCond {
    /// The object must still have this ETag (`If-Match`).
    IfMatch(String),
    /// There must be no object (`If-None-Match: *`).
    IfAbsent,
}

/// A condition on the local file at a path, checked just before it is changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LocalCond {
    /// The file must still have this content id.
    Content(ObjectId),
    /// There must be no file.
    Absent,
}

/// The conditions an operation is applied under. If one fails, the operation is skipped
/// and the path is left for the next sync: the state it was planned on has changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Precondition {
    /// On the remote object at `path`, for operations that read or write it.
    pub remote: Option<RemoteCond>,
    /// On the local file at `path`, for operations that write it or send it.
    pub local: Option<LocalCond>,
    /// On the remote object at `from` (moves only).
    pub from_remote: Option<RemoteCond>,
    /// On the local file at `from` (moves only).
    pub from_local: Option<LocalCond>,
}

/// One planned operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// The path it acts on (for moves, the destination).
    pub path: String,
    /// What it does.
    pub action: Action,
    /// Why.
    pub reason: Reason,
    /// For moves, the source path.
    pub from: Option<String>,
    /// The path's base, local and remote versions. A side's leaf has kind `Tree` (and a
    /// tree id) where that side has a folder, which only a type-change conflict shows.
    pub sides: Merge<Option<Leaf>>,
    /// The conditions it must be applied under.
    pub precondition: Precondition,
    /// For skipped operations, what would have been done.
    pub skipped: Option<Action>,
}

impl Op {
    fn new(path: String, action: Action, reason: Reason, sides: Merge<Option<Leaf>>) -> Self {
        Self { path, action, reason, from: None, sides, precondition: Precondition::default(), skipped: None }
    }

    /// Whether this operation reports a conflict.
    pub const fn is_conflict(&self) -> bool {
        self.reason.is_conflict()
    }

    /// Whether it deletes something (a move does not: its content lives on).
    pub const fn is_deletion(&self) -> bool {
        matches!(self.action, Action::DeleteLocal | Action::DeleteRemote)
    }
}

/// Work done and shape of the result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PlanStats {
    /// Tree nodes loaded by the three-way walk (a node shared by sides counts once).
    pub trees_visited: u64,
    /// Trees built from the remote listing.
    pub remote_trees_built: usize,
    /// Files in the base manifest.
    pub base_files: usize,
    /// Operations that delete (`delete_remote`, `delete_local`).
    pub deletions: usize,
    /// Operations that report a conflict.
    pub conflicts: usize,
    /// Operations skipped.
    pub skipped: usize,
}

/// The result of planning: operations in path order (of `path`), at most one per path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Whether there was a base.
    pub mode: Mode,
    /// The operations.
    pub ops: Vec<Op>,
    /// Counts.
    pub stats: PlanStats,
}

impl Plan {
    /// Whether there is nothing to do or report.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The operations that report a conflict.
    pub fn conflicts(&self) -> impl Iterator<Item = &Op> {
        self.ops.iter().filter(|o| o.is_conflict())
    }
}

/// Why no plan was made. Each refusal names what the caller must fix or confirm.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The listing failed or stopped early.
    #[error(
        "the remote listing is incomplete ({reason}); refusing to plan, since a missing object must never be taken for a deletion"
    )]
    ListingIncomplete {
        /// What went wrong.
        reason: String,
    },
    /// The remote prefix is missing.
    #[error(
        "the remote prefix is missing; refusing to plan against what may be the wrong place (check the remote URL)"
    )]
    PrefixMissing,
    /// An empty listing against a base that had files.
    #[error(
        "the remote listing is empty but the last sync recorded {base_files} files there; refusing to plan, since that looks like a wrong prefix or a failed listing rather than {base_files} deletions"
    )]
    EmptyRemote {
        /// Files in the base manifest.
        base_files: usize,
    },
    /// Remote objects whose content is unknown and whose ETag differs from base.
    #[error("the content of {} remote objects is unknown and their ETags differ from the last sync; hash them first: {}", .paths.len(), list(.paths))]
    UnknownRemoteContent {
        /// Their paths, in order.
        paths: Vec<String>,
    },
    /// More deletions than allowed.
    #[error("the plan deletes {deletions} of the {base_files} files of the last sync, over the limit of {limit}; confirm with a higher max-delete: {}", list(.paths))]
    TooManyDeletions {
        /// Planned deletions.
        deletions: usize,
        /// Files in the base manifest.
        base_files: usize,
        /// The limit that applied.
        limit: usize,
        /// The paths that would be deleted.
        paths: Vec<String>,
    },
    /// The remote listing does not make a tree (a bug: bad keys are skipped first).
    #[error("building the remote tree: {0}")]
    RemoteTree(#[from] BuildTreeError),
    /// A base or local tree could not be read.
    #[error(transparent)]
    Trees(#[from] TreeReadError),
}

/// The first few paths of a list, for messages.
fn list(paths: &[String]) -> String {
    const SHOWN: usize = 10;
    let shown = paths.iter().take(SHOWN).map(|p| format!("{p:?}")).collect::<Vec<_>>().join(", ");
    match paths.len().checked_sub(SHOWN) {
        Some(more) if more > 0 => format!("{shown} and {more} more"),
        _ => shown,
    }
}

/// Why leaves do not make a tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildTreeError {
    /// A path no tree may hold.
    #[error("invalid path {path:?}: {source}")]
    InvalidPath {
        /// The path.
        path: String,
        /// Why.
        source: NameError,
    },
    /// The same path twice.
    #[error("{path:?} is listed twice")]
    Duplicate {
        /// The path.
        path: String,
    },
    /// A path that is both a file and a folder of other paths.
    #[error("{path:?} is both a file and a folder")]
    FileAndFolder {
        /// The path.
        path: String,
    },
    /// A leaf of kind `Tree`.
    #[error("{path:?} is given as a leaf of kind tree")]
    TreeLeaf {
        /// The path.
        path: String,
    },
}

/// Builds trees from leaves in any order: the root id (`None` when there are no leaves)
/// and every tree made, keyed by id (a [`TreeSource`]). Folders come only from paths, so
/// no empty folder is ever made. Used for the remote side, from the listing.
pub fn build_tree(
    leaves: impl IntoIterator<Item = (String, Leaf)>,
) -> Result<(Option<ObjectId>, HashMap<ObjectId, Tree>), BuildTreeError> {
    let mut leaves: Vec<(String, Leaf)> = leaves.into_iter().collect();
    leaves.sort_by(|a, b| path_order(&a.0, &b.0));
    if let Some(w) = leaves.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(BuildTreeError::Duplicate { path: w[0].0.clone() });
    }
    let mut trees = HashMap::new();
    // Open folders, root first: (full path, entries so far). In byte order the paths
    // under one folder are contiguous, so a folder is complete once a path leaves it.
    let mut stack: Vec<(String, Vec<TreeEntry>)> = vec![(String::new(), Vec::new())];
    for (path, leaf) in leaves {
        check_path(&path).map_err(|source| BuildTreeError::InvalidPath { path: path.clone(), source })?;
        if leaf.kind.is_tree() {
            return Err(BuildTreeError::TreeLeaf { path });
        }
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", &path));
        let dirs: Vec<&str> = if dir.is_empty() { Vec::new() } else { dir.split('/').collect() };
        let open = stack[1..]
            .iter()
            .zip(&dirs)
            .take_while(|((full, _), d)| full.rsplit('/').next() == Some(**d))
            .count();
        while stack.len() > open + 1 {
            close_folder(&mut stack, &mut trees)?;
        }
        for d in &dirs[open..] {
            let full = join(&stack.last().expect("the root stays open").0, d);
            stack.push((full, Vec::new()));
        }
        let entry = TreeEntry { name: name.to_owned(), kind: leaf.kind, id: leaf.id, size: leaf.size };
        stack.last_mut().expect("the root stays open").1.push(entry);
    }
    while stack.len() > 1 {
        close_folder(&mut stack, &mut trees)?;
    }
    let (_, entries) = stack.pop().expect("the root stays open");
    if entries.is_empty() {
        return Ok((None, trees));
    }
    let root = make_tree("", entries)?;
    let id = root.id();
    trees.insert(id, root);
    Ok((Some(id), trees))
}

fn make_tree(path: &str, entries: Vec<TreeEntry>) -> Result<Tree, BuildTreeError> {
    // Names were checked as paths and duplicates ruled out, so a clash is a file and a
    // folder of one name.
    Tree::new(entries).map_err(|e| match e {
        crate::object::TreeError::Duplicate { name } => {
            BuildTreeError::FileAndFolder { path: join(path, &name) }
        }
        crate::object::TreeError::InvalidName { name, source } => {
            BuildTreeError::InvalidPath { path: join(path, &name), source }
        }
    })
}

fn close_folder(
    stack: &mut Vec<(String, Vec<TreeEntry>)>,
    trees: &mut HashMap<ObjectId, Tree>,
) -> Result<(), BuildTreeError> {
    let (full, entries) = stack.pop().expect("only folders above the root are closed");
    let tree = make_tree(&full, entries)?;
    let (id, size) = (tree.id(), tree.total_size());
    trees.insert(id, tree);
    let name = full.rsplit('/').next().expect("rsplit yields at least one piece").to_owned();
    stack.last_mut().expect("the root stays open").1.push(TreeEntry {
        name,
        kind: EntryKind::Tree,
        id,
        size,
    });
    Ok(())
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() { name.to_owned() } else { format!("{prefix}/{name}") }
}

/// Whether `path` or a folder above it is in `set`.
fn covered(set: &BTreeSet<String>, path: &str) -> bool {
    !set.is_empty() && (set.contains(path) || path.match_indices('/').any(|(i, _)| set.contains(&path[..i])))
}

/// The tree `id` among those loaded for one node (`None` stays `None`).
fn decode(loaded: &[(ObjectId, Vec<u8>)], id: Option<ObjectId>) -> Result<Option<TreeRef<'_>>, PlanError> {
    let Some(id) = id else { return Ok(None) };
    let bytes = &loaded.iter().find(|(x, _)| *x == id).expect("every side's tree was loaded").1;
    let tree = TreeRef::decode(bytes).map_err(|e| TreeReadError::Corrupt { id, reason: e.to_string() })?;
    Ok(Some(tree))
}

/// The caller's trees, with the remote trees built from the listing laid over them.
struct Overlay<'a> {
    built: &'a HashMap<ObjectId, Tree>,
    inner: &'a dyn TreeSource,
}

impl TreeSource for Overlay<'_> {
    fn tree_bytes(&self, id: &ObjectId) -> Result<Vec<u8>, TreeReadError> {
        match self.built.get(id) {
            Some(t) => Ok(t.encode()),
            None => self.inner.tree_bytes(id),
        }
    }
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
    let (leaves, etag_only) = p.remote_leaves(manifest)?;
    let (remote_tree, built) = build_tree(leaves)?;
    p.stats.remote_trees_built = built.len();
    let src = Overlay { built: &built, inner: input.trees };
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
    let mut ops = pair_moves(p.ops);
    ops.sort_by(|a, b| path_order(&a.path, &b.path));
    keep_last_copies(&mut ops, input.remote, manifest);

    let deleted: Vec<String> = ops.iter().filter(|o| o.is_deletion()).map(|o| o.path.clone()).collect();
    let limit = input.max_delete.unwrap_or(base_files / 2);
    if deleted.len() > limit {
        return Err(PlanError::TooManyDeletions {
            deletions: deleted.len(),
            base_files,
            limit,
            paths: deleted,
        });
    }
    let mut stats = p.stats;
    stats.deletions = deleted.len();
    stats.conflicts = ops.iter().filter(|o| o.is_conflict()).count();
    stats.skipped = ops.iter().filter(|o| o.action == Action::Skip).count();
    Ok(Plan { mode: p.mode, ops, stats })
}

/// Crossed deletions: each side deleted a different path holding the same content (a
/// duplicate, or what a crash left recorded at two paths), and each deletion, right on
/// its own, would be carried to the other side, leaving the content nowhere. Unless the
/// content stays at a path this plan leaves alone, the first of those paths (in path
/// order, whichever side deleted it, so the rule is the same seen from either side) is
/// restored from the side that still has it: one copy survives.
fn keep_last_copies(ops: &mut [Op], remote: &BTreeMap<String, RemoteObject>, base: &Manifest) {
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
        r.content.or_else(|| {
            let es = base.entries();
            let i = es.binary_search_by(|e| path_order(&e.path, p)).ok()?;
            es[i].content.filter(|_| es[i].etag == r.etag)
        })
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

/// Paths with their leaves.
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
    /// The listing as leaves with known content, plus the paths whose ETag changed but
    /// whose content did not. Keys that make no valid path are skipped and protect the
    /// path they would normalise to.
    fn remote_leaves(&mut self, manifest: &Manifest) -> Result<(Leaves, Leaves), PlanError> {
        let base_entry = |path: &str| -> Option<&ManifestEntry> {
            let es = manifest.entries();
            es.binary_search_by(|e| path_order(&e.path, path)).ok().map(|i| &es[i])
        };
        let (mut leaves, mut etag_only, mut unknown) = (Vec::new(), Vec::new(), Vec::new());
        let remote = self.input.remote;
        for (path, obj) in remote {
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
        let files: BTreeSet<&str> = leaves.iter().map(|(p, _)| p.as_str()).collect();
        let clashing: BTreeSet<String> = leaves
            .iter()
            .flat_map(|(p, _)| p.match_indices('/').map(|(i, _)| &p[..i]))
            .filter(|dir| files.contains(dir))
            .map(str::to_owned)
            .collect();
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
            let path = join(prefix, name);
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
            Action::Upload | Action::Download | Action::DeleteRemote => (Some(remote_now), Some(local_now)),
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

/// Pairs a deletion with an addition of the same content on the same side into one move,
/// first by path order. Expects `ops` in path order.
fn pair_moves(ops: Vec<Op>) -> Vec<Op> {
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

// ---- JSON (format-spec/plan.md) ----

impl serde::Serialize for RemoteCond {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        match self {
            Self::IfMatch(etag) => m.serialize_entry("if_match", etag)?,
            Self::IfAbsent => m.serialize_entry("if_none_match", "*")?,
        }
        m.end()
    }
}

impl serde::Serialize for LocalCond {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        match self {
            Self::Content(id) => m.serialize_entry("content", id)?,
            Self::Absent => m.serialize_entry("content", &None::<ObjectId>)?,
        }
        m.end()
    }
}

#[derive(serde::Serialize)]
struct OpJson<'a> {
    path: &'a str,
    action: Action,
    reason: Reason,
    conflict: bool,
    from: Option<&'a str>,
    base: Option<&'a Leaf>,
    local: Option<&'a Leaf>,
    remote: Option<&'a Leaf>,
    precondition: &'a Precondition,
    skipped: Option<Action>,
}

impl serde::Serialize for Op {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        OpJson {
            path: &self.path,
            action: self.action,
            reason: self.reason,
            conflict: self.is_conflict(),
            from: self.from.as_deref(),
            base: self.sides.base.as_ref(),
            local: self.sides.local.as_ref(),
            remote: self.sides.remote.as_ref(),
            precondition: &self.precondition,
            skipped: self.skipped,
        }
        .serialize(s)
    }
}

#[derive(serde::Serialize)]
struct PlanJson<'a> {
    version: u32,
    mode: Mode,
    ops: &'a [Op],
    stats: &'a PlanStats,
}

impl serde::Serialize for Plan {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        PlanJson { version: PLAN_VERSION, mode: self.mode, ops: &self.ops, stats: &self.stats }.serialize(s)
    }
}
