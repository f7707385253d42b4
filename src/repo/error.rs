//! What can go wrong with a folder and its store.

use std::path::PathBuf;

use crate::id::ObjectKind;
use crate::object::ClientIdError;
use crate::remote::RemoteUrlError;
use crate::store::StoreError;
use crate::worktree::ScanError;

/// Errors tying a folder to its store.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The folder does not exist or is not a directory.
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    /// `init` on a folder that already has a store.
    #[error("{0} is already a bmsync folder")]
    AlreadyInitialized(PathBuf),
    /// `init` inside a folder that is already under bmsync: two stores would then sync
    /// the same files.
    #[error(
        "{inner} is inside the bmsync folder {outer}, which already syncs it; run bmsync there, or init a folder outside it"
    )]
    Nested {
        /// The folder `init` was asked for.
        inner: PathBuf,
        /// The bmsync folder it is in.
        outer: PathBuf,
    },
    /// Another sync kept the folder's sync lock for longer than the wait allowed.
    #[error("another bmsync sync is running on {root}{}; try again when it has finished", holder(*pid))]
    Busy {
        /// The folder.
        root: PathBuf,
        /// The process holding the lock, as it recorded itself.
        pid: Option<u32>,
    },
    /// No `.bmsync/` store.
    #[error("{0} is not in a bmsync folder (neither it nor a folder above it holds .bmsync/)")]
    NotInitialized(PathBuf),
    /// A bad client id.
    #[error(transparent)]
    ClientId(#[from] ClientIdError),
    /// A bad remote URL.
    #[error(transparent)]
    Remote(#[from] RemoteUrlError),
    /// A revision that names nothing.
    #[error("unknown revision {0:?}: a revision is {forms}", forms = super::REVISION_FORMS)]
    UnknownRevision(String),
    /// A revision that does not resolve, and why.
    #[error("bad revision {rev:?}: {reason}")]
    BadRevision {
        /// The revision as given.
        rev: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A meta record that is not what this build wrote.
    #[error("store record {key:?} is not valid UTF-8")]
    BadMeta {
        /// The meta key.
        key: &'static str,
    },
    /// No remote is configured.
    #[error("no remote is configured")]
    NoRemote,
    /// The remote failed.
    #[error(transparent)]
    RemoteFailed(#[from] crate::remote::RemoteError),
    /// The remote ignores conditional PUTs, and lost updates were not accepted.
    #[error("{detail}; nothing was written")]
    LostUpdates {
        /// Which guarantee is missing and what it would cost.
        detail: String,
    },
    /// A meta record that should be there is not.
    #[error("store record {key:?} is missing: this store was not made by bmsync")]
    MissingMeta {
        /// The meta key.
        key: &'static str,
    },
    /// A scan of the folder failed.
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// A path that is not in the tree.
    #[error("{path:?} is not in {rev}")]
    NoSuchPath {
        /// The revision.
        rev: String,
        /// The path.
        path: String,
    },
    /// A revision that names an object of the wrong kind.
    #[error("{rev} is a {kind}, not a commit or tree")]
    NotATree {
        /// The revision.
        rev: String,
        /// What it is.
        kind: ObjectKind,
    },
    /// Filesystem trouble.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn holder(pid: Option<u32>) -> String {
    pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
}
