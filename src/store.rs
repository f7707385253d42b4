//! The object store: a redb database at `.bmsync/store.redb` (`format-spec/store.md`).
//!
//! Objects are zstd-compressed, written put-if-absent, and verified against their id on
//! every read. Refs move by compare-and-swap in durable transactions.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::id::{ID_LEN, IdPrefix, ObjectHasher, ObjectId, ObjectKind};
use crate::object::{self, Commit, DecodeError, Manifest, Tree};
use crate::reconcile::{Change, DiffStats, TreeReadError, TreeSource, detect_renames, diff_trees};

/// The store format this build writes and reads.
pub const STORE_FORMAT_VERSION: u32 = 1;
/// Objects larger than this are stored as chunks of exactly this size (the last shorter).
pub const CHUNK_SIZE: usize = 1 << 20;
/// zstd level for objects: the fastest, and already most of the gain on Markdown.
const ZSTD_LEVEL: i32 = 1;
/// Most candidates an ambiguous prefix lists.
const MAX_CANDIDATES: usize = 16;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const OBJECTS: TableDefinition<&[u8; ID_LEN], &[u8]> = TableDefinition::new("objects");
const CHUNKS: TableDefinition<(&[u8; ID_LEN], u32), &[u8]> = TableDefinition::new("chunks");
const REFS: TableDefinition<&str, &[u8; ID_LEN]> = TableDefinition::new("refs");
const WORKTREE: TableDefinition<&str, &[u8]> = TableDefinition::new("worktree");
const JOURNAL: TableDefinition<u64, &[u8]> = TableDefinition::new("journal");

/// Meta key holding the store format version (u32 LE).
pub const META_FORMAT_VERSION: &str = "format-version";

/// Object-row layout byte: one zstd frame follows the header.
const LAYOUT_INLINE: u8 = 0;
/// Object-row layout byte: the bytes live in the `chunks` table.
const LAYOUT_CHUNKED: u8 = 1;
/// Object-row header: kind, layout, raw size (u64 LE).
const HEADER_LEN: usize = 10;

/// Errors from the object store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened or created.
    #[error(
        "cannot open store {path}: {source} (if the file is corrupt or truncated, move it aside and run `bmsync init` again; your notes are untouched)"
    )]
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
    #[error("no store at {path}: run `bmsync init` first")]
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
        "store {path} was not closed cleanly (an interrupted run) and needs a repair, which a read-only command does not do; run `bmsync status` once, then try again"
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

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Raw worktree records by directory path (see [`Store::worktree_state`]).
pub type WorktreeRecords = std::collections::HashMap<String, Vec<u8>>;

/// Checks a ref name: 1 to 128 bytes of `[a-z0-9/_.-]`, and not `local` (which names
/// the folder as it is now, never a stored commit).
fn check_ref_name(name: &str) -> Result<()> {
    let ok = name != "local"
        && !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"/_.-".contains(&b));
    if ok { Ok(()) } else { Err(StoreError::BadRefName(name.to_owned())) }
}

/// The database, open for writing or only for reading.
enum Db {
    Write(Database),
    Read(redb::ReadOnlyDatabase),
    /// Only while the store is being dropped.
    Closed,
}

impl Db {
    fn begin_read(&self) -> Result<redb::ReadTransaction> {
        Ok(match self {
            Self::Write(d) => d.begin_read()?,
            Self::Read(d) => d.begin_read()?,
            Self::Closed => return Err(StoreError::Db(redb::Error::DatabaseClosed)),
        })
    }

    fn writer(&self, path: &Path) -> Result<&Database> {
        match self {
            Self::Write(d) => Ok(d),
            Self::Read(_) => Err(StoreError::ReadOnly { path: path.to_owned() }),
            Self::Closed => Err(StoreError::Db(redb::Error::DatabaseClosed)),
        }
    }
}

/// An open object store.
pub struct Store {
    db: Db,
    path: PathBuf,
}

impl Drop for Store {
    fn drop(&mut self) {
        // Closing flushes and may read damaged pages: contain that as well.
        let db = std::mem::replace(&mut self.db, Db::Closed);
        let _ = contain(&self.path, || {
            drop(db);
            Ok(())
        });
    }
}

thread_local! {
    /// How deep this thread is in calls that turn panics into errors.
    static CONTAINED: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Whether the current thread is inside a store (or `file://` remote) call that turns a
/// panic into an error ([`StoreError::Damaged`]). redb may panic on a damaged file; the store catches that, and
/// a program's panic hook can use this to stay silent about a panic that is handled.
pub fn panic_is_contained() -> bool {
    CONTAINED.with(|c| c.get() > 0)
}

/// Runs one store operation with redb's panics (on damaged pages) and its corruption
/// errors turned into [`StoreError::Damaged`], naming the file.
fn contain<T>(path: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let damaged = |detail: String| StoreError::Damaged { path: path.to_owned(), detail };
    match catch_damage(f) {
        Ok(Err(
            StoreError::Db(redb::Error::Corrupted(detail))
            | StoreError::Open {
                source: redb::DatabaseError::Storage(redb::StorageError::Corrupted(detail)),
                ..
            },
        ))
        | Err(detail) => Err(damaged(detail)),
        Ok(r) => r,
    }
}

/// Runs `f`, turning a panic in it (redb on a damaged page) into `Err` with what it said.
/// While it runs, [`panic_is_contained`] is true on this thread.
pub(crate) fn catch_damage<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    CONTAINED.with(|c| c.set(c.get() + 1));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CONTAINED.with(|c| c.set(c.get() - 1));
    r.map_err(|payload| {
        let detail = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "internal error".to_owned());
        format!("redb stopped on a damaged page ({detail})")
    })
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish_non_exhaustive()
    }
}

