//! Planner tests: every decision cell, every safety rule, the JSON form, the cost of the
//! walk, and properties over random small trees simulated on in-memory maps.
//!
//! Longer than a module should be, on purpose: the decision table is read cell by cell
//! beside `format-spec/plan.md`, and the fixture that every cell shares is here with it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use proptest::prelude::*;

use super::*;
use crate::id::ObjectId;
use crate::object::{EntryKind, Manifest, ManifestEntry, Tree, TreeEntry};

// ---- fixture ----

/// A file on the remote: its leaf and ETag.
#[derive(Clone, Debug, PartialEq, Eq)]
struct RemoteFile {
    leaf: Leaf,
    etag: String,
}

/// Path → leaf: a local folder.
type LocalState = BTreeMap<String, Leaf>;
/// Path → object: a bucket, and also a base (the bucket as of the last sync).
type RemoteState = BTreeMap<String, RemoteFile>;

fn id(c: &str) -> ObjectId {
    ObjectId::for_blob(c.as_bytes())
}

fn leaf(c: &str) -> Leaf {
    Leaf { kind: EntryKind::File, id: id(c), size: c.len() as u64 }
}

/// The ETag a content gets when first uploaded (any function of it will do).
fn etag(c: &str) -> String {
    etag_of(&leaf(c))
}

fn etag_of(l: &Leaf) -> String {
    format!("\"{}-{}\"", l.kind.as_str(), l.id.short(12))
}

fn local(files: &[(&str, &str)]) -> LocalState {
    files.iter().map(|(p, c)| ((*p).to_owned(), leaf(c))).collect()
}

fn remote(files: &[(&str, &str)]) -> RemoteState {
    files.iter().map(|(p, c)| ((*p).to_owned(), RemoteFile { leaf: leaf(c), etag: etag(c) })).collect()
}

fn leaves(r: &RemoteState) -> LocalState {
    r.iter().map(|(p, f)| (p.clone(), f.leaf.clone())).collect()
}

struct Fixture {
    trees: HashMap<ObjectId, Tree>,
    base: Option<(Option<ObjectId>, Manifest)>,
    local: Option<ObjectId>,
    remote: BTreeMap<String, RemoteObject>,
    listing: ListingStatus,
    protected: BTreeSet<String>,
    ignored: BTreeSet<String>,
    max_delete: Option<usize>,
}

impl Fixture {
    /// Trees for base and local, a manifest for base, and a listing for remote whose
    /// content ids are left out wherever the ETag is the base's (the planner fills them).
    fn new(base: Option<&RemoteState>, local: &LocalState, remote: &RemoteState) -> Self {
        let mut trees = HashMap::new();
        let mut tree = |s: &LocalState| {
            let (root, built) =
                build_tree(s.iter().map(|(p, l)| (p.clone(), l.clone()))).expect("valid state");
            trees.extend(built);
            root
        };
        let base = base.map(|b| {
            let entries = b
                .iter()
                .map(|(p, f)| ManifestEntry {
                    path: p.clone(),
                    key: p.clone(),
                    etag: f.etag.clone(),
                    size: f.leaf.size,
                    content: Some(f.leaf.id),
                    kind: f.leaf.kind,
                })
                .collect();
            (tree(&leaves(b)), Manifest::new(entries).expect("valid manifest"))
        });
        let local = tree(local);
        let listing = remote
            .iter()
            .map(|(p, f)| {
                let same_etag = base.as_ref().is_some_and(|(_, m)| {
                    m.get(p).is_some_and(|e| e.etag == f.etag && e.content == Some(f.leaf.id))
                });
                let obj = RemoteObject {
                    key: format!("prefix/{p}"),
                    etag: f.etag.clone(),
                    size: f.leaf.size,
                    kind: f.leaf.kind,
                    content: (!same_etag).then_some(f.leaf.id),
                };
                (p.clone(), obj)
            })
            .collect();
        Self {
            trees,
            base,
            local,
            remote: listing,
            listing: ListingStatus::Complete,
            protected: BTreeSet::new(),
            ignored: BTreeSet::new(),
            max_delete: None,
        }
    }

    fn three_way(base: &[(&str, &str)], l: &[(&str, &str)], r: &[(&str, &str)]) -> Self {
        Self::new(Some(&remote(base)), &local(l), &remote(r))
    }

    /// The same sides with no base: every listed object must then bring its content id.
    fn into_union(mut self) -> Self {
        if let Some((_, manifest)) = self.base.take() {
            for e in manifest.entries() {
                if let Some(obj) = self.remote.get_mut(&e.path)
                    && obj.content.is_none()
                {
                    obj.content = e.content;
                }
            }
        }
        self
    }

    /// Plans twice, with the remote tree built from the whole listing and patched into
    /// the base manifest's tree, and checks both plans are one.
    fn plan(&self) -> Result<Plan, PlanError> {
        let full = plan(&self.input(false));
        let patched = plan(&self.input(true));
        match (&full, patched) {
            (Ok(full), Ok(mut patched)) => {
                patched.stats.remote_trees_built = full.stats.remote_trees_built;
                assert_eq!(full, &patched, "the patched remote tree plans otherwise");
            }
            (full, patched) => assert_eq!(format!("{full:?}"), format!("{patched:?}")),
        }
        full
    }

    /// The input, with the base tree given as the manifest's (the fixture builds both
    /// from the same leaves) when `patch`.
    fn input(&self, patch: bool) -> PlanInput<'_> {
        PlanInput {
            trees: &self.trees,
            base: self.base.as_ref().map(|(tree, manifest)| Base {
                tree: *tree,
                manifest,
                manifest_tree: tree.filter(|_| patch),
            }),
            local: self.local,
            remote: &self.remote,
            listing: self.listing.clone(),
            protected: &self.protected,
            ignored: &self.ignored,
            max_delete: self.max_delete,
            allow_empty_remote: false,
            similarity: None,
        }
    }

    fn ok(&self) -> Plan {
        self.plan().expect("the plan is accepted")
    }
}

fn summary(plan: &Plan) -> Vec<(String, Action, Reason)> {
    plan.ops.iter().map(|o| (o.path.clone(), o.action, o.reason)).collect()
}

fn row(path: &str, action: Action, reason: Reason) -> (String, Action, Reason) {
    (path.to_owned(), action, reason)
}

const FILLER: [(&str, &str); 4] =
    [("keep/1.md", "k1"), ("keep/2.md", "k2"), ("keep/3.md", "k3"), ("keep/4.md", "k4")];

fn with_filler(x: Option<&str>) -> Vec<(&str, &str)> {
    let mut v = FILLER.to_vec();
    v.extend(x.map(|c| ("n.md", c)));
    v
}

// ---- the decision table ----

