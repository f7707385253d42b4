//! The store file as bytes on disk: corruption, truncation, newer formats, and locking.
//! Table definitions are restated here from `format-spec/store.md`, so a drift between
//! code and spec fails these tests.

use std::path::Path;

use bmsync::store::{STORE_FORMAT_VERSION, Store, StoreError};
use bmsync::{ObjectId, ObjectKind};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const OBJECTS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("objects");
const CHUNKS: TableDefinition<(&[u8; 32], u32), &[u8]> = TableDefinition::new("chunks");

fn with_db(path: &Path, f: impl FnOnce(&redb::WriteTransaction)) {
    let db = redb::Database::open(path).expect("open raw");
    let txn = db.begin_write().expect("write txn");
    f(&txn);
    txn.commit().expect("commit");
}

/// Rewrites one byte of an object row's value, as a bit-rot or a bad editor would.
fn flip_row_byte(path: &Path, id: ObjectId, index: impl Fn(usize) -> usize) {
    with_db(path, |txn| {
        let mut t = txn.open_table(OBJECTS).expect("objects table");
        let mut row = t.get(id.as_bytes()).expect("get").expect("row present").value().to_vec();
        let i = index(row.len());
        row[i] ^= 0x40;
        t.insert(id.as_bytes(), row.as_slice()).expect("insert");
    });
}

fn new_store(dir: &Path) -> Store {
    Store::create(&dir.join("store.redb"), &[]).expect("create")
}

#[test]
fn flipped_bytes_in_a_value_are_reported_as_corruption_naming_the_id() {
    let tmp = tempfile::tempdir().expect("tmp");
    let path = tmp.path().join("store.redb");
    let text: Vec<u8> = b"# Meeting notes\n\nDecisions: ship it.\n".repeat(50);
    let (id, _) = new_store(tmp.path()).put(ObjectKind::Blob, &text).expect("put");
    // Flip bytes at several places of the zstd frame and in the header's size field.
    for (what, at) in
        [("frame start", 10usize), ("frame middle", usize::MAX), ("frame end", usize::MAX - 1), ("size", 2)]
    {
        let before = {
            let db = redb::Database::open(&path).expect("open");
            let r = db.begin_read().expect("read");
            r.open_table(OBJECTS).expect("t").get(id.as_bytes()).expect("g").expect("row").value().to_vec()
        };
        flip_row_byte(&path, id, |len| match at {
            usize::MAX => len / 2,
            x if x == usize::MAX - 1 => len - 1,
            x => x,
        });
        let store = Store::open(&path).expect("open");
        let err = store.get(&id).expect_err(what);
        let msg = err.to_string();
        assert!(matches!(err, StoreError::Corrupt { id: got, .. } if got == id), "{what}: {msg}");
        assert!(msg.contains(&id.to_hex()) && msg.contains("corrupt"), "{what}: {msg}");
        drop(store);
        with_db(&path, |txn| {
            txn.open_table(OBJECTS).expect("t").insert(id.as_bytes(), before.as_slice()).expect("restore");
        });
        assert_eq!(Store::open(&path).expect("open").get(&id).expect("restored").1, text);
    }
}

#[test]
fn a_corrupt_chunk_is_reported() {
    let tmp = tempfile::tempdir().expect("tmp");
    let path = tmp.path().join("store.redb");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let (id, _) = new_store(tmp.path()).put(ObjectKind::Blob, &data).expect("put");
    with_db(&path, |txn| {
        let mut t = txn.open_table(CHUNKS).expect("chunks");
        let mut frame = t.get((id.as_bytes(), 1)).expect("get").expect("chunk 1").value().to_vec();
        let mid = frame.len() / 2;
        frame[mid] ^= 1;
        t.insert((id.as_bytes(), 1), frame.as_slice()).expect("insert");
    });
    let store = Store::open(&path).expect("open");
    let mut sink = Vec::new();
    let err = store.read_blob_to(&id, &mut sink).expect_err("corrupt chunk");
    assert!(matches!(err, StoreError::Corrupt { id: got, .. } if got == id), "{err}");
    drop(store);
    with_db(&path, |txn| {
        txn.open_table(CHUNKS).expect("chunks").remove((id.as_bytes(), 2)).expect("remove");
    });
    let err = Store::open(&path).expect("open").get(&id).expect_err("missing chunk");
    assert!(err.to_string().contains("chunk"), "{err}");
}

#[test]
fn a_newer_format_is_refused_with_a_clear_message() {
    let tmp = tempfile::tempdir().expect("tmp");
    let path = tmp.path().join("store.redb");
    drop(new_store(tmp.path()));
    with_db(&path, |txn| {
        let v = (STORE_FORMAT_VERSION + 1).to_le_bytes();
        txn.open_table(META).expect("meta").insert("format-version", v.as_slice()).expect("insert");
    });
    let err = Store::open(&path).expect_err("newer format");
    let msg = err.to_string();
    assert!(matches!(err, StoreError::NewerFormat { found: 2, supported: 1, .. }), "{msg}");
    assert!(msg.contains("newer") && msg.contains("upgrade bmsync"), "{msg}");
    with_db(&path, |txn| {
        txn.open_table(META).expect("meta").insert("format-version", b"v1".as_slice()).expect("insert");
    });
    assert!(matches!(Store::open(&path), Err(StoreError::UnknownFormat { .. })));
}

#[test]
fn a_foreign_redb_file_is_not_a_store() {
    let tmp = tempfile::tempdir().expect("tmp");
    let path = tmp.path().join("other.redb");
    let db = redb::Database::create(&path).expect("create");
    drop(db);
    assert!(matches!(Store::open(&path), Err(StoreError::NotAStore { .. })));
}

