//! Apply and record: carries out a plan against the folder and the remote, under the
//! plan's preconditions, then records the converged state as the new sync base.
//!
//! Every remote write is conditional and every local write is atomic (temporary file,
//! fsync, rename) after checking the file still holds what the plan saw. A lost race
//! leaves that path unsynced for the next round; it is never retried blindly. The new
//! base names a path as synced only where both sides were seen to agree.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::id::{ObjectHasher, ObjectId, ObjectKind};
use crate::object::{Commit, EntryKind, Manifest, ManifestEntry, RemoteBaseline};
use crate::reconcile::{
    Action, Base, Change, DiffStats, Leaf, ListingStatus, LocalCond, Op, Overlay, Plan, PlanError, PlanInput,
    Reason, RemoteCond, RemoteObject, build_tree, diff_trees, plan,
};
use crate::remote::{Body, Condition, Remote, RemoteError, RemoteView, SkippedKey, Version};
use crate::repo::{REF_BASE, REF_HEAD, Repo, RepoError, STATE_DIR};
use crate::store::StoreError;
use crate::worktree::{IgnoreRules, Snapshot, global_ignore_files};

/// Rounds of plan-and-apply a sync runs while teammates' races leave paths unsynced.
const MAX_ROUNDS: usize = 3;
/// Files up to this size are read into memory, hashed and sent from that one read.
const IN_MEMORY_UPLOAD: u64 = 16 << 20;
/// Folder (inside `.bmsync/`) that receives local deletions, recoverably.
pub const TRASH_DIR: &str = "trash";

/// Where a sync reports its progress (the CLI draws a bar; the default draws nothing).
pub trait Progress: Sync {
    /// A round starts, with this many operations moving this many bytes.
    fn start(&self, _ops: u64, _bytes: u64) {}
    /// One operation finished, having moved `bytes`.
    fn done(&self, _path: &str, _bytes: u64) {}
    /// The sync finished (or stopped).
    fn finish(&self) {}
}

/// Reports nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// How to sync.
#[derive(Clone, Debug, Default)]
pub struct SyncOptions {
    /// The most deletions allowed (default: half of the base's files).
    pub max_delete: Option<usize>,
    /// Accept an empty remote listing, against a base that had files, as "everything was
    /// deleted there". Off by default: that usually means a wrong prefix or a bad listing.
    pub allow_empty_remote: bool,
    /// A known bug to switch on, so the simulator can show it would catch it. Tests only.
    #[doc(hidden)]
    pub planted: Option<PlantedBug>,
}

/// Bugs a test can plant in the engine to prove the simulation catches them. Each one
/// breaks a safety rule this module otherwise keeps.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlantedBug {
    /// Overwrite remote objects without `If-Match` (the ETag is read just before).
    SkipIfMatch,
    /// Record the base as if the whole plan had succeeded, before applying it.
    RecordBaseEarly,
    /// Take an empty listing at face value: everything there was deleted.
    EmptyListingAsDeletions,
}

/// What a sync did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SyncSummary {
    /// Files sent to the remote.
    pub uploaded: u64,
    /// Files fetched from the remote.
    pub downloaded: u64,
    /// Local files moved to the trash.
    pub deleted_local: u64,
    /// Remote objects deleted.
    pub deleted_remote: u64,
    /// Paths recorded as synced without a transfer.
    pub recorded: u64,
    /// Bytes sent.
    pub bytes_up: u64,
    /// Bytes fetched.
    pub bytes_down: u64,
    /// Conflicts: both versions kept, the local one under a `conflict` name.
    pub conflicts: Vec<ConflictReport>,
    /// Paths left unsynced because a teammate (or an editor) changed them meanwhile.
    pub raced: Vec<String>,
    /// Paths left as they are, with why (protected, ignored, type changes...).
    pub skipped: Vec<String>,
    /// Remote keys reported and skipped.
    pub remote_skipped: Vec<SkippedKey>,
    /// The new base commit.
    pub base: Option<ObjectId>,
    /// The snapshot the new base is paired with (taken after applying), when the remote
    /// has snapshots.
    pub snapshot: Option<Version>,
    /// Plan-and-apply rounds run.
    pub rounds: usize,
}

