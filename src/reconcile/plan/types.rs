//! What the planner takes and gives: its input, operations, plans and errors.

use std::collections::{BTreeMap, BTreeSet};

use super::BuildTreeError;
use crate::id::ObjectId;
use crate::object::{EntryKind, Manifest};
use crate::reconcile::diff::Leaf;
use crate::reconcile::merge::Merge;
use crate::reconcile::source::{TreeReadError, TreeSource};

/// The version of the plan's JSON form (`format-spec/plan.md`).
pub const PLAN_VERSION: u32 = 4;

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
    /// The tree [`build_tree`](super::build_tree) makes of the manifest's entries that
    /// have a content id, when the caller has it (readable from `trees`): the planner
    /// then patches it with the listing's differences instead of building the remote
    /// tree from the whole listing. `None` costs time, never correctness.
    pub manifest_tree: Option<ObjectId>,
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
    /// Judges edited renames (`None`: only renames with the same content are paired).
    pub similarity: Option<&'a dyn super::Similarity>,
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
    /// Both sides edited a text file: merge the two edits three ways, and put the merged
    /// file on both sides (an `edit_edit` conflict if the edits overlap).
    Merge,
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
    /// Renamed on one side, deleted on the other: the content is kept at the new path (a
    /// rename is an intent to keep).
    RenameDelete,
    /// Conflict: renamed on both sides to different paths. The remote's path wins and the
    /// local file follows it; `from` names the local path.
    RenameRename,
    /// Added on one side to a folder the other side renamed: the file follows the folder.
    FolderRenamed,
    /// Deleted on one side while the other side deleted another path holding the same
    /// content: carrying both deletions out would leave that content nowhere, so this
    /// path is restored from the side that still has it instead.
    LastCopy,
}

impl Action {
    /// The action's name as the plan's JSON spells it (`delete_remote`); the journal
    /// uses it too.
    pub fn name(self) -> String {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(s)) => s,
            other => unreachable!("an action serialises as a string, not {other:?}"),
        }
    }

    /// The action in plain words, for people: `upload`, `delete there`, `move here`.
    pub const fn words(self) -> &'static str {
        match self {
            Self::Upload => "upload",
            Self::Download => "download",
            Self::DeleteRemote => "delete there",
            Self::DeleteLocal => "delete here",
            Self::MoveRemote => "move there",
            Self::MoveLocal => "move here",
            Self::Record => "in sync",
            Self::Conflict => "conflict",
            Self::Merge => "merge",
            Self::Skip => "skip",
        }
    }
}

impl Reason {
    /// The reason in plain words, for people: `edited here`, `new there`.
    pub const fn words(self) -> &'static str {
        match self {
            Self::LocalAdded => "new here",
            Self::LocalChanged => "edited here",
            Self::LocalDeleted => "deleted here",
            Self::LocalRenamed => "renamed here",
            Self::RemoteAdded => "new there",
            Self::RemoteChanged => "edited there",
            Self::RemoteDeleted => "deleted there",
            Self::RemoteRenamed => "renamed there",
            Self::OnlyLocal => "only here (first sync)",
            Self::OnlyRemote => "only there (first sync)",
            Self::BothAdded => "same file on both sides",
            Self::BothChanged => "same edit on both sides",
            Self::BothDeleted => "deleted on both sides",
            Self::RemoteEtagChanged => "rewritten there, same content",
            Self::EditEdit => "edited on both sides",
            Self::AddAdd => "added on both sides, differently",
            Self::DeleteEdit => "deleted here, edited there",
            Self::EditDelete => "edited here, deleted there",
            Self::TypeChange => "a file on one side, a folder on the other",
            Self::Protected => "protected",
            Self::Ignored => "ignored here",
            Self::InvalidRemoteKey => "the key is not a safe path",
            Self::RemoteKeyCollision => "the key is both a file and a folder there",
            Self::RenameDelete => "renamed on one side, deleted on the other: kept",
            Self::RenameRename => "renamed differently on both sides",
            Self::FolderRenamed => "follows its renamed folder",
            Self::LastCopy => "the last copy of its content: kept",
        }
    }

    /// Whether this reason is a conflict.
    pub const fn is_conflict(self) -> bool {
        matches!(
            self,
            Self::EditEdit
                | Self::AddAdd
                | Self::DeleteEdit
                | Self::EditDelete
                | Self::TypeChange
                | Self::RenameRename
        )
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
    /// For moves, the source path; for a rename that needs no move (the same rename on
    /// both sides, a rename the other side deleted), the path it was renamed from.
    pub from: Option<String>,
    /// For moves, what the moved file needs after the move: `download` (take the other
    /// side's edit), `upload` (send this side's edit), `merge` (both edited), or `None`
    /// (the same content on both sides).
    pub then: Option<Action>,
    /// The path's base, local and remote versions. A side's leaf has kind `Tree` (and a
    /// tree id) where that side has a folder, which only a type-change conflict shows.
    pub sides: Merge<Option<Leaf>>,
    /// The conditions it must be applied under.
    pub precondition: Precondition,
    /// For skipped operations, what would have been done.
    pub skipped: Option<Action>,
}

impl Op {
    pub(super) fn new(path: String, action: Action, reason: Reason, sides: Merge<Option<Leaf>>) -> Self {
        Self {
            path,
            action,
            reason,
            from: None,
            then: None,
            sides,
            precondition: Precondition::default(),
            skipped: None,
        }
    }

    /// Whether this operation reports a conflict (a merge may still become one when it
    /// is applied, if the edits overlap).
    pub const fn is_conflict(&self) -> bool {
        !matches!(self.action, Action::Merge) && self.reason.is_conflict()
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
    /// Three-way merges (`merge`, and moves followed by one).
    pub merges: usize,
    /// Moves (`move_remote`, `move_local`).
    pub moves: usize,
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
    #[error(
        "the sync would delete {deletions} of the {base_files} files of the last sync ({here} here in the folder, {} there in the bucket), more than the limit of {limit}: {}",
        deletions - here,
        list(.paths)
    )]
    TooManyDeletions {
        /// Planned deletions.
        deletions: usize,
        /// Of them, local files (the rest are remote objects).
        here: usize,
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
