//! Tables of cases for each merge rule, and the merge laws as properties.

use proptest::prelude::*;

use super::*;

fn opts() -> MergeOptions {
    MergeOptions::default()
}

fn text(base: &str, current: &str, other: &str) -> TextMerge {
    merge_text(base.as_bytes(), current.as_bytes(), other.as_bytes(), &opts()).expect("text inputs")
}

fn note(base: &str, current: &str, other: &str) -> NoteMerge {
    merge_note(base.as_bytes(), current.as_bytes(), other.as_bytes(), &opts()).expect("text inputs")
}

fn note_marked(base: &str, current: &str, other: &str) -> NoteConflict {
    let opts = MergeOptions { markers: true, ..opts() };
    match merge_note(base.as_bytes(), current.as_bytes(), other.as_bytes(), &opts).expect("text inputs") {
        NoteMerge::Conflicted(c) => c,
        NoteMerge::Clean(bytes) => panic!("expected a conflict, got {:?}", String::from_utf8_lossy(&bytes)),
    }
}

fn clean(m: &NoteMerge) -> String {
    match m {
        NoteMerge::Clean(bytes) => String::from_utf8(bytes.clone()).expect("utf-8"),
        NoteMerge::Conflicted(c) => panic!("expected a clean merge, got {c:?}"),
    }
}

fn conflict(m: NoteMerge) -> NoteConflict {
    match m {
        NoteMerge::Conflicted(c) => c,
        NoteMerge::Clean(bytes) => panic!("expected a conflict, got {:?}", String::from_utf8_lossy(&bytes)),
    }
}

// ---- text ----

#[test]
fn text_clean_cases() {
    // (base, current, other, merged)
    let cases = [
        ("a\nb\nc\n", "A\nb\nc\n", "a\nb\nC\n", "A\nb\nC\n"),
        ("a\nb\nc\n", "a\nb\nc\n", "a\nB\nc\n", "a\nB\nc\n"),
        ("a\nb\nc\n", "a\nX\nc\n", "a\nX\nc\n", "a\nX\nc\n"),
        ("", "", "new\n", "new\n"),
        ("", "same\n", "same\n", "same\n"),
        // CRLF is kept as it is.
        ("a\r\nb\r\nc\r\n", "A\r\nb\r\nc\r\n", "a\r\nb\r\nC\r\n", "A\r\nb\r\nC\r\n"),
        // No trailing newline on the last line.
        ("a\nb\nc", "A\nb\nc", "a\nb\nc", "A\nb\nc"),
        ("a\nb\nc\nd", "A\nb\nc\nd", "a\nb\nc\nD", "A\nb\nc\nD"),
    ];
    for (base, current, other, want) in cases {
        assert_eq!(
            text(base, current, other),
            TextMerge::Clean(want.into()),
            "{base:?} {current:?} {other:?}"
        );
    }
}

#[test]
fn overlapping_edits_conflict_with_diff3_markers() {
    let m = text("a\nb\nc\n", "a\nX\nc\n", "a\nY\nc\n");
    let want = "a\n<<<<<<< current\nX\n||||||| base\nb\n=======\nY\n>>>>>>> other\nc\n";
    assert_eq!(m, TextMerge::Conflicted { conflicts: 1, with_markers: want.into() });
    assert_eq!(merge_file_exit(&m), 1);
}

#[test]
fn add_add_of_different_content_is_one_conflict() {
    let m = text("", "mine\n", "theirs\n");
    assert_eq!(m.conflicts(), 1);
    assert_eq!(m.bytes(), b"<<<<<<< current\nmine\n||||||| base\n=======\ntheirs\n>>>>>>> other\n");
}

