//! `file:///PATH`: the embedded remote. A folder that behaves like a snapshot-enabled
//! bucket: point-in-time reads at any nanosecond, conditional writes, atomic puts, and
//! safe use by several processes at once.
//!
//! Layout: `PATH/bmsync-remote.redb` holds the index (every version of every key) and
//! `PATH/blobs/xx/<id>` holds contents by BLAKE3 id, each written to a temporary file
//! and renamed into place before the index names it, so no reader ever sees a torn object.

use std::fs::{self, File};

pub(crate) mod index;
#[cfg(test)]
mod tests;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable};

use super::{
    Body, Capabilities, Condition, Listed, ObjectInfo, Remote, RemoteError, SnapshotInfo, Version, Written,
    check_key,
};
use crate::id::{ObjectHasher, ObjectId, ObjectKind};
use crate::object::EntryKind;
use index::BLOBS_DIR;
use index::CLOCK;
use index::CURRENT;
use index::DELETED;
use index::FORMAT_VERSION;
use index::HISTORY;
use index::INDEX_FILE;
use index::Index;
use index::IndexState;
use index::META;
use index::SNAPSHOTS;
use index::builder;
use index::check_index;
use index::parse;
use index::record;

/// The embedded remote over a local folder.
#[derive(Debug)]
pub struct FileRemote {
    root: PathBuf,
    db: Index,
}

/// The I/O error inside an error of the index (redb) or of the file system, if any.
fn io_cause<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        return Some(io);
    }
    let storage = if let Some(s) = e.downcast_ref::<redb::StorageError>() {
        Some(s)
    } else if let Some(redb::TransactionError::Storage(s)) = e.downcast_ref() {
        Some(s)
    } else if let Some(redb::TableError::Storage(s)) = e.downcast_ref() {
        Some(s)
    } else if let Some(redb::CommitError::Storage(s)) = e.downcast_ref() {
        Some(s)
    } else if let Some(redb::DatabaseError::Storage(s)) = e.downcast_ref() {
        Some(s)
    } else if let Some(redb::Error::Io(io)) = e.downcast_ref() {
        return Some(io);
    } else {
        None
    };
    match storage {
        Some(redb::StorageError::Io(io)) => Some(io),
        _ => e.source().and_then(io_cause),
    }
}

