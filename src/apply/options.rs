//! What a sync is told (options, progress) and what it tells back (summary, errors).

use std::path::{Path, PathBuf};

use super::{RecoverError, Recovery};
use crate::id::ObjectId;
use crate::reconcile::{Action, Op, PlanError, Reason};
use crate::remote::{RemoteError, SkippedKey, Version};
use crate::repo::RepoError;
use crate::store::StoreError;
use crate::worktree::Collision;

/// Rounds of plan-and-apply a sync runs while teammates' races leave paths unsynced.
pub(super) const MAX_ROUNDS: usize = 3;
/// Transfers run at once by default.
pub(super) const DEFAULT_JOBS: usize = 8;
/// How long a sync waits for another one on the same folder by default.
pub const DEFAULT_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);
/// How long deleted files stay in the trash.
pub(super) const TRASH_KEEP: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

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

/// What a three-way merge whose edits overlap leaves behind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictStyle {
    /// The remote version at the path, this client's in a conflict copy beside it (no
    /// markers in any note).
    #[default]
    Copy,
    /// One file with diff3-style markers (as git writes them), on both sides.
    Markers,
}

/// How to sync. Start from `SyncOptions::default()` and set the fields wanted; new
/// fields may come, so it is built that way rather than written out whole.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
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
    /// What a merge whose edits overlap leaves: by default a conflict copy; markers only
    /// when asked.
    pub conflict_style: ConflictStyle,
    /// A known bug to switch on, so the simulator can show it would catch it. Only with
    /// the `test-hooks` feature, which the test suite turns on.
    #[cfg(feature = "test-hooks")]
    pub planted: Option<PlantedBug>,
    /// The time part of conflict-copy names, instead of the wall clock, so that a
    /// simulation replays to the same names. Only with the `test-hooks` feature.
    #[cfg(feature = "test-hooks")]
    pub conflict_stamp: Option<String>,
}

impl SyncOptions {
    /// Whether the planted bug `bug` is on (never, without the `test-hooks` feature).
    pub(super) fn planted(&self, bug: PlantedBug) -> bool {
        #[cfg(feature = "test-hooks")]
        return self.planted == Some(bug);
        #[cfg(not(feature = "test-hooks"))]
        {
            let _ = bug;
            false
        }
    }

    /// The fixed time part of conflict-copy names, if a test set one.
    pub(super) fn conflict_stamp(&self) -> Option<String> {
        #[cfg(feature = "test-hooks")]
        return self.conflict_stamp.clone();
        #[cfg(not(feature = "test-hooks"))]
        None
    }

    pub(super) fn deletes_remote(&self) -> bool {
        match self.direction {
            Direction::Both => true,
            Direction::Push => self.delete,
            Direction::Pull => false,
        }
    }

    pub(super) fn deletes_local(&self) -> bool {
        match self.direction {
            Direction::Both => true,
            Direction::Pull => self.delete,
            Direction::Push => false,
        }
    }

    /// Whether this run carries out `op` (push and pull hold back the other side's work).
    pub(super) fn carries(&self, op: &Op) -> bool {
        match op.action {
            // A move that also brings the other side's edit changes both sides.
            Action::MoveRemote if matches!(op.then, Some(Action::Download | Action::Merge)) => {
                self.direction == Direction::Both
            }
            Action::MoveLocal if matches!(op.then, Some(Action::Upload | Action::Merge)) => {
                self.direction == Direction::Both
            }
            Action::Upload | Action::MoveRemote => self.direction != Direction::Pull,
            Action::Download | Action::MoveLocal => self.direction != Direction::Push,
            Action::DeleteRemote => self.deletes_remote(),
            Action::DeleteLocal => self.deletes_local(),
            Action::Record | Action::Conflict | Action::Merge | Action::Skip => true,
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
    /// Move a remote object by copying it, and leave the old key: a rename becomes a
    /// copy.
    MoveKeepsSource,
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
    /// Files moved locally to follow a rename made on the remote.
    pub moved_local: u64,
    /// Remote objects moved (copied within the bucket, then deleted) to follow a local
    /// rename.
    pub moved_remote: u64,
    /// Renamed on one side and deleted on the other: kept at the new path (path, old
    /// path).
    pub renames_kept: Vec<(String, String)>,
    /// Conflicts: both versions kept, the local one under a `conflict` name.
    pub conflicts: Vec<ConflictReport>,
    /// Files both sides edited whose edits merged: one merged file on both sides.
    pub merged: Vec<MergeReport>,
    /// Conflicts resolved one way, as `--on-conflict` asked.
    pub resolved: Vec<String>,
    /// Paths left unsynced because a teammate (or an editor) changed them meanwhile.
    pub raced: Vec<String>,
    /// Paths left as they are, with why (protected, ignored, type changes...).
    pub skipped: Vec<String>,
    /// Changes left for the other direction (a push holds back downloads, and so on).
    pub held_back: u64,
    /// Deletions a push or pull left undone because `--delete` was not given.
    pub held_deletions: u64,
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
    /// The requests this sync made, and the bytes they moved.
    pub requests: crate::remote::RequestCounts,
    /// Warnings to repeat to the user (a remote synced with lost updates accepted).
    pub warnings: Vec<String>,
    /// Every conflict still open after this sync, this sync's and earlier ones'
    /// (`format-spec/conflicts.md`).
    pub open_conflicts: Vec<crate::conflicts::ConflictRecord>,
}

impl SyncSummary {
    pub(super) fn absorb(&mut self, o: Self) {
        self.uploaded += o.uploaded;
        self.downloaded += o.downloaded;
        self.deleted_local += o.deleted_local;
        self.deleted_remote += o.deleted_remote;
        self.recorded += o.recorded;
        self.bytes_up += o.bytes_up;
        self.bytes_down += o.bytes_down;
        self.moved_local += o.moved_local;
        self.moved_remote += o.moved_remote;
        self.renames_kept.extend(o.renames_kept);
        self.conflicts.extend(o.conflicts);
        self.merged.extend(o.merged);
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
    /// The content ids of the three sides (absent: none, or a folder).
    pub base: Option<ObjectId>,
    /// This client's.
    pub local: Option<ObjectId>,
    /// The bucket's.
    pub remote: Option<ObjectId>,
    /// For a note, the frontmatter keys both sides changed differently.
    pub keys: Vec<String>,
    /// For `rename_rename`: the path this client had renamed the file to.
    pub renamed: Option<String>,
}

impl ConflictReport {
    /// A report of `op`'s conflict, with its sides' ids.
    pub(super) fn of(op: &Op, reason: Reason) -> Self {
        let id = |l: &Option<crate::reconcile::Leaf>| l.as_ref().filter(|l| !l.kind.is_tree()).map(|l| l.id);
        Self {
            path: op.path.clone(),
            reason,
            local_copy: None,
            base: id(&op.sides.base),
            local: id(&op.sides.local),
            remote: id(&op.sides.remote),
            keys: Vec::new(),
            renamed: op.from.clone().filter(|_| reason == Reason::RenameRename),
        }
    }
}

/// A three-way merge that went through.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MergeReport {
    /// The path.
    pub path: String,
    /// The base version merged from.
    pub base: ObjectId,
    /// This client's version.
    pub local: ObjectId,
    /// The bucket's version.
    pub remote: ObjectId,
    /// The merged file, now on both sides.
    pub merged: ObjectId,
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

pub(super) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SyncError + '_ {
    move |source| SyncError::Io { path: path.to_owned(), source }
}
