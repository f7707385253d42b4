//! Where the planner's trees come from. The planner owns this trait and its error, and
//! the store implements it (as an object database implements a reader's lookup trait),
//! so reconcile names no storage of its own.

use std::collections::HashMap;

use crate::id::ObjectId;
use crate::object::Tree;

/// Why a tree could not be read. The messages are those the store gives for the same
/// cases, so a failure reads the same whichever layer reports it.
#[derive(Debug, thiserror::Error)]
pub enum TreeReadError {
    /// The source holds no tree with this id.
    #[error("object {id} is not in the store")]
    NotFound {
        /// Tree id.
        id: ObjectId,
    },
    /// The bytes handed over do not decode as a tree.
    #[error("the local state is damaged: object {id} is corrupt in the store: {reason}")]
    Corrupt {
        /// Tree id.
        id: ObjectId,
        /// What is wrong.
        reason: String,
    },
    /// The source itself failed; its error is kept whole.
    #[error("{source}")]
    Source {
        /// Tree id.
        id: ObjectId,
        /// The source's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Where trees come from (the store, or an overlay for tests and simulations). Trees are
/// handed over encoded, so the diff can decode them in place without copying names.
pub trait TreeSource {
    /// The canonical encoding of a tree, verified against its id.
    fn tree_bytes(&self, id: &ObjectId) -> Result<Vec<u8>, TreeReadError>;
}

impl<S: std::hash::BuildHasher> TreeSource for HashMap<ObjectId, Tree, S> {
    fn tree_bytes(&self, id: &ObjectId) -> Result<Vec<u8>, TreeReadError> {
        self.get(id).map(Tree::encode).ok_or(TreeReadError::NotFound { id: *id })
    }
}

/// Trees held in memory (not stored yet) in front of another source.
pub struct Overlay<'a> {
    /// Trees in memory.
    pub mem: &'a HashMap<ObjectId, Tree>,
    /// Everything else.
    pub inner: &'a dyn TreeSource,
}

impl TreeSource for Overlay<'_> {
    fn tree_bytes(&self, id: &ObjectId) -> Result<Vec<u8>, TreeReadError> {
        match self.mem.get(id) {
            Some(t) => Ok(t.encode()),
            None => self.inner.tree_bytes(id),
        }
    }
}
