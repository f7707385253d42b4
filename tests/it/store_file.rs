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