#[test]
fn conflicts_are_counted_and_labels_used() {
    let base = "1\n2\n3\n4\n5\n6\n7\n8\n9\n";
    let m = merge_text(
        base.as_bytes(),
        b"1\nA\n3\n4\n5\n6\n7\nC\n9\n",
        b"1\nB\n3\n4\n5\n6\n7\nD\n9\n",
        &MergeOptions {
            labels: MergeLabels { current: "ours".into(), base: String::new(), other: "theirs".into() },
            markers: false,
        },
    )
    .expect("text");
    assert_eq!(m.conflicts(), 2);
    let out = String::from_utf8(m.bytes().to_vec()).expect("utf-8");
    assert_eq!(out.matches("<<<<<<< ours\n").count(), 2);
    assert_eq!(out.matches("\n|||||||\n").count(), 2, "empty label: bare marker");
    assert_eq!(out.matches(">>>>>>> theirs\n").count(), 2);
}

#[test]
fn marker_lines_in_the_input_are_not_counted() {
    let base = "<<<<<<< bmsync-conflict-0\nb\n";
    let m = text(base, "<<<<<<< bmsync-conflict-0\nX\n", "<<<<<<< bmsync-conflict-0\nY\n");
    assert_eq!(m.conflicts(), 1);
}

#[test]
fn exit_status_caps_at_127() {
    let edit = |tag: &str| -> String {
        (0..400).map(|i| if i % 2 == 0 { format!("{tag} {i}\n") } else { format!("line {i}\n") }).collect()
    };
    let base = edit("line");
    let m = text(&base, &edit("x"), &edit("y"));
    assert_eq!(m.conflicts(), 200);
    assert_eq!(merge_file_exit(&m), 127);
    assert_eq!(merge_file_exit(&text("a\n", "a\n", "b\n")), 0);
}

type Case<'a> = (&'a [u8], &'a [u8], &'a [u8], MergeError);

#[test]
fn non_text_is_never_merged() {
    let big = vec![b'a'; MAX_MERGE_BYTES + 1];
    let ok = b"a\n".as_slice();
    let cases: [Case<'_>; 4] = [
        (
            b"a\0\n",
            ok,
            ok,
            MergeError::NotText { side: Side::Base, reason: NotTextReason::Nul { offset: 1 } },
        ),
        (
            ok,
            b"ok\xff\n",
            ok,
            MergeError::NotText { side: Side::Current, reason: NotTextReason::InvalidUtf8 { offset: 2 } },
        ),
        (ok, ok, b"\0", MergeError::NotText { side: Side::Other, reason: NotTextReason::Nul { offset: 0 } }),
        (ok, ok, &big, MergeError::TooLarge { side: Side::Other, len: big.len(), limit: MAX_MERGE_BYTES }),
    ];
    for (base, current, other, want) in cases {
        assert_eq!(merge_text(base, current, other, &opts()), Err(want.clone()));
        assert_eq!(merge_note(base, current, other, &opts()), Err(want));
    }
    let exactly = vec![b'a'; MAX_MERGE_BYTES];
    assert!(check_text(Side::Base, &exactly).is_ok(), "the limit itself is allowed");
    let msg = merge_text(ok, ok, b"\0", &opts()).expect_err("NUL").to_string();
    assert_eq!(msg, "cannot merge: the other version has a NUL byte at byte 0");
}

// ---- notes ----

const BASE: &str = "---\ntitle: Plan\ntype: note\ntags:\n- a\n- b\npermalink: plan\n---\n\n# Plan\n\nline 1\nline 2\nline 3\n";

#[test]
fn adjacent_keys_changed_by_each_side_merge() {
    let current = BASE.replace("title: Plan", "title: The plan");
    let other = BASE.replace("type: note", "type: project");
    let want = BASE.replace("title: Plan", "title: The plan").replace("type: note", "type: project");
    assert_eq!(clean(&note(BASE, &current, &other)), want);
}

#[test]
fn frontmatter_change_and_body_change_merge() {
    let current = BASE.replace("- b\n", "- b\n- c\n");
    let other = BASE.replace("line 3", "line three");
    let want = BASE.replace("- b\n", "- b\n- c\n").replace("line 3", "line three");
    assert_eq!(clean(&note(BASE, &current, &other)), want);
}

