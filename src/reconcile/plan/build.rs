//! Building a tree from the remote listing's leaves.

use std::collections::HashMap;

use crate::id::ObjectId;
use crate::object::{EntryKind, NameError, Tree, TreeEntry, TreeRef, check_path, join_path, path_order};
use crate::reconcile::diff::Leaf;
use crate::reconcile::source::{TreeReadError, TreeSource};

/// Why leaves do not make a tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildTreeError {
    /// A path no tree may hold.
    #[error("invalid path {path:?}: {source}")]
    InvalidPath {
        /// The path.
        path: String,
        /// Why.
        source: NameError,
    },
    /// The same path twice.
    #[error("{path:?} is listed twice")]
    Duplicate {
        /// The path.
        path: String,
    },
    /// A path that is both a file and a folder of other paths.
    #[error("{path:?} is both a file and a folder")]
    FileAndFolder {
        /// The path.
        path: String,
    },
    /// A leaf of kind `Tree`.
    #[error("{path:?} is given as a leaf of kind tree")]
    TreeLeaf {
        /// The path.
        path: String,
    },
}

/// Builds trees from leaves in any order: the root id (`None` when there are no leaves)
/// and every tree made, keyed by id (a [`TreeSource`](crate::reconcile::TreeSource)). Folders come only from paths, so
/// no empty folder is ever made. Used for the remote side, from the listing.
pub fn build_tree(
    leaves: impl IntoIterator<Item = (String, Leaf)>,
) -> Result<(Option<ObjectId>, HashMap<ObjectId, Tree>), BuildTreeError> {
    let mut leaves: Vec<(String, Leaf)> = leaves.into_iter().collect();
    leaves.sort_by(|a, b| path_order(&a.0, &b.0));
    if let Some(w) = leaves.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(BuildTreeError::Duplicate { path: w[0].0.clone() });
    }
    let mut trees = HashMap::new();
    // Open folders, root first: (full path, entries so far). In byte order the paths
    // under one folder are contiguous, so a folder is complete once a path leaves it.
    let mut stack: Vec<(String, Vec<TreeEntry>)> = vec![(String::new(), Vec::new())];
    for (path, leaf) in leaves {
        check_path(&path).map_err(|source| BuildTreeError::InvalidPath { path: path.clone(), source })?;
        if leaf.kind.is_tree() {
            return Err(BuildTreeError::TreeLeaf { path });
        }
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", &path));
        let dirs: Vec<&str> = if dir.is_empty() { Vec::new() } else { dir.split('/').collect() };
        let open = stack[1..]
            .iter()
            .zip(&dirs)
            .take_while(|((full, _), d)| full.rsplit('/').next() == Some(**d))
            .count();
        while stack.len() > open + 1 {
            close_folder(&mut stack, &mut trees)?;
        }
        for d in &dirs[open..] {
            let full = join_path(&stack.last().expect("the root stays open").0, d);
            stack.push((full, Vec::new()));
        }
        let entry = TreeEntry { name: name.to_owned(), kind: leaf.kind, id: leaf.id, size: leaf.size };
        stack.last_mut().expect("the root stays open").1.push(entry);
    }
    while stack.len() > 1 {
        close_folder(&mut stack, &mut trees)?;
    }
    let (_, entries) = stack.pop().expect("the root stays open");
    if entries.is_empty() {
        return Ok((None, trees));
    }
    let root = make_tree("", entries)?;
    let id = root.id();
    trees.insert(id, root);
    Ok((Some(id), trees))
}

fn make_tree(path: &str, entries: Vec<TreeEntry>) -> Result<Tree, BuildTreeError> {
    // Names were checked as paths and duplicates ruled out, so a clash is a file and a
    // folder of one name.
    Tree::new(entries).map_err(|e| match e {
        crate::object::TreeError::Duplicate { name } => {
            BuildTreeError::FileAndFolder { path: join_path(path, &name) }
        }
        crate::object::TreeError::InvalidName { name, source } => {
            BuildTreeError::InvalidPath { path: join_path(path, &name), source }
        }
    })
}