/// A failure of the remote's own storage: a full disk is said as such.
fn other(op: &'static str, e: impl std::error::Error + 'static) -> RemoteError {
    let full = io_cause(&e).is_some_and(|io| {
        matches!(io.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
    });
    let denied = io_cause(&e).is_some_and(|io| {
        matches!(io.kind(), std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem)
    });
    let detail = e.to_string();
    if full {
        RemoteError::DiskFull { op, detail }
    } else if denied {
        RemoteError::ReadOnly { op, detail }
    } else {
        RemoteError::Storage { op, detail }
    }
}

/// A storage failure about one key.
fn other_at(op: &'static str, key: &str, e: std::io::Error) -> RemoteError {
    match other(op, e) {
        RemoteError::DiskFull { op, detail } => {
            RemoteError::DiskFull { op, detail: format!("{key}: {detail}") }
        }
        RemoteError::Storage { op, detail } => {
            RemoteError::Storage { op, detail: format!("{key}: {detail}") }
        }
        RemoteError::ReadOnly { op, detail } => {
            RemoteError::ReadOnly { op, detail: format!("{key}: {detail}") }
        }
        e => e,
    }
}

/// A failure of the remote's storage, in words.
fn storage(op: &'static str, detail: impl Into<String>) -> RemoteError {
    RemoteError::Storage { op, detail: detail.into() }
}

fn damaged(root: &Path, op: &'static str, detail: &str) -> RemoteError {
    storage(
        op,
        format!(
            "the remote's index {} is damaged: {detail}; restore the remote folder from a backup (the notes in every synced folder are untouched)",
            root.join(INDEX_FILE).display()
        ),
    )
}

/// The ETag of an object: its content id, abbreviated, and for an executable or a
/// symlink a suffix, so that a change of kind alone is a new ETag too.
fn etag_of(content: &ObjectId, kind: EntryKind) -> String {
    match kind {
        EntryKind::Executable => format!("\"{}-x\"", content.short(32)),
        EntryKind::Symlink => format!("\"{}-l\"", content.short(32)),
        EntryKind::File | EntryKind::Tree => format!("\"{}\"", content.short(32)),
    }
}

impl FileRemote {
    /// Opens the remote folder at `root` (absolute), which must exist; an empty folder
    /// becomes a new remote. Never creates `root` itself: a missing folder may be a
    /// shared drive that is not mounted. A remote already set up is not written by
    /// opening it, nor by reading it: only the first write opens the index for writing.
    pub fn open(root: &Path) -> Result<Self, RemoteError> {
        Self::check_folder(root)?;
        Self::open_with(root, false)
    }

    /// Opens the remote folder at `root`, creating it (and missing parents) first.
    pub fn create(root: &Path) -> Result<Self, RemoteError> {
        fs::create_dir_all(root).map_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                RemoteError::ReadOnly {
                    op: "create the remote folder",
                    detail: format!("{}: {e}", root.display()),
                }
            }
            _ => RemoteError::Unreachable {
                endpoint: format!("file://{}", root.display()),
                detail: e.to_string(),
            },
        })?;
        Self::open(root)
    }

    /// Opens a remote folder that must already be a bmsync remote (it has its index): a
    /// folder synced with before, which must not silently start over empty (a drive that
    /// is not mounted leaves an empty mount point).
    pub fn open_existing(root: &Path) -> Result<Self, RemoteError> {
        Self::check_folder(root)?;
        if !root.join(INDEX_FILE).is_file() {
            return Err(RemoteError::NotARemote {
                path: root.to_owned(),
                detail: format!("it has no {INDEX_FILE} (is the drive mounted?)"),
            });
        }
        Self::open_with(root, false)
    }

    /// Checks that `root` is a folder (without creating anything).
    pub fn check_folder(root: &Path) -> Result<(), RemoteError> {
        match fs::metadata(root) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(RemoteError::NotARemote {
                path: root.to_owned(),
                detail: "it is not a folder".to_owned(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(RemoteError::MissingFolder { path: root.to_owned() })
            }
            Err(e) => Err(RemoteError::Unreachable {
                endpoint: format!("file://{}", root.display()),
                detail: e.to_string(),
            }),
        }
    }

    /// Opens an existing remote folder for reading only (for `plan`): nothing in it
    /// changes, and writes fail.
    pub fn open_read_only(root: &Path) -> Result<Self, RemoteError> {
        Self::check_folder(root)?;
        Self::open_with(root, true)
    }

    fn open_with(root: &Path, read_only: bool) -> Result<Self, RemoteError> {
        match crate::store::catch_damage(|| {
            let op = "open file remote";
            let path = root.join(INDEX_FILE);
            let writer = std::sync::OnceLock::new();
            if !path.exists() {
                if read_only {
                    return Err(RemoteError::Unreachable {
                        endpoint: format!("file://{}", root.display()),
                        detail: "no bmsync remote here yet (a sync or push creates it)".to_owned(),
                    });
                }
                let db = builder().create(&path).map_err(|e| other(op, e))?;
                Self::set_up(&db)?;
                let _ = writer.set(db);
            }
            let reader = match builder().open_read_only(&path) {
                Ok(r) => r,
                // The last writer was killed: a writable open repairs the index (a write,
                // which a read-only remote does not do).
                Err(redb::DatabaseError::RepairAborted) if !read_only => {
                    if writer.get().is_none() {
                        let _ = writer.set(builder().open(&path).map_err(|e| other(op, e))?);
                    }
                    builder().open_read_only(&path).map_err(|e| other(op, e))?
                }
                Err(redb::DatabaseError::RepairAborted) => {
                    return Err(RemoteError::NeedsRepair { path: root.to_owned() });
                }
                Err(e) => return Err(other(op, e)),
            };
            let state = check_index(root, &reader)?;
            if state == IndexState::Missing && read_only {
                return Err(storage(op, format!("{} is not set up as a bmsync remote", root.display())));
            }
            if state != IndexState::Ready && !read_only {
                // A half-made index (an earlier first open stopped), or a version-1 one
                // (upgraded in place): finish it.
                if writer.get().is_none() {
                    let _ = writer.set(builder().open(&path).map_err(|e| other(op, e))?);
                }
                Self::set_up(writer.get().expect("set just above"))?;
            }
            let blobs = root.join(BLOBS_DIR);
            if !read_only && !blobs.is_dir() {
                fs::create_dir_all(&blobs).map_err(|e| other_at(op, BLOBS_DIR, e))?;
            }
            Ok(Self { root: root.to_owned(), db: Index { reader, writer, path, read_only } })
        }) {
            Ok(r) => r,
            Err(detail) => Err(damaged(root, "open file remote", &detail)),
        }
    }

    /// Writes the format version and creates the tables, where missing.
    fn set_up(db: &Database) -> Result<(), RemoteError> {
        let op = "open file remote";
        let txn = db.begin_write().map_err(|e| other(op, e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| other(op, e))?;
            let found = meta.get("format-version").map_err(|e| other(op, e))?.map(|v| v.value().to_vec());
            // Absent, or version 1 (whose records version 2 reads as they are).
            if found.is_none_or(|v| v == 1u32.to_le_bytes()) {
                meta.insert("format-version", FORMAT_VERSION.to_le_bytes().as_slice())
                    .map_err(|e| other(op, e))?;
            }
            drop(meta);
            txn.open_table(HISTORY).map_err(|e| other(op, e))?;
            txn.open_table(CURRENT).map_err(|e| other(op, e))?;
            txn.open_table(SNAPSHOTS).map_err(|e| other(op, e))?;
            txn.open_table(CLOCK).map_err(|e| other(op, e))?;
        }
        txn.commit().map_err(|e| other(op, e))
    }

    /// Runs one index operation with redb's panics on a damaged page turned into an error.
    fn guarded<T>(
        &self,
        op: &'static str,
        f: impl FnOnce() -> Result<T, RemoteError>,
    ) -> Result<T, RemoteError> {
        match crate::store::catch_damage(f) {
            Ok(r) => r,
            Err(detail) => Err(damaged(&self.root, op, &detail)),
        }
    }

    fn blob_path(&self, id: &ObjectId) -> PathBuf {
        let hex = id.to_hex();
        self.root.join(BLOBS_DIR).join(&hex[..2]).join(hex)
    }

    /// Copies the body into the blob store (atomically) and returns its real content id.
    fn store_blob(&self, body: Body<'_>) -> Result<(ObjectId, u64), RemoteError> {
        let op = "put";
        let dir = self.root.join(BLOBS_DIR);
        let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(|e| other(op, e))?;
        let mut h = ObjectHasher::new(ObjectKind::Blob);
        let mut size = 0u64;
        let mut feed = |chunk: &[u8]| -> Result<(), RemoteError> {
            h.update(chunk);
            size += chunk.len() as u64;
            tmp.write_all(chunk).map_err(|e| other(op, e))
        };
        match body {
            Body::Bytes(b) => feed(b)?,
            Body::File(p) => {
                let local = |source| RemoteError::LocalRead { path: p.to_owned(), source };
                let mut f = File::open(p).map_err(local)?;
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let n = f.read(&mut buf).map_err(local)?;
                    if n == 0 {
                        break;
                    }
                    feed(&buf[..n])?;
                }
            }
        }
        tmp.as_file().sync_all().map_err(|e| other(op, e))?;
        let id = h.finalize();
        let dest = self.blob_path(&id);
        fs::create_dir_all(dest.parent().expect("blob paths have a parent")).map_err(|e| other(op, e))?;
        tmp.persist(&dest).map_err(|e| other(op, e.error))?;
        Ok((id, size))
    }

    /// The next version: now, or one past the last handed out.
    fn next_version(txn: &redb::WriteTransaction) -> Result<Version, RemoteError> {
        let mut clock = txn.open_table(CLOCK).map_err(|e| other("clock", e))?;
        let last = clock.get("last").map_err(|e| other("clock", e))?.map_or(0, |v| v.value());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let v = now.max(last + 1);
        clock.insert("last", v).map_err(|e| other("clock", e))?;
        Ok(v)
    }

    fn lookup(&self, key: &str, at: Option<Version>) -> Result<Option<ObjectInfo>, RemoteError> {
        self.guarded("head", || {
            let op = "head";
            let txn = self.db.begin_read().map_err(|e| other(op, e))?;
            match at {
                None => {
                    let t = txn.open_table(CURRENT).map_err(|e| other(op, e))?;
                    let row = t.get(key).map_err(|e| other(op, e))?;
                    Ok(row.and_then(|r| parse(key, r.value().1)))
                }
                Some(v) => {
                    let t = txn.open_table(HISTORY).map_err(|e| other(op, e))?;
                    let mut range = t.range((key, 0)..=(key, v)).map_err(|e| other(op, e))?;
                    let last = range.next_back().transpose().map_err(|e| other(op, e))?;
                    Ok(last.and_then(|(_, r)| parse(key, r.value())))
                }
            }
        })
    }
}