#[test]
fn same_key_changed_both_sides() {
    let current = BASE.replace("title: Plan", "title: Mine");
    let other = BASE.replace("title: Plan", "title: Theirs");
    let c = conflict(note(BASE, &current, &other));
    assert_eq!(c.keys, vec!["title".to_owned()]);
    assert_eq!((c.body_conflicts, c.whole_file, c.with_markers), (0, false, None), "no markers unless asked");
    // The same change on both sides is not a conflict.
    assert_eq!(clean(&note(BASE, &current, &current)), current);
    let marked = note_marked(BASE, &current, &other).with_markers.expect("asked for");
    let want = BASE.replace(
        "title: Plan\n",
        "<<<<<<< current\ntitle: Mine\n||||||| base\ntitle: Plan\n=======\ntitle: Theirs\n>>>>>>> other\n",
    );
    assert_eq!(String::from_utf8(marked).expect("utf-8"), want);
}

#[test]
fn key_added_deleted_and_delete_edit() {
    let added = BASE.replace("type: note\n", "type: note\nstatus: draft\n");
    assert_eq!(clean(&note(BASE, BASE, &added)), added, "added by other");
    assert_eq!(clean(&note(BASE, &added, BASE)), added, "added by current");
    let deleted = BASE.replace("type: note\n", "");
    assert_eq!(clean(&note(BASE, &deleted, BASE)), deleted, "deleted by current");
    assert_eq!(clean(&note(BASE, BASE, &deleted)), deleted, "deleted by other");
    assert_eq!(clean(&note(BASE, &deleted, &deleted)), deleted, "deleted by both");
    let edited = BASE.replace("type: note", "type: idea");
    assert_eq!(conflict(note(BASE, &deleted, &edited)).keys, ["type"]);
    assert_eq!(conflict(note(BASE, &edited, &deleted)).keys, ["type"]);
    let added2 = BASE.replace("type: note\n", "type: note\nstatus: done\n");
    assert_eq!(conflict(note(BASE, &added, &added2)).keys, ["status"], "added differently on both");
    let list = BASE.replace("- b\n", "- b\n- c\n");
    let list2 = BASE.replace("- b\n", "- b\n- d\n");
    assert_eq!(conflict(note(BASE, &list, &list2)).keys, ["tags"], "a list is one value");
}

#[test]
fn key_order_is_currents_with_others_additions_after_their_predecessor() {
    let base = "---\na: 1\nb: 2\nc: 3\n---\nbody\n";
    let current = "---\nc: 3\na: 1\nb: 2\nz: 0\n---\nbody\n";
    let other = "---\nfirst: 0\na: 1\nx: 9\ny: 8\nb: 2\nc: 3\n---\nbody\n";
    let want = "---\nfirst: 0\nc: 3\na: 1\nx: 9\ny: 8\nb: 2\nz: 0\n---\nbody\n";
    assert_eq!(clean(&note(base, current, other)), want);
    // A reorder is a change: taken from other when current kept base's order; current's
    // addition `z` follows its predecessor on current's side, `c`.
    let current = "---\na: 1\nb: 5\nc: 3\nz: 0\n---\nbody\n";
    let other = "---\nc: 3\na: 1\nb: 2\n---\nbody\n";
    assert_eq!(clean(&note(base, current, other)), "---\nc: 3\nz: 0\na: 1\nb: 5\n---\nbody\n");
    // Reordered on both sides: current's order.
    let current = "---\nb: 2\na: 1\nc: 3\n---\nbody\n";
    assert_eq!(clean(&note(base, current, other)), current);
}

#[test]
fn untouched_keys_keep_their_bytes() {
    let base = "---\ntitle:   'Odd  spacing'   \nmeta:\n  nested: [1, 2]\n\n  more: |\n    text\nlast: x\n---\nbody\n";
    let current = base.replace("last: x", "last: y");
    let other = format!("{base}more body\n");
    assert_eq!(clean(&note(base, &current, &other)), format!("{current}more body\n"));
}