fn close_folder(
    stack: &mut Vec<(String, Vec<TreeEntry>)>,
    trees: &mut HashMap<ObjectId, Tree>,
) -> Result<(), BuildTreeError> {
    let (full, entries) = stack.pop().expect("only folders above the root are closed");
    let tree = make_tree(&full, entries)?;
    let (id, size) = (tree.id(), tree.total_size());
    trees.insert(id, tree);
    let name = full.rsplit('/').next().expect("rsplit yields at least one piece").to_owned();
    stack.last_mut().expect("the root stays open").1.push(TreeEntry {
        name,
        kind: EntryKind::Tree,
        id,
        size,
    });
    Ok(())
}

/// A root (`None`: no leaves) and the trees made for it, by id.
pub(super) type Built = (Option<ObjectId>, HashMap<ObjectId, Tree>);

/// Edits below one folder: paths relative to it, and what each becomes.
type Edits<'a> = Vec<(&'a str, Option<&'a Leaf>)>;

/// The tree `build_tree` would make of `root`'s leaves with `edits` applied (a leaf set
/// at a path, or `None`: no file there any more), building only the folders on the edited
/// paths: the root id and the trees made. `Ok(None)` when the result would hold a file
/// and a folder of one name, which `build_tree` over all the leaves reports (the caller
/// falls back to it). `edits` are in path order, each path once, each a valid path.
pub(super) fn patch_tree(
    src: &dyn TreeSource,
    root: Option<ObjectId>,
    edits: &[(String, Option<Leaf>)],
) -> Result<Option<Built>, TreeReadError> {
    let rest: Edits<'_> = edits.iter().map(|(p, l)| (p.as_str(), l.as_ref())).collect();
    let mut trees = HashMap::new();
    Ok(patch_folder(src, root, &rest, &mut trees)?.map(|made| (made.map(|(id, _)| id), trees)))
}

