//! Revisions, status, commits and the log.

use super::rev::Rev;
use super::{META_COLLISIONS, REF_BASE, REF_HEAD, Result};
use crate::id::ObjectId;
use crate::object::{Commit, EntryKind, TreeEntry};
use crate::reconcile::Change;
use crate::worktree::{ScanOptions, Snapshot};
use crate::{Repo, RepoError};

impl Repo {
    /// The last sync commit, if any.
    pub fn base(&self) -> Result<Option<ObjectId>> {
        Ok(self.store.get_ref(REF_BASE)?)
    }

    /// The last local commit, if any.
    pub fn head(&self) -> Result<Option<ObjectId>> {
        Ok(self.store.get_ref(REF_HEAD)?)
    }

    /// The root tree a revision names: `local` (a fresh scan), `base`, `head`, a commit,
    /// a tree, or any other local form of [`Repo::resolve_rev`]. `Ok(None)` is the empty
    /// tree of a ref not set yet. The bucket's revisions are not trees of the store.
    pub fn resolve_tree(&self, rev: &str) -> Result<Option<ObjectId>> {
        match self.resolve_rev(rev)? {
            Rev::Local => Ok(Some(self.scan(false)?.root)),
            Rev::Empty => Ok(None),
            Rev::Commit(id) => Ok(Some(self.store.get_commit(&id)?.tree)),
            Rev::Tree(id) => Ok(Some(id)),
            Rev::Remote(_) => Err(RepoError::BadRevision {
                rev: rev.to_owned(),
                reason: "the bucket's revisions are read by show and restore only".to_owned(),
            }),
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
        let rules = crate::worktree::IgnoreRules::load(&self.root, &crate::worktree::global_ignore_files())
            .map_err(|e| RepoError::Scan(e.into()))?;
        let filter = rules.path_filter();
        // A base path the rules now ignore is left out of the scan, not deleted: a sync
        // leaves it alone on both sides.
        let changes = self.store.diff_with_renames_skipping(
            base_tree,
            Some(snapshot.root),
            |c| matches!(c, Change::Deleted { path, .. } if filter.ignored(path)),
        )?;
        Ok(Status { base, snapshot, changes })
    }

    /// [`Repo::status`] and, given a remote, [`Repo::remote_drift`], side by side: the
    /// folder's scan and the bucket's listing overlap (one waits on the disk, the other on
    /// the remote or the decoding of the base manifest).
    pub fn status_and_drift(
        &self,
        remote: Option<&dyn crate::remote::Remote>,
    ) -> (Result<Status>, Option<Result<RemoteDrift>>) {
        std::thread::scope(|s| {
            let drift = remote.map(|r| s.spawn(move || self.remote_drift(r)));
            let status = self.status();
            let drift = drift.map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
            (status, drift)
        })
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

    /// Commits from `start` (default: `head`, else `base`), newest first, at most
    /// `limit`: every ancestor once, merges' other parents included (see [`Repo::walk`]).
    pub fn log(&self, start: Option<ObjectId>, limit: usize) -> Result<Vec<(ObjectId, Commit)>> {
        self.log_with(start, &LogOptions { limit, ..LogOptions::default() })
    }

    /// [`Repo::log`] with options: only first parents, only commits that changed paths.
    pub fn log_with(&self, start: Option<ObjectId>, opts: &LogOptions) -> Result<Vec<(ObjectId, Commit)>> {
        let start = match start {
            Some(s) => Some(s),
            None => match self.head()? {
                Some(h) => Some(h),
                None => self.base()?,
            },
        };
        let mut out = Vec::new();
        for item in self.walk_lazily(&start.into_iter().collect::<Vec<_>>(), opts.first_parent)? {
            if out.len() >= opts.limit {
                break;
            }
            let (id, c) = item?;
            if opts.paths.is_empty() || self.changes_paths(&c, &opts.paths, opts.first_parent)? {
                out.push((id, c));
            }
        }
        Ok(out)
    }

    /// Every commit reachable from `starts` (all parents, or only first parents), each
    /// once, newest first by timestamp (a parent never before the child that led to it).
    pub fn walk(&self, starts: &[ObjectId], first_parent: bool) -> Result<Vec<(ObjectId, Commit)>> {
        self.walk_lazily(starts, first_parent)?.collect()
    }

    /// [`Repo::walk`] one commit at a time, reading only as far as the caller goes.
    pub fn walk_lazily(&self, starts: &[ObjectId], first_parent: bool) -> Result<Walk<'_>> {
        let mut walk = Walk {
            repo: self,
            first_parent,
            seen: std::collections::HashSet::new(),
            found: Vec::new(),
            queue: std::collections::BinaryHeap::new(),
        };
        for s in starts {
            if walk.seen.insert(*s) {
                let c = self.store.get_commit(s)?;
                walk.queue.push((c.timestamp_ns, std::cmp::Reverse(walk.found.len())));
                walk.found.push(Some((*s, c)));
            }
        }
        Ok(walk)
    }

    /// Whether a commit changed what is at one of `paths`: differs there from every
    /// parent (from its first with `first_parent`; a root commit: has something there).
    fn changes_paths(&self, c: &Commit, paths: &[String], first_parent: bool) -> Result<bool> {
        let at = |tree: ObjectId, p: &str| -> Result<Option<(EntryKind, ObjectId)>> {
            match self.lookup(tree, p.trim_end_matches('/'), "") {
                Ok(e) => Ok(Some((e.kind, e.id))),
                Err(RepoError::NoSuchPath { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        };
        let parents = if first_parent { &c.parents[..c.parents.len().min(1)] } else { &c.parents[..] };
        for p in paths {
            let mine = at(c.tree, p)?;
            if parents.is_empty() {
                if mine.is_some() {
                    return Ok(true);
                }
                continue;
            }
            let mut differs_from_all = true;
            for parent in parents {
                if at(self.store.get_commit(parent)?.tree, p)? == mine {
                    differs_from_all = false;
                    break;
                }
            }
            if differs_from_all {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Commits in walk order (see [`Repo::walk_lazily`]).
pub struct Walk<'r> {
    repo: &'r Repo,
    first_parent: bool,
    seen: std::collections::HashSet<ObjectId>,
    /// Commits found; each is taken out once it is walked.
    found: Vec<Option<(ObjectId, Commit)>>,
    /// (time, order found, index in `found`) of the commits not walked yet.
    queue: std::collections::BinaryHeap<(i64, std::cmp::Reverse<usize>)>,
}

impl Iterator for Walk<'_> {
    type Item = Result<(ObjectId, Commit)>;

    fn next(&mut self) -> Option<Self::Item> {
        let (_, std::cmp::Reverse(i)) = self.queue.pop()?;
        let (id, c) = self.found[i].take().expect("each commit is queued once");
        let parents = if self.first_parent { &c.parents[..c.parents.len().min(1)] } else { &c.parents[..] };
        for p in parents {
            if self.seen.insert(*p) {
                let pc = match self.repo.store.get_commit(p) {
                    Ok(pc) => pc,
                    Err(e) => return Some(Err(e.into())),
                };
                // A parent never sorts before the child that found it, whatever the clocks said.
                self.queue.push((pc.timestamp_ns.min(c.timestamp_ns), std::cmp::Reverse(self.found.len())));
                self.found.push(Some((*p, pc)));
            }
        }
        Some(Ok((id, c)))
    }
}

/// Options for [`Repo::log_with`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LogOptions {
    /// Most commits to return.
    pub limit: usize,
    /// Follow first parents only (hide what merges brought in).
    pub first_parent: bool,
    /// Only commits that changed one of these paths (files or folders).
    pub paths: Vec<String>,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self { limit: usize::MAX, first_parent: false, paths: Vec::new() }
    }
}

impl Repo {
    /// How the bucket differs from this client's base, from one listing of its live
    /// state (no snapshot is taken, nothing is downloaded): paths added, changed (another
    /// ETag) and deleted there since the last sync. bmsync's private keys, keys that are
    /// not syncable paths and paths the ignore rules exclude are left out, as a sync does.
    pub fn remote_drift(&self, remote: &dyn crate::remote::Remote) -> Result<RemoteDrift> {
        let manifest = match self.base()? {
            Some(b) => self.store.get_commit(&b)?.baseline.map(|bl| bl.manifest),
            None => None,
        };
        let rules = crate::worktree::IgnoreRules::load(&self.root, &crate::worktree::global_ignore_files())
            .map_err(|e| RepoError::Scan(e.into()))?;
        // What a sync leaves out of the bucket's side.
        let filter = rules.path_filter();
        let left_out = |key: &str| {
            key.starts_with(crate::remote::PRIVATE_PREFIX)
                || crate::object::check_path(key).is_err()
                || filter.ignored(key)
        };
        let drift = |entries: &[crate::object::ManifestEntryRef<'_>]| -> Result<RemoteDrift> {
            let mut drift = RemoteDrift::default();
            let mut seen = vec![false; entries.len()];
            // The listing comes in key order and the manifest in path order, which agree
            // for every key that is its own path: try the next entry before searching.
            let mut next = 0;
            let bounds = crate::remote::split_bounds(entries.iter().map(|e| e.key));
            remote.list_ranges(None, &bounds, &mut |l| {
                let crate::remote::Listed::Object(o) = l else { return };
                let at = if entries.get(next).is_some_and(|e| e.path == o.key) {
                    Some(next)
                } else {
                    entries.binary_search_by(|e| crate::object::path_order(e.path, &o.key)).ok()
                };
                if let Some(i) = at {
                    next = i + 1;
                    // An unchanged object needs no more checks (most of a large bucket).
                    if entries[i].etag == o.etag {
                        seen[i] = true;
                        return;
                    }
                }
                if left_out(&o.key) {
                    return;
                }
                match at {
                    None => drift.added.push(o.key),
                    Some(i) => {
                        seen[i] = true;
                        drift.changed.push(o.key);
                    }
                }
            })?;
            drift.deleted = entries
                .iter()
                .zip(&seen)
                .filter(|&(e, &seen)| !seen && !left_out(e.path))
                .map(|(e, _)| e.path.to_owned())
                .collect();
            Ok(drift)
        };
        match manifest {
            Some(id) => self.store.with_manifest(&id, |m| drift(m.entries()))?,
            None => drift(&[]),
        }
    }
}

/// How the bucket differs from the base (see [`Repo::remote_drift`]), paths sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RemoteDrift {
    /// Paths the bucket has and the base did not.
    pub added: Vec<String>,
    /// Paths whose object changed since the base.
    pub changed: Vec<String>,
    /// Paths of the base the bucket no longer has.
    pub deleted: Vec<String>,
}

impl RemoteDrift {
    /// Whether the bucket is as the base left it.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.deleted.is_empty()
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
