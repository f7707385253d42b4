//! Revisions, status, commits and the log.

use super::{META_COLLISIONS, REF_BASE, REF_HEAD, REV_LOCAL, Result};
use crate::id::{ID_LEN, IdPrefix, ObjectId, ObjectKind};
use crate::object::{Commit, EntryKind, TreeEntry};
use crate::reconcile::Change;
use crate::store::StoreError;
use crate::worktree::{ScanOptions, Snapshot};
use crate::{Repo, RepoError};

impl Repo {
    /// Resolves a revision: a ref name (`base`, `head`), a full id, or an abbreviated id.
    pub fn resolve(&self, rev: &str) -> Result<ObjectId> {
        if let Ok(Some(id)) = self.store.get_ref(rev) {
            return Ok(id);
        }
        if rev.len() == ID_LEN * 2
            && let Ok(id) = rev.parse::<ObjectId>()
        {
            if self.store.contains(&id)? {
                return Ok(id);
            }
            return Err(StoreError::NotFound { id }.into());
        }
        let prefix = IdPrefix::parse(rev).map_err(|_| RepoError::UnknownRevision(rev.to_owned()))?;
        Ok(self.store.resolve_prefix(&prefix)?)
    }

    /// The last sync commit, if any.
    pub fn base(&self) -> Result<Option<ObjectId>> {
        Ok(self.store.get_ref(REF_BASE)?)
    }

    /// The last local commit, if any.
    pub fn head(&self) -> Result<Option<ObjectId>> {
        Ok(self.store.get_ref(REF_HEAD)?)
    }

    /// The root tree a revision names: `local` (a fresh scan), `base`, `head`, a commit,
    /// or a tree. `Ok(None)` is the empty tree of a ref not set yet.
    pub fn resolve_tree(&self, rev: &str) -> Result<Option<ObjectId>> {
        if rev == REV_LOCAL {
            return Ok(Some(self.scan(false)?.root));
        }
        if (rev == REF_BASE || rev == REF_HEAD) && self.store.get_ref(rev)?.is_none() {
            return Ok(None);
        }
        let id = self.resolve(rev)?;
        match self.store.stat(&id)?.map(|(k, _)| k) {
            Some(ObjectKind::Commit) => Ok(Some(self.store.get_commit(&id)?.tree)),
            Some(ObjectKind::Tree) => Ok(Some(id)),
            Some(kind) => Err(RepoError::NotATree { rev: rev.to_owned(), kind }),
            None => Err(StoreError::NotFound { id }.into()),
        }
    }

    /// The entry at `path` inside tree `root`, or the root itself for an empty path.
    pub fn lookup(&self, root: ObjectId, path: &str, rev: &str) -> Result<TreeEntry> {
        let mut entry = TreeEntry { name: String::new(), kind: EntryKind::Tree, id: root, size: 0 };
        for part in path.split('/').filter(|p| !p.is_empty()) {
            let missing = || RepoError::NoSuchPath { rev: rev.to_owned(), path: path.to_owned() };
            if !entry.kind.is_tree() {
                return Err(missing());
            }
            let tree = self.store.get_tree(&entry.id)?;
            entry = tree.entries().iter().find(|e| e.name == part).cloned().ok_or_else(missing)?;
        }
        Ok(entry)
    }

    /// Scans the folder (see [`crate::worktree::scan`]).
    pub fn scan(&self, store_blobs: bool) -> Result<Snapshot> {
        self.scan_with(&ScanOptions { store_blobs, ..ScanOptions::default() })
    }

    /// Scans the folder with explicit options.
    pub fn scan_with(&self, opts: &ScanOptions) -> Result<Snapshot> {
        Ok(crate::worktree::scan(&self.root, &self.store, opts)?)
    }

    /// Local changes since the last sync base (or since nothing, before the first sync).
    pub fn status(&self) -> Result<Status> {
        let mut snapshot = self.scan(false)?;
        // The remote names the last sync refused to write on a folder that ignores case.
        if let Some(v) = self.store.meta(META_COLLISIONS)?
            && let Ok(known) = serde_json::from_slice::<Vec<crate::worktree::Collision>>(&v)
        {
            snapshot.report.collisions.extend(known);
        }
        let base = self.base()?;
        let base_tree = base.map(|b| self.store.get_commit(&b)).transpose()?.map(|c| c.tree);
        let changes = self.store.diff_with_renames(base_tree, Some(snapshot.root))?;
        Ok(Status { base, snapshot, changes })
    }

    /// Records the folder as a local commit on top of `head` (or `base`). Returns `None`
    /// when the folder is unchanged since that commit.
    pub fn commit(&self, message: &str) -> Result<Option<(ObjectId, Commit)>> {
        let snapshot = self.scan(true)?;
        let head = self.head()?;
        let parent = match head {
            Some(h) => Some(h),
            None => self.base()?,
        };
        if let Some(p) = parent
            && self.store.get_commit(&p)?.tree == snapshot.root
        {
            return Ok(None);
        }
        let commit = Commit {
            tree: snapshot.root,
            parents: parent.into_iter().collect(),
            client_id: self.client_id.clone(),
            timestamp_ns: now_ns(),
            message: message.to_owned(),
            baseline: None,
        };
        let id = self.store.put_commit(&commit)?;
        self.store.update_ref(REF_HEAD, head, Some(id))?;
        Ok(Some((id, commit)))
    }

    /// Commits along first parents from `start` (default: `head`, else `base`), newest
    /// first, at most `limit`.
    pub fn log(&self, start: Option<ObjectId>, limit: usize) -> Result<Vec<(ObjectId, Commit)>> {
        let mut next = match start {
            Some(s) => Some(s),
            None => match self.head()? {
                Some(h) => Some(h),
                None => self.base()?,
            },
        };
        let mut out = Vec::new();
        while let Some(id) = next {
            if out.len() >= limit {
                break;
            }
            let c = self.store.get_commit(&id)?;
            next = c.parents.first().copied();
            out.push((id, c));
        }
        Ok(out)
    }
}

/// What `status` found.
#[derive(Clone, Debug)]
pub struct Status {
    /// The sync base compared against.
    pub base: Option<ObjectId>,
    /// The scan of the folder.
    pub snapshot: Snapshot,
    /// Changes from the base tree to the folder, renames paired.
    pub changes: Vec<Change>,
}

/// Now, in UNIX nanoseconds (for commit timestamps, which are only ever displayed).
fn now_ns() -> i64 {
    i64::try_from(crate::clock::unix_ns()).unwrap_or(i64::MAX)
}