/// One folder of [`patch_tree`]: `edits` are paths relative to it. `Ok(None)`: a clash;
/// `Ok(Some(None))`: the folder is left empty (so it goes, as folders come only from
/// paths); otherwise its new id and total size.
#[allow(clippy::option_option)]
fn patch_folder(
    src: &dyn TreeSource,
    id: Option<ObjectId>,
    edits: &[(&str, Option<&Leaf>)],
    trees: &mut HashMap<ObjectId, Tree>,
) -> Result<Option<Option<(ObjectId, u64)>>, TreeReadError> {
    let mut entries: std::collections::BTreeMap<String, TreeEntry> = std::collections::BTreeMap::new();
    if let Some(id) = id {
        let bytes = src.tree_bytes(&id)?;
        let tree =
            TreeRef::decode(&bytes).map_err(|e| TreeReadError::Corrupt { id, reason: e.to_string() })?;
        for e in tree.entries() {
            entries.insert(
                e.name.to_owned(),
                TreeEntry { name: e.name.to_owned(), kind: e.kind, id: e.id, size: e.size },
            );
        }
    }
    // Per name: the edit of that very path, and the edits beneath it (paths under one
    // folder are contiguous in path order, but the folder's own name may sort apart).
    let mut by_name: std::collections::BTreeMap<&str, (Option<Option<&Leaf>>, Edits<'_>)> =
        std::collections::BTreeMap::new();
    for &(path, leaf) in edits {
        match path.split_once('/') {
            Some((name, below)) => by_name.entry(name).or_default().1.push((below, leaf)),
            None => by_name.entry(path).or_default().0 = Some(leaf),
        }
    }
    for (name, (here, below)) in by_name {
        let old = entries.get(name);
        let mut new: Option<TreeEntry> = old.cloned();
        if matches!(here, Some(None)) && old.is_some_and(|e| !e.kind.is_tree()) {
            new = None;
        }
        if !below.is_empty() {
            let folder = match &new {
                Some(e) if e.kind.is_tree() => Some(e.id),
                Some(_) => return Ok(None),
                None => None,
            };
            let Some(made) = patch_folder(src, folder, &below, trees)? else { return Ok(None) };
            new = made.map(|(id, size)| TreeEntry { name: name.to_owned(), kind: EntryKind::Tree, id, size });
        }
        if let Some(Some(leaf)) = here {
            if new.as_ref().is_some_and(|e| e.kind.is_tree()) {
                return Ok(None);
            }
            new = Some(TreeEntry { name: name.to_owned(), kind: leaf.kind, id: leaf.id, size: leaf.size });
        }
        match new {
            Some(e) => entries.insert(name.to_owned(), e),
            None => entries.remove(name),
        };
    }
    if entries.is_empty() {
        return Ok(Some(None));
    }
    // Names were valid and are unique by construction; anything else is left to the
    // full build, which names the path.
    let Ok(tree) = Tree::new(entries.into_values().collect()) else { return Ok(None) };
    let (id, size) = (tree.id(), tree.total_size());
    trees.insert(id, tree);
    Ok(Some(Some((id, size))))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn leaves() -> impl Strategy<Value = BTreeMap<String, Option<Leaf>>> {
        let path = prop::collection::vec(prop::sample::select(vec!["a", "b", "a-b", "a.md"]), 1..=3)
            .prop_map(|v| v.join("/"));
        let leaf = (prop_oneof![Just(EntryKind::File), Just(EntryKind::Executable)], 0u8..3)
            .prop_map(|(kind, d)| Leaf { kind, id: ObjectId::for_blob(&[d]), size: u64::from(d) + 1 });
        prop::collection::btree_map(path, prop::option::of(leaf), 0..8)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// Patching a tree gives the tree of the patched leaves, or says the patched
        /// leaves make no tree (or leaves it to the full build).
        #[test]
        fn a_patched_tree_is_the_tree_of_the_patched_leaves(start in leaves(), edits in leaves()) {
            let start: BTreeMap<String, Leaf> = start.into_iter().filter_map(|(p, l)| Some((p, l?))).collect();
            let Ok((root, trees)) = build_tree(start.clone()) else { return Ok(()) };
            let mut after = start;
            for (p, l) in &edits {
                match l {
                    Some(l) => after.insert(p.clone(), l.clone()),
                    None => after.remove(p),
                };
            }
            let edits: Vec<(String, Option<Leaf>)> = edits.into_iter().collect();
            let patched = patch_tree(&trees, root, &edits).expect("every tree is at hand");
            match (build_tree(after), patched) {
                (Ok((want, _)), Some((got, made))) => {
                    prop_assert_eq!(want, got);
                    // Every tree the patched root needs is at hand.
                    let all: HashMap<ObjectId, Tree> = trees.into_iter().chain(made).collect();
                    if let Some(r) = got {
                        prop_assert!(all.contains_key(&r));
                    }
                }
                (Err(_), Some(_)) => prop_assert!(false, "a patch made a tree of leaves that make none"),
                (_, None) => {}
            }
        }
    }

    #[test]
    fn a_patch_builds_only_the_folders_on_its_paths() {
        let leaf = Leaf { kind: EntryKind::File, id: ObjectId::for_blob(b"x"), size: 1 };
        let start: Vec<(String, Leaf)> =
            (0..100).map(|i| (format!("d{}/e{}/f{i}", i / 10, i % 10), leaf.clone())).collect();
        let (root, trees) = build_tree(start.clone()).expect("a tree");
        let new = Leaf { kind: EntryKind::File, id: ObjectId::for_blob(b"y"), size: 1 };
        let edits = vec![("d3/e4/f34".to_owned(), Some(new.clone())), ("d3/e5/f35".to_owned(), None)];
        let (got, made) = patch_tree(&trees, root, &edits).expect("read").expect("no clash");
        // The root, d3, d3/e4; d3/e5 is left empty and goes.
        assert_eq!(made.len(), 3);
        let after = start.into_iter().filter(|(p, _)| p != "d3/e5/f35").map(|(p, l)| {
            let l = if p == "d3/e4/f34" { new.clone() } else { l };
            (p, l)
        });
        assert_eq!(got, build_tree(after).expect("a tree").0);
    }
}
