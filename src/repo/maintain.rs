//! Keeping the store small: `gc`.

use std::path::Path;
use std::time::Duration;

use super::Result;
use crate::Repo;
use crate::id::ObjectId;
use crate::layout::{STATE_DIR, TRASH_DIR};

/// Objects deleted per durable transaction by default.
pub const GC_BATCH: usize = 512;

/// Options for [`Repo::gc`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct GcOptions {
    /// Trash rounds older than this are removed (`None`: the trash is left alone).
    pub keep_trash: Option<Duration>,
    /// Objects deleted per durable transaction.
    pub batch: usize,
    /// Stop after this many transactions, as an interruption would (`None`: finish).
    pub max_batches: Option<usize>,
}

impl Default for GcOptions {
    fn default() -> Self {
        Self { keep_trash: Some(Duration::from_secs(30 * 24 * 3600)), batch: GC_BATCH, max_batches: None }
    }
}

/// What `gc` did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct GcReport {
    /// Objects in the store before.
    pub objects: usize,
    /// Objects kept because something reaches them.
    pub reachable: usize,
    /// Objects deleted.
    pub removed: usize,
    /// Unreachable objects left (an interrupted or bounded run).
    pub left: usize,
    /// Trash rounds (folders of `.bmsync/trash/`) removed.
    pub trash_removed: usize,
}

impl Repo {
    /// Removes the objects nothing reaches and old trash. The set to keep is computed
    /// first, in full; then the others are deleted in transactions of `batch` objects,
    /// each durable on its own. Every object the kept set names stays through every
    /// transaction, so stopping anywhere leaves a store `fsck` passes. Hold the sync lock
    /// (see [`Repo::open_locked`]) so no sync writes meanwhile.
    pub fn gc(&self, opts: &GcOptions) -> Result<GcReport> {
        let conflicts = crate::conflicts::load(&self.store)?;
        let extra: Vec<ObjectId> =
            conflicts.iter().flat_map(|c| [c.base, c.local, c.remote, c.kept]).flatten().collect();
        // The manifest's tree the planner patches (a tree of its own where a path's local
        // and remote leaves differ), with what it holds.
        let trees: Vec<ObjectId> = self
            .store
            .meta(super::META_MANIFEST_TREE)?
            .and_then(|v| super::parse_manifest_tree(&v))
            .map(|(_, tree)| tree)
            .into_iter()
            .collect();
        let keep = self.store.reachable(&extra, &trees)?;
        let all = self.store.object_ids()?;
        let drop: Vec<ObjectId> = all.iter().filter(|id| !keep.contains(id)).copied().collect();
        let mut report =
            GcReport { objects: all.len(), reachable: all.len() - drop.len(), ..GcReport::default() };
        for (n, batch) in drop.chunks(opts.batch.max(1)).enumerate() {
            if opts.max_batches.is_some_and(|m| n >= m) {
                break;
            }
            report.removed += self.store.delete_objects(batch)?;
        }
        report.left = drop.len() - report.removed;
        if let Some(keep) = opts.keep_trash {
            report.trash_removed = prune_trash(&self.root, keep);
        }
        Ok(report)
    }
}

/// Removes trash rounds (folders named by their UNIX-ns stamp) older than `keep`; returns
/// how many. Best effort: a folder that cannot be removed now is tried again next time.
fn prune_trash(root: &Path, keep: Duration) -> usize {
    let Ok(dir) = std::fs::read_dir(root.join(STATE_DIR).join(TRASH_DIR)) else { return 0 };
    let now = u128::from(crate::clock::unix_ns());
    let mut n = 0;
    for e in dir.flatten() {
        let Some(ns) = e.file_name().to_str().and_then(|n| n.parse::<u128>().ok()) else { continue };
        if now.saturating_sub(ns) > keep.as_nanos() && std::fs::remove_dir_all(e.path()).is_ok() {
            n += 1;
        }
    }
    n
}