impl FileRemote {
    /// Records `key` as holding blob `id`, if `cond` holds at `key` (and, for a copy, if
    /// `source` still has its ETag), in one transaction.
    fn write_record(
        &self,
        key: &str,
        kind: EntryKind,
        size: u64,
        id: ObjectId,
        cond: &Condition,
        source: Option<(&str, &str)>,
    ) -> Result<Written, RemoteError> {
        let op = if source.is_some() { "copy" } else { "put" };
        let etag = etag_of(&id, kind);
        let txn = self.db.writer(op)?.begin_write().map_err(|e| other(op, e))?;
        let version = {
            let mut current = txn.open_table(CURRENT).map_err(|e| other(op, e))?;
            if let Some((from, want)) = source {
                let have =
                    current.get(from).map_err(|e| other(op, e))?.and_then(|r| parse(from, r.value().1));
                if have.is_none_or(|h| h.etag != want) {
                    return Err(RemoteError::PreconditionFailed { key: from.to_owned() });
                }
            }
            let existing = current.get(key).map_err(|e| other(op, e))?.and_then(|r| parse(key, r.value().1));
            let ok = match (cond, &existing) {
                (Condition::IfAbsent, None) => true,
                (Condition::IfMatch(want), Some(have)) => *want == have.etag,
                _ => false,
            };
            if !ok {
                return Err(RemoteError::PreconditionFailed { key: key.to_owned() });
            }
            let version = Self::next_version(&txn)?;
            let rec = record(kind, size, id, &etag);
            current.insert(key, (version, rec.as_slice())).map_err(|e| other(op, e))?;
            txn.open_table(HISTORY)
                .map_err(|e| other(op, e))?
                .insert((key, version), rec.as_slice())
                .map_err(|e| other(op, e))?;
            version
        };
        txn.commit().map_err(|e| other(op, e))?;
        Ok(Written { etag, version: Some(version.to_string()) })
    }
}

