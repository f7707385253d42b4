//! `file:///PATH`: the embedded remote. A folder that behaves like a snapshot-enabled
//! bucket: point-in-time reads at any nanosecond, conditional writes, atomic puts, and
//! safe use by several processes at once.
//!
//! Layout: `PATH/bmsync-remote.redb` holds the index (every version of every key) and
//! `PATH/blobs/xx/<id>` holds contents by BLAKE3 id, each written to a temporary file
//! and renamed into place before the index names it, so no reader ever sees a torn object.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{
    Body, Capabilities, Condition, Listed, ObjectInfo, Remote, RemoteError, SnapshotInfo, Version, Written,
    check_key,
};
use crate::id::{ObjectHasher, ObjectId, ObjectKind};
use crate::object::EntryKind;

const INDEX_FILE: &str = "bmsync-remote.redb";
const BLOBS_DIR: &str = "blobs";
/// Every version of every key: (key, version) → record.
const HISTORY: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("history");
/// The live state: key → (version, record); deleted keys are absent.
const CURRENT: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("current");
/// Snapshots taken: version → name ("" for none).
const SNAPSHOTS: TableDefinition<u64, &str> = TableDefinition::new("snapshots");
/// The last version handed out (u64), so versions strictly increase.
const CLOCK: TableDefinition<&str, u64> = TableDefinition::new("clock");

/// Format version of the index (`format-version` in `meta`, u32 LE). Version 2 added
/// the executable and symlink kinds to record byte 0; a version-1 index is a valid
/// version-2 index and is upgraded in place when opened.
const FORMAT_VERSION: u32 = 2;
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Record byte 0 of a deleted key; a present object's byte 0 is its kind's
/// [`EntryKind::code`] (1 file, 2 executable, 3 symlink).
const DELETED: u8 = 0;

/// The embedded remote over a local folder.
#[derive(Debug)]
pub struct FileRemote {
    root: PathBuf,
    db: Database,
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
    let detail = e.to_string();
    if full { RemoteError::DiskFull { op, detail } } else { RemoteError::Storage { op, detail } }
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
        e => e,
    }
}

/// Encodes a present object's record: kind, size, content id, ETag.
fn record(kind: EntryKind, size: u64, content: ObjectId, etag: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(41 + etag.len());
    v.push(kind.code());
    v.extend_from_slice(&size.to_le_bytes());
    v.extend_from_slice(content.as_bytes());
    v.extend_from_slice(etag.as_bytes());
    v
}