#[test]
fn every_decision_cell() {
    use Action::*;
    use Reason::*;
    // name, base, local, remote content; the expected action, reason and preconditions.
    type Cell<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>, Action, Reason);
    type Row<'a> = (Cell<'a>, Option<RemoteCond>, Option<LocalCond>);
    let m = |c: &str| Some(RemoteCond::IfMatch(etag(c)));
    let has = |c: &str| Some(LocalCond::Content(id(c)));
    let (absent_r, absent_l) = (Some(RemoteCond::IfAbsent), Some(LocalCond::Absent));
    #[rustfmt::skip]
    let table: [Row<'_>; 13] = [
        (("changed/unchanged", Some("v1"), Some("v2"), Some("v1"), Upload, LocalChanged), m("v1"), has("v2")),
        (("unchanged/changed", Some("v1"), Some("v1"), Some("v2"), Download, RemoteChanged), m("v2"), has("v1")),
        (("deleted/unchanged", Some("v1"), None, Some("v1"), DeleteRemote, LocalDeleted), m("v1"), absent_l),
        (("unchanged/deleted", Some("v1"), Some("v1"), None, DeleteLocal, RemoteDeleted), None, has("v1")),
        (("changed/changed same", Some("v1"), Some("v2"), Some("v2"), Record, BothChanged), None, None),
        (("changed/changed different", Some("v1"), Some("v2"), Some("v3"), Merge, EditEdit), m("v3"), has("v2")),
        (("deleted/changed", Some("v1"), None, Some("v2"), Download, DeleteEdit), m("v2"), absent_l),
        (("changed/deleted", Some("v1"), Some("v2"), None, Upload, EditDelete), absent_r.clone(), has("v2")),
        (("added/added same", None, Some("v2"), Some("v2"), Record, BothAdded), None, None),
        (("added/added different", None, Some("v2"), Some("v3"), Conflict, AddAdd), None, None),
        (("deleted/deleted", Some("v1"), None, None, Record, BothDeleted), None, None),
        (("added/absent", None, Some("v2"), None, Upload, LocalAdded), absent_r, has("v2")),
        (("absent/added", None, None, Some("v2"), Download, RemoteAdded), m("v2"), absent_l),
    ];
    for ((name, b, l, r, action, reason), rc, lc) in table {
        let fixture = Fixture::three_way(&with_filler(b), &with_filler(l), &with_filler(r));
        let plan = fixture.ok();
        assert_eq!(summary(&plan), [row("n.md", action, reason)], "{name}");
        let op = &plan.ops[0];
        assert_eq!(
            op.precondition,
            Precondition { remote: rc, local: lc, ..Precondition::default() },
            "{name}"
        );
        assert_eq!(
            op.sides,
            crate::reconcile::Merge::new(b.map(leaf), l.map(leaf), r.map(leaf)),
            "{name}: conflicts carry all sides"
        );
        let conflict = matches!(reason, EditEdit | AddAdd | DeleteEdit | EditDelete) && action != Merge;
        assert_eq!(op.is_conflict(), conflict, "{name}");
        assert_eq!(plan.mode, Mode::ThreeWay);
    }
}

#[test]
fn a_kind_change_is_an_edit() {
    let base = remote(&with_filler(Some("v1")));
    let mut l = leaves(&base);
    l.get_mut("n.md").expect("present").kind = EntryKind::Executable;
    let plan = Fixture::new(Some(&base), &l, &base).ok();
    assert_eq!(summary(&plan), [row("n.md", Action::Upload, Reason::LocalChanged)]);
    assert_eq!(plan.ops[0].precondition.remote, Some(RemoteCond::IfMatch(etag("v1"))));
}

