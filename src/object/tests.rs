//! Round-trips, canonical-form rejection, and never-panic checks for every decoder.

use proptest::prelude::*;

use super::*;
use crate::id::{ObjectId, ObjectKind};

fn id_strategy() -> impl Strategy<Value = ObjectId> {
    any::<[u8; 32]>().prop_map(ObjectId::from_bytes)
}

fn name_strategy() -> impl Strategy<Value = String> {
    // Mix ASCII, the byte values either side of '/', and some non-ASCII NFC letters.
    prop::string::string_regex("[a-zA-Z0-9._ -]{1,12}|[.-][a-z]{1,3}|[éüß日本-]{1,4}")
        .expect("valid regex")
        .prop_filter("valid names only", |n| check_name(n).is_ok())
}

fn kind_strategy() -> impl Strategy<Value = EntryKind> {
    prop_oneof![
        Just(EntryKind::File),
        Just(EntryKind::Executable),
        Just(EntryKind::Symlink),
        Just(EntryKind::Tree)
    ]
}

fn tree_strategy() -> impl Strategy<Value = Tree> {
    prop::collection::btree_map(name_strategy(), (kind_strategy(), id_strategy(), any::<u64>()), 0..24)
        .prop_map(|m| {
            let entries =
                m.into_iter().map(|(name, (kind, id, size))| TreeEntry { name, kind, id, size }).collect();
            Tree::new(entries).expect("unique valid names")
        })
}

fn commit_strategy() -> impl Strategy<Value = Commit> {
    let baseline = prop::option::of((
        "(s3://[a-z]{3,10}(/[a-z]{1,5}){0,2}|file:///[a-z/]{1,20})",
        prop::option::of(any::<u64>()),
        id_strategy(),
    ));
    (
        id_strategy(),
        prop::collection::hash_set(id_strategy(), 0..=MAX_PARENTS),
        "[A-Za-z0-9._-]{1,64}",
        any::<i64>(),
        ".{0,64}",
        baseline,
    )
        .prop_map(|(tree, parents, client_id, timestamp_ns, message, baseline)| Commit {
            tree,
            parents: parents.into_iter().collect(),
            client_id,
            timestamp_ns,
            message,
            baseline: baseline.map(|(remote, snapshot, manifest)| RemoteBaseline {
                remote,
                snapshot,
                manifest,
            }),
        })
}

fn manifest_strategy() -> impl Strategy<Value = Manifest> {
    let path = prop::collection::vec(name_strategy(), 1..4).prop_map(|v| v.join("/"));
    let kind = prop::sample::select(vec![EntryKind::File, EntryKind::Executable, EntryKind::Symlink]);
    let rest = ("[ -~]{1,40}", "[ -~]{0,40}", any::<u64>(), prop::option::of(id_strategy()), kind);
    prop::collection::btree_map(path, rest, 0..16).prop_map(|m| {
        let entries = m
            .into_iter()
            .map(|(path, (key, etag, size, content, kind))| ManifestEntry {
                path,
                key,
                etag,
                size,
                content,
                kind,
            })
            .collect();
        Manifest::new(entries).expect("unique valid paths")
    })
}

