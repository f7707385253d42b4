//! Apply and record: carries out a plan against the folder and the remote, under the
//! plan's preconditions, then records the converged state as the new sync base.
//!
//! Every remote write is conditional and every local write is atomic (temporary file,
//! fsync, rename) after checking the file still holds what the plan saw. A lost race
//! leaves that path unsynced for the next round; it is never retried blindly. The new
//! base names a path as synced only where both sides were seen to agree. An intent
//! journal in the store lets the next run clean up after a crash.

mod conflict;
mod journal;
mod ops;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub use crate::layout::TRASH_DIR;
pub use journal::{RecoverError, Recovery, TEMP_PREFIX};

use crate::id::{ObjectId, ObjectKind};
use unicode_normalization::UnicodeNormalization;

use crate::object::{Commit, Manifest, ManifestEntry, RemoteBaseline, check_path};
use crate::reconcile::{
    Action, Base, Change, DiffStats, Leaf, ListingStatus, Op, Overlay, Plan, PlanError, PlanInput, Reason,
    RemoteObject, build_tree, case_collisions, diff_trees, plan,
};
use crate::remote::{Listed, Remote, RemoteError, RemoteView, SkippedKey, Version};
use crate::repo::{REF_BASE, REF_HEAD, Repo, RepoError};
use crate::store::StoreError;
use crate::worktree::{Collision, CollisionKind, IgnoreRules, Snapshot, global_ignore_files};
use ops::{Effects, RemoteSide};

/// Rounds of plan-and-apply a sync runs while teammates' races leave paths unsynced.
const MAX_ROUNDS: usize = 3;
/// Transfers run at once by default.
const DEFAULT_JOBS: usize = 8;
/// How long a sync waits for another one on the same folder by default.
pub const DEFAULT_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);
/// How long deleted files stay in the trash.
const TRASH_KEEP: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// Where a sync reports its progress (the CLI draws a bar; the default draws nothing).
pub trait Progress: Sync {
    /// A round starts, with this many operations moving this many bytes.
    fn start(&self, _ops: u64, _bytes: u64) {}
    /// One operation finished, having moved `bytes`.
    fn done(&self, _path: &str, _bytes: u64) {}
    /// The sync finished (or stopped).
    fn finish(&self) {}
    /// Another run holds the folder's sync lock (process `pid`, when known): this one
    /// waits for it (up to [`SyncOptions::lock_wait`]).
    fn waiting_for_lock(&self, _pid: Option<u32>) {}
}

/// Reports nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// Which sides a run may change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Both: `sync`.
    #[default]
    Both,
    /// Only the remote: `push`. Local files are never written or deleted.
    Push,
    /// Only the folder: `pull`. The remote is never written or deleted.
    Pull,
}

/// How conflicts are resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnConflict {
    /// Keep both versions, the local one under a `conflict` name (the default of `sync`).
    KeepBoth,
    /// The local version wins (pushed under If-Match, so an unseen newer write still
    /// stops it).
    KeepLocal,
    /// The remote version wins; the local one goes to the trash.
    KeepRemote,
}