#[test]
fn type_changes_are_conflicts_that_delete_nothing() {
    type Files<'a> = &'a [(&'a str, &'a str)];
    let cases: [(&str, Files<'_>, Files<'_>, Files<'_>); 4] = [
        ("file to folder locally", &[("t", "f")], &[("t/x", "x")], &[("t", "f")]),
        ("folder to file remotely", &[("t/x", "x")], &[("t/x", "x")], &[("t", "f")]),
        ("both sides", &[("t", "f")], &[("t/x", "x")], &[("t/y", "y")]),
        ("added as file and folder", &[], &[("t", "f")], &[("t/x", "x"), ("t/y", "y")]),
    ];
    for (name, b, l, r) in cases {
        let fixture = Fixture::three_way(
            &[b, &FILLER[..]].concat(),
            &[l, &FILLER[..]].concat(),
            &[r, &FILLER[..]].concat(),
        );
        let plan = fixture.ok();
        assert_eq!(summary(&plan), [row("t", Action::Conflict, Reason::TypeChange)], "{name}");
        let op = &plan.ops[0];
        assert!(op.is_conflict() && op.precondition == Precondition::default(), "{name}");
        assert!(
            op.sides.any_some(|l| l.kind.is_tree()) && op.sides.any_some(|l| !l.kind.is_tree()),
            "{name}"
        );
        // Union mode sees the same clash wherever local and remote differ in type.
        if name != "both sides" {
            let mut union = fixture.into_union().ok();
            union.ops.retain(|o| o.action != Action::Record);
            assert_eq!(summary(&union), [row("t", Action::Conflict, Reason::TypeChange)], "{name} (union)");
        }
    }
    // The same type change on both sides is no conflict: nothing to transfer.
    let plan = Fixture::three_way(
        &[("t", "f"), ("k", "k")],
        &[("t/x", "x"), ("k", "k")],
        &[("t/x", "x"), ("k", "k")],
    )
    .ok();
    assert_eq!(
        summary(&plan),
        [row("t", Action::Record, Reason::BothDeleted), row("t/x", Action::Record, Reason::BothAdded)]
    );
}

#[test]
fn renames_are_one_operation() {
    // Locally renamed: one remote move, the copy and the delete together.
    let plan = Fixture::three_way(&[("a.md", "v1")], &[("b.md", "v1")], &[("a.md", "v1")]).ok();
    assert_eq!(summary(&plan), [row("b.md", Action::MoveRemote, Reason::LocalRenamed)]);
    let op = &plan.ops[0];
    assert_eq!(op.from.as_deref(), Some("a.md"));
    assert_eq!(
        op.precondition,
        Precondition {
            remote: Some(RemoteCond::IfAbsent),
            local: Some(LocalCond::Content(id("v1"))),
            from_remote: Some(RemoteCond::IfMatch(etag("v1"))),
            from_local: Some(LocalCond::Absent),
        }
    );
    // A move deletes nothing: a one-file base may be renamed under the 50% rule.
    assert_eq!(plan.stats.deletions, 0);

    // Renamed on the remote: one local rename.
    let plan = Fixture::three_way(&[("a.md", "v1")], &[("a.md", "v1")], &[("d/b.md", "v1")]).ok();
    assert_eq!(summary(&plan), [row("d/b.md", Action::MoveLocal, Reason::RemoteRenamed)]);
    assert_eq!(
        plan.ops[0].precondition,
        Precondition {
            remote: Some(RemoteCond::IfMatch(etag("v1"))),
            local: Some(LocalCond::Absent),
            from_local: Some(LocalCond::Content(id("v1"))),
            ..Default::default()
        }
    );

    // Two copies of one content renamed: paired in path order.
    let fixture = Fixture::three_way(
        &[("a1", "v"), ("a2", "v"), ("k", "k"), ("l", "l")],
        &[("b1", "v"), ("b2", "v"), ("k", "k"), ("l", "l")],
        &[("a1", "v"), ("a2", "v"), ("k", "k"), ("l", "l")],
    );
    let moves: Vec<(String, Option<String>)> =
        fixture.ok().ops.iter().map(|o| (o.path.clone(), o.from.clone())).collect();
    assert_eq!(moves, [("b1".into(), Some("a1".into())), ("b2".into(), Some("a2".into()))]);
}

/// A move's path, action, reason, source and follow-up.
type MoveRow = (String, Action, Reason, Option<String>, Option<Action>);

fn moves(plan: &Plan) -> Vec<MoveRow> {
    plan.ops.iter().map(|o| (o.path.clone(), o.action, o.reason, o.from.clone(), o.then)).collect()
}

fn mv(path: &str, action: Action, reason: Reason, from: &str, then: Option<Action>) -> MoveRow {
    (path.to_owned(), action, reason, Some(from.to_owned()), then)
}

#[test]
fn an_edit_follows_a_rename() {
    // Renamed here, edited there: the remote moves, and the edit comes to the new path.
    let plan = Fixture::three_way(&[("a.md", "v1")], &[("b.md", "v1")], &[("a.md", "v2")]).ok();
    assert_eq!(
        moves(&plan),
        [mv("b.md", Action::MoveRemote, Reason::LocalRenamed, "a.md", Some(Action::Download))]
    );
    assert_eq!(plan.ops[0].sides, Merge::new(Some(leaf("v1")), Some(leaf("v1")), Some(leaf("v2"))));
    assert_eq!(plan.ops[0].precondition.from_remote, Some(RemoteCond::IfMatch(etag("v2"))));
    assert!(plan.conflicts().next().is_none());
    // Renamed there, edited here: the local file moves, and the edit goes up there.
    let plan = Fixture::three_way(&[("a.md", "v1")], &[("a.md", "v2")], &[("n/a.md", "v1")]).ok();
    assert_eq!(
        moves(&plan),
        [mv("n/a.md", Action::MoveLocal, Reason::RemoteRenamed, "a.md", Some(Action::Upload))]
    );
    // Renamed and edited there, untouched here: moved, then the new bytes come.
    let plan = Fixture::three_way(&[("a.md", "v1")], &[("a.md", "v1")], &[("x.md", "v1"), ("a2", "v1")]);
    let plan = plan.ok();
    assert_eq!(moves(&plan)[0], mv("a2", Action::MoveLocal, Reason::RemoteRenamed, "a.md", None));
}

#[test]
fn renames_on_both_sides() {
    // The same rename on both sides: nothing moves; edits merge at the new path.
    let plan = Fixture::three_way(&[("a.md", "v1")], &[("b.md", "v1")], &[("b.md", "v1")]).ok();
    assert_eq!(
        summary(&plan),
        [row("a.md", Action::Record, Reason::BothDeleted), row("b.md", Action::Record, Reason::BothAdded)]
    );
    // Different paths: a conflict; the remote's path wins and the local file follows.
    let plan = Fixture::three_way(&[("a.md", "v1")], &[("b.md", "v1")], &[("c.md", "v1")]).ok();
    assert_eq!(moves(&plan)[1..], [mv("c.md", Action::MoveLocal, Reason::RenameRename, "b.md", None)]);
    assert_eq!(plan.stats.conflicts, 1);
    assert_eq!(plan.conflicts().count(), 1);
}

#[test]
fn a_rename_survives_a_deletion() {
    for (l, r) in [(&[("b.md", "v1")][..], &[("k", "k")][..]), (&[("k", "k")][..], &[("b.md", "v1")][..])] {
        let mut local = l.to_vec();
        let mut remote = r.to_vec();
        local.push(("k2", "k2"));
        remote.push(("k2", "k2"));
        if !local.contains(&("k", "k")) {
            local.push(("k", "k"));
        }
        if !remote.contains(&("k", "k")) {
            remote.push(("k", "k"));
        }
        let plan = Fixture::three_way(&[("a.md", "v1"), ("k", "k"), ("k2", "k2")], &local, &remote).ok();
        let kept: Vec<_> = plan.ops.iter().filter(|o| o.path == "b.md").collect();
        assert_eq!(kept.len(), 1, "{plan:?}");
        assert_eq!(kept[0].reason, Reason::RenameDelete);
        assert_eq!(kept[0].from.as_deref(), Some("a.md"));
        assert!(matches!(kept[0].action, Action::Upload | Action::Download));
        assert_eq!(plan.stats.deletions, 0);
    }
}

#[test]
fn no_rename_is_read_out_of_a_protected_path() {
    // Moved locally out of a protected folder the remote deleted: the new file is an
    // addition of its own, and nothing names the protected path.
    let base = [("a/a/a", "x"), ("b/b", "y"), ("k", "k"), ("k2", "k2")];
    let mut f = Fixture::three_way(
        &base,
        &[("a/a/a", "x"), ("a/a/b", "y"), ("k", "k"), ("k2", "k2")],
        &[("a/a/a", "x"), ("k", "k"), ("k2", "k2")],
    );
    f.protected.insert("b".into());
    let plan = f.ok();
    let added: Vec<_> = plan.ops.iter().filter(|o| o.path == "a/a/b").collect();
    assert_eq!(added.len(), 1, "{plan:?}");
    assert_eq!((added[0].action, added[0].from.as_deref()), (Action::Upload, None), "{plan:?}");
    assert!(
        plan.ops.iter().all(|o| o.path != "b/b" || matches!(o.action, Action::Skip | Action::Record)),
        "{plan:?}"
    );
}

#[test]
fn a_new_file_follows_its_renamed_folder() {
    let base = [("d/x.md", "1"), ("d/y.md", "2")];
    let plan = Fixture::three_way(
        &base,
        &[("e/x.md", "1"), ("e/y.md", "2")],
        &[("d/x.md", "1"), ("d/y.md", "2"), ("d/z.md", "3")],
    )
    .ok();
    assert_eq!(
        moves(&plan),
        [
            mv("e/x.md", Action::MoveRemote, Reason::LocalRenamed, "d/x.md", None),
            mv("e/y.md", Action::MoveRemote, Reason::LocalRenamed, "d/y.md", None),
            mv("e/z.md", Action::MoveRemote, Reason::FolderRenamed, "d/z.md", Some(Action::Download)),
        ]
    );
    // Mirrored: the remote renamed the folder, the new file is local.
    let plan = Fixture::three_way(
        &base,
        &[("d/x.md", "1"), ("d/y.md", "2"), ("d/z.md", "3")],
        &[("e/x.md", "1"), ("e/y.md", "2")],
    )
    .ok();
    assert_eq!(
        moves(&plan)[2],
        mv("e/z.md", Action::MoveLocal, Reason::FolderRenamed, "d/z.md", Some(Action::Upload))
    );
    // Never into a protected path: the new file then stays where it was added.
    let mut f = Fixture::three_way(
        &base,
        &[("e/x.md", "1"), ("e/y.md", "2")],
        &[("d/x.md", "1"), ("d/y.md", "2"), ("d/z.md", "3")],
    );
    f.protected.insert("e/z.md".into());
    let plan = f.ok();
    assert!(plan.ops.iter().any(|o| o.path == "d/z.md" && o.action == Action::Download), "{plan:?}");
    assert!(plan.ops.iter().all(|o| o.path != "e/z.md"));
    // A folder that still holds a file on the renaming side was not renamed.
    let plan = Fixture::three_way(
        &[("d/x.md", "1"), ("d/y.md", "2")],
        &[("e/x.md", "1"), ("d/y.md", "2")],
        &[("d/x.md", "1"), ("d/y.md", "2"), ("d/z.md", "3")],
    )
    .ok();
    assert!(plan.ops.iter().any(|o| o.path == "d/z.md" && o.action == Action::Download));
}

struct FixedScore(u8);

impl crate::reconcile::Similarity for FixedScore {
    fn score(&self, _old: ObjectId, _new: ObjectId) -> Option<u8> {
        Some(self.0)
    }
}

#[test]
fn similar_content_pairs_an_edited_rename() {
    let f = Fixture::three_way(&[("a.md", "old text")], &[("b.md", "new text")], &[("a.md", "theirs!")]);
    let plan_with = |s: Option<&dyn crate::reconcile::Similarity>| {
        plan(&PlanInput { similarity: s, ..f.input(true) }).expect("plans")
    };
    // Under the threshold (or with no judge): not a rename, and both paths stay.
    for s in [None, Some(&FixedScore(RENAME_SIMILARITY - 1) as &dyn crate::reconcile::Similarity)] {
        let p = plan_with(s);
        assert!(p.ops.iter().all(|o| o.from.is_none()), "{p:?}");
    }
    // At it: one file, edited on both sides, merged at the new path.
    let p = plan_with(Some(&FixedScore(RENAME_SIMILARITY)));
    assert_eq!(
        moves(&p),
        [mv("b.md", Action::MoveRemote, Reason::LocalRenamed, "a.md", Some(Action::Merge))]
    );
    assert_eq!(p.stats.merges, 1);
}

#[test]
fn similarity_is_a_share_of_lines() {
    use crate::reconcile::similarity;
    assert_eq!(similarity(b"a\nb\nc\nd\n", b"a\nb\nc\nd\n"), Some(100));
    assert_eq!(similarity(b"a\nb\nc\nd\n", b"a\nb\nc\nX\n"), Some(75));
    assert_eq!(similarity(b"a\nb\n", b"x\ny\n"), Some(0));
    assert_eq!(similarity(b"\xff\xfe", b"a"), None);
    assert_eq!(similarity(b"a\0", b"a"), None);
}

// ---- safety rules ----

#[test]
fn union_mode_copies_and_never_deletes() {
    let fixture = Fixture::three_way(
        &[("gone-local.md", "g"), ("gone-remote.md", "h")],
        &[("both.md", "same"), ("diff.md", "mine"), ("mine.md", "m"), ("gone-remote.md", "h")],
        &[("both.md", "same"), ("diff.md", "theirs"), ("theirs.md", "t"), ("gone-local.md", "g")],
    );
    let plan = fixture.into_union().ok();
    assert_eq!(plan.mode, Mode::Union);
    assert_eq!(
        summary(&plan),
        [
            row("both.md", Action::Record, Reason::BothAdded),
            row("diff.md", Action::Conflict, Reason::AddAdd),
            row("gone-local.md", Action::Download, Reason::OnlyRemote),
            row("gone-remote.md", Action::Upload, Reason::OnlyLocal),
            row("mine.md", Action::Upload, Reason::OnlyLocal),
            row("theirs.md", Action::Download, Reason::OnlyRemote),
        ]
    );
    let diff = &plan.ops[1];
    assert_eq!(diff.sides, Merge::new(None, Some(leaf("mine")), Some(leaf("theirs"))));
    assert_eq!(plan.ops[4].precondition.remote, Some(RemoteCond::IfAbsent));
    assert_eq!(plan.ops[5].precondition.local, Some(LocalCond::Absent));
    // An empty remote is a new remote in union mode: everything is uploaded.
    let mut fixture = Fixture::new(None, &local(&[("a", "1"), ("b", "2")]), &RemoteState::new());
    fixture.max_delete = Some(0);
    assert!(fixture.ok().ops.iter().all(|o| o.action == Action::Upload));
}

#[test]
fn bad_listings_are_refused() {
    let mut fixture = Fixture::three_way(&[("a", "1")], &[("a", "1")], &[("a", "1")]);
    fixture.listing = ListingStatus::Incomplete { reason: "connection reset after page 3".into() };
    let err = fixture.plan().expect_err("refused");
    assert!(matches!(err, PlanError::ListingIncomplete { .. }));
    assert!(err.to_string().contains("connection reset after page 3"), "{err}");
    fixture.listing = ListingStatus::PrefixMissing;
    assert!(matches!(fixture.plan(), Err(PlanError::PrefixMissing)));

    // An empty listing against a base with files: refused, never "everything deleted".
    let fixture = Fixture::three_way(&[("a", "1"), ("b", "2")], &[("a", "1"), ("b", "2")], &[]);
    let err = fixture.plan().expect_err("refused");
    assert!(matches!(err, PlanError::EmptyRemote { base_files: 2 }), "{err}");
    // Refused even with deletions allowed, and even when the manifest is lost but the tree is not.
    let mut fixture = Fixture::three_way(&[("a", "1")], &[("a", "1")], &[]);
    fixture.max_delete = Some(usize::MAX);
    assert!(matches!(fixture.plan(), Err(PlanError::EmptyRemote { .. })));
    fixture.base.as_mut().expect("has base").1 = Manifest::default();
    assert!(matches!(fixture.plan(), Err(PlanError::EmptyRemote { base_files: 0 })));
    // An empty base and an empty remote: fine.
    let fixture = Fixture::three_way(&[], &[("a", "1")], &[]);
    assert_eq!(summary(&fixture.ok()), [row("a", Action::Upload, Reason::LocalAdded)]);
}

#[test]
fn unknown_remote_content_is_refused_with_the_paths_to_hash() {
    let mut fixture = Fixture::three_way(
        &[("a", "1"), ("b", "2"), ("c", "3")],
        &[("a", "1"), ("b", "2"), ("c", "3")],
        &[("a", "1"), ("b", "2x"), ("c", "3x"), ("new", "n")],
    );
    for p in ["b", "new"] {
        fixture.remote.get_mut(p).expect("listed").content = None;
    }
    // "a" has base's ETag, so base's manifest names its content; "c" came with its own.
    let err = fixture.plan().expect_err("refused");
    match &err {
        PlanError::UnknownRemoteContent { paths } => assert_eq!(paths, &["b", "new"]),
        other => panic!("wrong error {other}"),
    }
    assert!(err.to_string().contains("\"b\", \"new\""), "{err}");
    // Never by size: a same-size object with a new ETag is still unknown.
    let mut fixture = Fixture::three_way(&[("a", "1")], &[("a", "1")], &[("a", "2")]);
    fixture.remote.get_mut("a").expect("listed").content = None;
    assert!(matches!(fixture.plan(), Err(PlanError::UnknownRemoteContent { .. })));
    // In union mode there is no base ETag, so every content id is needed.
    fixture.base = None;
    assert!(matches!(fixture.plan(), Err(PlanError::UnknownRemoteContent { .. })));
}

#[test]
fn ignored_paths_are_never_deleted_on_the_other_side() {
    let base = [("drafts/x.md", "x"), ("drafts/y.md", "y"), ("old.md", "o"), ("keep.md", "k")];
    // The new ignore rules hide the drafts folder and old.md from the scan.
    let mut fixture = Fixture::three_way(&base, &[("keep.md", "k")], &base);
    fixture.ignored = ["drafts".to_owned(), "old.md".to_owned()].into();
    assert!(fixture.ok().is_empty());
    // A teammate's edit under an ignored path is reported, not applied.
    let mut fixture = Fixture::three_way(
        &base,
        &[("keep.md", "k")],
        &[("drafts/x.md", "x2"), ("drafts/y.md", "y"), ("old.md", "o"), ("keep.md", "k")],
    );
    fixture.ignored = ["drafts".to_owned(), "old.md".to_owned()].into();
    let plan = fixture.ok();
    assert_eq!(summary(&plan), [row("drafts/x.md", Action::Skip, Reason::Ignored)]);
    assert_eq!(plan.ops[0].skipped, Some(Action::Download));
    assert_eq!(plan.ops[0].precondition, Precondition::default());
    // Without the ignore set the same scan would delete them remotely (under max_delete).
    let mut fixture = Fixture::three_way(&base, &[("keep.md", "k")], &base);
    fixture.max_delete = Some(10);
    assert_eq!(fixture.ok().stats.deletions, 3);
}

#[test]
fn max_delete_guard() {
    let base: Vec<(String, String)> = (0..10).map(|i| (format!("f{i}"), format!("c{i}"))).collect();
    let base: Vec<(&str, &str)> = base.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    let fx_deleting = |n: usize, max: Option<usize>| {
        let mut fixture = Fixture::three_way(&base, &base[n..], &base);
        fixture.max_delete = max;
        fixture.plan()
    };
    // None: at most half the base.
    assert_eq!(fx_deleting(5, None).expect("half is allowed").stats.deletions, 5);
    match fx_deleting(6, None) {
        Err(e @ PlanError::TooManyDeletions { deletions: 6, base_files: 10, limit: 5, .. }) => {
            assert!(e.to_string().contains("\"f0\""), "{e}");
        }
        other => panic!("not refused: {other:?}"),
    }
    // Some(n): n is the limit, above or below the 50% rule.
    assert!(fx_deleting(10, Some(10)).is_ok());
    assert!(matches!(fx_deleting(4, Some(3)), Err(PlanError::TooManyDeletions { limit: 3, .. })));
    assert!(fx_deleting(3, Some(3)).is_ok());
    // Remote deletions count too.
    let mut fixture = Fixture::three_way(&base, &base, &base[6..]);
    assert!(matches!(fixture.plan(), Err(PlanError::TooManyDeletions { deletions: 6, .. })));
    fixture.max_delete = Some(6);
    assert_eq!(fixture.ok().ops.iter().filter(|o| o.action == Action::DeleteLocal).count(), 6);
}

#[test]
fn edit_edit_merges_only_plain_files_of_one_kind_within_the_limit() {
    let with = |kind: EntryKind, c: &str| Leaf { kind, ..leaf(c) };
    let cases: [(&str, Leaf, Leaf, Leaf, Action); 5] = [
        ("files", leaf("b"), leaf("l"), leaf("r"), Action::Merge),
        (
            "executables",
            with(EntryKind::Executable, "b"),
            with(EntryKind::Executable, "l"),
            with(EntryKind::Executable, "r"),
            Action::Merge,
        ),
        ("one side executable", leaf("b"), with(EntryKind::Executable, "l"), leaf("r"), Action::Conflict),
        (
            "symlinks",
            with(EntryKind::Symlink, "b"),
            with(EntryKind::Symlink, "l"),
            with(EntryKind::Symlink, "r"),
            Action::Conflict,
        ),
        (
            "too large",
            leaf("b"),
            Leaf { size: crate::merge::MAX_MERGE_BYTES as u64 + 1, ..leaf("l") },
            leaf("r"),
            Action::Conflict,
        ),
    ];
    for (name, b, l, r, action) in cases {
        let mut base = remote(&FILLER);
        base.insert("n.md".into(), RemoteFile { etag: etag_of(&b), leaf: b });
        let mut local = leaves(&base);
        local.insert("n.md".into(), l);
        let mut rem = remote(&FILLER);
        rem.insert("n.md".into(), RemoteFile { etag: etag_of(&r), leaf: r });
        let plan = Fixture::new(Some(&base), &local, &rem).ok();
        assert_eq!(summary(&plan), [row("n.md", action, Reason::EditEdit)], "{name}");
        assert_eq!(plan.stats.merges, usize::from(action == Action::Merge), "{name}");
        assert_eq!(plan.stats.conflicts, usize::from(action == Action::Conflict), "{name}");
    }
}

#[test]
fn protected_paths_are_never_deleted_or_overwritten() {
    use Action::{DeleteLocal, DeleteRemote, Download, Upload};
    let base = [("Notes/a.md", "a"), ("p.md", "p"), ("q.md", "q"), ("r.md", "r"), ("s.md", "s")];
    let mut fixture = Fixture::three_way(
        &base,
        &[("Notes/a.md", "a2"), ("q.md", "q"), ("r.md", "r"), ("s.md", "s2"), ("new.md", "n")],
        &[("Notes/a.md", "a"), ("p.md", "p"), ("q.md", "q2"), ("s.md", "s3")],
    );
    fixture.protected =
        ["Notes".to_owned(), "p.md".to_owned(), "q.md".to_owned(), "r.md".to_owned(), "new.md".to_owned()]
            .into();
    let plan = fixture.ok();
    assert_eq!(
        summary(&plan),
        [
            row("Notes/a.md", Action::Skip, Reason::Protected),
            row("new.md", Action::Skip, Reason::Protected),
            row("p.md", Action::Skip, Reason::Protected),
            row("q.md", Action::Skip, Reason::Protected),
            row("r.md", Action::Skip, Reason::Protected),
            // Not protected: both edits merge.
            row("s.md", Action::Merge, Reason::EditEdit),
        ]
    );
    let skipped: Vec<_> = plan.ops.iter().map(|o| o.skipped).collect();
    assert_eq!(
        skipped,
        [Some(Upload), Some(Upload), Some(DeleteRemote), Some(Download), Some(DeleteLocal), None]
    );
    assert_eq!(plan.stats.skipped, 5);
    assert_eq!(plan.stats.deletions, 0);
}

#[test]
fn bad_remote_keys_are_skipped_and_their_nfc_form_protected() {
    let nfc = "caf\u{e9}.md";
    let nfd = "cafe\u{301}.md";
    let mut fixture = Fixture::three_way(&[(nfc, "c"), ("k", "k")], &[(nfc, "c"), ("k", "k")], &[("k", "k")]);
    for key in [nfd, "folder/"] {
        let obj = RemoteObject {
            key: key.to_owned(),
            etag: etag("c"),
            size: 1,
            kind: EntryKind::File,
            content: Some(id("c")),
        };
        fixture.remote.insert(key.to_owned(), obj);
    }
    let plan = fixture.ok();
    // The NFC file looks deleted on the remote, but its NFD twin is there: no deletion.
    assert_eq!(
        summary(&plan),
        [
            row(nfd, Action::Skip, Reason::InvalidRemoteKey),
            row(nfc, Action::Skip, Reason::Protected),
            row("folder/", Action::Skip, Reason::InvalidRemoteKey),
        ]
    );
    assert_eq!(plan.ops[1].skipped, Some(Action::DeleteLocal));
}

#[test]
fn a_remote_key_that_is_also_a_folder_deletes_nothing() {
    let mut fixture =
        Fixture::three_way(&[("a", "1"), ("k", "k")], &[("a", "1"), ("k", "k")], &[("a/b", "2"), ("k", "k")]);
    fixture.remote.insert(
        "a".into(),
        RemoteObject { key: "a".into(), etag: etag("1"), size: 1, kind: EntryKind::File, content: None },
    );
    // The file key cannot sit beside the folder: "a" is a type change, which keeps both.
    assert_eq!(summary(&fixture.ok()), [row("a", Action::Conflict, Reason::TypeChange)]);
    // Where nothing else happens at the path, the skip itself is reported.
    let mut fixture = Fixture::three_way(&[("k", "k")], &[("k", "k")], &[("a/b", "2"), ("k", "k")]);
    fixture.remote.insert(
        "a".into(),
        RemoteObject {
            key: "a".into(),
            etag: etag("1"),
            size: 1,
            kind: EntryKind::File,
            content: Some(id("1")),
        },
    );
    let plan = fixture.ok();
    assert_eq!(
        summary(&plan),
        [
            row("a", Action::Skip, Reason::RemoteKeyCollision),
            row("a/b", Action::Download, Reason::RemoteAdded)
        ]
    );
    assert_eq!(plan.ops[0].skipped, Some(Action::Download));
}

#[test]
fn a_new_etag_on_the_same_content_is_recorded() {
    let mut r = remote(&[("a", "1"), ("b", "2")]);
    r.get_mut("a").expect("present").etag = "\"re-uploaded\"".into();
    let base = remote(&[("a", "1"), ("b", "2")]);
    let plan = Fixture::new(Some(&base), &leaves(&base), &r).ok();
    assert_eq!(summary(&plan), [row("a", Action::Record, Reason::RemoteEtagChanged)]);
    // With a local edit, the upload is conditional on the new ETag instead.
    let mut l = leaves(&base);
    l.insert("a".into(), leaf("1b"));
    let plan = Fixture::new(Some(&base), &l, &r).ok();
    assert_eq!(summary(&plan), [row("a", Action::Upload, Reason::LocalChanged)]);
    assert_eq!(plan.ops[0].precondition.remote, Some(RemoteCond::IfMatch("\"re-uploaded\"".into())));
}

// ---- JSON ----

#[test]
fn json_schema() {
    let fixture = Fixture::three_way(
        &[("a.md", "v1"), ("c.md", "c"), ("d.md", "d")],
        &[("b.md", "v1"), ("c.md", "mine"), ("d.md", "d")],
        &[("a.md", "v1"), ("c.md", "theirs"), ("d.md", "d")],
    );
    let value = serde_json::to_value(fixture.ok()).expect("serialises");
    let lf = |c: &str| serde_json::json!({ "kind": "file", "id": id(c).to_hex(), "size": c.len() });
    let expected = serde_json::json!({
        "version": 4,
        "mode": "three_way",
        "ops": [
            {
                "path": "b.md",
                "action": "move_remote",
                "reason": "local_renamed",
                "conflict": false,
                "from": "a.md",
                "then": null,
                "base": lf("v1"),
                "local": lf("v1"),
                "remote": lf("v1"),
                "precondition": {
                    "remote": { "if_none_match": "*" },
                    "local": { "content": id("v1").to_hex() },
                    "from_remote": { "if_match": etag("v1") },
                    "from_local": { "content": null },
                },
                "skipped": null,
            },
            {
                "path": "c.md",
                "action": "merge",
                "reason": "edit_edit",
                "conflict": false,
                "from": null,
                "then": null,
                "base": lf("c"),
                "local": lf("mine"),
                "remote": lf("theirs"),
                "precondition": {
                    "remote": { "if_match": etag("theirs") },
                    "local": { "content": id("mine").to_hex() },
                    "from_remote": null,
                    "from_local": null,
                },
                "skipped": null,
            },
        ],
        "stats": {
            "trees_visited": 3,
            "remote_trees_built": 1,
            "base_files": 3,
            "deletions": 0,
            "conflicts": 0,
            "skipped": 0,
            "merges": 1,
            "moves": 1,
        },
    });
    assert_eq!(value, expected, "{}", serde_json::to_string_pretty(&value).expect("prints"));
}

// ---- the remote tree ----

#[test]
fn build_tree_matches_hand_built_trees() {
    let (root, trees) = build_tree([
        ("d/x.md".to_owned(), leaf("x")),
        ("a.md".to_owned(), leaf("a")),
        ("d/e/y.md".to_owned(), leaf("yy")),
        ("d.md".to_owned(), leaf("d")),
    ])
    .expect("builds");
    let file = |n: &str, c: &str| TreeEntry {
        name: n.into(),
        kind: EntryKind::File,
        id: id(c),
        size: c.len() as u64,
    };
    let e = Tree::new(vec![file("y.md", "yy")]).expect("valid");
    let dir = |n: &str, t: &Tree| TreeEntry {
        name: n.into(),
        kind: EntryKind::Tree,
        id: t.id(),
        size: t.total_size(),
    };
    let d = Tree::new(vec![file("x.md", "x"), dir("e", &e)]).expect("valid");
    let top = Tree::new(vec![file("a.md", "a"), file("d.md", "d"), dir("d", &d)]).expect("valid");
    assert_eq!(root, Some(top.id()));
    assert_eq!(trees.len(), 3);
    assert_eq!(trees.get(&d.id()), Some(&d));
    assert_eq!(build_tree(Vec::new()).expect("empty"), (None, HashMap::new()));

    let err = |v: &[(&str, Leaf)]| {
        build_tree(v.iter().map(|(p, l)| ((*p).to_owned(), l.clone()))).expect_err("bad")
    };
    assert!(
        matches!(err(&[("a", leaf("1")), ("a/b", leaf("2"))]), BuildTreeError::FileAndFolder { path } if path == "a")
    );
    assert!(
        matches!(err(&[("x/a/b", leaf("2")), ("x/a", leaf("1"))]), BuildTreeError::FileAndFolder { path } if path == "x/a")
    );
    assert!(matches!(err(&[("a", leaf("1")), ("a", leaf("2"))]), BuildTreeError::Duplicate { .. }));
    assert!(matches!(err(&[("a//b", leaf("1"))]), BuildTreeError::InvalidPath { .. }));
    let tree_leaf = Leaf { kind: EntryKind::Tree, ..leaf("1") };
    assert!(matches!(err(&[("a", tree_leaf)]), BuildTreeError::TreeLeaf { .. }));
}

/// 100,000 files, 100 changes: the walk loads O(changes × depth) trees, not the base.
#[test]
fn large_base_few_changes_touches_few_trees() {
    let path = |i: usize| format!("d{:02}/s{}/f{:02}.md", i / 1000, (i / 100) % 10, i % 100);
    let base: RemoteState = (0..100_000)
        .map(|i| (path(i), RemoteFile { leaf: leaf(&i.to_string()), etag: format!("\"{i}\"") }))
        .collect();
    let mut l = leaves(&base);
    let mut r = base.clone();
    for k in 0..50 {
        l.insert(path(k * 1999), leaf("local edit"));
        let p = path(k * 1999 + 777);
        r.insert(p, RemoteFile { leaf: leaf(&format!("remote edit {k}")), etag: format!("\"r{k}\"") });
    }
    let plan = Fixture::new(Some(&base), &l, &r).ok();
    assert_eq!(plan.ops.len(), 100);
    assert_eq!(plan.ops.iter().filter(|o| o.action == Action::Upload).count(), 50);
    assert_eq!(plan.ops.iter().filter(|o| o.action == Action::Download).count(), 50);
    // Three roots, then at most 3 trees per changed folder on each of two levels.
    assert!(plan.stats.trees_visited <= 3 + 2 * 3 * 100, "visited {}", plan.stats.trees_visited);
    assert!(plan.stats.trees_visited < 2_000);
    assert!(plan.stats.trees_visited > 100, "the walk did descend: {}", plan.stats.trees_visited);
}

#[test]
fn unchanged_subtrees_are_skipped() {
    let base = remote(&[("x/1", "1"), ("x/2", "2"), ("y/1", "1"), ("z/deep/1", "z")]);
    let mut r = base.clone();
    r.insert("y/2".into(), RemoteFile { leaf: leaf("n"), etag: "\"n\"".into() });
    let plan = Fixture::new(Some(&base), &leaves(&base), &r).ok();
    assert_eq!(summary(&plan), [row("y/2", Action::Download, Reason::RemoteAdded)]);
    // Base root (shared with local), remote root, base y, remote y.
    assert_eq!(plan.stats.trees_visited, 4);
    let plan = Fixture::new(Some(&base), &leaves(&base), &base).ok();
    assert!(plan.is_empty());
    assert_eq!(plan.stats.trees_visited, 0);
}

// ---- properties over random small trees ----

/// Some content that is neither side's, as a merge makes.
fn merged(l: &Leaf, r: &Leaf) -> Leaf {
    Leaf { kind: l.kind, id: ObjectId::for_blob(format!("{}+{}", l.id, r.id).as_bytes()), size: 2 }
}

/// Applies a plan to in-memory sides, checking every precondition against them.
fn apply(plan: &Plan, l: &mut LocalState, r: &mut RemoteState) -> Result<(), TestCaseError> {
    fn remote_ok(cond: Option<&RemoteCond>, r: &RemoteState, path: &str) -> bool {
        match cond {
            None => true,
            Some(RemoteCond::IfAbsent) => !r.contains_key(path),
            Some(RemoteCond::IfMatch(e)) => r.get(path).is_some_and(|f| f.etag == *e),
        }
    }
    fn local_ok(cond: Option<&LocalCond>, l: &LocalState, path: &str) -> bool {
        match cond {
            None => true,
            Some(LocalCond::Absent) => !l.contains_key(path),
            Some(LocalCond::Content(id)) => l.get(path).is_some_and(|f| f.id == *id),
        }
    }
    for op in &plan.ops {
        let pc = &op.precondition;
        let from = op.from.as_deref().unwrap_or("");
        prop_assert!(remote_ok(pc.remote.as_ref(), r, &op.path), "remote precondition of {op:?}");
        prop_assert!(local_ok(pc.local.as_ref(), l, &op.path), "local precondition of {op:?}");
        prop_assert!(remote_ok(pc.from_remote.as_ref(), r, from), "remote source precondition of {op:?}");
        prop_assert!(local_ok(pc.from_local.as_ref(), l, from), "local source precondition of {op:?}");
        let uploaded = |f: &Leaf| RemoteFile { leaf: f.clone(), etag: format!("\"up-{}\"", etag_of(f)) };
        match op.action {
            Action::Upload => {
                let f = l.get(&op.path).expect("checked present");
                r.insert(op.path.clone(), uploaded(f));
            }
            Action::Download => {
                let f = r.get(&op.path).expect("If-Match held").leaf.clone();
                l.insert(op.path.clone(), f);
            }
            Action::DeleteRemote => drop(r.remove(&op.path)),
            Action::DeleteLocal => drop(l.remove(&op.path)),
            Action::MoveRemote => {
                let f = r.remove(from).expect("If-Match held").leaf;
                let at = match op.then {
                    Some(Action::Upload) => l.get(&op.path).expect("content held").clone(),
                    Some(Action::Merge) => merged(l.get(&op.path).expect("content held"), &f),
                    _ => f,
                };
                r.insert(op.path.clone(), uploaded(&at));
                l.insert(op.path.clone(), at);
            }
            Action::MoveLocal => {
                let f = l.remove(from).expect("content held");
                let theirs = r.get(&op.path).expect("If-Match held").leaf.clone();
                let at = match op.then {
                    Some(Action::Download) => theirs,
                    Some(Action::Merge) => merged(&f, &theirs),
                    _ => f,
                };
                if op.then.is_some() {
                    r.insert(op.path.clone(), uploaded(&at));
                }
                l.insert(op.path.clone(), at);
            }
            Action::Merge => {
                let m = merged(
                    l.get(&op.path).expect("content held"),
                    &r.get(&op.path).expect("If-Match held").leaf,
                );
                r.insert(op.path.clone(), uploaded(&m));
                l.insert(op.path.clone(), m);
            }
            Action::Record | Action::Conflict | Action::Skip => {}
        }
    }
    Ok(())
}

/// Drops every file that is also a folder of another path (a tree cannot hold both).
fn normalize(mut s: LocalState) -> LocalState {
    let dirs: BTreeSet<String> = s
        .keys()
        .flat_map(|p| p.match_indices('/').map(|(i, _)| p[..i].to_owned()).collect::<Vec<_>>())
        .collect();
    s.retain(|p, _| !dirs.contains(p));
    s
}

fn path_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "b"]), 1..=3).prop_map(|v| v.join("/"))
}

