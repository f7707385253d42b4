//! bmsync: a Git-style, content-addressed, team-safe sync engine for a Basic Memory
//! folder and an S3/Tigris bucket.
//!
//! The data's journey has one module per stage:
//!
//! * [`id`] names content (BLAKE3 ids), [`object`] encodes trees, commits and
//!   manifests, [`store`] keeps them (redb), and [`repo`] ties a folder to its store.
//! * [`worktree`] scans the folder against its stat cache; [`remote`] reads and writes
//!   the bucket (`file://`, S3, Tigris snapshots) under conditional writes.
//! * [`reconcile`] plans a sync from three trees, purely; [`merge`] merges text and
//!   notes three ways, purely; [`apply`] carries a plan out and records the new base.
//! * [`conflicts`] keeps what a sync could not settle until someone settles it;
//!   [`inspect`] is what the inspecting commands show.
//!
//! A program that syncs a folder needs little: [`Repo::open`], [`Repo::open_remote`],
//! and [`sync`] with [`SyncOptions`]; the summary says what moved and what is open.
//!
//! ```no_run
//! let repo = bmsync::Repo::open(std::path::Path::new("notes"))?;
//! let remote = repo.open_remote()?;
//! let summary = bmsync::sync(&repo, remote.as_ref(), &bmsync::SyncOptions::default())?;
//! for c in &summary.open_conflicts {
//!     println!("{}: open conflict, the other version is in {:?}", c.path, c.copy);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

pub mod apply;
pub mod basic_memory;
mod clock;
pub mod conflicts;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod id;
pub mod inspect;
mod layout;
pub mod merge;
pub mod object;
pub mod reconcile;
pub mod remote;
pub mod repo;
pub mod restore;
pub mod store;
pub mod watch;
pub mod worktree;

pub use id::{IdError, IdPrefix, ObjectHasher, ObjectId, ObjectKind};
pub use object::{Commit, EntryKind, Manifest, ManifestEntry, RemoteBaseline, Tree, TreeEntry, TreeRef};
pub use repo::{InitOptions, InitReport, Repo, RepoError, SetRemoteReport, Status};
pub use store::{Store, StoreError};

pub use apply::{SyncError, SyncOptions, SyncSummary, sync};
pub use conflicts::{ConflictRecord, Keep};
pub use remote::{Remote, RemoteError};