/// How to sync.
#[derive(Clone, Debug, Default)]
pub struct SyncOptions {
    /// The most deletions allowed (default: half of the base's files).
    pub max_delete: Option<usize>,
    /// Accept an empty remote listing, against a base that had files, as "everything was
    /// deleted there". Off by default: that usually means a wrong prefix or a bad listing.
    pub allow_empty_remote: bool,
    /// Which sides may change (`sync`, `push`, `pull`).
    pub direction: Direction,
    /// With push or pull: carry deletions to the receiving side too.
    pub delete: bool,
    /// How to resolve conflicts. `None`: `sync` keeps both; `push` and `pull` refuse to
    /// start while there are conflicts.
    pub on_conflict: Option<OnConflict>,
    /// Go on with a remote that ignores conditional PUTs, accepting that a teammate's
    /// concurrent write can be silently overwritten (a folder only one person syncs).
    /// Recorded in the store, for this remote only; every sync still warns.
    pub accept_lost_updates: bool,
    /// How long to wait for another sync of the same folder to finish (default
    /// [`DEFAULT_LOCK_WAIT`]); then the sync stops with [`RepoError::Busy`].
    pub lock_wait: Option<std::time::Duration>,
    /// Operations run at once (default 8). `Some(1)` runs them in plan order on the
    /// calling thread, which the simulator relies on for reproducible traces.
    pub jobs: Option<usize>,
    /// A known bug to switch on, so the simulator can show it would catch it. Tests only.
    #[doc(hidden)]
    pub planted: Option<PlantedBug>,
    /// The time part of conflict-copy names, instead of the wall clock, so that a
    /// simulation replays to the same names. Tests only.
    #[doc(hidden)]
    pub conflict_stamp: Option<String>,
}

impl SyncOptions {
    fn deletes_remote(&self) -> bool {
        match self.direction {
            Direction::Both => true,
            Direction::Push => self.delete,
            Direction::Pull => false,
        }
    }

    fn deletes_local(&self) -> bool {
        match self.direction {
            Direction::Both => true,
            Direction::Pull => self.delete,
            Direction::Push => false,
        }
    }

    /// Whether this run carries out `op` (push and pull hold back the other side's work).
    fn carries(&self, op: &Op) -> bool {
        match op.action {
            Action::Upload | Action::MoveRemote => self.direction != Direction::Pull,
            Action::Download | Action::MoveLocal => self.direction != Direction::Push,
            Action::DeleteRemote => self.deletes_remote(),
            Action::DeleteLocal => self.deletes_local(),
            Action::Record | Action::Conflict | Action::Skip => true,
        }
    }
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
    /// Conflicts resolved one way, as `--on-conflict` asked.
    pub resolved: Vec<String>,
    /// Paths left unsynced because a teammate (or an editor) changed them meanwhile.
    pub raced: Vec<String>,
    /// Paths left as they are, with why (protected, ignored, type changes...).
    pub skipped: Vec<String>,
    /// Changes left for the other direction (a push holds back downloads, and so on).
    pub held_back: u64,
    /// Remote keys reported and skipped.
    pub remote_skipped: Vec<SkippedKey>,
    /// Names that collide: only one of each syncs; the others are left as they are.
    pub collisions: Vec<Collision>,
    /// Local paths the scan left out (a symlink out of the folder, a special file, a
    /// name that is not UTF-8), with why.
    pub local_skipped: Vec<crate::worktree::Skipped>,
    /// What was cleaned up after an interrupted earlier sync.
    pub recovered: Option<Recovery>,
    /// Paths whose remote object changed between our writes and the snapshot taken
    /// after them: left unsynced, so the next sync sees the teammate's change.
    pub changed_after_apply: Vec<String>,
    /// The new base commit.
    pub base: Option<ObjectId>,
    /// The snapshot the new base is paired with (taken after applying), when the remote
    /// has snapshots.
    pub snapshot: Option<Version>,
    /// Plan-and-apply rounds run.
    pub rounds: usize,
    /// Warnings to repeat to the user (a remote synced with lost updates accepted).
    pub warnings: Vec<String>,
}