fn check_exists(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(StoreError::Missing { path: path.to_owned() })
        }
        _ => Ok(()),
    }
}

fn open_error(path: &Path, source: redb::DatabaseError) -> StoreError {
    match source {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked { path: path.to_owned() },
        source => StoreError::Open { path: path.to_owned(), source },
    }
}

/// Checks that an open database is a bmsync store of a format this build reads.
fn check_format(path: &Path, db: &impl ReadableDatabase) -> Result<()> {
    let txn = db.begin_read()?;
    let meta = match txn.open_table(META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => {
            return Err(StoreError::NotAStore { path: path.to_owned() });
        }
        Err(e) => return Err(e.into()),
    };
    let raw =
        meta.get(META_FORMAT_VERSION)?.ok_or_else(|| StoreError::NotAStore { path: path.to_owned() })?;
    let raw = raw.value();
    let version = <[u8; 4]>::try_from(raw)
        .map(u32::from_le_bytes)
        .map_err(|_| StoreError::UnknownFormat { path: path.to_owned(), found: raw.to_vec() })?;
    if version > STORE_FORMAT_VERSION {
        return Err(StoreError::NewerFormat {
            path: path.to_owned(),
            found: version,
            supported: STORE_FORMAT_VERSION,
        });
    }
    if version == 0 {
        return Err(StoreError::UnknownFormat { path: path.to_owned(), found: raw.to_vec() });
    }
    Ok(())
}

