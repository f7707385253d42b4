//! Apply and record: carries out a plan against the folder and the remote, under the
//! plan's preconditions, then records the converged state as the new sync base.
//!
//! Every remote write is conditional and every local write is atomic (temporary file,
//! fsync, rename) after checking the file still holds what the plan saw. A lost race
//! leaves that path unsynced for the next round; it is never retried blindly. The new
//! base names a path as synced only where both sides were seen to agree. An intent
//! journal in the store lets the next run clean up after a crash.

mod conflict;
pub(crate) mod journal;
mod local;
mod merge;
mod ops;
mod options;
mod planning;
mod recording;
mod rounds;

pub use crate::layout::TRASH_DIR;
pub use journal::{RecoverError, Recovery, TEMP_PREFIX};
pub use options::{
    ConflictReport, ConflictStyle, DEFAULT_LOCK_WAIT, Direction, MergeReport, NoProgress, OnConflict,
    PlantedBug, Progress, SyncError, SyncOptions, SyncSummary,
};
pub use planning::{Planned, make_plan};
pub use recording::conflict_name;
pub use rounds::{check_guarantees, sync, sync_with_progress};
