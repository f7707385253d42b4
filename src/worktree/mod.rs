//! The working tree: how a local folder becomes a Merkle tree, fast and conservatively.
//! A missed change is a bug; an extra re-hash is only a cost.

mod ignore;
mod record;
mod scan;

pub use ignore::{BMIGNORE, BUILTIN_RULES, IgnoreError, IgnoreMatch, IgnoreRules, global_ignore_files};
pub use scan::{
    Collision, CollisionKind, META_WORKTREE_STAMP, ScanError, ScanOptions, ScanReport, ScanStats, Skipped,
    Snapshot, scan,
};