impl Store {
    /// Creates a new store file, which must not exist yet, with its format version and
    /// the given meta records written in one durable transaction. On failure the file is
    /// removed again, so a half-made store is never left behind.
    pub fn create(path: &Path, meta: &[(&str, &[u8])]) -> Result<Self> {
        // Claim the path first, so two racing `init`s cannot both create a store.
        std::fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => StoreError::Exists { path: path.to_owned() },
            _ => StoreError::Open { path: path.to_owned(), source: redb::DatabaseError::Storage(e.into()) },
        })?;
        let made = Self::init_file(path, meta);
        if made.is_err() {
            let _ = std::fs::remove_file(path);
        }
        made
    }

    fn init_file(path: &Path, meta: &[(&str, &[u8])]) -> Result<Self> {
        contain(path, || {
            let db = Database::create(path).map_err(|e| open_error(path, e))?;
            let txn = db.begin_write()?;
            {
                let mut m = txn.open_table(META)?;
                m.insert(META_FORMAT_VERSION, STORE_FORMAT_VERSION.to_le_bytes().as_slice())?;
                for (k, v) in meta {
                    assert_ne!(*k, META_FORMAT_VERSION, "the format version is not caller-supplied");
                    m.insert(*k, *v)?;
                }
                txn.open_table(OBJECTS)?;
                txn.open_table(CHUNKS)?;
                txn.open_table(REFS)?;
                txn.open_table(WORKTREE)?;
                txn.open_table(JOURNAL)?;
            }
            txn.commit()?;
            Ok(Self { db: Db::Write(db), path: path.to_owned() })
        })
    }

    /// Opens an existing store, refusing a missing file, a foreign database, or a newer
    /// format.
    pub fn open(path: &Path) -> Result<Self> {
        contain(path, || {
            check_exists(path)?;
            let db = Database::open(path).map_err(|e| open_error(path, e))?;
            check_format(path, &db)?;
            Ok(Self { db: Db::Write(db), path: path.to_owned() })
        })
    }

    /// Opens an existing store for reading only: no byte of the file changes, not even
    /// its header (an open for writing marks the file in use). A store that was not
    /// closed cleanly needs a repair, which is a write, so it is refused here.
    pub fn open_read_only(path: &Path) -> Result<Self> {
        contain(path, || {
            check_exists(path)?;
            let db = redb::ReadOnlyDatabase::open(path).map_err(|e| match e {
                redb::DatabaseError::RepairAborted => StoreError::NeedsRepair { path: path.to_owned() },
                e => open_error(path, e),
            })?;
            check_format(path, &db)?;
            Ok(Self { db: Db::Read(db), path: path.to_owned() })
        })
    }

    /// Where the store lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts a batch of writes, committed together (and durably) by [`Batch::commit`].
    pub fn batch(&self) -> Result<Batch<'_>> {
        contain(&self.path, || {
            Ok(Batch { txn: Some(self.db.writer(&self.path)?.begin_write()?), store: self })
        })
    }

    /// Stores one object; returns its id and whether it was new. Non-blob bytes must be a
    /// canonical encoding of their kind.
    pub fn put(&self, kind: ObjectKind, bytes: &[u8]) -> Result<(ObjectId, bool)> {
        let batch = self.batch()?;
        let r = batch.put(kind, bytes)?;
        batch.commit()?;
        Ok(r)
    }

    /// Stores a tree.
    pub fn put_tree(&self, tree: &Tree) -> Result<ObjectId> {
        Ok(self.put(ObjectKind::Tree, &tree.encode())?.0)
    }

    /// Stores a commit.
    pub fn put_commit(&self, commit: &Commit) -> Result<ObjectId> {
        Ok(self.put(ObjectKind::Commit, &commit.encode())?.0)
    }

    /// Stores a manifest.
    pub fn put_manifest(&self, manifest: &Manifest) -> Result<ObjectId> {
        Ok(self.put(ObjectKind::Manifest, &manifest.encode())?.0)
    }

    /// The kind and raw size of an object, if present. Reads only the row header.
    pub fn stat(&self, id: &ObjectId) -> Result<Option<(ObjectKind, u64)>> {
        contain(&self.path, || {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(OBJECTS)?;
            let Some(row) = table.get(id.as_bytes())? else { return Ok(None) };
            let (kind, _, size) = parse_header(id, row.value())?;
            Ok(Some((kind, size)))
        })
    }

    /// Whether an object is present.
    pub fn contains(&self, id: &ObjectId) -> Result<bool> {
        contain(&self.path, || {
            let txn = self.db.begin_read()?;
            Ok(txn.open_table(OBJECTS)?.get(id.as_bytes())?.is_some())
        })
    }

    /// Reads a whole object and verifies it against its id.
    pub fn get(&self, id: &ObjectId) -> Result<(ObjectKind, Vec<u8>)> {
        let mut out = Vec::new();
        let kind = self.read_into(id, None, &mut out)?;
        Ok((kind, out))
    }

    /// Reads an object that must be of `kind`.
    pub fn get_kind(&self, id: &ObjectId, kind: ObjectKind) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.read_into(id, Some(kind), &mut out)?;
        Ok(out)
    }

    /// Reads and decodes a tree.
    pub fn get_tree(&self, id: &ObjectId) -> Result<Tree> {
        let bytes = self.get_kind(id, ObjectKind::Tree)?;
        Tree::decode(&bytes).map_err(|e| corrupt(id, e.to_string()))
    }

    /// Reads and decodes a commit.
    pub fn get_commit(&self, id: &ObjectId) -> Result<Commit> {
        let bytes = self.get_kind(id, ObjectKind::Commit)?;
        Commit::decode(&bytes).map_err(|e| corrupt(id, e.to_string()))
    }

    /// Reads and decodes a manifest.
    pub fn get_manifest(&self, id: &ObjectId) -> Result<Manifest> {
        let bytes = self.get_kind(id, ObjectKind::Manifest)?;
        Manifest::decode(&bytes).map_err(|e| corrupt(id, e.to_string()))
    }

    /// Streams a blob to `out` chunk by chunk, verifying as it goes; returns its size.
    /// On a corruption error `out` has received unverified bytes: write to a temporary
    /// file and discard it on error.
    pub fn read_blob_to(&self, id: &ObjectId, out: &mut dyn Write) -> Result<u64> {
        let mut counter = CountingWriter { inner: out, n: 0 };
        self.read_into(id, Some(ObjectKind::Blob), &mut counter)?;
        Ok(counter.n)
    }

    fn read_into(&self, id: &ObjectId, want: Option<ObjectKind>, out: &mut dyn Write) -> Result<ObjectKind> {
        contain(&self.path, || read_object(&self.db.begin_read()?, id, want, out))
    }

    /// A consistent read view for many lookups (a tree walk): one read transaction
    /// instead of one a lookup.
    pub fn reader(&self) -> Result<StoreReader> {
        contain(&self.path, || Ok(StoreReader { txn: self.db.begin_read()?, path: self.path.clone() }))
    }
}

/// A read view of the store at one point in time (see [`Store::reader`]).
pub struct StoreReader {
    txn: redb::ReadTransaction,
    path: PathBuf,
}

impl StoreReader {
    /// Reads an object that must be of `kind`, verified against its id.
    pub fn get_kind(&self, id: &ObjectId, kind: ObjectKind) -> Result<Vec<u8>> {
        contain(&self.path, || {
            let mut out = Vec::new();
            read_object(&self.txn, id, Some(kind), &mut out)?;
            Ok(out)
        })
    }
}

impl TreeSource for Store {
    fn tree_bytes(&self, id: &ObjectId) -> Result<Vec<u8>, TreeReadError> {
        self.get_kind(id, ObjectKind::Tree).map_err(|e| e.into_tree_read(id))
    }
}

impl TreeSource for StoreReader {
    fn tree_bytes(&self, id: &ObjectId) -> Result<Vec<u8>, TreeReadError> {
        self.get_kind(id, ObjectKind::Tree).map_err(|e| e.into_tree_read(id))
    }
}

impl StoreError {
    fn into_tree_read(self, id: &ObjectId) -> TreeReadError {
        TreeReadError::Source { id: *id, source: Box::new(self) }
    }
}

/// A tree read failure as the store's own error: the store's errors come back unwrapped,
/// so callers match on them as before.
impl From<TreeReadError> for StoreError {
    fn from(e: TreeReadError) -> Self {
        match e {
            TreeReadError::NotFound { id } => StoreError::NotFound { id },
            TreeReadError::Corrupt { id, reason } => StoreError::Corrupt { id, reason },
            TreeReadError::Source { id, source } => match source.downcast::<StoreError>() {
                Ok(e) => *e,
                Err(other) => corrupt(&id, other.to_string()),
            },
        }
    }
}

