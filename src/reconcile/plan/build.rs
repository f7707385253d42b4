//! Building a tree from the remote listing's leaves.

use std::collections::HashMap;

use crate::id::ObjectId;
use crate::object::{EntryKind, NameError, Tree, TreeEntry, check_path, join_path, path_order};
use crate::reconcile::diff::Leaf;

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
