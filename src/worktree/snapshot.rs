//! What a scan gives: the snapshot, its report and stats, its options and errors.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use unicode_normalization::UnicodeNormalization;

use super::ignore::{IgnoreError, global_ignore_files};
use crate::id::ObjectId;
use crate::object::{Tree, TreeError};
use crate::store::StoreError;

/// How to scan: start from `ScanOptions::default()` and set the fields wanted.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ScanOptions {
    /// Also store every blob (for `commit`); `status` only hashes.
    pub store_blobs: bool,
    /// Global ignore files (default: `.bmignore` in Basic Memory's folder,
    /// `$BASIC_MEMORY_CONFIG_DIR` or else `~/.basic-memory`).
    pub global_ignore_files: Vec<PathBuf>,
    /// Write nothing to the store (for `plan`): new trees are returned in
    /// [`Snapshot::unstored_trees`] instead, and the stat cache is left as it was.
    pub dry_run: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self { store_blobs: false, global_ignore_files: global_ignore_files(), dry_run: false }
    }
}

/// A path the scan did not include, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    /// Relative path (lossily shown if not UTF-8).
    pub path: String,
    /// Why it was skipped.
    pub reason: String,
}

/// Kinds of name collision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CollisionKind {
    /// Names equal after NFC normalisation: only one can be in the tree.
    Unicode,
    /// Names equal ignoring case, on a folder whose file system ignores case: only one
    /// can be a file there.
    Case,
}

/// Names that collide: only `synced` is synced; the others are left exactly as they
/// are, on disk and in the bucket.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Collision {
    /// What kind of collision.
    pub kind: CollisionKind,
    /// The colliding relative paths, as on disk (or as keys in the bucket).
    pub paths: Vec<String>,
    /// The one that syncs.
    pub synced: String,
}

/// Warnings from a scan.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ScanReport {
    /// Paths left out (non-UTF-8 names, special files, invalid names).
    pub skipped: Vec<Skipped>,
    /// Name collisions.
    pub collisions: Vec<Collision>,
}

impl ScanReport {
    /// Every path (or folder) that must never be deleted or overwritten because of how
    /// it was scanned: what the scan left out (a special file, a symlink out of the
    /// folder...), which to the planner is not there though something is; and a name
    /// with Unicode twins, since the twin the scan dropped may be the one the last sync
    /// knew (nothing at that path syncs until the twins are one).
    pub fn protected_paths(&self) -> Vec<String> {
        let twins = self.collisions.iter().filter(|c| c.kind == CollisionKind::Unicode);
        self.skipped.iter().map(|s| s.path.clone()).chain(twins.map(|c| c.synced.nfc().collect())).collect()
    }
}

/// Counters from a scan.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ScanStats {
    /// Files and symlinks in the tree.
    pub files: u64,
    /// Folders visited.
    pub dirs: u64,
    /// Folders whose entries were listed (`readdir`); the others' listings were trusted
    /// from the stat cache.
    pub listed_dirs: u64,
    /// Files read and hashed (the rest were trusted from the stat cache).
    pub hashed: u64,
    /// Bytes read to hash them.
    pub hashed_bytes: u64,
    /// Folders whose tree id was reused without encoding.
    pub reused_trees: u64,
    /// Blobs newly written to the store.
    pub stored_blobs: u64,
}

/// The result of a scan: the folder as a Merkle tree.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The root tree id (stored, as is every tree beneath it).
    pub root: ObjectId,
    /// Total bytes of every file and symlink.
    pub size: u64,
    /// Warnings.
    pub report: ScanReport,
    /// Counters.
    pub stats: ScanStats,
    /// With [`ScanOptions::dry_run`], the trees that were not written to the store.
    pub unstored_trees: HashMap<ObjectId, Tree>,
    /// Paths (files and folders) whose name on disk is not their NFC form: NFC path →
    /// the path on disk, relative to the root. Usually empty.
    pub disk_names: BTreeMap<String, String>,
}

/// Where the (NFC) path `rel` is on disk under `root`, without a scan: each non-ASCII
/// name that is not there as it is is looked up in its folder by its NFC form (a name
/// macOS wrote in NFD, say). A name found nowhere is kept as it is.
pub fn find_on_disk(root: &Path, rel: &str) -> PathBuf {
    let mut p = root.to_owned();
    for part in rel.split('/') {
        let here = p.join(part);
        if part.is_ascii() || fs::symlink_metadata(&here).is_ok() {
            p = here;
            continue;
        }
        let twin = fs::read_dir(&p).ok().and_then(|rd| {
            rd.flatten().map(|e| e.file_name()).find(|n| n.to_str().is_some_and(|n| n.nfc().eq(part.chars())))
        });
        p = twin.map_or(here, |n| p.join(n));
    }
    p
}

impl Snapshot {
    /// Where the relative (NFC) path `rel` is on disk under `root`: through the names the
    /// scan found on disk where they differ (an NFD name from macOS, say), so a write
    /// lands in the file or folder that is there rather than beside it.
    ///
    /// A non-ASCII name that is not where the scan saw it (a file or folder made since,
    /// maybe in another Unicode form) is looked up afresh, so a write never makes a twin
    /// of a name that appeared after the scan.
    pub fn disk_path(&self, root: &Path, rel: &str) -> PathBuf {
        let mapped = self.mapped_path(root, rel);
        if rel.is_ascii() || fs::symlink_metadata(&mapped).is_ok() {
            return mapped;
        }
        find_on_disk(root, rel)
    }

    fn mapped_path(&self, root: &Path, rel: &str) -> PathBuf {
        if self.disk_names.is_empty() {
            return root.join(rel);
        }
        let mut end = rel.len();
        loop {
            if let Some(d) = self.disk_names.get(&rel[..end]) {
                let rest = rel[end..].trim_start_matches('/');
                return if rest.is_empty() { root.join(d) } else { root.join(d).join(rest) };
            }
            match rel[..end].rfind('/') {
                Some(i) => end = i,
                None => return root.join(rel),
            }
        }
    }
}

/// Why a scan failed. A failed scan records nothing.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// A file or folder could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A file kept changing while it was read.
    #[error("{path} kept changing while it was read; try again when it is quiet")]
    Unstable {
        /// The path.
        path: PathBuf,
    },
    /// Ignore rules could not be loaded.
    #[error(transparent)]
    Ignore(#[from] IgnoreError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A tree could not be built (a bug: names are checked before).
    #[error(transparent)]
    Tree(#[from] TreeError),
}
