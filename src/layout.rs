//! The names inside a synced folder's state directory. A leaf module: it imports nothing
//! from the crate, so every layer can name the layout without depending on another.

/// The folder inside a synced folder that holds bmsync's state.
pub const STATE_DIR: &str = ".bmsync";
/// The store file inside [`STATE_DIR`].
pub const STORE_FILE: &str = "store.redb";
/// The file inside [`STATE_DIR`] that a sync holds an OS lock on while it applies.
pub const SYNC_LOCK_FILE: &str = "sync.lock";
/// Folder (inside [`STATE_DIR`]) that receives local deletions, recoverably.
pub const TRASH_DIR: &str = "trash";
/// The file (inside [`STATE_DIR`]) whose mtime gives a scan's start on the filesystem's
/// own clock.
pub const STAMP_FILE: &str = "scan-stamp";