proptest! {
    #[test]
    fn tree_round_trips(tree in tree_strategy()) {
        let bytes = tree.encode();
        let back = TreeRef::decode(&bytes).expect("own encoding decodes");
        prop_assert_eq!(back.entries().len(), tree.entries().len());
        prop_assert_eq!(&back.to_owned(), &tree);
        prop_assert_eq!(Tree::decode(&bytes).expect("decodes").id(), tree.id());
        for e in tree.entries() {
            prop_assert_eq!(back.find(&e.name).map(EntryRef::to_owned), Some(e.clone()));
        }
    }

    #[test]
    fn commit_round_trips(commit in commit_strategy()) {
        let bytes = commit.encode();
        prop_assert_eq!(Commit::decode(&bytes).expect("own encoding decodes"), commit);
    }

    #[test]
    fn manifest_round_trips(m in manifest_strategy()) {
        let bytes = m.encode();
        let back = ManifestRef::decode(&bytes).expect("own encoding decodes");
        for e in m.entries() {
            prop_assert_eq!(back.get(&e.path).map(ManifestEntryRef::to_owned), Some(e.clone()));
        }
        prop_assert_eq!(back.to_owned(), m);
    }

    /// Any change to a valid encoding either fails to decode or decodes to a value
    /// whose encoding is exactly the changed bytes: there is one encoding per value.
    #[test]
    fn mutations_are_rejected_or_canonical(tree in tree_strategy(), commit in commit_strategy(),
                                           m in manifest_strategy(), pos in any::<prop::sample::Index>(),
                                           byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        for (kind, bytes) in [(ObjectKind::Tree, tree.encode()), (ObjectKind::Commit, commit.encode()),
                              (ObjectKind::Manifest, m.encode())] {
            let mut flipped = bytes.clone();
            let i = pos.index(flipped.len());
            flipped[i] = byte;
            let truncated = &bytes[..cut.index(bytes.len())];
            let mut extended = bytes.clone();
            extended.push(byte);
            for candidate in [flipped.as_slice(), truncated, extended.as_slice()] {
                let reencoded = match kind {
                    ObjectKind::Tree => TreeRef::decode(candidate).ok().map(|t| t.to_owned().encode()),
                    ObjectKind::Commit => CommitRef::decode(candidate).ok().map(|c| c.to_owned().encode()),
                    ObjectKind::Manifest => ManifestRef::decode(candidate).ok().map(|x| x.to_owned().encode()),
                    ObjectKind::Blob => unreachable!("not generated"),
                };
                if let Some(re) = reencoded {
                    prop_assert_eq!(re.as_slice(), candidate);
                }
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), magic in 0usize..3) {
        let mut b = bytes;
        // Give most inputs a valid header so decoding goes past the magic.
        let m: &[u8; 4] = [TREE_MAGIC, COMMIT_MAGIC, MANIFEST_MAGIC][magic];
        if b.len() > 8 { b[..4].copy_from_slice(m); b[4] = 1; }
        let _ = TreeRef::decode(&b);
        let _ = CommitRef::decode(&b);
        let _ = ManifestRef::decode(&b);
    }
}

fn entry(name: &str, kind: EntryKind) -> TreeEntry {
    TreeEntry { name: name.to_owned(), kind, id: ObjectId::for_blob(name.as_bytes()), size: 3 }
}

/// Encodes entries exactly as given, bypassing `Tree::new`'s sorting and checks.
fn raw_tree(entries: &[(u8, &[u8])]) -> Vec<u8> {
    let mut out = b"bmtr\x01".to_vec();
    out.extend_from_slice(&u32::try_from(entries.len()).expect("small").to_le_bytes());
    for (kind, name) in entries {
        out.push(*kind);
        out.extend_from_slice(&u16::try_from(name.len()).expect("small").to_le_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&[7u8; 32]);
        out.extend_from_slice(&3u64.to_le_bytes());
    }
    out
}

fn tree_err(bytes: &[u8]) -> String {
    TreeRef::decode(bytes).expect_err("must be rejected").to_string()
}

#[test]
fn raw_tree_helper_matches_encoder() {
    let t = Tree::new(vec![TreeEntry { id: ObjectId::from_bytes([7; 32]), ..entry("a", EntryKind::File) }])
        .expect("valid");
    assert_eq!(raw_tree(&[(1, b"a")]), t.encode());
}

#[test]
fn tree_rejects_non_canonical_input() {
    assert!(tree_err(&raw_tree(&[(1, b"b"), (1, b"a")])).contains("entry order"));
    assert!(tree_err(&raw_tree(&[(1, b"a"), (1, b"a")])).contains("entry order"));
    assert!(tree_err(&raw_tree(&[(1, b"a"), (4, b"a")])).contains("both a subtree and a file"));
    assert!(tree_err(&raw_tree(&[(1, b"a"), (1, b"a.md"), (4, b"a")])).contains("both a subtree and a file"));
    // A subtree "a" sorts after "a.md" ('.' < '/'), so this order is wrong.
    assert!(tree_err(&raw_tree(&[(4, b"a"), (1, b"a.md")])).contains("entry order"));
    assert!(TreeRef::decode(&raw_tree(&[(1, b"a.md"), (4, b"a")])).is_ok());
    // An empty name makes the entry shorter than any valid one: refused by the count bound.
    assert!(TreeRef::decode(&raw_tree(&[(1, b"")])).is_err());
    for bad in [&b"a/b"[..], b"a\0", b".", b"..", b"\xff", "cafe\u{301}".as_bytes()] {
        assert!(tree_err(&raw_tree(&[(1, bad)])).contains("entry name"), "{bad:?}");
    }
    assert!(tree_err(&raw_tree(&[(5, b"a")])).contains("entry kind"));
    assert!(tree_err(&raw_tree(&[(0, b"a")])).contains("entry kind"));
    let mut trailing = raw_tree(&[(1, b"a")]);
    trailing.push(0);
    assert!(tree_err(&trailing).contains("trailing"));
    let ok = raw_tree(&[(1, b"a")]);
    assert!(tree_err(&ok[..ok.len() - 1]).contains("cannot fit"));
    let longer = raw_tree(&[(1, b"abc")]);
    assert!(tree_err(&longer[..longer.len() - 1]).contains("truncated"));
    let mut bad_magic = ok.clone();
    bad_magic[0] = b'x';
    assert!(tree_err(&bad_magic).contains("magic"));
    let mut v2 = ok.clone();
    v2[4] = 2;
    assert!(tree_err(&v2).contains("version 2"));
    // A huge count is refused before anything is allocated for it.
    let mut huge = b"bmtr\x01".to_vec();
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(tree_err(&huge).contains("cannot fit"));
}

#[test]
fn tree_new_sorts_and_refuses_duplicates() {
    let t = Tree::new(vec![
        entry("b", EntryKind::File),
        entry("a", EntryKind::Tree),
        entry("a.md", EntryKind::File),
    ])
    .expect("valid");
    let names: Vec<_> = t.entries().iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["a.md", "a", "b"]);
    assert_eq!(
        Tree::new(vec![entry("a", EntryKind::File), entry("a", EntryKind::Tree)]),
        Err(TreeError::Duplicate { name: "a".into() })
    );
    assert!(matches!(Tree::new(vec![entry("..", EntryKind::File)]), Err(TreeError::InvalidName { .. })));
    assert_eq!(t.total_size(), 9);
}