/// A conflict and where each version went.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ConflictReport {
    /// The path.
    pub path: String,
    /// What kind of conflict.
    pub reason: Reason,
    /// Where the local version was kept, when it was moved aside.
    pub local_copy: Option<String>,
}

/// Why a sync stopped. Whatever was applied before the failure is safe: the base was
/// not moved past what both sides were seen to hold.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The folder or its store.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The remote.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The planner refused.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A local file operation.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SyncError + '_ {
    move |source| SyncError::Io { path: path.to_owned(), source }
}

/// The base commit's tree and manifest.
fn base_state(repo: &Repo) -> Result<Option<(ObjectId, Option<ObjectId>, Manifest)>, SyncError> {
    let Some(id) = repo.base()? else { return Ok(None) };
    let c = repo.store().get_commit(&id)?;
    let manifest = match &c.baseline {
        Some(b) => repo.store().get_manifest(&b.manifest)?,
        None => Manifest::default(),
    };
    Ok(Some((id, Some(c.tree), manifest)))
}

/// Everything a plan is made from, read once.
pub struct Planned {
    /// The folder as scanned.
    pub local: Snapshot,
    /// The remote as listed.
    pub view: RemoteView,
    /// The plan.
    pub plan: Plan,
    base: Option<(ObjectId, Option<ObjectId>, Manifest)>,
    planted: Option<PlantedBug>,
}

/// Scans, reads the remote at one snapshot, and plans. With `dry_run` it writes nothing
/// at all (for `bmsync plan`); otherwise the scan stores the folder's objects, ready for
/// the apply step. No file is touched and no ref moves either way.
pub fn make_plan(
    repo: &Repo,
    remote: &dyn Remote,
    opts: &SyncOptions,
    dry_run: bool,
) -> Result<Planned, SyncError> {
    let scan_opts = crate::worktree::ScanOptions { store_blobs: !dry_run, dry_run, ..Default::default() };
    let local = repo.scan_with(&scan_opts)?;
    let rules =
        IgnoreRules::load(repo.root(), &global_ignore_files()).map_err(|e| RepoError::Scan(e.into()))?;
    let base = base_state(repo)?;
    let ignored_now = |p: &str| rules.matched_with_parents(p, false).is_some();
    let view = RemoteView::fetch(remote, base.as_ref().map(|b| &b.2), ignored_now)?;
    let remote_objects: BTreeMap<String, RemoteObject> = view
        .objects
        .iter()
        .map(|(p, e)| {
            let o = RemoteObject {
                key: e.key.clone(),
                etag: e.etag.clone(),
                size: e.size,
                kind: EntryKind::File,
                content: Some(e.content),
            };
            (p.clone(), o)
        })
        .collect();
    let protected: BTreeSet<String> = local.report.protected_paths().map(str::to_owned).collect();
    let ignored: BTreeSet<String> = base
        .as_ref()
        .map(|b| b.2.entries().iter().map(|e| e.path.clone()).filter(|p| ignored_now(p)).collect())
        .unwrap_or_default();
    let reader = repo.store().reader()?;
    let trees = Overlay { mem: &local.unstored_trees, inner: &reader };
    let input = PlanInput {
        trees: &trees,
        base: base.as_ref().map(|b| Base { tree: b.1, manifest: &b.2 }),
        local: Some(local.root),
        remote: &remote_objects,
        listing: ListingStatus::Complete,
        protected: &protected,
        ignored: &ignored,
        max_delete: opts.max_delete,
        allow_empty_remote: opts.allow_empty_remote
            || opts.planted == Some(PlantedBug::EmptyListingAsDeletions),
    };
    let plan = plan(&input)?;
    Ok(Planned { local, view, plan, base, planted: opts.planted })
}

/// What is known of each side after applying: path → content id.
struct Sides {
    local: BTreeMap<String, Leaf>,
    remote: BTreeMap<String, (String, ObjectId, u64)>,
}

/// Runs sync rounds until nothing raced (or the round limit), recording a base after each.
pub fn sync(repo: &Repo, remote: &dyn Remote, opts: &SyncOptions) -> Result<SyncSummary, SyncError> {
    sync_with_progress(repo, remote, opts, &NoProgress)
}