impl SyncSummary {
    fn absorb(&mut self, o: Self) {
        self.uploaded += o.uploaded;
        self.downloaded += o.downloaded;
        self.deleted_local += o.deleted_local;
        self.deleted_remote += o.deleted_remote;
        self.recorded += o.recorded;
        self.bytes_up += o.bytes_up;
        self.bytes_down += o.bytes_down;
        self.conflicts.extend(o.conflicts);
        self.remote_skipped.extend(o.remote_skipped);
        self.resolved.extend(o.resolved);
        self.raced.extend(o.raced);
        self.skipped.extend(o.skipped);
    }
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
    /// Cleaning up after an interrupted sync failed.
    #[error("cleaning up after an interrupted sync: {0}")]
    Recover(#[from] RecoverError),
    /// A push or pull found conflicts and was not told how to resolve them.
    #[error("{} conflicts, so nothing was changed: {}", .paths.len(), .paths.join(", "))]
    Conflicts {
        /// The conflicting paths.
        paths: Vec<String>,
    },
    /// The remote ignores conditional PUTs and lost updates were not accepted: nothing
    /// was written.
    #[error("{detail}; nothing was written")]
    LostUpdates {
        /// Which guarantee is missing and what it would cost.
        detail: String,
    },
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
    /// Names that collide (Unicode forms in the folder; on a folder that ignores case,
    /// remote names that would alias a local one): only one of each syncs.
    pub collisions: Vec<Collision>,
    base: Option<(ObjectId, Option<ObjectId>, Manifest)>,
}

/// Scans, reads the remote at one snapshot, and plans. With `dry_run` it writes nothing
/// at all (for `bmsync plan`: give it a read-only repo and remote): the remote is read
/// live, without a snapshot, and the scan leaves the stat cache and its stamp alone.
/// Otherwise the scan stores the folder's objects, ready for the apply step. No file is
/// touched and no ref moves either way.
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
    // A plan takes no snapshot: it reads the live state (taking one is a write).
    let mut view = RemoteView::fetch_with(remote, base.as_ref().map(|b| &b.2), ignored_now, !dry_run)?;
    let mut protected: BTreeSet<String> = local.report.protected_paths().into_iter().collect();
    // A key in another Unicode form (which the view skips) still holds that note: its NFC
    // path is never taken for deleted there.
    // (Where the bucket holds the NFC key as well, that one syncs as usual.)
    protected.extend(
        view.skipped
            .iter()
            .map(|k| k.key.nfc().collect::<String>())
            .filter(|p| check_path(p).is_ok() && !view.objects.contains_key(p)),
    );
    let mut collisions = local.report.collisions.clone();
    if repo.case_insensitive() {
        // A second spelling of a name the folder already holds would alias it: never
        // written here, never deleted there, and reported.
        // Paths the scan left out (a symlink out of the folder...) are there too.
        let local_paths = leaves(repo, local.root, &local.unstored_trees)?;
        let here = local_paths.keys().chain(protected.iter()).map(String::as_str);
        // A spelling the last sync left as it is in the bucket writes nothing here: if
        // the folder now spells it otherwise (a rename of its case), the old key goes
        // the way of any local rename, under If-Match.
        let unchanged =
            |p: &str, etag: &str| base.as_ref().and_then(|b| b.2.get(p)).is_some_and(|e| e.etag == etag);
        let there = view.objects.iter().filter(|(p, e)| !unchanged(p, &e.etag)).map(|(p, _)| p.as_str());
        for c in case_collisions(here, there) {
            protected.insert(c.refused.clone());
            collisions.push(Collision {
                kind: CollisionKind::Case,
                paths: vec![c.holder.clone(), c.refused],
                synced: c.holder,
            });
        }
    }
    let ignored: BTreeSet<String> = base
        .as_ref()
        .map(|b| b.2.entries().iter().map(|e| e.path.clone()).filter(|p| ignored_now(p)).collect())
        .unwrap_or_default();
    let reader = repo.store().reader()?;
    let trees = Overlay { mem: &local.unstored_trees, inner: &reader };
    loop {
        let remote_objects: BTreeMap<String, RemoteObject> = view
            .objects
            .iter()
            .map(|(p, e)| {
                let o = RemoteObject {
                    key: e.key.clone(),
                    etag: e.etag.clone(),
                    size: e.size,
                    kind: e.kind,
                    content: Some(e.content),
                };
                (p.clone(), o)
            })
            .collect();
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
        // A content id from metadata is a hint: another tool may have replaced the bytes
        // and kept the metadata. Where the plan would skip a transfer because of it
        // ("same content", "only the ETag changed"), hash the object first, and plan
        // again if the hint was wrong. Downloads verify their bytes anyway.
        let hinted: Vec<String> = plan
            .ops
            .iter()
            .filter(|o| {
                o.action == Action::Record
                    && matches!(o.reason, Reason::BothAdded | Reason::BothChanged | Reason::RemoteEtagChanged)
                    && view.objects.get(&o.path).is_some_and(|e| e.hinted)
            })
            .map(|o| o.path.clone())
            .collect();
        let mut wrong = false;
        for p in &hinted {
            wrong |= view.verify_hint(remote, p)?;
        }
        if !wrong {
            return Ok(Planned { local, view, plan, collisions, base });
        }
    }
}