#[test]
fn overlapping_body_edits_conflict_without_markers() {
    let current = BASE.replace("line 2", "mine");
    let other = BASE.replace("line 2", "theirs");
    let c = conflict(note(BASE, &current, &other));
    assert_eq!((c.keys.len(), c.body_conflicts, c.whole_file, c.with_markers.is_none()), (0, 1, false, true));
    let marked =
        String::from_utf8(note_marked(BASE, &current, &other).with_markers.expect("asked")).expect("utf-8");
    assert!(marked.starts_with("---\ntitle: Plan\n"), "{marked}");
    assert!(marked.contains("<<<<<<< current\nmine\n||||||| base\nline 2\n=======\ntheirs\n>>>>>>> other\n"));
}

#[test]
fn crlf_notes_merge_key_by_key() {
    let base = BASE.replace('\n', "\r\n");
    let current = base.replace("title: Plan", "title: A");
    let other = base.replace("type: note", "type: B");
    let want = base.replace("title: Plan", "title: A").replace("type: note", "type: B");
    assert_eq!(clean(&note(&base, &current, &other)), want);
}

#[test]
fn note_without_trailing_newline() {
    let base = "---\na: 1\nb: 2\n---\nbody";
    assert_eq!(
        clean(&note(base, "---\na: 9\nb: 2\n---\nbody", "---\na: 1\nb: 8\n---\nbody")),
        "---\na: 9\nb: 8\n---\nbody"
    );
    // Frontmatter only, closing line without newline, body added on one side.
    let base = "---\na: 1\n---";
    assert_eq!(
        clean(&note(base, "---\na: 2\n---", "---\na: 1\n---\nnew body\n")),
        "---\na: 2\n---\nnew body\n"
    );
}

#[test]
fn unparsed_or_missing_frontmatter_falls_back_to_a_line_merge() {
    // A comment at column 0 is outside the grammar: adjacent key edits then collide.
    let base = "---\n# comment\na: 1\nb: 2\n---\nbody\n";
    let c = conflict(note(base, &base.replace("a: 1", "a: 9"), &base.replace("b: 2", "b: 8")));
    assert!(c.whole_file && c.keys.is_empty() && c.body_conflicts == 1, "{c:?}");
    // Absent on one side.
    let base = "---\na: 1\n---\nbody\n";
    let c = conflict(note(base, "plain\n", "---\na: 2\n---\nbody\n"));
    assert!(c.whole_file, "{c:?}");
    // Different opening lines (LF and CRLF).
    let c = note(base, "---\r\na: 1\n---\nbody\n", "---\na: 2\n---\nbody\n");
    assert!(matches!(c, NoteMerge::Conflicted(NoteConflict { whole_file: true, .. })), "{c:?}");
    // Without frontmatter anywhere it is the text merge.
    assert_eq!(clean(&note("a\nb\nc\n", "A\nb\nc\n", "a\nb\nC\n")), "A\nb\nC\n");
}

#[test]
fn empty_base_add_add_is_a_whole_file_merge() {
    let c = conflict(note("", "---\na: 1\n---\n", "---\nb: 2\n---\n"));
    assert!(c.whole_file && c.body_conflicts == 1, "{c:?}");
    assert_eq!(clean(&note("", "---\na: 1\n---\n", "---\na: 1\n---\n")), "---\na: 1\n---\n");
}

#[test]
fn grammar_cases() {
    use super::frontmatter::split_blocks;
    fn keys(inner: &str) -> Option<Vec<&str>> {
        split_blocks(inner.as_bytes()).map(|b| b.iter().map(|b| b.key).collect())
    }
    assert_eq!(keys(""), Some(vec![]));
    assert_eq!(keys("a: 1\nb:\n  - x\n- y\n\nc.d-e_f: |\n  t\n"), Some(vec!["a", "b", "c.d-e_f"]));
    assert_eq!(keys("url: http://x\n"), Some(vec!["url"]));
    for bad in ["  a: 1\n", "a: 1\n#c\n", "\"q\": 1\n", "a: 1\na: 2\n", "a:b\n", "-x: 1\n", "a: 1\n-x\n"] {
        assert_eq!(keys(bad), None, "{bad:?}");
    }
}