impl Remote for FileRemote {
    fn url(&self) -> String {
        format!("file://{}", self.root.display())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { snapshots: true, versioning: true, conditional_put: true, conditional_delete: true }
    }

    fn list(&self, at: Option<Version>, each: &mut dyn FnMut(Listed)) -> Result<(), RemoteError> {
        self.guarded("list", || {
            let op = "list";
            let txn = self.db.begin_read().map_err(|e| other(op, e))?;
            let mut emit = |info: ObjectInfo| match check_key(&info.key) {
                Ok(()) => each(Listed::Object(info)),
                Err(RemoteError::UnsafeKey { key, reason }) => each(Listed::Unsafe { key, reason }),
                Err(_) => unreachable!("check_key only reports unsafe keys"),
            };
            match at {
                None => {
                    let t = txn.open_table(CURRENT).map_err(|e| other(op, e))?;
                    for row in t.iter().map_err(|e| other(op, e))? {
                        let (k, v) = row.map_err(|e| other(op, e))?;
                        if let Some(info) = parse(k.value(), v.value().1) {
                            emit(info);
                        }
                    }
                }
                Some(at) => {
                    // Keys come in order, versions ascending within a key: keep each key's
                    // last version at or before `at`.
                    let t = txn.open_table(HISTORY).map_err(|e| other(op, e))?;
                    let mut pending: Option<(String, Vec<u8>)> = None;
                    for row in t.iter().map_err(|e| other(op, e))? {
                        let (k, v) = row.map_err(|e| other(op, e))?;
                        let (key, version) = k.value();
                        if pending.as_ref().is_some_and(|(p, _)| p != key) {
                            let (p, rec) = pending.take().expect("checked above");
                            if let Some(info) = parse(&p, &rec) {
                                emit(info);
                            }
                        }
                        if version <= at {
                            pending = Some((key.to_owned(), v.value().to_vec()));
                        }
                    }
                    if let Some((p, rec)) = pending
                        && let Some(info) = parse(&p, &rec)
                    {
                        emit(info);
                    }
                }
            }
            Ok(())
        })
    }

