//! The store as the planner's tree source (the trait and its error belong to reconcile).

use super::{Result, Store, StoreError, StoreReader, corrupt};
use crate::id::{ObjectId, ObjectKind};
use crate::reconcile::{Change, DiffStats, TreeReadError, TreeSource, detect_renames, diff_trees};

impl TreeSource for Store {
    fn tree_bytes(&self, id: &ObjectId) -> Result<Vec<u8>, TreeReadError> {
        self.get_kind(id, ObjectKind::Tree).map_err(|e| e.into_tree_read(id))
    }
}

impl TreeSource for StoreReader {
    fn tree_bytes(&self, id: &ObjectId) -> Result<Vec<u8>, TreeReadError> {
        self.get_kind(id, ObjectKind::Tree).map_err(|e| e.into_tree_read(id))
    }
}

impl StoreError {
    fn into_tree_read(self, id: &ObjectId) -> TreeReadError {
        TreeReadError::Source { id: *id, source: Box::new(self) }
    }
}

/// A tree read failure as the store's own error: the store's errors come back unwrapped,
/// so callers match on them as before.
impl From<TreeReadError> for StoreError {
    fn from(e: TreeReadError) -> Self {
        match e {
            TreeReadError::NotFound { id } => StoreError::NotFound { id },
            TreeReadError::Corrupt { id, reason } => StoreError::Corrupt { id, reason },
            TreeReadError::Source { id, source } => match source.downcast::<StoreError>() {
                Ok(e) => *e,
                Err(other) => corrupt(&id, other.to_string()),
            },
        }
    }
}

impl Store {
    /// Every change from tree `old` to tree `new` (`None` is the empty tree), with
    /// deletions and additions of the same blob paired into renames.
    pub fn diff_with_renames(&self, old: Option<ObjectId>, new: Option<ObjectId>) -> Result<Vec<Change>> {
        self.diff_with_renames_skipping(old, new, |_| false)
    }

    /// [`Store::diff_with_renames`] without the changes `skip` names, left out before
    /// renames are paired (so none is paired with one of them either).
    pub fn diff_with_renames_skipping(
        &self,
        old: Option<ObjectId>,
        new: Option<ObjectId>,
        skip: impl Fn(&Change) -> bool,
    ) -> Result<Vec<Change>> {
        let mut stats = DiffStats::default();
        let mut changes = diff_trees(&self.reader()?, old, new, &mut stats)?;
        changes.retain(|c| !skip(c));
        Ok(detect_renames(&changes))
    }
}
