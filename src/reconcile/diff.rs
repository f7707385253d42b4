//! Tree diff: walks two trees together and descends only where subtree ids differ, so
//! the cost grows with the number of changes times the depth, not with the tree size.

use std::cmp::Ordering;
use std::collections::HashMap;

use super::source::{TreeReadError, TreeSource};
use crate::id::ObjectId;
use crate::object::{EntryKind, EntryRef, Tree, TreeRef, entry_order, join_path};

/// A leaf (file or symlink) as one side of a change.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Leaf {
    /// File, executable or symlink.
    pub kind: EntryKind,
    /// Blob id.
    pub id: ObjectId,
    /// Size in bytes.
    pub size: u64,
}

impl From<&EntryRef<'_>> for Leaf {
    fn from(e: &EntryRef<'_>) -> Self {
        Self { kind: e.kind, id: e.id, size: e.size }
    }
}

/// One changed path. Only leaves are reported; a folder added or removed shows as its
/// files, and a file replaced by a folder as a deletion plus additions.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Change {
    /// Only in the new tree.
    Added {
        /// Relative path.
        path: String,
        /// The new leaf.
        new: Leaf,
    },
    /// Only in the old tree.
    Deleted {
        /// Relative path.
        path: String,
        /// The old leaf.
        old: Leaf,
    },
    /// In both, with other content or kind.
    Modified {
        /// Relative path.
        path: String,
        /// The old leaf.
        old: Leaf,
        /// The new leaf.
        new: Leaf,
    },
    /// Deleted at one path and added with the same blob at another.
    Renamed {
        /// The old path.
        from: String,
        /// The new path.
        path: String,
        /// The old leaf.
        old: Leaf,
        /// The new leaf.
        new: Leaf,
    },
}

impl Change {
    /// The (new) path.
    pub fn path(&self) -> &str {
        match self {
            Self::Added { path, .. }
            | Self::Deleted { path, .. }
            | Self::Modified { path, .. }
            | Self::Renamed { path, .. } => path,
        }
    }
}

/// Work done by a diff: how many trees were loaded. Tests count it; benchmarks time it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiffStats {
    /// Trees read from the source.
    pub trees_loaded: u64,
}

/// Lists every change from tree `old` to tree `new` (`None` is the empty tree), in path
/// order. Subtrees with equal ids are skipped without being loaded.
pub fn diff_trees(
    src: &dyn TreeSource,
    old: Option<ObjectId>,
    new: Option<ObjectId>,
    stats: &mut DiffStats,
) -> Result<Vec<Change>, TreeReadError> {
    let mut out = Vec::new();
    diff_into(src, "", old, new, stats, &mut out)?;
    Ok(out)
}

fn load(src: &dyn TreeSource, id: Option<ObjectId>, stats: &mut DiffStats) -> Result<Vec<u8>, TreeReadError> {
    match id {
        None => Ok(Tree::default().encode()),
        Some(id) => {
            stats.trees_loaded += 1;
            src.tree_bytes(&id)
        }
    }
}

fn decode(bytes: &[u8], id: Option<ObjectId>) -> Result<TreeRef<'_>, TreeReadError> {
    TreeRef::decode(bytes).map_err(|e| TreeReadError::Corrupt {
        id: id.unwrap_or_else(|| Tree::default().id()),
        reason: e.to_string(),
    })
}

fn diff_into(
    src: &dyn TreeSource,
    prefix: &str,
    old: Option<ObjectId>,
    new: Option<ObjectId>,
    stats: &mut DiffStats,
    out: &mut Vec<Change>,
) -> Result<(), TreeReadError> {
    if old == new {
        return Ok(());
    }
    let old_bytes = load(src, old, stats)?;
    let new_bytes = load(src, new, stats)?;
    let (old_tree, new_tree) = (decode(&old_bytes, old)?, decode(&new_bytes, new)?);
    let (mut i, mut j) = (0, 0);
    let (ae, be) = (old_tree.entries(), new_tree.entries());
    while i < ae.len() || j < be.len() {
        let ord = match (ae.get(i), be.get(j)) {
            (Some(x), Some(y)) => entry_order(x.name, x.kind.is_tree(), y.name, y.kind.is_tree()),
            (Some(_), None) => Ordering::Less,
            (None, _) => Ordering::Greater,
        };
        match ord {
            Ordering::Less => {
                side(src, prefix, &ae[i], true, stats, out)?;
                i += 1;
            }
            Ordering::Greater => {
                side(src, prefix, &be[j], false, stats, out)?;
                j += 1;
            }
            Ordering::Equal => {
                let (x, y) = (&ae[i], &be[j]);
                // Most entries of a tree on the path of a change are equal: they cost a
                // comparison, not a path.
                if x.kind.is_tree() {
                    if x.id != y.id {
                        diff_into(src, &join_path(prefix, x.name), Some(x.id), Some(y.id), stats, out)?;
                    }
                } else if x.id != y.id || x.kind != y.kind {
                    out.push(Change::Modified {
                        path: join_path(prefix, x.name),
                        old: x.into(),
                        new: y.into(),
                    });
                }
                i += 1;
                j += 1;
            }
        }
    }
    Ok(())
}

/// An entry on one side only: a leaf, or every leaf under a subtree.
fn side(
    src: &dyn TreeSource,
    prefix: &str,
    e: &EntryRef<'_>,
    deleted: bool,
    stats: &mut DiffStats,
    out: &mut Vec<Change>,
) -> Result<(), TreeReadError> {
    let path = join_path(prefix, e.name);
    if e.kind.is_tree() {
        let (o, n) = if deleted { (Some(e.id), None) } else { (None, Some(e.id)) };
        diff_into(src, &path, o, n, stats, out)
    } else {
        out.push(if deleted {
            Change::Deleted { path, old: e.into() }
        } else {
            Change::Added { path, new: e.into() }
        });
        Ok(())
    }
}

