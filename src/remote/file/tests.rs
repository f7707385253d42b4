//! Unit tests of the `file://` remote.

use super::index::INDEX_FILE;
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
    r.put("a.md", Body::Bytes(b"a"), ObjectId::for_blob(b"a"), EntryKind::File, &Condition::IfAbsent)
        .expect("put");
    drop(r);
    // Backdate everything, so that a write in the same clock tick still shows.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for (p, _, _) in state(d.path()) {
        fs::File::open(&p).expect("open").set_modified(old).expect("backdate");
    }
    let before = state(d.path());
    let ro = FileRemote::open_read_only(d.path()).expect("open read-only");
    assert_eq!(ro.head("a.md", None).expect("head").size, 1);
    assert!(
        ro.put("b.md", Body::Bytes(b"b"), ObjectId::for_blob(b"b"), EntryKind::File, &Condition::IfAbsent)
            .is_err()
    );
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
    rw.put("b.md", Body::Bytes(b"b"), ObjectId::for_blob(b"b"), EntryKind::File, &Condition::IfAbsent)
        .expect("put");
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
            r.put(
                &format!("n/{i}.md"),
                Body::Bytes(body.as_bytes()),
                id,
                EntryKind::File,
                &Condition::IfAbsent,
            )
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
            errors.extend(
                r.put("new.md", Body::Bytes(b"new"), id, EntryKind::File, &Condition::IfAbsent).err(),
            );
            errors.extend(r.snapshot(None).err());
            drop(r);
            damaged += usize::from(!errors.is_empty());
        }
    }
    assert!(damaged > 0, "the damage was never seen");
}

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
    // A folder that cannot be written is said as such (a read-only share or drive).
    for kind in [std::io::ErrorKind::PermissionDenied, std::io::ErrorKind::ReadOnlyFilesystem] {
        let e = other("put", redb::StorageError::Io(std::io::Error::from(kind)));
        assert!(matches!(e, RemoteError::ReadOnly { op: "put", .. }) && !e.is_race(), "{e}");
        assert!(e.to_string().starts_with("put: the remote folder cannot be written"), "{e}");
    }
    // Any other failure is a storage failure: never a lost race.
    let e = other("put", std::io::Error::other("bad sector"));
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
