//! format-spec/ held to the code: the store's meta keys, and the plan's reasons and
//! actions, with a golden plan JSON under `tests/fixtures/plan/` that shows every one.
//! Regenerate the golden plans (after a deliberate change, with format-spec/plan.md
//! updated) with `BMSYNC_BLESS=1 cargo test --test it spec::`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use bmsync::ObjectId;
use bmsync::object::{EntryKind, Manifest, ManifestEntry, Tree};
use bmsync::reconcile::{
    Action, Base, Leaf, ListingStatus, Plan, PlanInput, Reason, RemoteObject, build_tree, plan,
};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The rows of the first Markdown table after the line `heading`, as cells.
fn table_after(doc: &str, heading: &str) -> Vec<Vec<String>> {
    let mut lines = doc.lines().skip_while(|l| l.trim() != heading);
    assert!(lines.next().is_some(), "no line {heading:?}");
    let rows: Vec<Vec<String>> = lines
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.trim().trim_matches('|').split('|').map(|c| c.trim().to_owned()).collect())
        .collect();
    assert!(rows.len() > 2, "no table after {heading:?}");
    // The header and the `|---|` line.
    rows.into_iter().skip(2).collect()
}

/// The `code` spans of one table cell.
fn code_spans(cell: &str) -> Vec<String> {
    cell.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

// ---- the store's meta keys ----

/// Every meta key the code reads or writes, by its constant.
fn meta_constants() -> BTreeMap<&'static str, &'static str> {
    [
        ("META_FORMAT_VERSION", bmsync::store::META_FORMAT_VERSION),
        ("META_CLIENT_ID", bmsync::repo::META_CLIENT_ID),
        ("META_REMOTE", bmsync::repo::META_REMOTE),
        ("META_ENDPOINT", bmsync::repo::META_ENDPOINT),
        ("META_CASE_INSENSITIVE", bmsync::repo::META_CASE_INSENSITIVE),
        ("META_PROBE", bmsync::repo::META_PROBE),
        ("META_ACCEPT_LOST_UPDATES", bmsync::repo::META_ACCEPT_LOST_UPDATES),
        ("META_WORKTREE_STAMP", bmsync::worktree::META_WORKTREE_STAMP),
        ("META_WORKTREE_RULES", bmsync::worktree::META_WORKTREE_RULES),
        ("META_COLLISIONS", bmsync::repo::META_COLLISIONS),
        ("META_MANIFEST_TREE", bmsync::repo::META_MANIFEST_TREE),
        ("META_CONFLICTS", bmsync::conflicts::META_CONFLICTS),
    ]
    .into_iter()
    .collect()
}

/// `const META_X: &str = "..."` declarations under `dir`, as name → value.
fn declared_meta_constants(dir: &Path, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            declared_meta_constants(&path, out);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read source");
        for line in text.lines() {
            let Some(rest) = line.trim().strip_prefix("pub const META_") else { continue };
            let Some((name, value)) = rest.split_once(": &str = \"") else { continue };
            let value = value.strip_suffix("\";").expect("a one-line string constant");
            out.insert(format!("META_{name}"), value.to_owned());
        }
    }
}

#[test]
fn store_meta_keys_are_the_documented_ones() {
    let doc: BTreeSet<String> = table_after(&read("format-spec/store.md"), "# `meta`")
        .into_iter()
        .map(|row| {
            let keys = code_spans(&row[0]);
            assert_eq!(keys.len(), 1, "one key per row: {row:?}");
            keys.into_iter().next().expect("one key")
        })
        .collect();
    let code = meta_constants();
    let keys: BTreeSet<String> = code.values().map(|&v| v.to_owned()).collect();
    assert_eq!(keys.len(), code.len(), "two constants name one meta key: {code:?}");
    assert_eq!(keys, doc, "meta keys in the code vs format-spec/store.md's `meta` table");

    // A new constant must be listed above (and so documented). The remote's
    // META_CONTENT_ID and META_KIND name S3 object metadata, not store records.
    let mut declared = BTreeMap::new();
    declared_meta_constants(&root().join("src"), &mut declared);
    for name in ["META_CONTENT_ID", "META_KIND"] {
        assert!(declared.remove(name).is_some(), "{name} is gone: update this test");
    }
    let listed: BTreeMap<String, String> = code.iter().map(|(&k, &v)| (k.to_owned(), v.to_owned())).collect();
    assert_eq!(declared, listed, "META_ constants declared under src/ vs those this test knows");
}

// ---- golden plans ----

