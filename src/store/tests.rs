//! Unit tests of the object store.

use super::*;
use crate::id::IdPrefix;
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
    assert!(matches!(s.get_commit(&tid), Err(StoreError::WrongKind { expected: ObjectKind::Commit, .. })));
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

#[test]
fn a_tree_read_once_and_then_deleted_reads_as_missing() {
    let (_d, s) = temp_store();
    let blob = s.put(ObjectKind::Blob, b"x").expect("put").0;
    let tree = Tree::new(vec![TreeEntry { name: "x.md".into(), kind: EntryKind::File, id: blob, size: 1 }])
        .expect("valid tree");
    let tid = s.put_tree(&tree).expect("put tree");
    // Read twice, through the store and through a reader: the second read is from memory.
    assert_eq!(s.get_tree(&tid).expect("get tree"), tree);
    let r = s.reader().expect("reader");
    assert_eq!(Tree::decode(&r.get_kind(&tid, ObjectKind::Tree).expect("read")).expect("decode"), tree);
    drop(r);
    assert_eq!(s.delete_objects(&[tid]).expect("delete"), 1);
    assert!(matches!(s.get_tree(&tid), Err(StoreError::NotFound { id }) if id == tid));
    let r = s.reader().expect("reader");
    assert!(r.get_kind(&tid, ObjectKind::Tree).is_err(), "a reader does not serve it either");
}