/// [`sync`], reporting progress.
pub fn sync_with_progress(
    repo: &Repo,
    remote: &dyn Remote,
    opts: &SyncOptions,
    progress: &dyn Progress,
) -> Result<SyncSummary, SyncError> {
    let result = sync_rounds(repo, remote, opts, progress);
    progress.finish();
    result
}

fn sync_rounds(
    repo: &Repo,
    remote: &dyn Remote,
    opts: &SyncOptions,
    progress: &dyn Progress,
) -> Result<SyncSummary, SyncError> {
    let mut summary = SyncSummary::default();
    for round in 1..=MAX_ROUNDS {
        summary.rounds = round;
        summary.raced.clear();
        let planned = make_plan(repo, remote, opts, false)?;
        let mut sides = Sides {
            local: leaves(repo, planned.local.root)?,
            remote: planned
                .view
                .objects
                .iter()
                .map(|(p, e)| (p.clone(), (e.etag.clone(), e.content, e.size)))
                .collect(),
        };
        summary.remote_skipped.clone_from(&planned.view.skipped);
        let bytes: u64 = planned
            .plan
            .ops
            .iter()
            .filter(|o| matches!(o.action, Action::Upload | Action::Download | Action::MoveRemote))
            .filter_map(|o| {
                if o.action == Action::Download { o.sides.remote.as_ref() } else { o.sides.local.as_ref() }
            })
            .map(|l| l.size)
            .sum();
        progress.start(planned.plan.ops.len() as u64, bytes);
        if opts.planted == Some(PlantedBug::RecordBaseEarly) {
            record(repo, remote, &planned, &optimistic(&planned, &sides))?;
        }
        for op in &planned.plan.ops {
            let moved = summary.bytes_up + summary.bytes_down;
            let result = apply_op(repo, remote, &planned, op, &mut sides, &mut summary);
            progress.done(&op.path, summary.bytes_up + summary.bytes_down - moved);
            if let Err(e) = result {
                // Stop cleanly, but keep what did succeed: record the paths both sides
                // were seen to agree on before the failure.
                record(repo, remote, &planned, &sides)?;
                return Err(e);
            }
        }
        let (base, snapshot) = record(repo, remote, &planned, &sides)?;
        summary.base = Some(base);
        summary.snapshot = snapshot;
        if summary.raced.is_empty() {
            break;
        }
    }
    Ok(summary)
}

/// What the sides would hold if every operation of the plan succeeded (for
/// [`PlantedBug::RecordBaseEarly`] only).
fn optimistic(planned: &Planned, sides: &Sides) -> Sides {
    let mut out = Sides { local: sides.local.clone(), remote: sides.remote.clone() };
    for op in &planned.plan.ops {
        let p = op.path.clone();
        match op.action {
            Action::Upload | Action::MoveRemote => {
                if let Some(l) = &op.sides.local {
                    out.remote.insert(p, ("\"planned\"".to_owned(), l.id, l.size));
                }
            }
            Action::Download => {
                if let Some(r) = &op.sides.remote {
                    out.local.insert(p, r.clone());
                }
            }
            Action::DeleteLocal | Action::DeleteRemote => {
                out.local.remove(&p);
                out.remote.remove(&p);
            }
            _ => {}
        }
    }
    out
}

fn leaves(repo: &Repo, root: ObjectId) -> Result<BTreeMap<String, Leaf>, SyncError> {
    let reader = repo.store().reader()?;
    let mut st = DiffStats::default();
    Ok(diff_trees(&reader, None, Some(root), &mut st)?
        .into_iter()
        .filter_map(|c| match c {
            Change::Added { path, new } => Some((path, new)),
            _ => None,
        })
        .collect())
}

/// The content id of a local file now (`None` if absent).
fn local_content(path: &Path) -> Result<Option<ObjectId>, SyncError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
        Ok(m) if m.file_type().is_symlink() => {
            let t = std::fs::read_link(path).map_err(io_err(path))?;
            return Ok(Some(ObjectId::for_blob(t.as_os_str().as_encoded_bytes())));
        }
        Ok(_) => {}
    }
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut h = ObjectHasher::new(ObjectKind::Blob);
    std::io::copy(&mut f, &mut h).map_err(io_err(path))?;
    Ok(Some(h.finalize()))
}

