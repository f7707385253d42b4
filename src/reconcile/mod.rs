//! Reconciliation: comparing trees and planning syncs. Pure functions over trees; no
//! I/O of their own.

mod case;
mod diff;
mod merge;
mod plan;
mod source;
#[cfg(test)]
mod tests_plan;

pub use case::{CaseCollision, case_collisions};
pub use diff::{Change, DiffStats, Leaf, detect_renames, diff_trees};
pub use merge::Merge;
pub use plan::{
    Action, Base, BuildTreeError, ListingStatus, LocalCond, MAX_SIMILAR_BYTES, MAX_SIMILAR_PAIRS, Mode, Op,
    PLAN_VERSION, Plan, PlanError, PlanInput, PlanStats, Precondition, RENAME_SIMILARITY, Reason, RemoteCond,
    RemoteObject, Similarity, build_tree, check_deletions, plan, similarity,
};
pub use source::{Overlay, TreeReadError, TreeSource};