// ---- conflict copies ----

#[test]
fn permalinks_from_paths() {
    for (path, want) in [
        ("notes/Meeting Notes_2024.md", "notes/meeting-notes-2024"),
        ("plan.md", "plan"),
        ("a/camelCase File.md", "a/camel-case-file"),
        ("plan.conflict-alice-20261201T101500Z.md", "plan-conflict-alice-20261201-t101500-z"),
        ("x/ --odd-- .md", "x/odd"),
        (".hidden", "hidden"),
    ] {
        assert_eq!(permalink_for_path(path), want, "{path}");
    }
}

#[test]
fn conflict_copy_cases() {
    let copy = "notes/plan.conflict-alice-20261201.md";
    let orig = "notes/plan.md";
    let run = |bytes: &str| {
        String::from_utf8(conflict_copy_note(bytes.as_bytes(), copy, orig, "edit/edit")).expect("utf-8")
    };
    let copy_keys =
        "permalink: notes/plan-conflict-alice-20261201\nconflict_of: notes/plan.md\nconflict: edit/edit\n";
    // (input, output)
    let cases = [
        (
            "---\ntitle: Plan\npermalink: notes/plan\ntype: note\n---\nbody\n".to_owned(),
            format!("---\ntitle: Plan (conflict copy)\n{copy_keys}type: note\n---\nbody\n"),
        ),
        // A custom permalink keeps its form.
        (
            "---\npermalink: my-plan\n---\nbody\n".to_owned(),
            "---\npermalink: my-plan-conflict-alice-20261201\nconflict_of: notes/plan.md\nconflict: edit/edit\n---\nbody\n"
                .to_owned(),
        ),
        // Quoted titles, no permalink: added at the end.
        (
            "---\ntitle: \"Plan: v2\"  \ntags: [a]\n---\nbody".to_owned(),
            format!("---\ntitle: \"Plan: v2 (conflict copy)\"  \ntags: [a]\n{copy_keys}---\nbody"),
        ),
        ("---\ntitle: 'Plan'\n---\n".to_owned(), format!("---\ntitle: 'Plan (conflict copy)'\n{copy_keys}---\n")),
        // No frontmatter.
        ("# Plan\n".to_owned(), format!("---\n{copy_keys}---\n# Plan\n")),
        ("# Plan\r\nx\r\n".to_owned(), format!("---\r\n{}---\r\n# Plan\r\nx\r\n", copy_keys.replace('\n', "\r\n"))),
        // A copy of a copy: the old conflict keys are replaced, the title not suffixed twice.
        (
            format!("---\ntitle: Plan (conflict copy)\n{}---\n", copy_keys.replace("edit/edit", "old")),
            format!("---\ntitle: Plan (conflict copy)\n{copy_keys}---\n"),
        ),
        // Titles left alone: block scalar, comment.
        ("---\ntitle: >\n  Plan\n---\n".to_owned(), format!("---\ntitle: >\n  Plan\n{copy_keys}---\n")),
        ("---\ntitle: Plan # c\n---\n".to_owned(), format!("---\ntitle: Plan # c\n{copy_keys}---\n")),
        // Unparsed frontmatter: kept, keys appended (the last duplicate wins in YAML readers).
        (
            "---\n# c\npermalink: notes/plan\n---\nb\n".to_owned(),
            format!("---\n# c\npermalink: notes/plan\n{copy_keys}---\nb\n"),
        ),
        // CRLF frontmatter.
        (
            "---\r\npermalink: notes/plan\r\n---\r\nb\r\n".to_owned(),
            format!("---\r\n{}---\r\nb\r\n", copy_keys.replace('\n', "\r\n")),
        ),
    ];
    for (input, want) in cases {
        assert_eq!(run(&input), want, "{input:?}");
    }
}