fn parse(key: &str, rec: &[u8]) -> Option<ObjectInfo> {
    let kind = EntryKind::from_code(*rec.first()?).filter(|k| !k.is_tree())?;
    if rec.len() < 41 {
        return None;
    }
    let size = u64::from_le_bytes(rec[1..9].try_into().ok()?);
    let content = ObjectId::from_bytes(rec[9..41].try_into().ok()?);
    let etag = String::from_utf8(rec[41..].to_vec()).ok()?;
    Some(ObjectInfo { key: key.to_owned(), etag, size, content: Some(content), kind: Some(kind) })
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
    /// shared drive that is not mounted.
    pub fn open(root: &Path) -> Result<Self, RemoteError> {
        Self::check_folder(root)?;
        Self::open_in(root)
    }

    /// Opens the remote folder at `root`, creating it (and missing parents) first.
    pub fn create(root: &Path) -> Result<Self, RemoteError> {
        fs::create_dir_all(root).map_err(|e| RemoteError::Unreachable {
            endpoint: format!("file://{}", root.display()),
            detail: e.to_string(),
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
        Self::open_in(root)
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

    fn open_in(root: &Path) -> Result<Self, RemoteError> {
        fs::create_dir_all(root.join(BLOBS_DIR)).map_err(|e| other_at("open file remote", BLOBS_DIR, e))?;
        let db = Database::builder()
            .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter)
            .create(root.join(INDEX_FILE))
            .map_err(|e| other("open file remote", e))?;
        let txn = db.begin_write().map_err(|e| other("open file remote", e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| other("open file remote", e))?;
            let found = meta
                .get("format-version")
                .map_err(|e| other("open file remote", e))?
                .map(|v| v.value().to_vec());
            match found.as_deref().map(<[u8; 4]>::try_from) {
                None => {
                    meta.insert("format-version", FORMAT_VERSION.to_le_bytes().as_slice())
                        .map_err(|e| other("open file remote", e))?;
                }
                Some(Ok(v)) if u32::from_le_bytes(v) == FORMAT_VERSION => {}
                Some(Ok(v)) if u32::from_le_bytes(v) == 1 => {
                    meta.insert("format-version", FORMAT_VERSION.to_le_bytes().as_slice())
                        .map_err(|e| other("open file remote", e))?;
                }
                Some(_) => {
                    return Err(RemoteError::NotARemote {
                        path: root.to_owned(),
                        detail: format!(
                            "it was written by a newer or unknown bmsync (format {found:02x?}); upgrade bmsync"
                        ),
                    });
                }
            }
            drop(meta);
            txn.open_table(HISTORY).map_err(|e| other("open file remote", e))?;
            txn.open_table(CURRENT).map_err(|e| other("open file remote", e))?;
            txn.open_table(SNAPSHOTS).map_err(|e| other("open file remote", e))?;
            txn.open_table(CLOCK).map_err(|e| other("open file remote", e))?;
        }
        txn.commit().map_err(|e| other("open file remote", e))?;
        Ok(Self { root: root.to_owned(), db })
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
        check_key(key)?;
        let (id, size) = self.store_blob(body)?;
        if id != content {
            return Err(RemoteError::ContentChanged { key: key.to_owned() });
        }
        let op = "put";
        let kind = if kind.is_tree() { EntryKind::File } else { kind };
        let etag = etag_of(&id, kind);
        let txn = self.db.begin_write().map_err(|e| other(op, e))?;
        let version = {
            let mut current = txn.open_table(CURRENT).map_err(|e| other(op, e))?;
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

    fn delete(&self, key: &str, if_match: &str) -> Result<(), RemoteError> {
        check_key(key)?;
        let op = "delete";
        let txn = self.db.begin_write().map_err(|e| other(op, e))?;
        {
            let mut current = txn.open_table(CURRENT).map_err(|e| other(op, e))?;
            let existing = current.get(key).map_err(|e| other(op, e))?.and_then(|r| parse(key, r.value().1));
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
    }

    fn snapshot(&self, name: Option<&str>) -> Result<Version, RemoteError> {
        let op = "snapshot";
        let txn = self.db.begin_write().map_err(|e| other(op, e))?;
        let v = Self::next_version(&txn)?;
        txn.open_table(SNAPSHOTS)
            .map_err(|e| other(op, e))?
            .insert(v, name.unwrap_or(""))
            .map_err(|e| other(op, e))?;
        txn.commit().map_err(|e| other(op, e))?;
        Ok(v)
    }

    fn snapshots(&self) -> Result<Vec<SnapshotInfo>, RemoteError> {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real "no space left on device", from writing to `/dev/full`.
    fn enospc() -> std::io::Error {
        let mut f = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("open /dev/full");
        f.write_all(&[0u8; 4096]).and_then(|()| f.flush()).expect_err("/dev/full is always full")
    }

    #[test]
    fn a_full_disk_is_reported_as_such_through_io_and_the_index() {
        assert_eq!(enospc().kind(), std::io::ErrorKind::StorageFull);
        assert!(matches!(other("put", enospc()), RemoteError::DiskFull { op: "put", .. }));
        assert!(matches!(other_at("get", "a.md", enospc()), RemoteError::DiskFull { op: "get", .. }));
        // As redb reports it from a write or a commit.
        let storage = redb::StorageError::Io(enospc());
        assert!(matches!(other("put", storage), RemoteError::DiskFull { .. }));
        let commit = redb::CommitError::Storage(redb::StorageError::Io(enospc()));
        assert!(matches!(other("put", commit), RemoteError::DiskFull { .. }));
        let txn = redb::TransactionError::Storage(redb::StorageError::Io(enospc()));
        assert!(matches!(other("put", txn), RemoteError::DiskFull { .. }));
        // Any other failure is a storage failure: never a lost race.
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let e = other("put", denied);
        assert!(matches!(e, RemoteError::Storage { .. }) && !e.is_race(), "{e}");
        assert!(!other("put", enospc()).is_race());
    }

    #[test]
    fn opening_never_creates_the_folder() {
        let d = tempfile::tempdir().expect("tmp");
        let missing = d.path().join("missing/deeper");
        assert!(matches!(FileRemote::open(&missing), Err(RemoteError::MissingFolder { .. })));
        assert!(!d.path().join("missing").exists());
        let file = d.path().join("file");
        std::fs::write(&file, "x").expect("write");
        assert!(matches!(FileRemote::open(&file), Err(RemoteError::NotARemote { .. })));
        // An empty folder that was never a remote is not taken for one that was.
        let empty = d.path().join("empty");
        std::fs::create_dir(&empty).expect("mkdir");
        assert!(matches!(FileRemote::open_existing(&empty), Err(RemoteError::NotARemote { .. })));
        assert_eq!(std::fs::read_dir(&empty).expect("read").count(), 0, "nothing was made in it");
        FileRemote::create(&missing).expect("create makes it");
        FileRemote::open_existing(&missing).expect("and then it is a remote");
    }
}