fn sample_commit() -> Commit {
    Commit {
        tree: ObjectId::for_blob(b"t"),
        parents: vec![ObjectId::for_blob(b"p")],
        client_id: "alice-laptop".into(),
        timestamp_ns: 1_700_000_000_000_000_000,
        message: "sync".into(),
        baseline: Some(RemoteBaseline {
            remote: "s3://team/notes".into(),
            snapshot: Some(1_700_000_000_123_456_789),
            manifest: ObjectId::for_blob(b"m"),
        }),
    }
}

#[test]
fn commit_rejects_non_canonical_input() {
    let ok = sample_commit().encode();
    let err = |b: &[u8]| CommitRef::decode(b).expect_err("must be rejected").to_string();
    // Parent count sits after magic(4) + version(1) + tree(32).
    let mut dup = ok[..37].to_vec();
    dup.push(2);
    dup.extend_from_slice(&ok[38..70]);
    dup.extend_from_slice(&ok[38..]);
    assert!(err(&dup).contains("duplicate parent"));
    let mut many = ok.clone();
    many[37] = 9;
    assert!(err(&many).contains("parent count"));
    // The baseline flag must be 0 or 1.
    let flag_at = ok.len() - 32 - 8 - 1 - "s3://team/notes".len() - 2 - 1;
    assert_eq!(ok[flag_at], 1);
    let mut flag = ok.clone();
    flag[flag_at] = 2;
    assert!(err(&flag).contains("flag"));
    let mut client = ok.clone();
    let client_at = 38 + 32 + 8 + 1;
    client[client_at] = b'/';
    assert!(err(&client).contains("client id"));
    let mut trailing = ok.clone();
    trailing.push(0);
    assert!(err(&trailing).contains("trailing"));
}

#[test]
fn manifest_rejects_non_canonical_input() {
    let e = |path: &str| ManifestEntry {
        path: path.into(),
        key: format!("p/{path}"),
        etag: "\"e\"".into(),
        size: 1,
        content: None,
        kind: EntryKind::File,
    };
    let m = Manifest::new(vec![e("b"), e("a")]).expect("valid");
    assert_eq!(m.entries()[0].path, "a");
    assert_eq!(Manifest::new(vec![e("a"), e("a")]), Err(ManifestError::Duplicate { path: "a".into() }));
    assert!(matches!(Manifest::new(vec![e("a//b")]), Err(ManifestError::InvalidPath { .. })));
    assert!(matches!(
        Manifest::new(vec![ManifestEntry { etag: "\u{7f}".into(), ..e("a") }]),
        Err(ManifestError::InvalidEtag { .. })
    ));
    let a = Manifest::new(vec![e("a")]).expect("valid").encode();
    let b = Manifest::new(vec![e("b")]).expect("valid").encode();
    // Splice "b" then "a": out of order.
    let mut swapped = b.clone();
    swapped[5..9].copy_from_slice(&2u32.to_le_bytes());
    swapped.extend_from_slice(&a[9..]);
    let msg = ManifestRef::decode(&swapped).expect_err("unsorted").to_string();
    assert!(msg.contains("entry order"), "{msg}");
    let mut dup = a.clone();
    dup[5..9].copy_from_slice(&2u32.to_le_bytes());
    dup.extend_from_slice(&a[9..]);
    assert!(ManifestRef::decode(&dup).is_err());
}
