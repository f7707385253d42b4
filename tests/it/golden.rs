//! Golden vectors: committed encodings and ids under `tests/fixtures/objects/`.
//! Regenerate (after a deliberate format change, with format-spec updated) with
//! `BMSYNC_BLESS=1 cargo test --test it golden`.

use std::fmt::Write as _;
use std::path::PathBuf;

use bmsync::object::{Commit, EntryKind, Manifest, ManifestEntry, RemoteBaseline, Tree, TreeEntry};
use bmsync::{ObjectId, ObjectKind};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/objects")
}

fn vectors() -> Vec<(&'static str, ObjectKind, Vec<u8>)> {
    let blob = b"---\ntitle: Hello\n---\n# Hello\n".to_vec();
    let blob_id = ObjectId::for_blob(&blob);
    let sub = Tree::new(vec![TreeEntry {
        name: "caf\u{e9}.md".into(),
        kind: EntryKind::File,
        id: blob_id,
        size: blob.len() as u64,
    }])
    .expect("valid");
    let tree = Tree::new(vec![
        TreeEntry { name: "notes".into(), kind: EntryKind::Tree, id: sub.id(), size: sub.total_size() },
        TreeEntry { name: "notes.md".into(), kind: EntryKind::File, id: blob_id, size: blob.len() as u64 },
        TreeEntry {
            name: "run.sh".into(),
            kind: EntryKind::Executable,
            id: ObjectId::for_blob(b"#!/bin/sh\n"),
            size: 10,
        },
        TreeEntry {
            name: "link".into(),
            kind: EntryKind::Symlink,
            id: ObjectId::for_blob(b"notes.md"),
            size: 8,
        },
    ])
    .expect("valid");
    let manifest = Manifest::new(vec![
        ManifestEntry {
            path: "notes.md".into(),
            key: "team/notes.md".into(),
            etag: "\"9b2cf535f27731c974343645a3985328\"".into(),
            size: blob.len() as u64,
            content: Some(blob_id),
            kind: bmsync::EntryKind::File,
        },
        ManifestEntry {
            path: "notes/caf\u{e9}.md".into(),
            key: "team/notes/caf\u{e9}.md".into(),
            etag: "\"1\"".into(),
            size: blob.len() as u64,
            content: None,
            kind: bmsync::EntryKind::File,
        },
    ])
    .expect("valid");
    // Version 2: an executable and a symlink (the flags byte carries the kind).
    let manifest_v2 = Manifest::new(vec![
        ManifestEntry {
            path: "link".into(),
            key: "link".into(),
            etag: "\"7\"".into(),
            size: 8,
            content: Some(ObjectId::for_blob(b"notes.md")),
            kind: EntryKind::Symlink,
        },
        ManifestEntry {
            path: "run.sh".into(),
            key: "run.sh".into(),
            etag: "\"8\"".into(),
            size: 10,
            content: None,
            kind: EntryKind::Executable,
        },
    ])
    .expect("valid");
    let root_commit = Commit {
        tree: tree.id(),
        parents: vec![],
        client_id: "alice".into(),
        timestamp_ns: 1_764_000_000_000_000_000,
        message: "first sync".into(),
        baseline: Some(RemoteBaseline {
            remote: "s3://team-notes/team".into(),
            snapshot: Some(1_764_000_000_123_456_789),
            manifest: manifest.id(),
        }),
    };
    let local_commit = Commit {
        tree: sub.id(),
        parents: vec![root_commit.id()],
        client_id: "alice".into(),
        timestamp_ns: -1,
        message: String::new(),
        baseline: None,
    };
    vec![
        ("blob", ObjectKind::Blob, blob),
        ("empty-tree", ObjectKind::Tree, Tree::default().encode()),
        ("subtree", ObjectKind::Tree, sub.encode()),
        ("tree", ObjectKind::Tree, tree.encode()),
        ("manifest", ObjectKind::Manifest, manifest.encode()),
        ("manifest-v2", ObjectKind::Manifest, manifest_v2.encode()),
        ("commit-sync", ObjectKind::Commit, root_commit.encode()),
        ("commit-local", ObjectKind::Commit, local_commit.encode()),
    ]
}

#[test]
fn golden_vectors_match() {
    let bless = std::env::var_os("BMSYNC_BLESS").is_some();
    let mut index = String::from("# name kind id (see format-spec/objects.md)\n");
    for (name, kind, bytes) in vectors() {
        let id = ObjectId::hash(kind, &bytes);
        writeln!(index, "{name} {kind} {id}").expect("writing to a String cannot fail");
        let path = dir().join(format!("{name}.{kind}"));
        if bless {
            std::fs::create_dir_all(dir()).expect("fixture dir");
            std::fs::write(&path, &bytes).expect("write fixture");
        }
        let golden = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(golden == bytes, "{name}: encoding differs from {}", path.display());
        bmsync::object::validate(kind, &golden).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let index_path = dir().join("ids.txt");
    if bless {
        std::fs::write(&index_path, &index).expect("write index");
    }
    assert_eq!(std::fs::read_to_string(&index_path).expect("ids.txt"), index);
    // The blob id is what `b3sum tests/fixtures/objects/blob.blob` prints.
    assert!(
        index.contains("blob blob 551360b5ab33f4ec75eba81eb6404f7e1ac8dd2289f83ff2aca6af4c19680dfe"),
        "{index}"
    );
}
