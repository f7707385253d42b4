//! The `file://` remote's index: a redb database beside the blobs (`format-spec/`).

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, TableDefinition};

use super::{ObjectInfo, RemoteError, other, storage};
use crate::id::ObjectId;
use crate::object::EntryKind;

pub(super) const INDEX_FILE: &str = "bmsync-remote.redb";
pub(super) const BLOBS_DIR: &str = "blobs";
/// Every version of every key: (key, version) → record.
pub(super) const HISTORY: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("history");
/// The live state: key → (version, record); deleted keys are absent.
pub(super) const CURRENT: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("current");
/// Snapshots taken: version → name ("" for none).
pub(super) const SNAPSHOTS: TableDefinition<u64, &str> = TableDefinition::new("snapshots");
/// The last version handed out (u64), so versions strictly increase.
pub(super) const CLOCK: TableDefinition<&str, u64> = TableDefinition::new("clock");

/// Format version of the index (`format-version` in `meta`, u32 LE). Version 2 added
/// the executable and symlink kinds to record byte 0; a version-1 index is a valid
/// version-2 index: read-only opens read it as it is, and the first writable open
/// upgrades it in place.
pub(super) const FORMAT_VERSION: u32 = 2;
pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Record byte 0 of a deleted key; a present object's byte 0 is its kind's
/// [`EntryKind::code`] (1 file, 2 executable, 3 symlink).
pub(super) const DELETED: u8 = 0;

/// The index: read through a read-only handle, and opened for writing only by the first
/// write, since a writable open changes the file even when nothing is written (measured),
/// and a remote that is only read must not change.
pub(super) struct Index {
    pub(super) reader: redb::ReadOnlyDatabase,
    pub(super) writer: std::sync::OnceLock<Database>,
    pub(super) path: PathBuf,
    /// Writes refused (`plan`).
    pub(super) read_only: bool,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("path", &self.path)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

pub(super) fn builder() -> redb::Builder {
    let mut b = Database::builder();
    b.set_concurrency_mode(redb::ConcurrencyMode::MultiWriter);
    // As small a cache as the store's: redb's default (1 GiB, for each of the two
    // handles) held over 1 GiB through a first sync of 1,000,000 files.
    b.set_cache_size(crate::store::CACHE_BYTES);
    b
}

impl Drop for Index {
    fn drop(&mut self) {
        // Closing the writer flushes, and may touch a damaged page: contain that too.
        let writer = self.writer.take();
        let _ = crate::store::catch_damage(|| drop(writer));
    }
}

impl Index {
    pub(super) fn begin_read(&self) -> Result<redb::ReadTransaction, redb::TransactionError> {
        // A MultiWriter reader follows every commit, ours included.
        self.reader.begin_read()
    }

    pub(super) fn writer(&self, op: &'static str) -> Result<&Database, RemoteError> {
        if self.read_only {
            return Err(storage(op, "the file remote is open read-only"));
        }
        if let Some(d) = self.writer.get() {
            return Ok(d);
        }
        let d = builder().open(&self.path).map_err(|e| other(op, e))?;
        // A racing thread may have set it first; either handle will do.
        let _ = self.writer.set(d);
        Ok(self.writer.get().expect("set just above"))
    }
}

/// Encodes a present object's record: kind, size, content id, ETag.
#[doc(hidden)]
pub fn record(kind: EntryKind, size: u64, content: ObjectId, etag: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(41 + etag.len());
    v.push(kind.code());
    v.extend_from_slice(&size.to_le_bytes());
    v.extend_from_slice(content.as_bytes());
    v.extend_from_slice(etag.as_bytes());
    v
}

/// Decodes a record of `key`; `None` for a deleted key or a malformed record.
#[doc(hidden)]
pub fn parse(key: &str, rec: &[u8]) -> Option<ObjectInfo> {
    let kind = EntryKind::from_code(*rec.first()?).filter(|k| !k.is_tree())?;
    if rec.len() < 41 {
        return None;
    }
    let size = u64::from_le_bytes(rec[1..9].try_into().ok()?);
    let content = ObjectId::from_bytes(rec[9..41].try_into().ok()?);
    let etag = String::from_utf8(rec[41..].to_vec()).ok()?;
    Some(ObjectInfo { key: key.to_owned(), etag, size, content: Some(content), kind: Some(kind) })
}

/// How far the index is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum IndexState {
    /// The format version this build writes, and every table.
    Ready,
    /// A version-1 index: readable as it is; the first writable open upgrades it.
    Old,
    /// Something is missing (a new index, or a first open that stopped).
    Missing,
}

/// How far the index is set up; an error for a format not ours.
pub(super) fn check_index(root: &Path, db: &impl ReadableDatabase) -> Result<IndexState, RemoteError> {
    let op = "open file remote";
    let txn = db.begin_read().map_err(|e| other(op, e))?;
    let found = match txn.open_table(META) {
        Ok(meta) => meta.get("format-version").map_err(|e| other(op, e))?.map(|v| v.value().to_vec()),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(other(op, e)),
    };
    let old = match found.as_deref().map(<[u8; 4]>::try_from) {
        None => return Ok(IndexState::Missing),
        Some(Ok(v)) if u32::from_le_bytes(v) == FORMAT_VERSION => false,
        Some(Ok(v)) if u32::from_le_bytes(v) == 1 => true,
        Some(_) => {
            return Err(RemoteError::NotARemote {
                path: root.to_owned(),
                detail: format!(
                    "it was written by a newer or unknown bmsync (format {found:02x?}); upgrade bmsync"
                ),
            });
        }
    };
    let present = |r: Result<_, redb::TableError>| match r {
        Ok(()) => Ok(true),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(false),
        Err(e) => Err(other(op, e)),
    };
    let tables = present(txn.open_table(HISTORY).map(drop))?
        && present(txn.open_table(CURRENT).map(drop))?
        && present(txn.open_table(SNAPSHOTS).map(drop))?
        && present(txn.open_table(CLOCK).map(drop))?;
    Ok(match (tables, old) {
        (false, _) => IndexState::Missing,
        (true, true) => IndexState::Old,
        (true, false) => IndexState::Ready,
    })
}