/// Pairs deletions and additions of the same blob into renames (first by path order).
pub fn detect_renames(changes: &[Change]) -> Vec<Change> {
    let mut deleted: HashMap<ObjectId, Vec<usize>> = HashMap::new();
    for (i, c) in changes.iter().enumerate() {
        if let Change::Deleted { old, .. } = c {
            deleted.entry(old.id).or_default().push(i);
        }
    }
    for v in deleted.values_mut() {
        v.reverse();
    }
    let mut renamed_from: HashMap<usize, usize> = HashMap::new();
    for (j, c) in changes.iter().enumerate() {
        if let Change::Added { new, .. } = c
            && let Some(i) = deleted.get_mut(&new.id).and_then(Vec::pop)
        {
            renamed_from.insert(j, i);
        }
    }
    let consumed: std::collections::HashSet<usize> = renamed_from.values().copied().collect();
    let mut out = Vec::with_capacity(changes.len() - consumed.len());
    for (j, c) in changes.iter().enumerate() {
        if consumed.contains(&j) {
            continue;
        }
        match (c, renamed_from.get(&j)) {
            (Change::Added { path, new }, Some(&i)) => {
                let Change::Deleted { path: from, old } = &changes[i] else {
                    unreachable!("only deletions are paired")
                };
                out.push(Change::Renamed {
                    from: from.clone(),
                    path: path.clone(),
                    old: old.clone(),
                    new: new.clone(),
                });
            }
            _ => out.push(c.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::TreeEntry;

    /// Builds trees from `(path, content)` pairs into an in-memory source.
    fn build(src: &mut HashMap<ObjectId, Tree>, files: &[(&str, &str)]) -> ObjectId {
        fn go(src: &mut HashMap<ObjectId, Tree>, files: &[(Vec<&str>, &str)]) -> ObjectId {
            let mut entries = Vec::new();
            let mut i = 0;
            while i < files.len() {
                let (parts, content) = &files[i];
                if parts.len() == 1 {
                    let id = ObjectId::for_blob(content.as_bytes());
                    entries.push(TreeEntry {
                        name: parts[0].into(),
                        kind: EntryKind::File,
                        id,
                        size: content.len() as u64,
                    });
                    i += 1;
                } else {
                    let dir = parts[0];
                    let sub: Vec<(Vec<&str>, &str)> = files[i..]
                        .iter()
                        .take_while(|(p, _)| p.len() > 1 && p[0] == dir)
                        .map(|(p, c)| (p[1..].to_vec(), *c))
                        .collect();
                    i += sub.len();
                    let id = go(src, &sub);
                    entries.push(TreeEntry { name: dir.into(), kind: EntryKind::Tree, id, size: 0 });
                }
            }
            let t = Tree::new(entries).expect("valid");
            let id = t.id();
            src.insert(id, t);
            id
        }
        let mut v: Vec<(Vec<&str>, &str)> = files.iter().map(|(p, c)| (p.split('/').collect(), *c)).collect();
        v.sort();
        go(src, &v)
    }

    #[test]
    fn reports_leaf_changes_in_path_order() {
        let mut src = HashMap::new();
        let a = build(
            &mut src,
            &[("a.md", "1"), ("d/x.md", "x"), ("d/y.md", "y"), ("gone/z", "z"), ("t", "file")],
        );
        let b = build(
            &mut src,
            &[("a.md", "2"), ("d/x.md", "x"), ("d/y2.md", "y"), ("new/n", "n"), ("t/inner", "i")],
        );
        let mut st = DiffStats::default();
        let changes = diff_trees(&src, Some(a), Some(b), &mut st).expect("diff");
        let summary: Vec<String> = changes
            .iter()
            .map(|c| match c {
                Change::Added { path, .. } => format!("A {path}"),
                Change::Deleted { path, .. } => format!("D {path}"),
                Change::Modified { path, .. } => format!("M {path}"),
                Change::Renamed { from, path, .. } => format!("R {from} {path}"),
            })
            .collect();
        assert_eq!(summary, ["M a.md", "D d/y.md", "A d/y2.md", "D gone/z", "A new/n", "D t", "A t/inner"]);
        let renamed = detect_renames(&changes);
        assert!(renamed.iter().any(
            |c| matches!(c, Change::Renamed { from, path, .. } if from == "d/y.md" && path == "d/y2.md")
        ));
        assert_eq!(renamed.len(), 6);
        assert!(diff_trees(&src, Some(a), Some(a), &mut st).expect("diff").is_empty());
    }

    #[test]
    fn equal_subtrees_are_never_loaded() {
        // 50 folders of 20 files; change one file in one folder.
        let names: Vec<(String, String)> = (0..50)
            .flat_map(|d| (0..20).map(move |f| (format!("d{d:02}/f{f:02}.md"), format!("{d}-{f}"))))
            .collect();
        let files: Vec<(&str, &str)> = names.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
        let mut src = HashMap::new();
        let a = build(&mut src, &files);
        let mut changed = files.clone();
        changed[7 * 20 + 3].1 = "edited";
        let b = build(&mut src, &changed);
        let mut st = DiffStats::default();
        let changes = diff_trees(&src, Some(a), Some(b), &mut st).expect("diff");
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].path(), "d07/f03.md");
        // Two roots and the two versions of the one changed folder: nothing else.
        assert_eq!(st.trees_loaded, 4);
    }
}