/// What is known of each side while applying: path → leaf, path → (ETag, content, size).
struct Sides {
    local: BTreeMap<String, Leaf>,
    remote: BTreeMap<String, RemoteSide>,
}

impl Sides {
    fn fold(&mut self, fx: &mut Effects) {
        for (p, l) in fx.local.drain(..) {
            match l {
                Some(l) => self.local.insert(p, l),
                None => self.local.remove(&p),
            };
        }
        for (p, r) in fx.remote.drain(..) {
            match r {
                Some(r) => self.remote.insert(p, r),
                None => self.remote.remove(&p),
            };
        }
    }
}

/// One round's context, shared by the operations running at once.
struct Round<'a> {
    repo: &'a Repo,
    remote: &'a dyn Remote,
    planned: &'a Planned,
    opts: &'a SyncOptions,
    /// When the round started (UNIX ns): names its temporary files and dates its
    /// multipart uploads for recovery.
    started_ns: Version,
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
    // One applying run per folder at a time (the guard is a no-op when the caller
    // already holds the lock through `Repo::open_locked`).
    let _lock = repo
        .lock_sync(opts.lock_wait.unwrap_or(DEFAULT_LOCK_WAIT), &mut |pid| progress.waiting_for_lock(pid))?;
    let result = sync_rounds(repo, remote, opts, progress);
    progress.finish();
    result
}

