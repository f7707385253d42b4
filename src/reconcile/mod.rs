//! Reconciliation: comparing trees. Pure functions over trees; no I/O of their own.

mod diff;

pub use diff::{Change, DiffStats, Leaf, TreeSource, detect_renames, diff_trees};