impl Store {
    /// Every change from tree `old` to tree `new` (`None` is the empty tree), with
    /// deletions and additions of the same blob paired into renames.
    pub fn diff_with_renames(&self, old: Option<ObjectId>, new: Option<ObjectId>) -> Result<Vec<Change>> {
        let mut stats = DiffStats::default();
        Ok(detect_renames(&diff_trees(&self.reader()?, old, new, &mut stats)?))
    }
}

fn read_object(
    txn: &redb::ReadTransaction,
    id: &ObjectId,
    want: Option<ObjectKind>,
    out: &mut dyn Write,
) -> Result<ObjectKind> {
    let objects = txn.open_table(OBJECTS)?;
    let row = objects.get(id.as_bytes())?.ok_or(StoreError::NotFound { id: *id })?;
    let row = row.value();
    let (kind, layout, size) = parse_header(id, row)?;
    if let Some(expected) = want.filter(|&w| w != kind) {
        return Err(StoreError::WrongKind { id: *id, expected, found: kind });
    }
    let mut hasher = ObjectHasher::new(kind);
    let mut emit = |chunk: &[u8]| -> Result<()> {
        hasher.update(chunk);
        out.write_all(chunk).map_err(|source| StoreError::Io { id: *id, source })
    };
    if layout == LAYOUT_INLINE {
        if size > CHUNK_SIZE as u64 {
            return Err(corrupt(id, format!("inline object of {size} bytes exceeds the chunk size")));
        }
        emit(&decompress(id, &row[HEADER_LEN..], size)?)?;
    } else {
        if size <= CHUNK_SIZE as u64 || !row[HEADER_LEN..].is_empty() {
            return Err(corrupt(id, "chunked row is not canonical"));
        }
        let chunks = txn.open_table(CHUNKS)?;
        let count = size.div_ceil(CHUNK_SIZE as u64);
        for i in 0..count {
            let idx = u32::try_from(i).map_err(|_| corrupt(id, "too many chunks"))?;
            let want = (size - i * CHUNK_SIZE as u64).min(CHUNK_SIZE as u64);
            let frame = chunks
                .get((id.as_bytes(), idx))?
                .ok_or_else(|| corrupt(id, format!("chunk {idx} is missing")))?;
            emit(&decompress(id, frame.value(), want)?)?;
        }
    }
    let actual = hasher.finalize();
    if actual != *id {
        return Err(corrupt(id, format!("content hashes to {actual}")));
    }
    Ok(kind)
}

impl Store {
    /// Resolves an abbreviated id against the store.
    pub fn resolve_prefix(&self, prefix: &IdPrefix) -> Result<ObjectId> {
        contain(&self.path, || {
            let txn = self.db.begin_read()?;
            let objects = txn.open_table(OBJECTS)?;
            let mut found = Vec::new();
            let start = prefix.lower_bound();
            for item in objects.range::<&[u8; ID_LEN]>(start.as_bytes()..)? {
                let (k, v) = item?;
                let id = ObjectId::from_bytes(*k.value());
                if !id.starts_with(prefix) {
                    break;
                }
                let (kind, _, _) = parse_header(&id, v.value())?;
                found.push((id, kind));
                if found.len() == MAX_CANDIDATES {
                    break;
                }
            }
            match found.len() {
                0 => Err(StoreError::PrefixNotFound { prefix: *prefix }),
                1 => Ok(found[0].0),
                _ => Err(StoreError::Ambiguous { prefix: *prefix, candidates: found }),
            }
        })
    }

    /// Every object id in the store, in id order (for checks and garbage collection).
    pub fn object_ids(&self) -> Result<Vec<ObjectId>> {
        contain(&self.path, || {
            let txn = self.db.begin_read()?;
            let objects = txn.open_table(OBJECTS)?;
            objects.iter()?.map(|item| Ok(ObjectId::from_bytes(*item?.0.value()))).collect()
        })
    }

    /// Reads a ref.
    pub fn get_ref(&self, name: &str) -> Result<Option<ObjectId>> {
        contain(&self.path, || {
            check_ref_name(name)?;
            let txn = self.db.begin_read()?;
            let refs = txn.open_table(REFS)?;
            Ok(refs.get(name)?.map(|v| ObjectId::from_bytes(*v.value())))
        })
    }

    /// Every ref, in name order.
    pub fn refs(&self) -> Result<Vec<(String, ObjectId)>> {
        contain(&self.path, || {
            let txn = self.db.begin_read()?;
            let refs = txn.open_table(REFS)?;
            refs.iter()?
                .map(|item| {
                    let (k, v) = item?;
                    Ok((k.value().to_owned(), ObjectId::from_bytes(*v.value())))
                })
                .collect()
        })
    }

