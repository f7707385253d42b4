//! The store's errors.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::id::{IdPrefix, ObjectId, ObjectKind};
use crate::object::DecodeError;

/// Errors from the object store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened or created.
    #[error("cannot open store {path}: {source}")]
    Open {
        /// Store path.
        path: PathBuf,
        /// Underlying error.
        source: redb::DatabaseError,
    },
    /// Another process has the store open for writing.
    #[error("store {path} is in use by another bmsync process; wait for it to finish")]
    Locked {
        /// Store path.
        path: PathBuf,
    },
    /// `create` found a store already there.
    #[error("a store already exists at {path}")]
    Exists {
        /// Store path.
        path: PathBuf,
    },
    /// `open` found no store.
    #[error("no store at {path}")]
    Missing {
        /// Store path.
        path: PathBuf,
    },
    /// The file is a redb database but not a bmsync store.
    #[error("{path} is not a bmsync store: it has no format-version record")]
    NotAStore {
        /// Store path.
        path: PathBuf,
    },
    /// Written by a newer bmsync.
    #[error(
        "store {path} has format version {found}, newer than this bmsync understands (up to {supported}); upgrade bmsync to use it"
    )]
    NewerFormat {
        /// Store path.
        path: PathBuf,
        /// Version found.
        found: u32,
        /// Highest version this build reads.
        supported: u32,
    },
    /// A format-version record this build cannot interpret.
    #[error("store {path} has an unknown format-version record {found:02x?}")]
    UnknownFormat {
        /// Store path.
        path: PathBuf,
        /// The raw record.
        found: Vec<u8>,
    },
    /// The store file is damaged: redb found a damaged page (or panicked on one).
    #[error("the local state is damaged: {path}: {detail}")]
    Damaged {
        /// Store path.
        path: PathBuf,
        /// What redb said.
        detail: String,
    },
    /// Stored bytes do not match their id or do not decode.
    #[error("the local state is damaged: object {id} is corrupt in the store: {reason}")]
    Corrupt {
        /// Object id.
        id: ObjectId,
        /// What is wrong.
        reason: String,
    },
    /// No such object.
    #[error("object {id} is not in the store")]
    NotFound {
        /// Object id.
        id: ObjectId,
    },
    /// An object of another kind than asked for.
    #[error("object {id} is a {found}, not a {expected}")]
    WrongKind {
        /// Object id.
        id: ObjectId,
        /// Kind asked for.
        expected: ObjectKind,
        /// Kind stored.
        found: ObjectKind,
    },
    /// No object id starts with the prefix.
    #[error("no object id starts with {prefix}")]
    PrefixNotFound {
        /// The prefix.
        prefix: IdPrefix,
    },
    /// Several object ids start with the prefix.
    #[error("{prefix} is ambiguous; candidates:{}", list_candidates(candidates))]
    Ambiguous {
        /// The prefix.
        prefix: IdPrefix,
        /// Matching ids with their kinds (at most 16).
        candidates: Vec<(ObjectId, ObjectKind)>,
    },
    /// A compare-and-swap found the ref elsewhere.
    #[error("ref {name:?} moved: expected {}, found {}", show_ref(*expected), show_ref(*actual))]
    RefConflict {
        /// Ref name.
        name: String,
        /// What the caller expected.
        expected: Option<ObjectId>,
        /// What the store holds.
        actual: Option<ObjectId>,
    },
    /// A ref name outside `[a-z0-9/_.-]`, 1 to 128 bytes.
    #[error("invalid ref name {0:?}")]
    BadRefName(String),
    /// Bytes refused as an object of their kind.
    #[error("refusing to store an invalid {kind}: {source}")]
    Invalid {
        /// Kind.
        kind: ObjectKind,
        /// Why.
        source: DecodeError,
    },
    /// A streamed blob hashed to another id than expected: it changed while read.
    #[error("content changed while it was read: expected {expected}, read {actual}")]
    BlobChanged {
        /// The id the caller expected.
        expected: ObjectId,
        /// The id of the bytes read.
        actual: ObjectId,
    },
    /// An object too large for the call that was given it (a caller's mistake).
    #[error("object {id} of {size} bytes is over one chunk: store it with put or put_blob_from_reader")]
    TooLarge {
        /// Object id.
        id: ObjectId,
        /// Its size.
        size: u64,
    },
    /// Reading a blob source or writing a blob out failed.
    #[error("I/O error streaming blob {id}: {source}")]
    Io {
        /// Blob id.
        id: ObjectId,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A read-only open found a store that was not closed cleanly: repairing it is a
    /// write, which a read-only open does not do.
    #[error(
        "store {path} was not closed cleanly (an interrupted run) and needs a repair, which a read-only open does not do"
    )]
    NeedsRepair {
        /// Store path.
        path: PathBuf,
    },
    /// A write to a store opened read-only (a caller's mistake: `plan` writes nothing).
    #[error("store {path} is open read-only")]
    ReadOnly {
        /// Store path.
        path: PathBuf,
    },
    /// The database failed (disk full, I/O error, internal corruption).
    #[error("store database error: {0}")]
    Db(#[from] redb::Error),
}

fn list_candidates(c: &[(ObjectId, ObjectKind)]) -> String {
    c.iter().fold(String::new(), |mut s, (id, k)| {
        let _ = write!(s, "\n  {id} {k}");
        s
    })
}

fn show_ref(r: Option<ObjectId>) -> String {
    r.map_or_else(|| "nothing".to_owned(), |id| id.to_hex())
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                Self::Db(e.into())
            }
        }
    )*};
}
from_redb!(redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);
