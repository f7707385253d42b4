//! Objects: blobs, trees, commits and manifests, with canonical encodings
//! (`format-spec/objects.md`).
//!
//! Decoders never panic, bound every allocation by the input length, and reject any
//! encoding that is not the one canonical form of its value.

mod commit;
mod decode;
mod manifest;
mod name;
mod tree;

pub use commit::{
    COMMIT_MAGIC, ClientIdError, Commit, CommitRef, MAX_CLIENT_ID_LEN, MAX_MESSAGE_LEN, MAX_PARENTS,
    MAX_REMOTE_LEN, RemoteBaseline, check_client_id,
};
pub use decode::DecodeError;
pub use manifest::{
    MANIFEST_MAGIC, MAX_ETAG_LEN, MAX_KEY_LEN, Manifest, ManifestEntry, ManifestEntryRef, ManifestError,
    ManifestRef,
};
pub use name::{
    MAX_NAME_LEN, MAX_PATH_LEN, NameError, check_name, check_path, entry_order, join_path, path_order,
};
pub use tree::{EntryKind, EntryRef, TREE_MAGIC, Tree, TreeEntry, TreeError, TreeRef};

use crate::id::ObjectKind;

/// Checks that `bytes` canonically encode an object of `kind` (blobs are any bytes).
pub fn validate(kind: ObjectKind, bytes: &[u8]) -> Result<(), DecodeError> {
    match kind {
        ObjectKind::Blob => Ok(()),
        ObjectKind::Tree => TreeRef::decode(bytes).map(drop),
        ObjectKind::Commit => CommitRef::decode(bytes).map(drop),
        ObjectKind::Manifest => ManifestRef::decode(bytes).map(drop),
    }
}

#[cfg(test)]
mod tests;