    /// Moves a ref from `expected` to `new` (`None` means absent) in one durable
    /// transaction, or fails with [`StoreError::RefConflict`] leaving it untouched. A ref
    /// may only point at an object the store holds.
    pub fn update_ref(&self, name: &str, expected: Option<ObjectId>, new: Option<ObjectId>) -> Result<()> {
        contain(&self.path, || {
            check_ref_name(name)?;
            let txn = self.db.writer(&self.path)?.begin_write()?;
            {
                if let Some(id) = new
                    && txn.open_table(OBJECTS)?.get(id.as_bytes())?.is_none()
                {
                    return Err(StoreError::NotFound { id });
                }
                let mut refs = txn.open_table(REFS)?;
                let actual = refs.get(name)?.map(|v| ObjectId::from_bytes(*v.value()));
                if actual != expected {
                    return Err(StoreError::RefConflict { name: name.to_owned(), expected, actual });
                }
                match new {
                    Some(id) => refs.insert(name, id.as_bytes()).map(drop)?,
                    None => refs.remove(name).map(drop)?,
                }
            }
            txn.commit()?;
            Ok(())
        })
    }

    /// Every worktree record (the stat cache: one record per scanned directory), keyed
    /// by the directory's relative path (`""` for the root), and the meta record `stamp`
    /// that goes with them, read in one transaction so the two always match. The
    /// worktree module owns the value formats.
    pub fn worktree_state(&self, stamp: &str) -> Result<(WorktreeRecords, Option<Vec<u8>>)> {
        contain(&self.path, || {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(WORKTREE)?;
            let records = table
                .iter()?
                .map(|item| {
                    let (k, v) = item?;
                    Ok((k.value().to_owned(), v.value().to_vec()))
                })
                .collect::<Result<_>>()?;
            let stamp = txn.open_table(META)?.get(stamp)?.map(|v| v.value().to_vec());
            Ok((records, stamp))
        })
    }

    /// Every intent-journal entry, in sequence order. The journal records what a sync is
    /// about to do and what it has done, so that the next run can clean up after a crash;
    /// the apply module owns the entries' format. A store made before the journal existed
    /// has an empty one.
    pub fn journal(&self) -> Result<Vec<(u64, Vec<u8>)>> {
        contain(&self.path, || {
            let txn = self.db.begin_read()?;
            let table = match txn.open_table(JOURNAL) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            table
                .iter()?
                .map(|item| {
                    let (k, v) = item?;
                    Ok((k.value(), v.value().to_vec()))
                })
                .collect()
        })
    }

    /// Writes journal entries (new or replacing) and removes others, in one durable
    /// transaction, so the journal is on disk before the work it describes starts.
    pub fn journal_write(&self, put: &[(u64, Vec<u8>)], remove: &[u64]) -> Result<()> {
        contain(&self.path, || {
            let txn = self.db.writer(&self.path)?.begin_write()?;
            {
                let mut table = txn.open_table(JOURNAL)?;
                for (k, v) in put {
                    table.insert(*k, v.as_slice())?;
                }
                for k in remove {
                    table.remove(*k)?;
                }
            }
            txn.commit()?;
            Ok(())
        })
    }

    /// Empties the journal durably.
    pub fn journal_clear(&self) -> Result<()> {
        contain(&self.path, || {
            let txn = self.db.writer(&self.path)?.begin_write()?;
            match txn.delete_table(JOURNAL) {
                Ok(_) | Err(redb::TableError::TableDoesNotExist(_)) => {}
                Err(e) => return Err(e.into()),
            }
            txn.open_table(JOURNAL)?;
            txn.commit()?;
            Ok(())
        })
    }

    /// Reads a meta record.
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        contain(&self.path, || {
            let txn = self.db.begin_read()?;
            let meta = txn.open_table(META)?;
            Ok(meta.get(key)?.map(|v| v.value().to_vec()))
        })
    }

    /// Writes a meta record durably. The format-version record is not writable.
    pub fn set_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        contain(&self.path, || {
            assert_ne!(key, META_FORMAT_VERSION, "the format version is written only by create");
            let txn = self.db.writer(&self.path)?.begin_write()?;
            txn.open_table(META)?.insert(key, value)?;
            txn.commit()?;
            Ok(())
        })
    }
}

/// A write transaction over the store: puts become visible, durably, on [`commit`](Self::commit),
/// and are discarded if the batch is dropped.
pub struct Batch<'s> {
    /// `None` only once committed (or dropped).
    txn: Option<redb::WriteTransaction>,
    store: &'s Store,
}

