//! Remotes: where a folder syncs to. One [`Remote`] trait; the sync engine never sees
//! which backend it has.
//!
//! Keys are relative to the remote's prefix and are the file's path itself, byte for
//! byte. Every key from a remote passes [`check_key`] before anything local uses it.

mod file;
mod s3;
mod url;
mod view;

use std::io::Write;
use std::path::Path;

pub use file::FileRemote;
pub use s3::{S3Options, S3Remote};
pub use url::{RemoteUrl, RemoteUrlError};
pub use view::{RemoteEntry, RemoteView, SkippedKey, ViewStats};

use crate::id::ObjectId;

/// A point in a remote's history: UNIX nanoseconds. Reading "at" a version reads the
/// state as of that instant (Tigris's snapshot versions work this way).
pub type Version = u64;

/// User-metadata key under which bmsync stores an object's BLAKE3 content id. A hint
/// only: content read back is always hashed before it is trusted.
pub const META_CONTENT_ID: &str = "bmsync-blake3";

/// What a remote can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Capabilities {
    /// Point-in-time reads and snapshots (Tigris snapshot-enabled buckets, `file://`).
    pub snapshots: bool,
    /// Object versioning.
    pub versioning: bool,
    /// `DeleteObject` with `If-Match`.
    pub conditional_delete: bool,
}

/// One object as a listing or head reports it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ObjectInfo {
    /// Key relative to the remote's prefix.
    pub key: String,
    /// The ETag, quotes included, as the remote sent it.
    pub etag: String,
    /// Size in bytes.
    pub size: u64,
    /// The content id from bmsync's metadata, when the call returns metadata (head, get;
    /// not listings) and the object has it. A hint: verify before trusting.
    pub content: Option<ObjectId>,
}

/// One entry of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listed {
    /// A usable object.
    Object(ObjectInfo),
    /// A key that must never be written locally: reported and skipped.
    Unsafe {
        /// The key as listed.
        key: String,
        /// Why it is unsafe.
        reason: &'static str,
    },
}

/// When a write may happen.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Condition {
    /// Only if no object has the key (`If-None-Match: *`).
    IfAbsent,
    /// Only if the object's ETag is this one (`If-Match`).
    IfMatch(String),
}

/// What a successful write reports.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Written {
    /// The new object's ETag.
    pub etag: String,
    /// The new object's version id, where the remote has versioning.
    pub version: Option<String>,
}

/// The bytes of a put.
#[derive(Clone, Copy, Debug)]
pub enum Body<'a> {
    /// In memory.
    Bytes(&'a [u8]),
    /// Read from a file (large files go up in parts).
    File(&'a Path),
}

/// A snapshot a remote has taken.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SnapshotInfo {
    /// Its version.
    pub version: Version,
    /// Its name, if it was given one.
    pub name: Option<String>,
}

/// Why a remote call failed. A failed precondition is a race with a teammate: it is never
/// retried as if it were transient.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The condition of a write did not hold: someone else changed the object.
    #[error("{key}: the object changed on the remote since it was read (precondition failed)")]
    PreconditionFailed {
        /// The key.
        key: String,
    },
    /// No such object.
    #[error("{key}: not found on the remote")]
    NotFound {
        /// The key.
        key: String,
    },
    /// Worth retrying: timeouts, throttling, 5xx.
    #[error("{op}: temporary failure: {detail}")]
    Transient {
        /// The operation.
        op: &'static str,
        /// What happened.
        detail: String,
    },
    /// Credentials are wrong or lack permission.
    #[error("{op}: permission denied: {detail} (check the access key, secret and bucket policy)")]
    Permission {
        /// The operation.
        op: &'static str,
        /// What the remote said.
        detail: String,
    },
    /// A key that would map outside the folder.
    #[error("unsafe remote key {key:?}: {reason}; it is skipped and never written locally")]
    UnsafeKey {
        /// The key.
        key: String,
        /// Why.
        reason: &'static str,
    },
    /// The endpoint did not answer.
    #[error("cannot reach {endpoint}: {detail}")]
    Unreachable {
        /// Where.
        endpoint: String,
        /// What happened.
        detail: String,
    },
    /// A snapshot operation on a remote without snapshots.
    #[error("{remote} has no snapshots (Tigris buckets must be created with snapshots enabled)")]
    NoSnapshots {
        /// The remote.
        remote: String,
    },
    /// Anything else, with the remote's words.
    #[error("{op}: {detail}")]
    Other {
        /// The operation.
        op: &'static str,
        /// What happened.
        detail: String,
    },
}

impl RemoteError {
    /// Whether retrying the same call may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. } | Self::Unreachable { .. })
    }
}

