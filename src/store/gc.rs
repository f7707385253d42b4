//! Garbage collection: the set of objects something still needs, and the deletion of the
//! others in small durable transactions (`format-spec/store.md`, "Garbage collection").

use std::collections::HashSet;

use super::rows::{LAYOUT_CHUNKED, parse_header};
use super::{CHUNK_SIZE, CHUNKS, OBJECTS, Result, Store, StoreError, contain};
use crate::id::{ObjectId, ObjectKind};

impl Store {
    /// Every object something needs: what the refs reach (commits and all their
    /// ancestors, their trees, subtrees and blobs, their manifests and the content ids
    /// those name), what the stat cache names, `extra` (conflict records' ids), and the
    /// trees `extra_trees` with everything beneath them (the `manifest-tree` record's).
    /// A missing object is skipped (`fsck` reports it); one that does not read or decode
    /// is an error, since what it names cannot be known.
    pub fn reachable(&self, extra: &[ObjectId], extra_trees: &[ObjectId]) -> Result<HashSet<ObjectId>> {
        let mut keep: HashSet<ObjectId> = extra.iter().copied().collect();
        let mut commits: Vec<ObjectId> = self.refs()?.into_iter().map(|(_, id)| id).collect();
        let mut trees = extra_trees.to_vec();
        let mut seen_commits = HashSet::new();
        while let Some(id) = commits.pop() {
            if !seen_commits.insert(id) {
                continue;
            }
            keep.insert(id);
            let c = match self.get_commit(&id) {
                Ok(c) => c,
                // A ref may name a tree (plumbing): it is kept and walked as one.
                Err(StoreError::WrongKind { found: ObjectKind::Tree, .. }) => {
                    trees.push(id);
                    continue;
                }
                Err(StoreError::NotFound { .. } | StoreError::WrongKind { .. }) => continue,
                Err(e) => return Err(e),
            };
            commits.extend(c.parents.iter().copied());
            trees.push(c.tree);
            if let Some(b) = c.baseline {
                keep.insert(b.manifest);
                match self.get_manifest(&b.manifest) {
                    Ok(m) => keep.extend(m.entries().iter().filter_map(|e| e.content)),
                    Err(StoreError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        for (_, bytes) in self.worktree_state("")?.0 {
            // A record that does not decode names nothing the scanner will trust.
            if let Some(r) = crate::worktree::stat_cache::DirRecord::decode(&bytes) {
                trees.push(r.tree);
                keep.extend(r.children.iter().map(|c| c.entry.id));
            }
        }
        let mut seen_trees = HashSet::new();
        while let Some(t) = trees.pop() {
            if !seen_trees.insert(t) {
                continue;
            }
            keep.insert(t);
            let tree = match self.get_tree(&t) {
                Ok(tree) => tree,
                Err(StoreError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            for e in tree.entries() {
                if e.kind.is_tree() {
                    trees.push(e.id);
                } else {
                    keep.insert(e.id);
                }
            }
        }
        Ok(keep)
    }

    /// Deletes objects (rows and chunks) in one durable transaction; returns how many
    /// were there.
    pub(crate) fn delete_objects(&self, ids: &[ObjectId]) -> Result<usize> {
        // A deleted tree must read as missing, not from memory.
        let deleted = contain(&self.path, || {
            let txn = self.db.writer(&self.path)?.begin_write()?;
            let mut n = 0;
            {
                let mut objects = txn.open_table(OBJECTS)?;
                let mut chunks = txn.open_table(CHUNKS)?;
                for id in ids {
                    let Some(row) = objects.remove(id.as_bytes())? else { continue };
                    n += 1;
                    if let Ok((_, LAYOUT_CHUNKED, size)) = parse_header(id, row.value()) {
                        drop(row);
                        for i in 0..size.div_ceil(CHUNK_SIZE as u64) {
                            let Ok(i) = u32::try_from(i) else { break };
                            chunks.remove((id.as_bytes(), i))?;
                        }
                    }
                }
            }
            txn.commit()?;
            Ok(n)
        });
        super::TreeCache::clear(&self.trees);
        deleted
    }
}