impl Batch<'_> {
    /// Adds one object (put-if-absent). Returns its id and whether it was new.
    pub fn put(&self, kind: ObjectKind, bytes: &[u8]) -> Result<(ObjectId, bool)> {
        contain(&self.store.path, || {
            object::validate(kind, bytes).map_err(|source| StoreError::Invalid { kind, source })?;
            let id = ObjectId::hash(kind, bytes);
            let mut objects = self.txn().open_table(OBJECTS)?;
            if objects.get(id.as_bytes())?.is_some() {
                return Ok((id, false));
            }
            if bytes.len() <= CHUNK_SIZE {
                objects.insert(id.as_bytes(), inline_row(kind, bytes).as_slice())?;
            } else {
                let mut chunks = self.txn().open_table(CHUNKS)?;
                for (i, c) in bytes.chunks(CHUNK_SIZE).enumerate() {
                    let idx = u32::try_from(i).map_err(|_| corrupt(&id, "object too large"))?;
                    chunks.insert((id.as_bytes(), idx), compress(c).as_slice())?;
                }
                objects.insert(id.as_bytes(), header(kind, LAYOUT_CHUNKED, bytes.len() as u64).as_slice())?;
            }
            Ok((id, true))
        })
    }

    /// Streams a blob whose id the caller computed (from a scan) into the store, one chunk
    /// in memory at a time. If the bytes read hash to another id (the file changed since
    /// it was hashed) nothing is stored and [`StoreError::BlobChanged`] says so.
    pub fn put_blob_from_reader(&self, expected: ObjectId, reader: &mut dyn Read) -> Result<(u64, bool)> {
        contain(&self.store.path, || {
            let mut objects = self.txn().open_table(OBJECTS)?;
            if let Some(row) = objects.get(expected.as_bytes())? {
                return Ok((parse_header(&expected, row.value())?.2, false));
            }
            let io = |source| StoreError::Io { id: expected, source };
            let mut hasher = ObjectHasher::new(ObjectKind::Blob);
            let mut first = vec![0u8; CHUNK_SIZE];
            let n0 = read_full(reader, &mut first).map_err(io)?;
            hasher.update(&first[..n0]);
            let mut buf = vec![0u8; CHUNK_SIZE];
            let mut n = if n0 < CHUNK_SIZE { 0 } else { read_full(reader, &mut buf).map_err(io)? };
            if n == 0 {
                check_same(expected, hasher.finalize())?;
                objects.insert(expected.as_bytes(), inline_row(ObjectKind::Blob, &first[..n0]).as_slice())?;
                return Ok((n0 as u64, true));
            }
            // Over one chunk: chunk 0 is `first`, then one buffer is refilled per chunk.
            let mut chunks = self.txn().open_table(CHUNKS)?;
            chunks.insert((expected.as_bytes(), 0), compress(&first).as_slice())?;
            drop(first);
            let mut total = CHUNK_SIZE as u64;
            let mut idx = 1u32;
            while n > 0 {
                hasher.update(&buf[..n]);
                chunks.insert((expected.as_bytes(), idx), compress(&buf[..n]).as_slice())?;
                total += n as u64;
                if n < CHUNK_SIZE {
                    break;
                }
                idx = idx.checked_add(1).ok_or_else(|| corrupt(&expected, "blob too large"))?;
                n = read_full(reader, &mut buf).map_err(io)?;
            }
            if let Err(e) = check_same(expected, hasher.finalize()) {
                // Keep the batch usable for its other puts: take back this blob's chunks.
                for i in 0..=idx {
                    chunks.remove((expected.as_bytes(), i))?;
                }
                return Err(e);
            }
            objects
                .insert(expected.as_bytes(), header(ObjectKind::Blob, LAYOUT_CHUNKED, total).as_slice())?;
            Ok((total, true))
        })
    }

    /// Adds an object prepared (hashed and compressed) by [`prepare`], possibly on
    /// another thread. Put-if-absent, like [`Batch::put`].
    pub fn put_prepared(&self, obj: &Prepared) -> Result<bool> {
        contain(&self.store.path, || {
            let mut objects = self.txn().open_table(OBJECTS)?;
            if objects.get(obj.id.as_bytes())?.is_some() {
                return Ok(false);
            }
            objects.insert(obj.id.as_bytes(), obj.row.as_slice())?;
            Ok(true)
        })
    }

    /// Sets (`Some`) or removes (`None`) the worktree record of one directory.
    pub fn set_worktree_record(&self, dir: &str, value: Option<&[u8]>) -> Result<()> {
        contain(&self.store.path, || {
            let mut t = self.txn().open_table(WORKTREE)?;
            match value {
                Some(v) => t.insert(dir, v).map(drop)?,
                None => t.remove(dir).map(drop)?,
            }
            Ok(())
        })
    }

    /// Writes a meta record as part of the batch.
    pub fn set_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        contain(&self.store.path, || {
            assert_ne!(key, META_FORMAT_VERSION, "the format version is written only by create");
            self.txn().open_table(META)?.insert(key, value)?;
            Ok(())
        })
    }

    fn txn(&self) -> &redb::WriteTransaction {
        self.txn.as_ref().expect("a batch holds its transaction until it is committed")
    }

    /// Makes every put durable and visible.
    pub fn commit(mut self) -> Result<()> {
        let txn = self.txn.take().expect("a batch holds its transaction until it is committed");
        contain(&self.store.path, || {
            txn.commit()?;
            Ok(())
        })
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        // Aborting touches the damaged file too: contain that as well.
        if let Some(txn) = self.txn.take() {
            let _ = contain(&self.store.path, || {
                drop(txn);
                Ok(())
            });
        }
    }
}

/// An object hashed and compressed, ready for [`Batch::put_prepared`]. Preparing is the
/// costly part of a put, so it can run in parallel while one thread writes.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The object's id.
    pub id: ObjectId,
    kind: ObjectKind,
    row: Vec<u8>,
}

impl Prepared {
    /// The object's kind.
    pub fn kind(&self) -> ObjectKind {
        self.kind
    }
}

