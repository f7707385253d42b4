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

/// Format version of the index (`format-version` in `meta`, u32 LE).
const FORMAT_VERSION: u32 = 1;
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Record byte 0: the key holds an object (1) or was deleted (0).
const PRESENT: u8 = 1;

/// The index: read through a read-only handle, and opened for writing only by the first
/// write, since a writable open changes the file even when nothing is written (measured),
/// and a remote that is only read must not change.
struct Index {
    reader: redb::ReadOnlyDatabase,
    writer: std::sync::OnceLock<Database>,
    path: PathBuf,
    /// Writes refused (`plan`).
    read_only: bool,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("path", &self.path)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

fn builder() -> redb::Builder {
    let mut b = Database::builder();
    b.set_concurrency_mode(redb::ConcurrencyMode::MultiWriter);
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
    fn begin_read(&self) -> Result<redb::ReadTransaction, redb::TransactionError> {
        // A MultiWriter reader follows every commit, ours included.
        self.reader.begin_read()
    }

    fn writer(&self, op: &'static str) -> Result<&Database, RemoteError> {
        if self.read_only {
            return Err(other(op, "the file remote is open read-only"));
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

/// The embedded remote over a local folder.
#[derive(Debug)]
pub struct FileRemote {
    root: PathBuf,
    db: Index,
}

fn other(op: &'static str, e: impl std::fmt::Display) -> RemoteError {
    RemoteError::Other { op, detail: e.to_string() }
}

/// Encodes a present object's record: flag, size, content id, ETag.
fn record(size: u64, content: ObjectId, etag: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(41 + etag.len());
    v.push(PRESENT);
    v.extend_from_slice(&size.to_le_bytes());
    v.extend_from_slice(content.as_bytes());
    v.extend_from_slice(etag.as_bytes());
    v
}

fn parse(key: &str, rec: &[u8]) -> Option<ObjectInfo> {
    if rec.first() != Some(&PRESENT) || rec.len() < 41 {
        return None;
    }
    let size = u64::from_le_bytes(rec[1..9].try_into().ok()?);
    let content = ObjectId::from_bytes(rec[9..41].try_into().ok()?);
    let etag = String::from_utf8(rec[41..].to_vec()).ok()?;
    Some(ObjectInfo { key: key.to_owned(), etag, size, content: Some(content) })
}

/// Whether the index is set up: the format version this build writes, and every table.
/// `false` when something is missing (a new index); an error for a format not ours.
fn check_index(root: &Path, db: &impl ReadableDatabase) -> Result<bool, RemoteError> {
    let op = "open file remote";
    let txn = db.begin_read().map_err(|e| other(op, e))?;
    let found = match txn.open_table(META) {
        Ok(meta) => meta.get("format-version").map_err(|e| other(op, e))?.map(|v| v.value().to_vec()),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(other(op, e)),
    };
    match found.as_deref().map(<[u8; 4]>::try_from) {
        None => return Ok(false),
        Some(Ok(v)) if u32::from_le_bytes(v) == FORMAT_VERSION => {}
        Some(_) => {
            return Err(other(
                op,
                format!(
                    "{} was written by a newer or unknown bmsync (format {found:02x?}); upgrade bmsync",
                    root.display()
                ),
            ));
        }
    }
    let present = |r: Result<_, redb::TableError>| match r {
        Ok(()) => Ok(true),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(false),
        Err(e) => Err(other(op, e)),
    };
    Ok(present(txn.open_table(HISTORY).map(drop))?
        && present(txn.open_table(CURRENT).map(drop))?
        && present(txn.open_table(SNAPSHOTS).map(drop))?
        && present(txn.open_table(CLOCK).map(drop))?)
}

fn damaged(root: &Path, op: &'static str, detail: &str) -> RemoteError {
    other(
        op,
        format!(
            "the remote's index {} is damaged: {detail}; restore the remote folder from a backup (the notes in every synced folder are untouched)",
            root.join(INDEX_FILE).display()
        ),
    )
}

fn etag_of(content: &ObjectId) -> String {
    format!("\"{}\"", content.short(32))
}

impl FileRemote {
    /// Opens (creating if needed) the remote folder at `root`, which must be absolute.
    /// A remote already set up is not written by opening it, nor by reading it: only the
    /// first write opens the index for writing.
    pub fn open(root: &Path) -> Result<Self, RemoteError> {
        Self::open_with(root, false)
    }

    /// Opens an existing remote folder for reading only (for `plan`): nothing in it
    /// changes, and writes fail.
    pub fn open_read_only(root: &Path) -> Result<Self, RemoteError> {
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
                fs::create_dir_all(root).map_err(|e| RemoteError::Unreachable {
                    endpoint: format!("file://{}", root.display()),
                    detail: e.to_string(),
                })?;
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
                    return Err(other(
                        op,
                        format!(
                            "{}: the remote's index needs a repair (a run that wrote to it was killed), which a read-only command does not do; run `bmsync sync` or `bmsync remote show` once",
                            root.display()
                        ),
                    ));
                }
                Err(e) => return Err(other(op, e)),
            };
            if !check_index(root, &reader)? {
                if read_only {
                    return Err(other(op, format!("{} is not set up as a bmsync remote", root.display())));
                }
                // A half-made index (an earlier first open stopped): finish it.
                if writer.get().is_none() {
                    let _ = writer.set(builder().open(&path).map_err(|e| other(op, e))?);
                }
                Self::set_up(writer.get().expect("set just above"))?;
            }
            let blobs = root.join(BLOBS_DIR);
            if !read_only && !blobs.is_dir() {
                fs::create_dir_all(&blobs).map_err(|e| other(op, e))?;
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
            if meta.get("format-version").map_err(|e| other(op, e))?.is_none() {
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
                let mut f = File::open(p).map_err(|e| other(op, format!("{}: {e}", p.display())))?;
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let n = f.read(&mut buf).map_err(|e| other(op, e))?;
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

impl Remote for FileRemote {
    fn url(&self) -> String {
        format!("file://{}", self.root.display())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { snapshots: true, versioning: true, conditional_delete: true }
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
        let mut f = File::open(self.blob_path(&id)).map_err(|e| other("get", format!("{key}: {e}")))?;
        std::io::copy(&mut f, out).map_err(|e| other("get", format!("{key}: {e}")))?;
        Ok(info)
    }

    fn put(
        &self,
        key: &str,
        body: Body<'_>,
        content: ObjectId,
        cond: &Condition,
    ) -> Result<Written, RemoteError> {
        self.guarded("put", || {
            check_key(key)?;
            // Refuse before the blob is written, on a read-only remote.
            self.db.writer("put")?;
            let (id, size) = self.store_blob(body)?;
            if id != content {
                return Err(other("put", format!("{key}: the content changed while it was read")));
            }
            let op = "put";
            let etag = etag_of(&id);
            let txn = self.db.writer(op)?.begin_write().map_err(|e| other(op, e))?;
            let version = {
                let mut current = txn.open_table(CURRENT).map_err(|e| other(op, e))?;
                let existing =
                    current.get(key).map_err(|e| other(op, e))?.and_then(|r| parse(key, r.value().1));
                let ok = match (cond, &existing) {
                    (Condition::IfAbsent, None) => true,
                    (Condition::IfMatch(want), Some(have)) => *want == have.etag,
                    _ => false,
                };
                if !ok {
                    return Err(RemoteError::PreconditionFailed { key: key.to_owned() });
                }
                let version = Self::next_version(&txn)?;
                let rec = record(size, id, &etag);
                current.insert(key, (version, rec.as_slice())).map_err(|e| other(op, e))?;
                txn.open_table(HISTORY)
                    .map_err(|e| other(op, e))?
                    .insert((key, version), rec.as_slice())
                    .map_err(|e| other(op, e))?;
                version
            };
            txn.commit().map_err(|e| other(op, e))?;
            Ok(Written { etag, version: Some(version.to_string()) })
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
                    .insert((key, version), [0u8].as_slice())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes and mtime of every file under `root`.
    fn state(root: &Path) -> Vec<(PathBuf, Vec<u8>, std::time::SystemTime)> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_owned()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).expect("read_dir") {
                let p = e.expect("entry").path();
                let m = fs::symlink_metadata(&p).expect("stat");
                if m.is_dir() {
                    stack.push(p.clone());
                }
                let bytes = if m.is_file() { fs::read(&p).expect("read") } else { Vec::new() };
                out.push((p, bytes, m.modified().expect("mtime")));
            }
        }
        out.sort();
        out
    }

    #[test]
    fn opening_and_reading_a_remote_writes_nothing_not_even_a_refused_put() {
        let d = tempfile::tempdir().expect("tmp");
        let r = FileRemote::open(d.path()).expect("create");
        r.put("a.md", Body::Bytes(b"a"), ObjectId::for_blob(b"a"), &Condition::IfAbsent).expect("put");
        drop(r);
        // Backdate everything, so that a write in the same clock tick still shows.
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for (p, _, _) in state(d.path()) {
            fs::File::open(&p).expect("open").set_modified(old).expect("backdate");
        }
        let before = state(d.path());
        let ro = FileRemote::open_read_only(d.path()).expect("open read-only");
        assert_eq!(ro.head("a.md", None).expect("head").size, 1);
        assert!(ro.put("b.md", Body::Bytes(b"b"), ObjectId::for_blob(b"b"), &Condition::IfAbsent).is_err());
        drop(ro);
        assert!(state(d.path()) == before, "a read-only open changed the remote folder");
        // An open for writing, and reads, change nothing either (redb's writable open
        // would: the index is opened for writing by the first write only).
        let rw = FileRemote::open(d.path()).expect("open");
        assert_eq!(rw.head("a.md", None).expect("head").size, 1);
        let (listed, _) = crate::remote::list_all(&rw, None).expect("list");
        assert_eq!(listed.len(), 1);
        assert!(rw.snapshots().expect("snapshots").is_empty());
        drop(rw);
        assert!(state(d.path()) == before, "opening and reading a remote changed it");
        // The first write opens the index for writing; reads then see it.
        let rw = FileRemote::open(d.path()).expect("open");
        rw.put("b.md", Body::Bytes(b"b"), ObjectId::for_blob(b"b"), &Condition::IfAbsent).expect("put");
        assert_eq!(rw.head("b.md", None).expect("head").size, 1);
    }

    /// A damaged index (64 bytes flipped at every 4 KiB page start and middle) gives
    /// errors, never a panic, whatever is asked of it.
    #[test]
    fn a_damaged_index_is_an_error_never_a_panic() {
        let d = tempfile::tempdir().expect("tmp");
        let mut snaps = Vec::new();
        {
            let r = FileRemote::open(d.path()).expect("create");
            for i in 0..60u32 {
                let body = format!("note {i}");
                let id = ObjectId::for_blob(body.as_bytes());
                r.put(&format!("n/{i}.md"), Body::Bytes(body.as_bytes()), id, &Condition::IfAbsent)
                    .expect("put");
                if i % 20 == 0 {
                    snaps.push(r.snapshot(Some(&format!("s{i}"))).expect("snapshot"));
                }
            }
        }
        let index = d.path().join(INDEX_FILE);
        let pristine = fs::read(&index).expect("read index");
        let mut damaged = 0;
        for page in 0..pristine.len() / 4096 {
            for at in [page * 4096, page * 4096 + 2016] {
                let mut bytes = pristine.clone();
                for b in &mut bytes[at..at + 64] {
                    *b = !*b;
                }
                fs::write(&index, &bytes).expect("damage");
                let Ok(r) = FileRemote::open(d.path()) else {
                    damaged += 1;
                    continue;
                };
                let mut errors = Vec::new();
                errors.extend(r.list(None, &mut |_| {}).err());
                errors.extend(r.list(snaps.first().copied(), &mut |_| {}).err());
                errors.extend(r.head("n/7.md", None).err());
                errors.extend(r.head("n/7.md", snaps.last().copied()).err());
                errors.extend(r.snapshots().err());
                let id = ObjectId::for_blob(b"new");
                errors.extend(r.put("new.md", Body::Bytes(b"new"), id, &Condition::IfAbsent).err());
                errors.extend(r.snapshot(None).err());
                drop(r);
                damaged += usize::from(!errors.is_empty());
            }
        }
        assert!(damaged > 0, "the damage was never seen");
    }
}