#[test]
fn truncated_or_garbage_files_give_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().expect("tmp");
    let path = tmp.path().join("store.redb");
    let store = new_store(tmp.path());
    for i in 0..200u32 {
        store.put(ObjectKind::Blob, format!("note {i}").as_bytes()).expect("put");
    }
    drop(store);
    let full = std::fs::read(&path).expect("read");
    for keep in [0, 7, 100, 4096, full.len() / 2, full.len() - 1] {
        std::fs::write(&path, &full[..keep]).expect("truncate");
        // Either a clean open error, or (redb repaired what it could) reads that fail cleanly.
        if let Ok(s) = Store::open(&path) {
            let _ = s.get(&ObjectId::for_blob(b"note 1"));
        }
    }
    std::fs::write(&path, b"this is not a database at all, just some text in a file").expect("garbage");
    let err = Store::open(&path).expect_err("garbage");
    assert!(err.to_string().contains("cannot open store"), "{err}");
}

#[test]
fn a_second_writer_is_told_the_store_is_in_use() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = new_store(tmp.path());
    let err = Store::open(store.path()).expect_err("locked");
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert!(err.to_string().contains("in use by another bmsync process"));
}

/// Copies a folder tree (files and folders only).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let dest = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).expect("copy");
        }
    }
}

/// Bytes, mode and mtime of every note (everything outside `.bmsync/`).
fn notes(root: &Path) -> Vec<(std::path::PathBuf, Vec<u8>, u32, std::time::SystemTime)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p == root.join(".bmsync") {
                continue;
            }
            let m = std::fs::symlink_metadata(&p).expect("stat");
            if m.is_dir() {
                stack.push(p.clone());
                continue;
            }
            out.push((p.clone(), std::fs::read(&p).expect("read"), m.mode(), m.modified().expect("mtime")));
        }
    }
    out.sort();
    out
}

/// A way to damage a byte: its index in the damaged run and its old value give the new.
type Pattern = fn(usize, u8) -> u8;

/// Damages the store file of a synced folder at every 4 KiB page (its start, where redb
/// keeps a page's header, and its middle) with several byte patterns, then runs status,
/// plan and sync on each copy through the CLI: an error (exit 1, saying the local state
/// is damaged and what to do) or a clean run, never a panic, never a changed note.
#[test]
fn a_damaged_store_is_a_clear_error_never_a_panic_and_no_note_changes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (folder, remote, pristine_remote) =
        (tmp.path().join("notes"), tmp.path().join("remote"), tmp.path().join("r0"));
    std::fs::create_dir_all(&folder).expect("mkdir");
    std::fs::create_dir_all(&remote).expect("mkdir");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_bmsync"))
            .env("HOME", &folder)
            .env_remove("BASIC_MEMORY_CONFIG_DIR")
            .env_remove("RUST_BACKTRACE")
            .arg("-C")
            .arg(&folder)
            .args(args)
            .output()
            .expect("run bmsync")
    };
    let url = format!("file://{}", remote.display());
    assert!(run(&["init", "--client-id", "alice", "--remote", &url]).status.success());
    for i in 0..12u32 {
        let body: String =
            (0..200).flat_map(|j| [i.to_string(), "-".into(), j.to_string(), " ".into()]).collect();
        let dir = if i % 3 == 0 { "sub/" } else { "" };
        std::fs::create_dir_all(folder.join("sub")).expect("mkdir");
        std::fs::write(folder.join(format!("{dir}n{i}.md")), format!("# Note {i}\n\n{body}\n"))
            .expect("write");
    }
    let first = run(&["sync"]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    copy_tree(&remote, &pristine_remote);
    let store = folder.join(".bmsync/store.redb");
    let pristine = std::fs::read(&store).expect("read store");
    let before = notes(&folder);
    let patterns: [(&str, Pattern); 3] = [
        ("flipped", |_, b| !b),
        ("zeroed", |_, _| 0),
        ("ramp", |i, _| (i as u8).wrapping_mul(37).wrapping_add(11)),
    ];
    let mut offsets: Vec<(usize, &str, Pattern)> = Vec::new();
    for page in 0..pristine.len() / 4096 {
        offsets.push((page * 4096, patterns[0].0, patterns[0].1));
        let (name, f) = patterns[1 + page % 2];
        offsets.push((page * 4096 + 2016, name, f));
    }
    offsets.push((pristine.len() / 2 - 32, patterns[0].0, patterns[0].1));
    let (mut damaged, mut clean) = (0, 0);
    for (at, name, f) in &offsets {
        let mut bytes = pristine.clone();
        for (i, b) in bytes[*at..*at + 64].iter_mut().enumerate() {
            *b = f(i, *b);
        }
        std::fs::write(&store, &bytes).expect("write damaged store");
        std::fs::remove_dir_all(&remote).expect("rm remote");
        copy_tree(&pristine_remote, &remote);
        for cmd in ["status", "plan", "sync"] {
            let o = run(&[cmd]);
            let err = String::from_utf8_lossy(&o.stderr);
            let what = format!("{cmd} with 64 bytes {name} at {at}");
            assert!(matches!(o.status.code(), Some(0 | 1)), "{what}: exit {:?}: {err}", o.status.code());
            assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{what}: {err}");
            if o.status.success() {
                clean += 1;
            } else if err.contains("the local state is damaged") {
                assert!(
                    err.contains("mv .bmsync .bmsync.damaged") && err.contains("deletes nothing"),
                    "{what}: {err}"
                );
                damaged += 1;
            }
            assert!(notes(&folder) == before, "{what} changed a note");
        }
    }
    // Both outcomes happened: the damage did reach data redb reads.
    assert!(damaged > 0 && clean > 0, "damaged {damaged}, clean {clean}");
}