/// Hashes and compresses an object of at most [`CHUNK_SIZE`] bytes (larger blobs go
/// through [`Batch::put_blob_from_reader`]). Non-blob bytes must be canonical.
pub fn prepare(kind: ObjectKind, bytes: &[u8]) -> Result<Prepared> {
    object::validate(kind, bytes).map_err(|source| StoreError::Invalid { kind, source })?;
    let id = ObjectId::hash(kind, bytes);
    if bytes.len() > CHUNK_SIZE {
        return Err(StoreError::TooLarge { id, size: bytes.len() as u64 });
    }
    Ok(Prepared { id, kind, row: inline_row(kind, bytes) })
}

fn corrupt(id: &ObjectId, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt { id: *id, reason: reason.into() }
}

fn check_same(expected: ObjectId, actual: ObjectId) -> Result<()> {
    if expected == actual { Ok(()) } else { Err(StoreError::BlobChanged { expected, actual }) }
}

fn header(kind: ObjectKind, layout: u8, size: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN);
    h.push(kind.code());
    h.push(layout);
    h.extend_from_slice(&size.to_le_bytes());
    h
}

fn inline_row(kind: ObjectKind, bytes: &[u8]) -> Vec<u8> {
    let mut row = header(kind, LAYOUT_INLINE, bytes.len() as u64);
    row.extend_from_slice(&compress(bytes));
    row
}

thread_local! {
    // zstd contexts are costly to set up (hundreds of KiB each); small notes would pay
    // that on every object, so each thread keeps one of each.
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> = const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
}

fn compress(bytes: &[u8]) -> Vec<u8> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        let c = match &mut *c {
            Some(c) => c,
            slot @ None => {
                slot.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL).expect("a zstd context can be created"))
            }
        };
        c.compress(bytes).expect("zstd compression of an in-memory buffer cannot fail")
    })
}

/// Decompresses one frame that must hold exactly `size` bytes.
fn decompress(id: &ObjectId, frame: &[u8], size: u64) -> Result<Vec<u8>> {
    let cap = usize::try_from(size).map_err(|_| corrupt(id, "size does not fit in memory"))?;
    let out = DECOMPRESSOR
        .with(|d| {
            let mut d = d.borrow_mut();
            let d = match &mut *d {
                Some(d) => d,
                slot @ None => slot.insert(zstd::bulk::Decompressor::new()?),
            };
            d.decompress(frame, cap)
        })
        .map_err(|e| corrupt(id, format!("zstd: {e}")))?;
    if out.len() != cap {
        return Err(corrupt(id, format!("frame holds {} bytes, header says {cap}", out.len())));
    }
    Ok(out)
}

fn parse_header(id: &ObjectId, row: &[u8]) -> Result<(ObjectKind, u8, u64)> {
    if row.len() < HEADER_LEN {
        return Err(corrupt(id, "row shorter than its header"));
    }
    let kind =
        ObjectKind::from_code(row[0]).ok_or_else(|| corrupt(id, format!("unknown kind code {}", row[0])))?;
    let layout = row[1];
    if layout != LAYOUT_INLINE && layout != LAYOUT_CHUNKED {
        return Err(corrupt(id, format!("unknown layout {layout}")));
    }
    let size = u64::from_le_bytes(row[2..HEADER_LEN].try_into().expect("slice is 8 bytes"));
    Ok((kind, layout, size))
}

/// Fills `buf` as far as the stream allows; returns how many bytes were read.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

struct CountingWriter<'a> {
    inner: &'a mut dyn Write,
    n: u64,
}