fn local_ok(path: &Path, cond: Option<LocalCond>) -> Result<bool, SyncError> {
    Ok(match cond {
        None => true,
        Some(LocalCond::Absent) => local_content(path)?.is_none(),
        Some(LocalCond::Content(id)) => local_content(path)? == Some(id),
    })
}

fn remote_cond(remote: &dyn Remote, planned: &Planned, path: &str, c: Option<&RemoteCond>) -> Condition {
    match c {
        Some(RemoteCond::IfMatch(e)) => {
            if planned.planted == Some(PlantedBug::SkipIfMatch) {
                // The planted bug: whatever is there now gets overwritten.
                if let Ok(now) = remote.head(path, None) {
                    return Condition::IfMatch(now.etag);
                }
            }
            Condition::IfMatch(e.clone())
        }
        Some(RemoteCond::IfAbsent) | None => Condition::IfAbsent,
    }
}

/// Downloads `key` (as of the view) into `dest` atomically, verifying its content id.
fn download(
    repo: &Repo,
    remote: &dyn Remote,
    at: Option<Version>,
    key: &str,
    want: ObjectId,
    dest: &Path,
) -> Result<Option<u64>, SyncError> {
    let dir = dest.parent().unwrap_or(repo.root());
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut tmp = tempfile::Builder::new().prefix(".bmsync-").tempfile_in(dir).map_err(io_err(dir))?;
    let mut h = ObjectHasher::new(ObjectKind::Blob);
    let mut n = 0u64;
    {
        let mut tee = Tee { file: tmp.as_file_mut(), hasher: &mut h, n: &mut n };
        match remote.get(key, at, &mut tee) {
            Ok(_) => {}
            Err(RemoteError::NotFound { .. } | RemoteError::PreconditionFailed { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
    if h.finalize() != want {
        // Not what the listing promised: a teammate replaced it; leave it for next round.
        return Ok(None);
    }
    tmp.as_file().sync_all().map_err(io_err(dest))?;
    tmp.persist(dest).map_err(|e| io_err(dest)(e.error))?;
    Ok(Some(n))
}

/// Downloads into the path and notes the result; a lost race is left for next round.
#[allow(clippy::too_many_arguments)]
fn fetch(
    repo: &Repo,
    remote: &dyn Remote,
    at: Option<Version>,
    path: &str,
    key: &str,
    content: ObjectId,
    sides: &mut Sides,
    s: &mut SyncSummary,
) -> Result<(), SyncError> {
    match download(repo, remote, at, key, content, &repo.root().join(path))? {
        Some(n) => {
            s.downloaded += 1;
            s.bytes_down += n;
            sides.local.insert(path.to_owned(), Leaf { kind: EntryKind::File, id: content, size: n });
        }
        None => s.raced.push(path.to_owned()),
    }
    Ok(())
}

struct Tee<'a> {
    file: &'a mut std::fs::File,
    hasher: &'a mut ObjectHasher,
    n: &'a mut u64,
}

impl Write for Tee<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let k = self.file.write(buf)?;
        self.hasher.update(&buf[..k]);
        *self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Moves a local file to the trash inside `.bmsync/`, keeping its path.
fn trash(repo: &Repo, rel: &str) -> Result<(), SyncError> {
    let stamp =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let dest = repo.root().join(STATE_DIR).join(TRASH_DIR).join(stamp.to_string()).join(rel);
    let parent = dest.parent().expect("trash paths have a parent");
    std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    let src = repo.root().join(rel);
    std::fs::rename(&src, &dest).map_err(io_err(&src))
}

/// The name of a conflict copy: `notes/idea.md` → `notes/idea.conflict-CLIENT-TIME.md`.
pub fn conflict_name(path: &str, client: &str, when: &str) -> String {
    let (dir, file) = path.rsplit_once('/').map_or(("", path), |(d, f)| (d, f));
    let (stem, ext) = match file.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s, format!(".{e}")),
        _ => (file, String::new()),
    };
    let name = format!("{stem}.conflict-{client}-{when}{ext}");
    if dir.is_empty() { name } else { format!("{dir}/{name}") }
}

/// Sends a local file (a symlink as its target text) under `cond`, noting the result in
/// `sides` and the summary. `false`: a lost race, left for the next round.
fn upload(
    remote: &dyn Remote,
    root: &Path,
    path: &str,
    content: ObjectId,
    cond: &Condition,
    sides: &mut Sides,
    s: &mut SyncSummary,
) -> Result<bool, SyncError> {
    let file = root.join(path);
    let meta = std::fs::symlink_metadata(&file).map_err(io_err(&file))?;
    // A symlink goes up as its target path, never as what it points at. A file up to
    // `IN_MEMORY_UPLOAD` is read once, and the bytes sent are the bytes hashed, so a file
    // that changes meanwhile is never recorded under the old content id; larger files
    // are checked part by part by the remote.
    let bytes = if meta.file_type().is_symlink() {
        Some(std::fs::read_link(&file).map_err(io_err(&file))?.into_os_string().into_encoded_bytes())
    } else if meta.len() <= IN_MEMORY_UPLOAD {
        Some(std::fs::read(&file).map_err(io_err(&file))?)
    } else {
        None
    };
    if bytes.as_deref().is_some_and(|b| ObjectId::for_blob(b) != content) {
        return Ok(false);
    }
    let size = bytes.as_ref().map_or(meta.len(), |t| t.len() as u64);
    let body = bytes.as_deref().map_or(Body::File(&file), Body::Bytes);
    match remote.put(path, body, content, cond) {
        Ok(w) => {
            s.uploaded += 1;
            s.bytes_up += size;
            sides.remote.insert(path.to_owned(), (w.etag, content, size));
            Ok(true)
        }
        // A race, or the file changed while it was read: re-plan it next round.
        Err(RemoteError::PreconditionFailed { .. } | RemoteError::Other { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[allow(clippy::too_many_lines)]
fn apply_op(
    repo: &Repo,
    remote: &dyn Remote,
    planned: &Planned,
    op: &Op,
    sides: &mut Sides,
    s: &mut SyncSummary,
) -> Result<(), SyncError> {
    let root = repo.root();
    let path = op.path.as_str();
    let abs = root.join(path);
    let at = planned.view.version;
    let pre = &op.precondition;
    let remote_content = op.sides.remote.as_ref().map(|l| l.id);
    let local_leaf = op.sides.local.clone();
    match op.action {
        Action::Upload => {
            let Some(leaf) = local_leaf else { return Ok(()) };
            if !local_ok(&abs, pre.local)? {
                s.raced.push(path.to_owned());
                return Ok(());
            }
            if !upload(
                remote,
                root,
                path,
                leaf.id,
                &remote_cond(remote, planned, path, pre.remote.as_ref()),
                sides,
                s,
            )? {
                s.raced.push(path.to_owned());
            }
        }
        Action::Download => {
            let (Some(content), Some(obj)) = (remote_content, planned.view.objects.get(path)) else {
                return Ok(());
            };
            if !local_ok(&abs, pre.local)? {
                s.raced.push(path.to_owned());
                return Ok(());
            }
            fetch(repo, remote, at, path, &obj.key, content, sides, s)?;
        }
        Action::DeleteRemote => {
            let Some(RemoteCond::IfMatch(etag)) = &pre.remote else { return Ok(()) };
            match remote.delete(path, etag) {
                Ok(()) => {
                    s.deleted_remote += 1;
                    sides.remote.remove(path);
                }
                Err(RemoteError::PreconditionFailed { .. } | RemoteError::NotFound { .. }) => {
                    s.raced.push(path.to_owned());
                }
                Err(e) => return Err(e.into()),
            }
        }
        Action::DeleteLocal => {
            if !local_ok(&abs, pre.local)? {
                s.raced.push(path.to_owned());
                return Ok(());
            }
            trash(repo, path)?;
            s.deleted_local += 1;
            sides.local.remove(path);
        }
        Action::MoveLocal => {
            let Some(from) = &op.from else { return Ok(()) };
            let src = root.join(from);
            if !local_ok(&src, pre.from_local)? || !local_ok(&abs, Some(LocalCond::Absent))? {
                s.raced.push(path.to_owned());
                return Ok(());
            }
            if let Some(parent) = abs.parent() {
                std::fs::create_dir_all(parent).map_err(io_err(parent))?;
            }
            std::fs::rename(&src, &abs).map_err(io_err(&src))?;
            if let Some(l) = sides.local.remove(from) {
                sides.local.insert(path.to_owned(), l);
            }
        }
        Action::MoveRemote => {
            // The content is local (a local rename): send it to the new key, then remove
            // the old key if it still holds what the plan saw.
            let (Some(from), Some(leaf)) = (&op.from, local_leaf) else { return Ok(()) };
            if !upload(
                remote,
                root,
                path,
                leaf.id,
                &remote_cond(remote, planned, path, pre.remote.as_ref()),
                sides,
                s,
            )? {
                s.raced.push(path.to_owned());
                return Ok(());
            }
            if let Some(RemoteCond::IfMatch(etag)) = &pre.from_remote {
                match remote.delete(from, etag) {
                    Ok(()) => {
                        s.deleted_remote += 1;
                        sides.remote.remove(from);
                    }
                    Err(RemoteError::PreconditionFailed { .. } | RemoteError::NotFound { .. }) => {
                        s.raced.push(from.clone());
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Action::Record => s.recorded += 1,
        Action::Conflict => apply_conflict(repo, remote, planned, op, sides, s)?,
        Action::Skip => s.skipped.push(format!("{path}: {:?}", op.reason)),
    }
    Ok(())
}

/// Keeps both versions: the remote one at the path (on both sides), the local one beside
/// it under a `conflict` name (on both sides). Nothing is deleted.
fn apply_conflict(
    repo: &Repo,
    remote: &dyn Remote,
    planned: &Planned,
    op: &Op,
    sides: &mut Sides,
    s: &mut SyncSummary,
) -> Result<(), SyncError> {
    let root = repo.root();
    let path = op.path.as_str();
    let abs = root.join(path);
    let mut report = ConflictReport { path: path.to_owned(), reason: op.reason, local_copy: None };
    let local = op.sides.local.clone().filter(|l| l.kind != EntryKind::Tree);
    let remote_leaf = op.sides.remote.clone().filter(|l| l.kind != EntryKind::Tree);
    if op.reason == Reason::TypeChange || (local.is_none() && remote_leaf.is_none()) {
        s.conflicts.push(report);
        return Ok(());
    }
    // The local version moves aside, under a name that says `conflict`.
    if let Some(l) = &local {
        if local_content(&abs)? != Some(l.id) {
            s.raced.push(path.to_owned());
            return Ok(());
        }
        if remote_leaf.is_some() {
            let when = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                .to_string()
                .replace([':', '-'], "")
                .trim_end_matches('Z')
                .to_owned();
            let copy = conflict_name(path, repo.client_id(), &when);
            let copy_abs = root.join(&copy);
            std::fs::rename(&abs, &copy_abs).map_err(io_err(&abs))?;
            sides.local.remove(path);
            sides.local.insert(copy.clone(), l.clone());
            if !upload(remote, root, &copy, l.id, &Condition::IfAbsent, sides, s)? {
                s.raced.push(copy.clone());
            }
            report.local_copy = Some(copy);
        } else {
            // Edited here, deleted there: the local edit is kept, and sent back.
            if !upload(remote, root, path, l.id, &Condition::IfAbsent, sides, s)? {
                s.raced.push(path.to_owned());
            }
        }
    }
    // The remote version takes the path locally (the teammate's edit is kept).
    if let (Some(r), Some(obj)) = (&remote_leaf, planned.view.objects.get(path)) {
        if local.is_none() && !local_ok(&abs, Some(LocalCond::Absent))? {
            s.raced.push(path.to_owned());
            s.conflicts.push(report);
            return Ok(());
        }
        fetch(repo, remote, planned.view.version, path, &obj.key, r.id, sides, s)?;
    }
    s.conflicts.push(report);
    Ok(())
}

/// Records the new base: every path where both sides were seen to hold the same
/// content; elsewhere the old base's entry stays, so the next sync sees the change.
fn record(
    repo: &Repo,
    remote: &dyn Remote,
    planned: &Planned,
    sides: &Sides,
) -> Result<(ObjectId, Option<Version>), SyncError> {
    let old_leaves = match &planned.base {
        Some((_, Some(tree), _)) => leaves(repo, *tree)?,
        _ => BTreeMap::new(),
    };
    let old_manifest: BTreeMap<&str, &ManifestEntry> = planned
        .base
        .as_ref()
        .map(|b| b.2.entries().iter().map(|e| (e.path.as_str(), e)).collect())
        .unwrap_or_default();
    let mut converged: BTreeMap<String, (Leaf, ManifestEntry)> = BTreeMap::new();
    let paths: BTreeSet<&String> =
        sides.local.keys().chain(sides.remote.keys()).chain(old_leaves.keys()).collect();
    for p in paths {
        match (sides.local.get(p), sides.remote.get(p)) {
            (Some(l), Some((etag, content, size))) if l.id == *content => {
                let entry = ManifestEntry {
                    path: p.clone(),
                    key: p.clone(),
                    etag: etag.clone(),
                    size: *size,
                    content: Some(*content),
                };
                converged.insert(p.clone(), (l.clone(), entry));
            }
            (None, None) => {}
            _ => {
                if let (Some(l), Some(e)) = (old_leaves.get(p), old_manifest.get(p.as_str())) {
                    converged.insert(p.clone(), (l.clone(), (*e).clone()));
                }
            }
        }
    }
    let (root, trees) = build_tree(converged.iter().map(|(p, (l, _))| (p.clone(), l.clone())))
        .map_err(|e| SyncError::Plan(PlanError::RemoteTree(e)))?;
    let batch = repo.store().batch()?;
    for t in trees.values() {
        batch.put(ObjectKind::Tree, &t.encode())?;
    }
    let root = match root {
        Some(r) => r,
        None => batch.put(ObjectKind::Tree, &crate::object::Tree::default().encode())?.0,
    };
    let manifest = Manifest::new(converged.into_values().map(|(_, e)| e).collect())
        .map_err(|e| SyncError::Io { path: PathBuf::from("manifest"), source: std::io::Error::other(e) })?;
    let (manifest_id, _) = batch.put(ObjectKind::Manifest, &manifest.encode())?;
    batch.commit()?;
    // Pair the new base with a snapshot taken after applying. A teammate's write that lands
    // before it is in the snapshot but not in this manifest (which holds only ETags we
    // wrote or listed), so the next sync still sees it as a remote change.
    let snapshot = if remote.capabilities().snapshots {
        Some(remote.snapshot(Some(&format!("bmsync-{}", repo.client_id())))?)
    } else {
        planned.view.version
    };
    let old_base = planned.base.as_ref().map(|b| b.0);
    let head = repo.head()?;
    let parents: Vec<ObjectId> = old_base.into_iter().chain(head.filter(|h| Some(*h) != old_base)).collect();
    let commit = Commit {
        tree: root,
        parents,
        client_id: repo.client_id().to_owned(),
        timestamp_ns: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
        message: "sync".to_owned(),
        baseline: Some(RemoteBaseline { remote: remote.url(), snapshot, manifest: manifest_id }),
    };
    let id = repo.store().put_commit(&commit)?;
    repo.store().update_ref(REF_BASE, old_base, Some(id))?;
    repo.store().update_ref(REF_HEAD, head, Some(id))?;
    Ok((id, snapshot))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_names_say_conflict_and_keep_the_extension() {
        assert_eq!(
            conflict_name("notes/idea.md", "alice", "20261125T2330"),
            "notes/idea.conflict-alice-20261125T2330.md"
        );
        assert_eq!(conflict_name("README", "b", "t"), "README.conflict-b-t");
        assert_eq!(conflict_name("a/.hidden", "b", "t"), "a/.hidden.conflict-b-t");
    }
}