/// One side's file: content (which names the blob) and kind.
#[derive(Clone, Copy)]
struct F(&'static str, EntryKind);

const fn file(c: &'static str) -> F {
    F(c, EntryKind::File)
}

const fn link(c: &'static str) -> F {
    F(c, EntryKind::Symlink)
}

fn leaf(f: F) -> Leaf {
    Leaf { kind: f.1, id: ObjectId::for_blob(f.0.as_bytes()), size: f.0.len() as u64 }
}

/// The ETag a content got when it was uploaded (made up, and a function of it).
fn etag(f: F) -> String {
    format!("\"{}\"", leaf(f).id.short(32))
}

type Side = BTreeMap<&'static str, F>;

fn side(files: &[(&'static str, F)]) -> Side {
    files.iter().copied().collect()
}

/// A planner input in memory: trees for base and local, a manifest for the base and a
/// listing for the remote.
struct Case {
    trees: HashMap<ObjectId, Tree>,
    base: Option<(Option<ObjectId>, Manifest)>,
    local: Option<ObjectId>,
    remote: BTreeMap<String, RemoteObject>,
    protected: BTreeSet<String>,
    ignored: BTreeSet<String>,
}

impl Case {
    fn new(base: Option<&Side>, local: &Side, remote: &Side) -> Self {
        let mut trees = HashMap::new();
        let mut tree = |s: &Side| {
            let (root, built) =
                build_tree(s.iter().map(|(p, &f)| ((*p).to_owned(), leaf(f)))).expect("a valid tree");
            trees.extend(built);
            root
        };
        let base = base.map(|b| {
            let entries = b
                .iter()
                .map(|(p, &f)| ManifestEntry {
                    path: (*p).to_owned(),
                    key: format!("team/{p}"),
                    etag: etag(f),
                    size: leaf(f).size,
                    content: Some(leaf(f).id),
                    kind: f.1,
                })
                .collect();
            (tree(b), Manifest::new(entries).expect("a valid manifest"))
        });
        let local = tree(local);
        let remote = remote
            .iter()
            .map(|(p, &f)| {
                let obj = RemoteObject {
                    key: format!("team/{p}"),
                    etag: etag(f),
                    size: leaf(f).size,
                    kind: f.1,
                    content: Some(leaf(f).id),
                };
                ((*p).to_owned(), obj)
            })
            .collect();
        Self { trees, base, local, remote, protected: BTreeSet::new(), ignored: BTreeSet::new() }
    }

    fn plan(&self) -> Plan {
        plan(&PlanInput {
            trees: &self.trees,
            base: self.base.as_ref().map(|(tree, manifest)| Base {
                tree: *tree,
                manifest,
                manifest_tree: None,
            }),
            local: self.local,
            remote: &self.remote,
            listing: ListingStatus::Complete,
            protected: &self.protected,
            ignored: &self.ignored,
            max_delete: Some(100),
            allow_empty_remote: false,
            similarity: None,
        })
        .expect("the plan is accepted")
    }
}

/// Every decision of the three-way walk but renames, crossed deletions and skips.
fn three_way() -> Plan {
    let base = side(&[
        ("changed-here.md", file("u1")),
        ("changed-there.md", file("d1")),
        ("deleted-here.md", file("dl")),
        ("deleted-there.md", file("dr")),
        ("same-edit.md", file("s1")),
        ("gone.md", file("g")),
        ("merge.md", file("m1")),
        ("link", link("l1")),
        ("delete-edit.md", file("e1")),
        ("edit-delete.md", file("f1")),
        ("t", file("t")),
        ("etag.md", file("et")),
    ]);
    let local = side(&[
        ("changed-here.md", file("u2")),
        ("changed-there.md", file("d1")),
        ("deleted-there.md", file("dr")),
        ("new-here.md", file("nl")),
        ("same-edit.md", file("s2")),
        ("same-add.md", file("sa")),
        ("merge.md", file("m2")),
        ("link", link("l2")),
        ("add-add.md", file("a1")),
        ("edit-delete.md", file("f2")),
        ("t/x.md", file("tx")),
        ("etag.md", file("et")),
    ]);
    let remote = side(&[
        ("changed-here.md", file("u1")),
        ("changed-there.md", file("d2")),
        ("deleted-here.md", file("dl")),
        ("new-there.md", file("nr")),
        ("same-edit.md", file("s2")),
        ("same-add.md", file("sa")),
        ("merge.md", file("m3")),
        ("link", link("l3")),
        ("add-add.md", file("a2")),
        ("delete-edit.md", file("e2")),
        ("t", file("t")),
        ("etag.md", file("et")),
    ]);
    let mut case = Case::new(Some(&base), &local, &remote);
    case.remote.get_mut("etag.md").expect("listed").etag = "\"re-uploaded\"".into();
    case.plan()
}

/// A move on each side.
fn renames() -> Plan {
    // a.md renamed here, c.md there; e.md renamed here and deleted there; g.md renamed to
    // two paths; dir/ renamed here while a file was added to it there; m.md renamed here
    // and edited there.
    let base = side(&[
        ("a.md", file("r1")),
        ("c.md", file("r2")),
        ("e.md", file("r3")),
        ("g.md", file("r4")),
        ("dir/x.md", file("r5")),
        ("dir/y.md", file("r6")),
        ("m.md", file("r8")),
    ]);
    let local = side(&[
        ("b.md", file("r1")),
        ("c.md", file("r2")),
        ("f.md", file("r3")),
        ("h.md", file("r4")),
        ("dir2/x.md", file("r5")),
        ("dir2/y.md", file("r6")),
        ("n.md", file("r8")),
    ]);
    let remote = side(&[
        ("a.md", file("r1")),
        ("d/c.md", file("r2")),
        ("i.md", file("r4")),
        ("dir/x.md", file("r5")),
        ("dir/y.md", file("r6")),
        ("dir/z.md", file("r7")),
        ("m.md", file("r9")),
    ]);
    Case::new(Some(&base), &local, &remote).plan()
}

/// Each side deleted a different copy of one content: one copy stays.
fn last_copy() -> Plan {
    let base = side(&[("a.md", file("x")), ("b.md", file("x")), ("k.md", file("k"))]);
    let local = side(&[("a.md", file("x")), ("k.md", file("k"))]);
    let remote = side(&[("b.md", file("x")), ("k.md", file("k"))]);
    Case::new(Some(&base), &local, &remote).plan()
}

/// Protected and ignored paths, a key that is no path, a key that is also a folder.
fn skips() -> Plan {
    let base = side(&[("p.md", file("p1")), ("ign/x.md", file("i1")), ("k.md", file("k"))]);
    let local = side(&[("p.md", file("p2")), ("k.md", file("k"))]);
    let remote =
        side(&[("p.md", file("p1")), ("ign/x.md", file("i2")), ("k.md", file("k")), ("a/b.md", file("ab"))]);
    let mut case = Case::new(Some(&base), &local, &remote);
    case.protected.insert("p.md".into());
    case.ignored.insert("ign".into());
    for key in ["folder/", "a"] {
        let obj = RemoteObject {
            key: format!("team/{key}"),
            etag: etag(file(key)),
            size: 1,
            kind: EntryKind::File,
            content: Some(leaf(file(key)).id),
        };
        case.remote.insert(key.into(), obj);
    }
    case.plan()
}

/// No base: what each side has alone is copied, what differs is reported.
fn union() -> Plan {
    let local =
        side(&[("mine.md", file("m")), ("both.md", file("b")), ("diff.md", file("l")), ("t", file("t"))]);
    let remote = side(&[
        ("theirs.md", file("r")),
        ("both.md", file("b")),
        ("diff.md", file("r2")),
        ("t/x.md", file("tx")),
    ]);
    Case::new(None, &local, &remote).plan()
}

fn golden_plans() -> BTreeMap<&'static str, Plan> {
    [
        ("three_way", three_way()),
        ("renames", renames()),
        ("last_copy", last_copy()),
        ("skips", skips()),
        ("union", union()),
    ]
    .into_iter()
    .collect()
}

/// Where each reason shows in the golden plans: (plan, path). Exhaustive, so a new
/// reason does not compile until it has a golden case (and a row in plan.md).
fn reason_witness(r: Reason) -> (&'static str, &'static str) {
    match r {
        Reason::LocalAdded => ("three_way", "new-here.md"),
        Reason::LocalChanged => ("three_way", "changed-here.md"),
        Reason::LocalDeleted => ("three_way", "deleted-here.md"),
        Reason::LocalRenamed => ("renames", "b.md"),
        Reason::RemoteAdded => ("three_way", "new-there.md"),
        Reason::RemoteChanged => ("three_way", "changed-there.md"),
        Reason::RemoteDeleted => ("three_way", "deleted-there.md"),
        Reason::RemoteRenamed => ("renames", "d/c.md"),
        Reason::OnlyLocal => ("union", "mine.md"),
        Reason::OnlyRemote => ("union", "theirs.md"),
        Reason::BothAdded => ("three_way", "same-add.md"),
        Reason::BothChanged => ("three_way", "same-edit.md"),
        Reason::BothDeleted => ("three_way", "gone.md"),
        Reason::RemoteEtagChanged => ("three_way", "etag.md"),
        Reason::EditEdit => ("three_way", "link"),
        Reason::AddAdd => ("three_way", "add-add.md"),
        Reason::DeleteEdit => ("three_way", "delete-edit.md"),
        Reason::EditDelete => ("three_way", "edit-delete.md"),
        Reason::TypeChange => ("three_way", "t"),
        Reason::Protected => ("skips", "p.md"),
        Reason::Ignored => ("skips", "ign/x.md"),
        Reason::InvalidRemoteKey => ("skips", "folder/"),
        Reason::RemoteKeyCollision => ("skips", "a"),
        Reason::LastCopy => ("last_copy", "a.md"),
        Reason::RenameDelete => ("renames", "f.md"),
        Reason::RenameRename => ("renames", "i.md"),
        Reason::FolderRenamed => ("renames", "dir2/z.md"),
    }
}

/// Where each action shows in the golden plans. Exhaustive, as above.
fn action_witness(a: Action) -> (&'static str, &'static str) {
    match a {
        Action::Upload => ("three_way", "changed-here.md"),
        Action::Download => ("three_way", "changed-there.md"),
        Action::DeleteRemote => ("three_way", "deleted-here.md"),
        Action::DeleteLocal => ("three_way", "deleted-there.md"),
        Action::MoveRemote => ("renames", "b.md"),
        Action::MoveLocal => ("renames", "d/c.md"),
        Action::Record => ("three_way", "gone.md"),
        Action::Conflict => ("three_way", "link"),
        Action::Merge => ("three_way", "merge.md"),
        Action::Skip => ("skips", "p.md"),
    }
}

/// Every reason, in the order of the enum.
const REASONS: [Reason; 27] = [
    Reason::LocalAdded,
    Reason::LocalChanged,
    Reason::LocalDeleted,
    Reason::LocalRenamed,
    Reason::RemoteAdded,
    Reason::RemoteChanged,
    Reason::RemoteDeleted,
    Reason::RemoteRenamed,
    Reason::OnlyLocal,
    Reason::OnlyRemote,
    Reason::BothAdded,
    Reason::BothChanged,
    Reason::BothDeleted,
    Reason::RemoteEtagChanged,
    Reason::EditEdit,
    Reason::AddAdd,
    Reason::DeleteEdit,
    Reason::EditDelete,
    Reason::TypeChange,
    Reason::Protected,
    Reason::Ignored,
    Reason::InvalidRemoteKey,
    Reason::RemoteKeyCollision,
    Reason::RenameDelete,
    Reason::RenameRename,
    Reason::FolderRenamed,
    Reason::LastCopy,
];

/// Every action, in the order of the enum.
const ACTIONS: [Action; 10] = [
    Action::Upload,
    Action::Download,
    Action::DeleteRemote,
    Action::DeleteLocal,
    Action::MoveRemote,
    Action::MoveLocal,
    Action::Record,
    Action::Conflict,
    Action::Merge,
    Action::Skip,
];

fn json_name(v: impl serde::Serialize) -> String {
    match serde_json::to_value(v).expect("serialises") {
        serde_json::Value::String(s) => s,
        other => panic!("not a string: {other}"),
    }
}

#[test]
fn golden_plans_show_every_reason_and_action() {
    let plans = golden_plans();
    let text = serde_json::to_string_pretty(&plans).expect("plans serialise") + "\n";
    let path = root().join("tests/fixtures/plan/golden.json");
    if std::env::var_os("BMSYNC_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("fixture dir");
        std::fs::write(&path, &text).expect("write fixture");
    }
    let golden = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        golden == text,
        "the golden plans differ from {}: bless them if the change is meant",
        path.display()
    );

    let find = |(plan, at): (&str, &str)| {
        plans[plan].ops.iter().find(|o| o.path == at).unwrap_or_else(|| panic!("{plan}: no op at {at}"))
    };
    for r in REASONS {
        assert_eq!(find(reason_witness(r)).reason, r);
    }
    for a in ACTIONS {
        assert_eq!(find(action_witness(a)).action, a);
    }
    // Every reason and action the plans hold is one of the lists (so they are complete).
    for op in plans.values().flat_map(|p| &p.ops) {
        assert!(REASONS.contains(&op.reason) && ACTIONS.contains(&op.action), "{op:?}");
    }
    let merge = find(action_witness(Action::Merge));
    assert!(merge.reason == Reason::EditEdit && !merge.is_conflict());

    // And the lists are what format-spec/plan.md documents.
    let plan_md = read("format-spec/plan.md");
    let reasons: BTreeSet<String> =
        table_after(&plan_md, "Reasons:").iter().flat_map(|row| code_spans(&row[0])).collect();
    let code: BTreeSet<String> = REASONS.iter().map(|&r| json_name(r)).collect();
    assert_eq!(code.len(), REASONS.len(), "two reasons share a name");
    assert_eq!(code, reasons, "reasons the code writes vs plan.md's Reasons table");
    let actions: BTreeSet<String> = table_after(&plan_md, "## Operation")
        .iter()
        .find(|row| row[0] == "`action`")
        .map(|row| code_spans(&row[2]).into_iter().collect())
        .expect("plan.md's Operation table has an `action` row");
    let code: BTreeSet<String> = ACTIONS.iter().map(|&a| json_name(a)).collect();
    assert_eq!(code.len(), ACTIONS.len(), "two actions share a name");
    assert_eq!(code, actions, "actions the code writes vs plan.md's Operation table");
}