impl Write for CountingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let k = self.inner.write(buf)?;
        self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::{EntryKind, TreeEntry};

    fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::create(&dir.path().join("store.redb"), &[]).expect("create");
        (dir, store)
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| u8::try_from((i * 7 + i / 251) % 256).expect("mod 256")).collect()
    }

    #[test]
    fn put_get_round_trip_and_idempotence() {
        let (_d, s) = temp_store();
        let (id, new) = s.put(ObjectKind::Blob, b"hello").expect("put");
        assert!(new);
        assert_eq!(id, ObjectId::for_blob(b"hello"));
        assert_eq!(s.put(ObjectKind::Blob, b"hello").expect("put again"), (id, false));
        assert_eq!(s.get(&id).expect("get"), (ObjectKind::Blob, b"hello".to_vec()));
        assert_eq!(s.stat(&id).expect("stat"), Some((ObjectKind::Blob, 5)));
        let tree = Tree::new(vec![TreeEntry { name: "a.md".into(), kind: EntryKind::File, id, size: 5 }])
            .expect("valid tree");
        let tid = s.put_tree(&tree).expect("put tree");
        assert_eq!(s.get_tree(&tid).expect("get tree"), tree);
        assert!(matches!(
            s.get_commit(&tid),
            Err(StoreError::WrongKind { expected: ObjectKind::Commit, .. })
        ));
        let missing = ObjectId::for_blob(b"missing");
        assert!(matches!(s.get(&missing), Err(StoreError::NotFound { id }) if id == missing));
    }

    #[test]
    fn invalid_encodings_are_refused() {
        let (_d, s) = temp_store();
        assert!(matches!(s.put(ObjectKind::Tree, b"bmtr\x01junk"), Err(StoreError::Invalid { .. })));
        assert!(matches!(s.put(ObjectKind::Commit, b""), Err(StoreError::Invalid { .. })));
    }

    #[test]
    fn large_objects_are_chunked_and_stream() {
        let (_d, s) = temp_store();
        for len in [CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE, 3 * CHUNK_SIZE + 12_345] {
            let data = pattern(len);
            let id = ObjectId::for_blob(&data);
            let batch = s.batch().expect("batch");
            let (size, new) = batch.put_blob_from_reader(id, &mut data.as_slice()).expect("stream put");
            batch.commit().expect("commit");
            assert_eq!((size, new), (len as u64, true), "len {len}");
            let mut out = Vec::new();
            assert_eq!(s.read_blob_to(&id, &mut out).expect("read"), len as u64);
            assert!(out == data, "len {len}");
            // The in-memory path stores the same rows: a second put finds it present.
            assert_eq!(s.put(ObjectKind::Blob, &data).expect("put"), (id, false));
        }
        let data = pattern(2 * CHUNK_SIZE + 5);
        let (id, _) = s.put(ObjectKind::Blob, &data).expect("put");
        assert_eq!(s.get(&id).expect("get").1, data);
    }

    #[test]
    fn a_blob_that_changed_while_read_is_not_stored() {
        let (_d, s) = temp_store();
        for len in [10, 3 * CHUNK_SIZE] {
            let data = pattern(len);
            let stale = ObjectId::for_blob(b"what the scan saw");
            let batch = s.batch().expect("batch");
            let err = batch.put_blob_from_reader(stale, &mut data.as_slice()).expect_err("must refuse");
            assert!(matches!(err, StoreError::BlobChanged { expected, .. } if expected == stale));
            // The batch stays usable for its other puts.
            batch.put(ObjectKind::Blob, b"other").expect("other put");
            batch.commit().expect("commit");
            assert!(!s.contains(&stale).expect("contains"));
            assert!(s.contains(&ObjectId::for_blob(b"other")).expect("contains"));
        }
        // A dropped batch stores nothing.
        let batch = s.batch().expect("batch");
        batch.put(ObjectKind::Blob, b"dropped").expect("put");
        drop(batch);
        assert!(!s.contains(&ObjectId::for_blob(b"dropped")).expect("contains"));
    }

    #[test]
    fn refs_move_by_compare_and_swap() {
        let (_d, s) = temp_store();
        let (a, _) = s.put(ObjectKind::Blob, b"a").expect("put");
        let (b, _) = s.put(ObjectKind::Blob, b"b").expect("put");
        s.update_ref("base", None, Some(a)).expect("create");
        let err = s.update_ref("base", None, Some(b)).expect_err("stale expectation");
        assert!(matches!(err, StoreError::RefConflict { actual: Some(x), .. } if x == a));
        assert_eq!(s.get_ref("base").expect("get"), Some(a));
        s.update_ref("base", Some(a), Some(b)).expect("swap");
        assert_eq!(s.refs().expect("refs"), vec![("base".to_owned(), b)]);
        let ghost = ObjectId::for_blob(b"ghost");
        assert!(matches!(s.update_ref("base", Some(b), Some(ghost)), Err(StoreError::NotFound { .. })));
        s.update_ref("base", Some(b), None).expect("delete");
        assert_eq!(s.get_ref("base").expect("get"), None);
        assert!(matches!(s.update_ref("Bad Name", None, Some(a)), Err(StoreError::BadRefName(_))));
    }

    #[test]
    fn prefixes_resolve_or_list_candidates() {
        let (_d, s) = temp_store();
        // Find two blobs whose ids share their first 4 hex digits (birthday bound: ~300 tries).
        let mut seen = std::collections::HashMap::new();
        let (x, y) = (0u32..)
            .find_map(|i| {
                let id = ObjectId::for_blob(&i.to_le_bytes());
                seen.insert(id.short(4), i).map(|j| (j, i))
            })
            .expect("a collision exists");
        let (idx, _) = s.put(ObjectKind::Blob, &x.to_le_bytes()).expect("put");
        let p4 = IdPrefix::parse(&idx.short(4)).expect("prefix");
        assert_eq!(s.resolve_prefix(&p4).expect("unique so far"), idx);
        let (idy, _) = s.put(ObjectKind::Blob, &y.to_le_bytes()).expect("put");
        match s.resolve_prefix(&p4) {
            Err(StoreError::Ambiguous { candidates, .. }) => {
                let mut ids: Vec<_> = candidates.iter().map(|c| c.0).collect();
                ids.sort();
                let mut want = vec![idx, idy];
                want.sort();
                assert_eq!(ids, want);
            }
            other => panic!("expected ambiguity, got {other:?}"),
        }
        let full = IdPrefix::parse(&idy.to_hex()).expect("prefix");
        assert_eq!(s.resolve_prefix(&full).expect("full id"), idy);
        let none = IdPrefix::parse(if idx.short(4) == "0000" { "ffff" } else { "0000" }).expect("prefix");
        assert!(matches!(s.resolve_prefix(&none), Err(StoreError::PrefixNotFound { .. })));
    }

    #[test]
    fn create_refuses_existing_and_open_refuses_missing() {
        let (d, s) = temp_store();
        let path = s.path().to_owned();
        assert!(matches!(Store::create(&path, &[]), Err(StoreError::Exists { .. })));
        assert!(matches!(Store::open(&d.path().join("nope.redb")), Err(StoreError::Missing { .. })));
        drop(s);
        Store::open(&path).expect("reopen");
    }
}