/// A bucket, or something that behaves like one. Calls block; backends that are async
/// inside run their own runtime.
pub trait Remote: Send + Sync {
    /// The remote's URL, as recorded in commits.
    fn url(&self) -> String;
    /// What it can do.
    fn capabilities(&self) -> Capabilities;
    /// Streams every object under the prefix, live or as of `at`, page by page.
    fn list(&self, at: Option<Version>, each: &mut dyn FnMut(Listed)) -> Result<(), RemoteError>;
    /// One object's identity, live or as of `at`.
    fn head(&self, key: &str, at: Option<Version>) -> Result<ObjectInfo, RemoteError>;
    /// Streams one object's bytes into `out`.
    fn get(&self, key: &str, at: Option<Version>, out: &mut dyn Write) -> Result<ObjectInfo, RemoteError>;
    /// Writes an object if `cond` holds, recording `content` as its content id.
    fn put(
        &self,
        key: &str,
        body: Body<'_>,
        content: ObjectId,
        cond: &Condition,
    ) -> Result<Written, RemoteError>;
    /// Deletes an object if its ETag is `if_match`.
    fn delete(&self, key: &str, if_match: &str) -> Result<(), RemoteError>;
    /// Takes a snapshot; returns its version.
    fn snapshot(&self, name: Option<&str>) -> Result<Version, RemoteError>;
    /// Every snapshot taken.
    fn snapshots(&self) -> Result<Vec<SnapshotInfo>, RemoteError>;
    /// Aborts unfinished multipart uploads of `key` started at or after `since` (UNIX
    /// nanoseconds): the ones a crashed sync of ours left behind, as its journal says.
    /// Returns how many. Remotes without multipart uploads have none.
    fn abort_uploads(&self, _key: &str, _since: Version) -> Result<usize, RemoteError> {
        Ok(0)
    }
}

/// Checks that a key maps to a path inside the folder: relative, `/`-separated segments
/// that are neither empty, `.` nor `..`, without NUL or backslash.
pub fn check_key(key: &str) -> Result<(), RemoteError> {
    let reason = if key.is_empty() {
        Some("empty key")
    } else if key.starts_with('/') {
        Some("absolute path")
    } else if key.contains('\0') {
        Some("contains NUL")
    } else if key.contains('\\') {
        Some("contains a backslash")
    } else if key.split('/').any(str::is_empty) {
        Some("empty path segment")
    } else if key.split('/').any(|s| s == "." || s == "..") {
        Some("`.` or `..` segment")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(RemoteError::UnsafeKey { key: key.to_owned(), reason }),
    }
}

/// Opens the remote a URL names.
pub fn open(url: &RemoteUrl, s3: &S3Options) -> Result<Box<dyn Remote>, RemoteError> {
    match url {
        RemoteUrl::File { path } => Ok(Box::new(FileRemote::open(path)?)),
        RemoteUrl::S3 { bucket, prefix } => Ok(Box::new(S3Remote::connect(bucket, prefix, s3)?)),
    }
}

/// Opens the remote a URL names, for reading only: a `file://` remote's folder is left
/// byte for byte as it is (S3 remotes are only ever read unless asked to write).
pub fn open_read_only(url: &RemoteUrl, s3: &S3Options) -> Result<Box<dyn Remote>, RemoteError> {
    match url {
        RemoteUrl::File { path } => Ok(Box::new(FileRemote::open_read_only(path)?)),
        RemoteUrl::S3 { bucket, prefix } => Ok(Box::new(S3Remote::connect(bucket, prefix, s3)?)),
    }
}

/// Keys a listing reported as unsafe, with the reason for each.
pub type UnsafeKeys = Vec<(String, &'static str)>;

/// Lists a remote into a vector (objects and unsafe keys apart).
pub fn list_all(
    remote: &dyn Remote,
    at: Option<Version>,
) -> Result<(Vec<ObjectInfo>, UnsafeKeys), RemoteError> {
    let (mut ok, mut bad) = (Vec::new(), Vec::new());
    remote.list(at, &mut |l| match l {
        Listed::Object(o) => ok.push(o),
        Listed::Unsafe { key, reason } => bad.push((key, reason)),
    })?;
    Ok((ok, bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_keys_are_refused() {
        for (k, why) in [
            ("", "empty key"),
            ("/etc/passwd", "absolute path"),
            ("../x", "`.` or `..` segment"),
            ("a/../../x", "`.` or `..` segment"),
            ("a/./b", "`.` or `..` segment"),
            ("a\0b", "contains NUL"),
            ("a\\..\\b", "contains a backslash"),
            ("a//b", "empty path segment"),
            ("a/", "empty path segment"),
        ] {
            match check_key(k) {
                Err(RemoteError::UnsafeKey { reason, .. }) => assert_eq!(reason, why, "{k:?}"),
                other => panic!("{k:?}: {other:?}"),
            }
        }
        for k in ["a", "notes/idea.md", "caf\u{e9}.md", "...", "a/.b"] {
            assert!(check_key(k).is_ok(), "{k:?}");
        }
    }
}