fn leaf_strategy() -> impl Strategy<Value = Leaf> {
    (prop_oneof![3 => Just(EntryKind::File), 1 => Just(EntryKind::Executable)], 0u8..3)
        .prop_map(|(kind, d)| Leaf { kind, id: ObjectId::for_blob(&[d]), size: 1 })
}

fn state_strategy() -> impl Strategy<Value = LocalState> {
    prop::collection::btree_map(path_strategy(), leaf_strategy(), 0..7).prop_map(normalize)
}

fn edits_strategy() -> impl Strategy<Value = Vec<(String, Option<Leaf>)>> {
    prop::collection::vec((path_strategy(), prop::option::of(leaf_strategy())), 0..5)
}

fn edited(s: &LocalState, edits: &[(String, Option<Leaf>)]) -> LocalState {
    let mut s = s.clone();
    for (p, v) in edits {
        match v {
            Some(v) => s.insert(p.clone(), v.clone()),
            None => s.remove(p),
        };
    }
    normalize(s)
}

/// The bucket for a side: base's ETag where the content is base's (unless touched),
/// a fresh one elsewhere.
fn bucket(base: &RemoteState, s: &LocalState, touched: &[String]) -> RemoteState {
    s.iter()
        .map(|(p, f)| {
            let etag = match base.get(p) {
                Some(b) if b.leaf == *f && !touched.contains(p) => b.etag.clone(),
                Some(b) if b.leaf == *f => format!("\"touched-{p}\""),
                _ => format!("\"r-{}\"", etag_of(f)),
            };
            (p.clone(), RemoteFile { leaf: f.clone(), etag })
        })
        .collect()
}