#[test]
fn conflict_copy_quotes_odd_paths_and_leaves_other_files() {
    let out = conflict_copy_note(b"x\n", "My \"Plan\".conflict-a-1.md", "My \"Plan\".md", "edit/delete");
    assert_eq!(
        String::from_utf8(out).expect("utf-8"),
        "---\npermalink: my-plan-conflict-a-1\nconflict_of: \"My \\\"Plan\\\".md\"\nconflict: edit/delete\n---\nx\n"
    );
    for (bytes, path) in
        [(b"---\npermalink: a\n---\n".as_slice(), "a.conflict-x-1.txt"), (b"\xff", "a.conflict-x-1.md")]
    {
        assert_eq!(conflict_copy_note(bytes, path, "a.md", "edit/edit"), bytes);
    }
}

// ---- laws ----

fn lines_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a\n", "b\n", "c\n", "\n", "d", "x: 1\n", "---\n"]), 0..8)
        .prop_map(|v| v.concat())
}

fn note_strategy() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec!["a: 1\n", "a: 2\n", "b: 1\n", "b: 2\n", "c:\n- x\n", "c:\n- y\n"]);
    (prop::collection::vec(key, 0..4), lines_strategy()).prop_map(|(keys, body)| {
        let mut seen = Vec::new();
        let keys: String = keys
            .into_iter()
            .filter(|k| {
                if seen.contains(&&k[..1]) {
                    false
                } else {
                    seen.push(&k[..1]);
                    true
                }
            })
            .collect();
        format!("---\n{keys}---\n{body}")
    })
}

fn is_clean_text(m: &TextMerge) -> bool {
    m.is_clean()
}

proptest! {
    #[test]
    fn text_merge_laws(b in lines_strategy(), x in lines_strategy(), y in lines_strategy()) {
        prop_assert_eq!(text(&b, &x, &b), TextMerge::Clean(x.clone().into()));
        prop_assert_eq!(text(&b, &b, &y), TextMerge::Clean(y.clone().into()));
        prop_assert_eq!(text(&b, &x, &x), TextMerge::Clean(x.clone().into()));
        let (xy, yx) = (text(&b, &x, &y), text(&b, &y, &x));
        prop_assert_eq!(is_clean_text(&xy), is_clean_text(&yx));
        prop_assert_eq!(xy.conflicts(), yx.conflicts());
    }

    #[test]
    fn note_merge_laws(b in note_strategy(), x in note_strategy(), y in note_strategy()) {
        prop_assert_eq!(note(&b, &x, &b), NoteMerge::Clean(x.clone().into()));
        prop_assert_eq!(note(&b, &b, &y), NoteMerge::Clean(y.clone().into()));
        prop_assert_eq!(note(&b, &x, &x), NoteMerge::Clean(x.clone().into()));
        let (xy, yx) = (note(&b, &x, &y), note(&b, &y, &x));
        prop_assert_eq!(xy.is_clean(), yx.is_clean());
        if let (NoteMerge::Conflicted(p), NoteMerge::Conflicted(q)) = (&xy, &yx) {
            let (mut pk, mut qk) = (p.keys.clone(), q.keys.clone());
            pk.sort();
            qk.sort();
            prop_assert_eq!(pk, qk);
            prop_assert_eq!(p.body_conflicts, q.body_conflicts);
        }
    }

    #[test]
    fn conflict_copy_changes_only_frontmatter(n in note_strategy(), title in prop::bool::ANY) {
        let n = if title { n.replacen("---\n", "---\ntitle: T\n", 1) } else { n };
        let out = conflict_copy_note(n.as_bytes(), "p.conflict-c-1.md", "p.md", "edit/edit");
        let out = String::from_utf8(out).expect("utf-8");
        let body = |s: &str| s.splitn(3, "---\n").nth(2).map(str::to_owned);
        prop_assert_eq!(body(&out), body(&n));
        prop_assert!(out.contains("\npermalink: p-conflict-c-1\nconflict_of: p.md\nconflict: edit/edit\n"), "{}", out);
    }
}
