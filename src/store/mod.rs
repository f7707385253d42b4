//! The object store: a redb database at `.bmsync/store.redb` (`format-spec/store.md`).
//!
//! Objects are zstd-compressed, written put-if-absent, and verified against their id on
//! every read. Refs move by compare-and-swap in durable transactions.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use redb::{Database, ReadableDatabase, TableDefinition};

use crate::id::{ID_LEN, ObjectId, ObjectKind};
use crate::object::{Commit, Manifest, ManifestRef, Tree};

mod batch;
mod error;
mod fsck;
mod gc;
pub(crate) mod rows;
mod tables;
#[cfg(test)]
mod tests;
mod tree_source;

pub use batch::Batch;
pub(crate) use batch::{Prepared, prepare};
pub use error::StoreError;
pub use fsck::{Finding, FindingKind, FsckReport};
use rows::{CountingWriter, corrupt, parse_header, read_object};
pub use tables::WorktreeReader;

/// The store format this build writes and reads.
pub const STORE_FORMAT_VERSION: u32 = 1;
/// Objects larger than this are stored as chunks of exactly this size (the last shorter).
pub const CHUNK_SIZE: usize = 1 << 20;
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
    trees: Arc<Mutex<TreeCache>>,
}

/// Trees already read and verified, by id. A tree's bytes never change (its id is their
/// hash), so a second read of one (the base tree's folders, read by each diff of a sync)
/// costs a copy, not a lookup, a decompression and a hash. Bounded: emptied when full,
/// and by garbage collection, so that a deleted tree is not served.
#[derive(Default)]
pub(crate) struct TreeCache {
    map: std::collections::HashMap<ObjectId, Arc<[u8]>>,
    bytes: usize,
}

/// The most bytes of trees [`TreeCache`] holds.
const TREE_CACHE_BYTES: usize = 32 << 20;

impl TreeCache {
    fn get(cache: &Mutex<Self>, id: &ObjectId) -> Option<Vec<u8>> {
        cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).map.get(id).map(|b| b.to_vec())
    }

    fn put(cache: &Mutex<Self>, id: ObjectId, bytes: &[u8]) {
        let mut c = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if c.bytes + bytes.len() > TREE_CACHE_BYTES {
            c.map.clear();
            c.bytes = 0;
        }
        if bytes.len() <= TREE_CACHE_BYTES && c.map.insert(id, bytes.into()).is_none() {
            c.bytes += bytes.len();
        }
    }

    pub(crate) fn clear(cache: &Mutex<Self>) {
        let mut c = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        c.map.clear();
        c.bytes = 0;
    }
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
/// redb's page cache (read cache and write buffer together). Its default, 1 GiB, is what
/// a large first commit's peak memory grew to, and every page read stays in it: `status`
/// kept all of the stat cache's records. Beyond this, pages are read from (and written
/// to) the file, which the OS caches anyway: on 100,000 files, `status` and the first
/// commit take the same time with 8 MiB as with 64 MiB, in 22 and 31 MiB of RSS instead
/// of 33 and 97.
pub(crate) const CACHE_BYTES: usize = 8 << 20;

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
            let db = Database::builder()
                .set_cache_size(CACHE_BYTES)
                .create(path)
                .map_err(|e| open_error(path, e))?;
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
            Ok(Self { db: Db::Write(db), path: path.to_owned(), trees: Arc::default() })
        })
    }

    /// Opens an existing store, refusing a missing file, a foreign database, or a newer
    /// format.
    pub fn open(path: &Path) -> Result<Self> {
        contain(path, || {
            check_exists(path)?;
            let db = Database::builder()
                .set_cache_size(CACHE_BYTES)
                .open(path)
                .map_err(|e| open_error(path, e))?;
            check_format(path, &db)?;
            Ok(Self { db: Db::Write(db), path: path.to_owned(), trees: Arc::default() })
        })
    }

    /// Opens an existing store for reading only: no byte of the file changes, not even
    /// its header (an open for writing marks the file in use). A store that was not
    /// closed cleanly needs a repair, which is a write, so it is refused here.
    pub fn open_read_only(path: &Path) -> Result<Self> {
        contain(path, || {
            check_exists(path)?;
            let db = Database::builder().set_cache_size(CACHE_BYTES).open_read_only(path).map_err(
                |e| match e {
                    redb::DatabaseError::RepairAborted => StoreError::NeedsRepair { path: path.to_owned() },
                    e => open_error(path, e),
                },
            )?;
            check_format(path, &db)?;
            Ok(Self { db: Db::Read(db), path: path.to_owned(), trees: Arc::default() })
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
        if kind == ObjectKind::Tree
            && let Some(bytes) = TreeCache::get(&self.trees, id)
        {
            return Ok(bytes);
        }
        let mut out = Vec::new();
        self.read_into(id, Some(kind), &mut out)?;
        if kind == ObjectKind::Tree {
            TreeCache::put(&self.trees, *id, &out);
        }
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

    /// Reads a manifest and hands it to `f` decoded in place (no owned copy of its
    /// entries: a base of a million paths is read in its own bytes).
    pub fn with_manifest<R>(&self, id: &ObjectId, f: impl FnOnce(&ManifestRef<'_>) -> R) -> Result<R> {
        let bytes = self.get_kind(id, ObjectKind::Manifest)?;
        let m = ManifestRef::decode(&bytes).map_err(|e| corrupt(id, e.to_string()))?;
        Ok(f(&m))
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
        contain(&self.path, || {
            Ok(StoreReader { txn: self.db.begin_read()?, path: self.path.clone(), trees: self.trees.clone() })
        })
    }
}

/// A read view of the store at one point in time (see [`Store::reader`]).
pub struct StoreReader {
    txn: redb::ReadTransaction,
    path: PathBuf,
    trees: Arc<Mutex<TreeCache>>,
}

impl StoreReader {
    /// Reads an object that must be of `kind`, verified against its id.
    pub fn get_kind(&self, id: &ObjectId, kind: ObjectKind) -> Result<Vec<u8>> {
        if kind == ObjectKind::Tree
            && let Some(bytes) = TreeCache::get(&self.trees, id)
        {
            return Ok(bytes);
        }
        let out = contain(&self.path, || {
            let mut out = Vec::new();
            read_object(&self.txn, id, Some(kind), &mut out)?;
            Ok(out)
        })?;
        if kind == ObjectKind::Tree {
            TreeCache::put(&self.trees, *id, &out);
        }
        Ok(out)
    }
}