fn base_bucket(s: &LocalState) -> RemoteState {
    s.iter()
        .map(|(p, f)| (p.clone(), RemoteFile { leaf: f.clone(), etag: format!("\"b-{}\"", etag_of(f)) }))
        .collect()
}

fn under(paths: &BTreeSet<String>, p: &str) -> bool {
    paths.iter().any(|k| p == k || p.starts_with(&format!("{k}/")))
}

fn mirror(a: Action) -> Action {
    match a {
        Action::Upload => Action::Download,
        Action::Download => Action::Upload,
        Action::DeleteRemote => Action::DeleteLocal,
        Action::DeleteLocal => Action::DeleteRemote,
        Action::MoveRemote => Action::MoveLocal,
        Action::MoveLocal => Action::MoveRemote,
        other => other,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Three-way plans never delete or overwrite what changed on the other side; their
    /// preconditions hold on the state they were planned on; applying them makes the
    /// sides agree everywhere outside conflicts; and a second plan is then empty.
    #[test]
    fn three_way_plans_are_safe_and_converge(
        base in state_strategy(),
        le in edits_strategy(),
        re in edits_strategy(),
        touched in prop::collection::vec(path_strategy(), 0..2),
    ) {
        let b = base_bucket(&base);
        let l = edited(&base, &le);
        let r = bucket(&b, &edited(&base, &re), &touched);
        let mut fixture = Fixture::new(Some(&b), &l, &r);
        fixture.max_delete = Some(usize::MAX);
        let plan = match fixture.plan() {
            Err(PlanError::EmptyRemote { .. }) => {
                prop_assert!(r.is_empty() && !b.is_empty());
                return Ok(());
            }
            other => other.expect("plans"),
        };
        let paths: BTreeSet<&str> = plan.ops.iter().map(|o| o.path.as_str()).collect();
        prop_assert_eq!(paths.len(), plan.ops.len(), "one operation per path");
        // Safety: a side is only written where it still holds the base content.
        for op in plan.ops.iter().filter(|o| matches!(o.action, Action::MoveRemote | Action::MoveLocal)) {
            // A move carries what it moves: the content at its source is the plan's, and
            // either the base's (nothing to lose) or brought along by `then`.
            let from = op.from.as_deref().expect("a move has a source");
            let (moved, kept_by_then) = match op.action {
                Action::MoveRemote => (r.get(from).map(|f| &f.leaf), matches!(op.then, Some(Action::Download | Action::Merge))),
                _ => (l.get(from), matches!(op.then, Some(Action::Upload | Action::Merge))),
            };
            let side = if op.action == Action::MoveRemote { op.sides.remote.as_ref() } else { op.sides.local.as_ref() };
            let other = if op.action == Action::MoveRemote { op.sides.local.as_ref() } else { op.sides.remote.as_ref() };
            prop_assert_eq!(moved, side, "{:?} moves what it planned", op);
            prop_assert!(kept_by_then || moved == base.get(from) || moved.map(|m| m.id) == other.map(|o| o.id), "{op:?} drops an edit");
        }
        for op in plan.ops.iter().filter(|o| !matches!(o.action, Action::MoveRemote | Action::MoveLocal)) {
            let targets = [Some(op.path.as_str()), op.from.as_deref()];
            for p in targets.into_iter().flatten() {
                let base_leaf = base.get(p);
                match op.action {
                    // (Or only its mode changes: the same bytes made executable.)
                    Action::Upload | Action::DeleteRemote | Action::MoveRemote => {
                        let same_bytes = |f: &RemoteFile| op.sides.local.as_ref().is_some_and(|n| n.id == f.leaf.id);
                        prop_assert!(r.get(p).is_none_or(|f| Some(&f.leaf) == base_leaf || same_bytes(f)), "{op:?} clobbers remote");
                    }
                    Action::Download | Action::DeleteLocal | Action::MoveLocal => {
                        let same_bytes = |f: &Leaf| op.sides.remote.as_ref().is_some_and(|n| n.id == f.id);
                        prop_assert!(l.get(p).is_none_or(|f| Some(f) == base_leaf || same_bytes(f)), "{op:?} clobbers local");
                    }
                    _ => {}
                }
            }
        }
        let (mut l2, mut r2) = (l.clone(), r.clone());
        apply(&plan, &mut l2, &mut r2)?;
        let kept: BTreeSet<String> =
            plan.ops.iter().filter(|o| matches!(o.action, Action::Conflict | Action::Skip)).map(|o| o.path.clone()).collect();
        let r2_leaves = leaves(&r2);
        let all: BTreeSet<&String> = l2.keys().chain(r2.keys()).collect();
        for p in all.into_iter().filter(|p| !under(&kept, p)) {
            prop_assert_eq!(l2.get(p), r2_leaves.get(p), "sides disagree at {}", p);
        }
        if kept.is_empty() {
            prop_assert_eq!(&l2, &r2_leaves);
            let again = Fixture::new(Some(&r2), &l2, &r2).ok();
            prop_assert!(again.is_empty(), "second plan: {:?}", summary(&again));
        }
    }

    /// Protected and ignored paths (or folders) are never written on either side, and
    /// files that the scan no longer sees because they are ignored are never deleted.
    #[test]
    fn protected_and_ignored_paths_are_never_touched(
        base in state_strategy(),
        le in edits_strategy(),
        re in edits_strategy(),
        protected in prop::collection::btree_set(path_strategy(), 0..3),
        ignored in prop::collection::btree_set(path_strategy(), 0..3),
    ) {
        let b = base_bucket(&base);
        let mut l = edited(&base, &le);
        l.retain(|p, _| !under(&ignored, p));
        let mut fixture = Fixture::new(Some(&b), &l, &bucket(&b, &edited(&base, &re), &[]));
        fixture.max_delete = Some(usize::MAX);
        fixture.protected.clone_from(&protected);
        fixture.ignored.clone_from(&ignored);
        let Ok(plan) = fixture.plan() else { return Ok(()) };
        for op in plan.ops.iter().filter(|o| !matches!(o.action, Action::Record | Action::Conflict | Action::Skip)) {
            for p in [Some(op.path.as_str()), op.from.as_deref()].into_iter().flatten() {
                prop_assert!(!under(&protected, p) && !under(&ignored, p), "{op:?}");
            }
        }
    }

    /// Identical changes on both sides never conflict and transfer nothing.
    #[test]
    fn identical_changes_never_conflict(base in state_strategy(), edits in edits_strategy()) {
        let b = base_bucket(&base);
        let both = edited(&base, &edits);
        let mut fixture = Fixture::new(Some(&b), &both, &bucket(&b, &both, &[]));
        fixture.max_delete = Some(0);
        match fixture.plan() {
            Err(PlanError::EmptyRemote { .. }) => prop_assert!(both.is_empty()),
            other => {
                let plan = other.expect("plans");
                prop_assert!(plan.ops.iter().all(|o| o.action == Action::Record), "{:?}", summary(&plan));
            }
        }
    }

    /// Union mode deletes nothing and overwrites nothing; afterwards both sides hold
    /// everything either had, outside conflicts.
    #[test]
    fn union_mode_keeps_everything(l in state_strategy(), r in state_strategy()) {
        let rb = base_bucket(&r);
        let mut fixture = Fixture::new(None, &l, &rb);
        fixture.max_delete = Some(0);
        let plan = fixture.ok();
        prop_assert_eq!(plan.mode, Mode::Union);
        prop_assert!(plan.ops.iter().all(|o| matches!(
            o.action, Action::Upload | Action::Download | Action::Record | Action::Conflict
        )));
        let (mut l2, mut r2) = (l.clone(), rb.clone());
        apply(&plan, &mut l2, &mut r2)?;
        // Every file keeps its bytes (the execute bit may be added where the other side
        // has the same bytes executable).
        for (p, f) in &l {
            prop_assert_eq!(l2.get(p).map(|x| x.id), Some(f.id));
        }
        for (p, f) in &rb {
            prop_assert_eq!(r2.get(p).map(|x| x.leaf.id), Some(f.leaf.id));
        }
        let kept: BTreeSet<String> = plan.conflicts().map(|o| o.path.clone()).collect();
        let r2_leaves = leaves(&r2);
        for p in l2.keys().chain(r2.keys()).filter(|p| !under(&kept, p)) {
            prop_assert_eq!(l2.get(p), r2_leaves.get(p));
        }
    }

    /// Swapping local and remote mirrors every decision.
    #[test]
    fn symmetric(base in state_strategy(), le in edits_strategy(), re in edits_strategy()) {
        let b = base_bucket(&base);
        let (l, r) = (edited(&base, &le), edited(&base, &re));
        let mut fixture = Fixture::new(Some(&b), &l, &bucket(&b, &r, &[]));
        let mut swapped = Fixture::new(Some(&b), &r, &bucket(&b, &l, &[]));
        fixture.max_delete = Some(usize::MAX);
        swapped.max_delete = Some(usize::MAX);
        match (fixture.plan(), swapped.plan()) {
            (Ok(p), Ok(q)) => {
                let there: Vec<_> = p.ops.iter().map(|o| (o.path.clone(), mirror(o.action), o.from.clone())).collect();
                let back: Vec<_> = q.ops.iter().map(|o| (o.path.clone(), o.action, o.from.clone())).collect();
                prop_assert_eq!(there, back);
                for (o, s) in p.ops.iter().zip(&q.ops) {
                    prop_assert_eq!(o.sides.clone().swap(), s.sides.clone());
                }
            }
            (Err(PlanError::EmptyRemote { .. }), _) => prop_assert!(r.is_empty()),
            (_, Err(PlanError::EmptyRemote { .. })) => prop_assert!(l.is_empty()),
            (p, q) => prop_assert!(false, "{:?} / {:?}", p.map(|p| summary(&p)), q.map(|q| summary(&q))),
        }
    }
}

#[test]
fn crossed_deletions_never_delete_the_last_copy() {
    // The base holds one content at two paths; each side deleted a different one.
    let b = [&[("a.md", "x"), ("b.md", "x")][..], &FILLER[..]].concat();
    let l = [&[("a.md", "x")][..], &FILLER[..]].concat();
    let r = [&[("b.md", "x")][..], &FILLER[..]].concat();
    let plan = Fixture::three_way(&b, &l, &r).ok();
    // The first path is restored from the side that kept it (here, the local side).
    assert_eq!(
        summary(&plan),
        [
            row("a.md", Action::Upload, Reason::LastCopy),
            row("b.md", Action::DeleteRemote, Reason::LocalDeleted)
        ]
    );
    let op = &plan.ops[0];
    assert_eq!(op.precondition.local, Some(LocalCond::Content(id("x"))));
    assert_eq!(op.precondition.remote, Some(RemoteCond::IfAbsent));
    // Seen from the other side, the same path survives, brought back the other way.
    let plan = Fixture::three_way(&b, &r, &l).ok();
    assert_eq!(
        summary(&plan),
        [
            row("a.md", Action::Download, Reason::LastCopy),
            row("b.md", Action::DeleteLocal, Reason::RemoteDeleted)
        ]
    );
    let op = &plan.ops[0];
    assert_eq!(op.precondition.local, Some(LocalCond::Absent));
    assert_eq!(op.precondition.remote, Some(RemoteCond::IfMatch(etag("x"))));
    // With a third copy the remote keeps, both deletions are carried out as asked.
    let b3 = [&b[..], &[("c.md", "x")][..]].concat();
    let l3 = [&l[..], &[("c.md", "x")][..]].concat();
    let r3 = [&r[..], &[("c.md", "x")][..]].concat();
    let plan = Fixture::three_way(&b3, &l3, &r3).ok();
    assert_eq!(
        summary(&plan),
        [
            row("a.md", Action::DeleteLocal, Reason::RemoteDeleted),
            row("b.md", Action::DeleteRemote, Reason::LocalDeleted)
        ]
    );
}

#[test]
fn the_execute_bit_merges_and_a_kind_change_is_a_change() {
    let exec = |c: &str| Leaf { kind: EntryKind::Executable, ..leaf(c) };
    let remote_exec = |p: &str, c: &str| {
        let l = exec(c);
        (p.to_owned(), RemoteFile { etag: etag_of(&l), leaf: l })
    };
    // Base plain, the local side made executable: uploaded (the remote is unchanged).
    let mut l = local(&[("run.sh", "x"), ("k", "k")]);
    l.insert("run.sh".into(), exec("x"));
    let b = remote(&[("run.sh", "x"), ("k", "k")]);
    let fixture = Fixture::new(Some(&b), &l, &b);
    assert_eq!(summary(&fixture.ok()), [row("run.sh", Action::Upload, Reason::LocalChanged)]);
    // Added on both sides with the same bytes, executable on one: no conflict, the bit is
    // kept, from either side.
    let r: RemoteState = [remote_exec("run.sh", "x"), remote_exec("k", "k")].into_iter().collect();
    let fixture = Fixture::new(Some(&remote(&[("k", "k")])), &local(&[("run.sh", "x"), ("k", "k")]), &r);
    assert_eq!(
        summary(&fixture.ok()),
        [
            row("k", Action::Download, Reason::RemoteChanged),
            row("run.sh", Action::Download, Reason::BothAdded)
        ]
    );
    let fixture = Fixture::new(None, &l, &remote(&[("run.sh", "x"), ("k", "k")]));
    assert_eq!(
        summary(&fixture.ok()),
        [row("k", Action::Record, Reason::BothAdded), row("run.sh", Action::Upload, Reason::BothAdded)]
    );
    // A symlink and a file with the same bytes still conflict.
    let mut l = local(&[("a", "t.md")]);
    l.insert("a".into(), Leaf { kind: EntryKind::Symlink, ..leaf("t.md") });
    let fixture = Fixture::new(None, &l, &remote(&[("a", "t.md")]));
    assert_eq!(summary(&fixture.ok()), [row("a", Action::Conflict, Reason::AddAdd)]);
}
