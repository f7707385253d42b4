//! bmsync: a Git-style, content-addressed, team-safe sync engine for a Basic Memory
//! folder and an S3/Tigris bucket.
//!
//! The data's journey has one module per stage: [`id`] names content, [`object`]
//! encodes it, [`store`] keeps it, and [`repo`] ties a folder to its store.
#![forbid(unsafe_code)]

pub mod apply;
pub mod clock;
pub mod conflicts;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod id;
pub mod inspect;
pub mod layout;
pub mod merge;
pub mod object;
pub mod reconcile;
pub mod remote;
pub mod repo;
pub mod store;
pub mod worktree;

pub use id::{IdError, IdPrefix, ObjectHasher, ObjectId, ObjectKind};
pub use object::{Commit, EntryKind, Manifest, ManifestEntry, RemoteBaseline, Tree, TreeEntry, TreeRef};
pub use repo::{InitOptions, InitReport, Repo, RepoError, SetRemoteReport, Status};
pub use store::{Store, StoreError};