fn now_ns() -> Version {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Refuses a remote that ignores conditional PUTs (as its capabilities report what its
/// probe found), before anything is written, unless lost updates are accepted: by
/// `accept_lost_updates` (which records the opt-in) or by an opt-in recorded for this
/// remote. Returns the warning to repeat on every sync then. Every sync entry (sync,
/// push, pull, watch) calls this first; [`sync`] does.
pub fn check_guarantees(
    repo: &Repo,
    remote: &dyn Remote,
    accept_lost_updates: bool,
) -> Result<Vec<String>, SyncError> {
    if remote.capabilities().conditional_put {
        return Ok(Vec::new());
    }
    let detail = repo
        .probe_record()?
        .filter(|r| r.remote == remote.url())
        .and_then(|r| r.missing_put())
        .unwrap_or_else(|| {
            format!(
                "{} ignores conditional PUTs: a teammate's concurrent write would be silently overwritten (lost updates)",
                remote.url()
            )
        });
    let stored = repo.remote().is_some() && repo.lost_updates_accepted()?;
    if !(accept_lost_updates || stored) {
        return Err(SyncError::LostUpdates { detail });
    }
    if accept_lost_updates && !stored && repo.remote().is_some() {
        repo.accept_lost_updates()?;
    }
    Ok(vec![format!(
        "{detail}; going on because lost updates were accepted (--accept-lost-updates): sync this folder from one place only"
    )])
}

fn sync_rounds(
    repo: &Repo,
    remote: &dyn Remote,
    opts: &SyncOptions,
    progress: &dyn Progress,
) -> Result<SyncSummary, SyncError> {
    let warnings = check_guarantees(repo, remote, opts.accept_lost_updates)?;
    let mut summary =
        SyncSummary { recovered: journal::recover(repo, remote)?, warnings, ..SyncSummary::default() };
    ops::prune_trash(repo.root(), TRASH_KEEP);
    for round in 1..=MAX_ROUNDS {
        summary.rounds = round;
        summary.raced.clear();
        summary.skipped.clear();
        let planned = make_plan(repo, remote, opts, false)?;
        summary.remote_skipped.clone_from(&planned.view.skipped);
        summary.collisions.clone_from(&planned.collisions);
        summary.local_skipped.clone_from(&planned.local.report.skipped);
        let carried: Vec<&Op> = planned.plan.ops.iter().filter(|o| opts.carries(o)).collect();
        summary.held_back = (planned.plan.ops.len() - carried.len()) as u64;
        if opts.direction != Direction::Both && opts.on_conflict.is_none() {
            let paths: Vec<String> =
                carried.iter().filter(|o| o.action == Action::Conflict).map(|o| o.path.clone()).collect();
            if !paths.is_empty() {
                return Err(SyncError::Conflicts { paths });
            }
        }
        if carried.iter().all(|o| o.action == Action::Skip) && planned.base.is_some() {
            // Nothing to do, and the base already says so: no write at all.
            summary.skipped = carried.iter().map(|o| format!("{}: {:?}", o.path, o.reason)).collect();
            summary.base = planned.base.as_ref().map(|b| b.0);
            summary.snapshot = planned.view.version;
            break;
        }
        let mut sides = Sides {
            local: leaves(repo, planned.local.root, &planned.local.unstored_trees)?,
            remote: planned
                .view
                .objects
                .iter()
                .map(|(p, e)| {
                    let side =
                        RemoteSide { etag: e.etag.clone(), content: e.content, size: e.size, kind: e.kind };
                    (p.clone(), side)
                })
                .collect(),
        };
        let bytes: u64 = carried
            .iter()
            .filter_map(|o| match o.action {
                Action::Download => o.sides.remote.as_ref(),
                Action::Upload | Action::MoveRemote => o.sides.local.as_ref(),
                _ => None,
            })
            .map(|l| l.size)
            .sum();
        progress.start(carried.len() as u64, bytes);
        if opts.planted == Some(PlantedBug::RecordBaseEarly) {
            record(repo, remote, &planned, &optimistic(&planned, &sides), false)?;
        }
        let r = Round { repo, remote, planned: &planned, opts, started_ns: now_ns() };
        let jr =
            journal::Journal::begin(repo, carried.iter().enumerate().map(|(i, o)| r.intent(i, o)).collect())?;
        let mut done = SyncSummary::default();
        let failed = r.run(&carried, &jr, &mut sides, &mut done, progress);
        let wrote = done.uploaded + done.deleted_remote > 0;
        summary.absorb(done);
        // Even after a failure, record what did succeed: the paths both sides were seen
        // to agree on.
        let (base, snapshot, moved) = record(repo, remote, &planned, &sides, wrote)?;
        jr.finish()?;
        summary.changed_after_apply.extend(moved);
        summary.base = Some(base);
        summary.snapshot = snapshot;
        if let Some(e) = failed {
            return Err(e);
        }
        if summary.raced.is_empty() {
            break;
        }
    }
    remember_collisions(repo, &summary.collisions)?;
    summary.remote_skipped.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(summary)
}

impl Round<'_> {
    fn intent(&self, i: usize, op: &Op) -> journal::Entry {
        let fetches = matches!(op.action, Action::Download | Action::Conflict)
            || (op.action == Action::Skip && op.reason == Reason::RemoteKeyCollision);
        let size = op.sides.local.as_ref().map_or(0, |l| l.size);
        journal::Entry {
            op: format!("{:?}", op.action).to_lowercase(),
            path: op.path.clone(),
            tmp: fetches.then(|| journal::temp_path(&self.disk_rel(&op.path), i, self.started_ns)),
            multipart: matches!(op.action, Action::Upload | Action::MoveRemote | Action::Conflict)
                && size > ops::IN_MEMORY_UPLOAD,
            started_ns: self.started_ns,
            done: false,
        }
    }

    /// Runs the operations, several at once unless `jobs` is 1, folding each one's
    /// effects into `sides` as it ends. The first hard error stops new operations from
    /// starting; the ones running finish. Returns that error.
    fn run(
        &self,
        carried: &[&Op],
        jr: &journal::Journal<'_>,
        sides: &mut Sides,
        summary: &mut SyncSummary,
        progress: &dyn Progress,
    ) -> Option<SyncError> {
        let jobs = self.opts.jobs.unwrap_or(DEFAULT_JOBS).clamp(1, carried.len().max(1));
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let shared = Mutex::new((sides, summary, None::<SyncError>));
        let work = || {
            while !stop.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(op) = carried.get(i) else { break };
                let mut fx = Effects::default();
                let result = self.apply(i, op, &mut fx).and_then(|()| jr.done(i).map_err(SyncError::from));
                let moved = fx.summary.bytes_up + fx.summary.bytes_down;
                {
                    let mut g = shared.lock().expect("no operation panics while holding the lock");
                    let (sides, summary, first) = &mut *g;
                    sides.fold(&mut fx);
                    summary.absorb(fx.summary);
                    if let Err(e) = result {
                        stop.store(true, Ordering::Relaxed);
                        first.get_or_insert(e);
                    }
                }
                progress.done(&op.path, moved);
            }
        };
        if jobs == 1 {
            work();
        } else {
            std::thread::scope(|s| {
                for _ in 0..jobs {
                    s.spawn(work);
                }
            });
        }
        shared.into_inner().expect("no operation panics while holding the lock").2
    }
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
                    let side = RemoteSide {
                        etag: "\"planned\"".to_owned(),
                        content: l.id,
                        size: l.size,
                        kind: l.kind,
                    };
                    out.remote.insert(p, side);
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

fn leaves(
    repo: &Repo,
    root: ObjectId,
    unstored: &std::collections::HashMap<ObjectId, crate::object::Tree>,
) -> Result<BTreeMap<String, Leaf>, SyncError> {
    let reader = repo.store().reader()?;
    let trees = Overlay { mem: unstored, inner: &reader };
    let mut st = DiffStats::default();
    Ok(diff_trees(&trees, None, Some(root), &mut st)
        .map_err(StoreError::from)?
        .into_iter()
        .filter_map(|c| match c {
            Change::Added { path, new } => Some((path, new)),
            _ => None,
        })
        .collect())
}

/// Keeps the case collisions of this sync for `status` (which reads no remote). Written
/// only when they changed.
fn remember_collisions(repo: &Repo, collisions: &[Collision]) -> Result<(), SyncError> {
    let case: Vec<&Collision> = collisions.iter().filter(|c| c.kind == CollisionKind::Case).collect();
    let text = serde_json::to_vec(&case).expect("collisions serialise");
    let old = repo.store().meta(crate::repo::META_COLLISIONS)?;
    if old.as_deref().unwrap_or(b"[]") != text.as_slice() {
        repo.store().set_meta(crate::repo::META_COLLISIONS, &text)?;
    }
    Ok(())
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

/// Takes the snapshot a new base is paired with and, after our own writes, lists the
/// remote at it: key → ETag.
fn verified_snapshot(
    repo: &Repo,
    remote: &dyn Remote,
    wrote: bool,
) -> Result<(Version, Option<BTreeMap<String, String>>), RemoteError> {
    // Unique names: a bucket may refuse a snapshot name it already has.
    let v = remote.snapshot(Some(&format!("bmsync-{}-{}", repo.client_id(), now_ns())))?;
    if !wrote {
        return Ok((v, None));
    }
    let mut seen = BTreeMap::new();
    remote.list(Some(v), &mut |l| {
        if let Listed::Object(o) = l {
            seen.insert(o.key, o.etag);
        }
    })?;
    Ok((v, Some(seen)))
}

/// Records the new base: every path where both sides were seen to hold the same
/// content; elsewhere the old base's entry stays, so the next sync sees the change.
///
/// On a snapshot-enabled remote the base is paired with a new snapshot taken after
/// applying. After remote writes (`wrote`), the remote is listed at that snapshot, and a
/// path enters the base only if the snapshot shows it as we left it: a teammate's write
/// that landed between our apply and the snapshot stays unsynced, so the next sync
/// treats it as a remote change. Returns those paths too.
fn record(
    repo: &Repo,
    remote: &dyn Remote,
    planned: &Planned,
    sides: &Sides,
    wrote: bool,
) -> Result<(ObjectId, Option<Version>, Vec<String>), SyncError> {
    let (snapshot, seen) = if remote.capabilities().snapshots {
        // If the remote fails now (the outage that stopped the apply, say), the base is
        // still recorded, unpaired: its manifest holds only ETags we wrote or listed,
        // which stays true whatever landed after them.
        verified_snapshot(repo, remote, wrote).map_or((None, None), |(v, seen)| (Some(v), seen))
    } else {
        (None, None)
    };
    let old_leaves = match &planned.base {
        Some((_, Some(tree), _)) => leaves(repo, *tree, &std::collections::HashMap::new())?,
        _ => BTreeMap::new(),
    };
    let old_manifest: BTreeMap<&str, &ManifestEntry> = planned
        .base
        .as_ref()
        .map(|b| b.2.entries().iter().map(|e| (e.path.as_str(), e)).collect())
        .unwrap_or_default();
    let mut converged: BTreeMap<String, (Leaf, ManifestEntry)> = BTreeMap::new();
    let mut moved = Vec::new();
    let paths: BTreeSet<&String> =
        sides.local.keys().chain(sides.remote.keys()).chain(old_leaves.keys()).collect();
    for p in paths {
        let agreed = match (sides.local.get(p), sides.remote.get(p)) {
            (Some(l), Some(r)) if l.id == r.content && l.kind == r.kind => {
                if seen.as_ref().is_some_and(|s| s.get(p.as_str()) != Some(&r.etag)) {
                    moved.push(p.clone());
                    None
                } else {
                    Some((l, r))
                }
            }
            _ => None,
        };
        if let Some((l, r)) = agreed {
            let entry = ManifestEntry {
                path: p.clone(),
                key: p.clone(),
                etag: r.etag.clone(),
                size: r.size,
                content: Some(r.content),
                kind: r.kind,
            };
            converged.insert(p.clone(), (l.clone(), entry));
        } else if (sides.local.contains_key(p) || sides.remote.contains_key(p))
            && let (Some(l), Some(e)) = (old_leaves.get(p), old_manifest.get(p.as_str()))
        {
            converged.insert(p.clone(), (l.clone(), (*e).clone()));
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
    let old_base = planned.base.as_ref().map(|b| b.0);
    let head = repo.head()?;
    let parents: Vec<ObjectId> = old_base.into_iter().chain(head.filter(|h| Some(*h) != old_base)).collect();
    let commit = Commit {
        tree: root,
        parents,
        client_id: repo.client_id().to_owned(),
        timestamp_ns: i64::try_from(now_ns()).unwrap_or(i64::MAX),
        message: "sync".to_owned(),
        baseline: Some(RemoteBaseline { remote: remote.url(), snapshot, manifest: manifest_id }),
    };
    let id = repo.store().put_commit(&commit)?;
    repo.store().update_ref(REF_BASE, old_base, Some(id))?;
    repo.store().update_ref(REF_HEAD, head, Some(id))?;
    Ok((id, snapshot, moved))
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