    fn head(&self, key: &str, at: Option<Version>) -> Result<ObjectInfo, RemoteError> {
        check_key(key)?;
        self.lookup(key, at)?.ok_or_else(|| RemoteError::NotFound { key: key.to_owned() })
    }

    fn get(&self, key: &str, at: Option<Version>, out: &mut dyn Write) -> Result<ObjectInfo, RemoteError> {
        let info = self.head(key, at)?;
        let id = info.content.expect("file remote records always carry a content id");
        let mut f = File::open(self.blob_path(&id)).map_err(|e| other_at("get", key, e))?;
        std::io::copy(&mut f, out).map_err(|e| other_at("get", key, e))?;
        Ok(info)
    }

    fn put(
        &self,
        key: &str,
        body: Body<'_>,
        content: ObjectId,
        kind: EntryKind,
        cond: &Condition,
    ) -> Result<Written, RemoteError> {
        self.guarded("put", || {
            check_key(key)?;
            // Refuse before the blob is written, on a read-only remote.
            self.db.writer("put")?;
            let (id, size) = self.store_blob(body)?;
            if id != content {
                return Err(RemoteError::ContentChanged { key: key.to_owned() });
            }
            let kind = if kind.is_tree() { EntryKind::File } else { kind };
            self.write_record(key, kind, size, id, cond, None)
        })
    }

    fn copy(&self, from: &str, if_match: &str, content: ObjectId, to: &str) -> Result<Written, RemoteError> {
        self.guarded("copy", || {
            check_key(from)?;
            check_key(to)?;
            let src =
                self.lookup(from, None)?.ok_or_else(|| RemoteError::NotFound { key: from.to_owned() })?;
            let id = src.content.expect("file remote records always carry a content id");
            if id != content {
                return Err(RemoteError::PreconditionFailed { key: from.to_owned() });
            }
            let kind = src.kind.unwrap_or(EntryKind::File);
            // Blobs are shared by content: the copy writes a record, never bytes.
            self.write_record(to, kind, src.size, id, &Condition::IfAbsent, Some((from, if_match)))
        })
    }

    fn delete(&self, key: &str, if_match: &str) -> Result<(), RemoteError> {
        self.guarded("delete", || {
            check_key(key)?;
            let op = "delete";
            let txn = self.db.writer(op)?.begin_write().map_err(|e| other(op, e))?;
            {
                let mut current = txn.open_table(CURRENT).map_err(|e| other(op, e))?;
                let existing =
                    current.get(key).map_err(|e| other(op, e))?.and_then(|r| parse(key, r.value().1));
                match existing {
                    None => return Err(RemoteError::NotFound { key: key.to_owned() }),
                    Some(have) if have.etag != if_match => {
                        return Err(RemoteError::PreconditionFailed { key: key.to_owned() });
                    }
                    Some(_) => {}
                }
                let version = Self::next_version(&txn)?;
                current.remove(key).map_err(|e| other(op, e))?;
                txn.open_table(HISTORY)
                    .map_err(|e| other(op, e))?
                    .insert((key, version), [DELETED].as_slice())
                    .map_err(|e| other(op, e))?;
            }
            txn.commit().map_err(|e| other(op, e))
        })
    }

    fn snapshot(&self, name: Option<&str>) -> Result<Version, RemoteError> {
        self.guarded("snapshot", || {
            let op = "snapshot";
            let txn = self.db.writer(op)?.begin_write().map_err(|e| other(op, e))?;
            let v = Self::next_version(&txn)?;
            txn.open_table(SNAPSHOTS)
                .map_err(|e| other(op, e))?
                .insert(v, name.unwrap_or(""))
                .map_err(|e| other(op, e))?;
            txn.commit().map_err(|e| other(op, e))?;
            Ok(v)
        })
    }

    fn snapshots(&self) -> Result<Vec<SnapshotInfo>, RemoteError> {
        self.guarded("list snapshots", || {
            let op = "list snapshots";
            let txn = self.db.begin_read().map_err(|e| other(op, e))?;
            let t = txn.open_table(SNAPSHOTS).map_err(|e| other(op, e))?;
            t.iter()
                .map_err(|e| other(op, e))?
                .map(|row| {
                    let (k, v) = row.map_err(|e| other(op, e))?;
                    let name = v.value();
                    Ok(SnapshotInfo { version: k.value(), name: (!name.is_empty()).then(|| name.to_owned()) })
                })
                .collect()
        })
    }
}
