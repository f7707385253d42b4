//! Remotes: where a folder syncs to. One [`Remote`] trait; the sync engine never sees
//! which backend it has.
//!
//! Keys are relative to the remote's prefix and are the file's path itself, byte for
//! byte. Every key from a remote passes [`check_key`] before anything local uses it.

mod accounting;
pub(crate) mod file;
mod probe;
mod s3;
mod url;
mod view;

use std::io::Write;
use std::path::Path;

pub use accounting::{Counted, RequestCounts};
pub use file::FileRemote;
pub use probe::{PROBE_PREFIX, ProbeRecord, Probed, TOMBSTONE, probe};
pub use s3::{S3Options, S3Remote};
pub use url::{RemoteUrl, RemoteUrlError};
pub use view::{RemoteEntry, RemoteView, SkippedKey, ViewStats};

use crate::id::ObjectId;
use crate::object::EntryKind;

/// A point in a remote's history: UNIX nanoseconds. Reading "at" a version reads the
/// state as of that instant (Tigris's snapshot versions work this way).
pub type Version = u64;

/// User-metadata key under which bmsync stores an object's BLAKE3 content id. A hint
/// only: content read back is always hashed before it is trusted.
pub const META_CONTENT_ID: &str = "bmsync-blake3";
/// User-metadata key under which bmsync stores what an object is locally, when it is not
/// a plain file: `executable` or `symlink` (whose bytes are the link's target path).
/// Absent (or any other value) means a plain file.
pub const META_KIND: &str = "bmsync-kind";

/// The [`META_KIND`] value for a kind, or `None` for a plain file (written without it).
pub fn kind_meta(kind: EntryKind) -> Option<&'static str> {
    match kind {
        EntryKind::Executable => Some("executable"),
        EntryKind::Symlink => Some("symlink"),
        EntryKind::File | EntryKind::Tree => None,
    }
}

/// The kind a [`META_KIND`] value names (a plain file for anything unknown).
pub fn kind_from_meta(value: Option<&str>) -> EntryKind {
    match value {
        Some("executable") => EntryKind::Executable,
        Some("symlink") => EntryKind::Symlink,
        _ => EntryKind::File,
    }
}

/// Keys under this prefix (relative to the remote's prefix) are bmsync's own: never a
/// note, never listed into a sync's view.
pub const PRIVATE_PREFIX: &str = ".bmsync/";

/// What a remote can do. The conditional-write guarantees are what a probe found (see
/// [`probe`]); a remote that was never probed reports them as assumed.
#[allow(clippy::struct_excessive_bools)] // independent facts, each one yes or no
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Capabilities {
    /// Point-in-time reads and snapshots (Tigris snapshot-enabled buckets, `file://`).
    pub snapshots: bool,
    /// Object versioning.
    pub versioning: bool,
    /// `PutObject` honours `If-None-Match: *` and `If-Match` (refuses a write whose
    /// condition no longer holds). Without it a racing write is silently overwritten.
    pub conditional_put: bool,
    /// `DeleteObject` honours `If-Match`.
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
    /// File, executable or symlink, from bmsync's metadata, when the call returns
    /// metadata (head, get; not S3 listings). Never `Tree`.
    pub kind: Option<EntryKind>,
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
    /// The bytes sent were not the bytes announced: the source changed while it was read
    /// (a file edited during its upload). A race with an editor, like a failed condition.
    #[error("{key}: the content changed while it was read")]
    ContentChanged {
        /// The key.
        key: String,
    },
    /// No such object.
    #[error("{key}: not found on the remote")]
    NotFound {
        /// The key.
        key: String,
    },
    /// The bucket does not exist (or the endpoint serves other buckets).
    #[error("bucket {bucket:?} does not exist at {endpoint} (check the remote URL and the endpoint)")]
    NoSuchBucket {
        /// The bucket.
        bucket: String,
        /// Where it was looked for.
        endpoint: String,
    },
    /// The access key is unknown or the secret does not match it.
    #[error(
        "{op}: the credentials were refused: {detail} (check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
    )]
    Credentials {
        /// The operation.
        op: &'static str,
        /// What the remote said.
        detail: String,
    },
    /// A `file://` remote folder that does not exist.
    #[error("{path}: the remote folder does not exist (is the drive mounted?)")]
    MissingFolder {
        /// The folder.
        path: std::path::PathBuf,
    },
    /// A `file://` remote whose index a killed writer left needing a repair, which a
    /// read-only remote does not do (the repair is a write).
    #[error(
        "{}: the remote's index needs a repair (a run that wrote to it was killed), which a read-only open does not do",
        path.display()
    )]
    NeedsRepair {
        /// The remote folder.
        path: std::path::PathBuf,
    },
    /// A `file://` remote that is not a folder, or a folder that is not a bmsync remote.
    #[error("{path}: not a bmsync remote folder: {detail}")]
    NotARemote {
        /// The path.
        path: std::path::PathBuf,
        /// Why.
        detail: String,
    },
    /// A local file to be sent could not be read.
    #[error("reading {path}: {source}")]
    LocalRead {
        /// The file.
        path: std::path::PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A local file receiving an object could not be written (a full disk, say).
    #[error("writing {path}: {source}")]
    LocalWrite {
        /// The file.
        path: std::path::PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The disk holding a `file://` remote is full.
    #[error("{op}: the remote's disk is full: {detail}")]
    DiskFull {
        /// The operation.
        op: &'static str,
        /// What happened.
        detail: String,
    },
    /// A `file://` remote this user may not write (permissions, a read-only drive).
    #[error(
        "{op}: the remote folder cannot be written from here (no write permission, or a read-only drive): {detail}"
    )]
    ReadOnly {
        /// The operation.
        op: &'static str,
        /// What happened.
        detail: String,
    },
    /// The storage of a `file://` remote failed (I/O or database error).
    #[error("{op}: the remote's storage failed: {detail}")]
    Storage {
        /// The operation.
        op: &'static str,
        /// What happened.
        detail: String,
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
    /// No credentials were found for an S3 remote.
    #[error(
        "no credentials for {endpoint}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
    )]
    NoCredentials {
        /// The endpoint.
        endpoint: String,
    },
    /// The bucket lives in another region than the one the request was signed for.
    #[error("bucket {bucket:?} is in another region{}: set AWS_REGION{}", region.as_deref().map(|r| format!(" ({r})")).unwrap_or_default(), region.as_deref().map(|r| format!("={r}")).unwrap_or_default())]
    WrongRegion {
        /// The bucket.
        bucket: String,
        /// Its region, where the remote said.
        region: Option<String>,
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
    /// A stable name of what went wrong, for `--json` errors (`unreachable`,
    /// `no_such_bucket`, `permission`...).
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::PreconditionFailed { .. } => "precondition_failed",
            Self::ContentChanged { .. } => "content_changed",
            Self::NotFound { .. } => "not_found",
            Self::NoSuchBucket { .. } => "no_such_bucket",
            Self::Credentials { .. } => "credentials_refused",
            Self::NoCredentials { .. } => "no_credentials",
            Self::WrongRegion { .. } => "wrong_region",
            Self::MissingFolder { .. } => "missing_remote_folder",
            Self::NeedsRepair { .. } => "remote_needs_repair",
            Self::NotARemote { .. } => "not_a_remote",
            Self::LocalRead { .. } => "local_read",
            Self::LocalWrite { .. } => "local_write",
            Self::DiskFull { .. } => "remote_disk_full",
            Self::Storage { .. } => "remote_storage",
            Self::ReadOnly { .. } => "read_only_remote",
            Self::Transient { .. } => "temporary_failure",
            Self::Permission { .. } => "permission_denied",
            Self::UnsafeKey { .. } => "unsafe_key",
            Self::Unreachable { .. } => "unreachable",
            Self::NoSnapshots { .. } => "no_snapshots",
            Self::Other { .. } => "remote_error",
        }
    }

    /// Whether retrying the same call may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. } | Self::Unreachable { .. })
    }

    /// Whether this is a lost race with a teammate or an editor (a failed condition, or
    /// content that changed while read, or a local file that vanished meanwhile): the path
    /// is left for the next round. Everything else stops the sync with its cause.
    pub fn is_race(&self) -> bool {
        match self {
            Self::PreconditionFailed { .. } | Self::ContentChanged { .. } => true,
            Self::LocalRead { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
            _ => false,
        }
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
    /// Hands `each` what [`Remote::list`] does, in the same (byte) order of keys, where the
    /// remote can by listing the key ranges that `bounds` (keys under the prefix; see
    /// [`split_bounds`]) cut the prefix into side by side. Ranges that arrive before
    /// their turn wait in memory. This default lists as `list` does.
    fn list_ranges(
        &self,
        at: Option<Version>,
        bounds: &[String],
        each: &mut dyn FnMut(Listed),
    ) -> Result<(), RemoteError> {
        let _ = bounds;
        self.list(at, each)
    }
    /// One object's identity, live or as of `at`.
    fn head(&self, key: &str, at: Option<Version>) -> Result<ObjectInfo, RemoteError>;
    /// Streams one object's bytes into `out`.
    fn get(&self, key: &str, at: Option<Version>, out: &mut dyn Write) -> Result<ObjectInfo, RemoteError>;
    /// Writes an object if `cond` holds, recording `content` as its content id and
    /// `kind` (file, executable or symlink) in its metadata.
    fn put(
        &self,
        key: &str,
        body: Body<'_>,
        content: ObjectId,
        kind: EntryKind,
        cond: &Condition,
    ) -> Result<Written, RemoteError>;
    /// Deletes an object if its ETag is `if_match`.
    fn delete(&self, key: &str, if_match: &str) -> Result<(), RemoteError>;
    /// Copies the object at `from` to `to` within the remote, its metadata (content id,
    /// kind) included, if `from` still has ETag `if_match` and holds `content`, and
    /// nothing is at `to`; `PreconditionFailed` otherwise. A move is this copy followed
    /// by a delete of `from` under `If-Match`. This default sends the bytes through this
    /// machine (a read, then a conditional write); remotes override it with a copy that
    /// does not.
    fn copy(&self, from: &str, if_match: &str, content: ObjectId, to: &str) -> Result<Written, RemoteError> {
        let mut bytes = Vec::new();
        let info = self.get(from, None, &mut bytes)?;
        if info.etag != if_match || ObjectId::for_blob(&bytes) != content {
            return Err(RemoteError::PreconditionFailed { key: from.to_owned() });
        }
        let kind = info.kind.filter(|k| !k.is_tree()).unwrap_or(EntryKind::File);
        self.put(to, Body::Bytes(&bytes), content, kind, &Condition::IfAbsent)
    }
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
/// that are neither empty, `.` nor `..`, without NUL. These keys are unsafe everywhere.
/// A backslash is an ordinary character on Linux and macOS; only where the local file
/// system takes it for a separator (Windows) is a key holding one unsafe, and then it is
/// that key alone that is skipped.
pub fn check_key(key: &str) -> Result<(), RemoteError> {
    match key_problem(key) {
        None => Ok(()),
        Some(reason) => Err(RemoteError::UnsafeKey { key: key.to_owned(), reason }),
    }
}

/// What makes a key unsafe (see [`check_key`]), if anything.
pub(crate) fn key_problem(key: &str) -> Option<&'static str> {
    if key.is_empty() {
        Some("empty key")
    } else if key.starts_with('/') {
        Some("absolute path")
    } else if key.contains('\0') {
        Some("contains NUL")
    } else if cfg!(windows) && key.contains('\\') {
        Some("contains a backslash, which this file system takes for a separator")
    } else if key.split('/').any(str::is_empty) {
        Some("empty path segment")
    } else if key.split('/').any(|s| s == "." || s == "..") {
        Some("`.` or `..` segment")
    } else {
        None
    }
}

/// Opens the remote a URL names. A `file://` folder must exist already.
pub fn open(url: &RemoteUrl, s3: &S3Options) -> Result<Box<dyn Remote>, RemoteError> {
    match url {
        RemoteUrl::File { path } => Ok(Box::new(FileRemote::open(path)?)),
        RemoteUrl::S3 { bucket, prefix } => Ok(Box::new(S3Remote::connect(bucket, prefix, s3)?)),
    }
}

/// The endpoint an S3 remote is reached through: the configured one, else the
/// environment's (`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`); `None` for AWS itself and
/// for `file://` remotes.
pub fn effective_endpoint(url: &RemoteUrl, configured: Option<&str>) -> Option<String> {
    match url {
        RemoteUrl::File { .. } => None,
        RemoteUrl::S3 { .. } => configured.map(str::to_owned).or_else(s3::endpoint_from_env),
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

/// Keys per range of a split listing: ten pages of 1,000, so the page each range reads
/// past its end adds a tenth at most.
const KEYS_PER_RANGE: usize = 10_000;
/// Ranges of a split listing at most (each a request in flight).
const LIST_RANGES: usize = 16;

/// Where to cut the listing of a prefix the base knew `keys` of (in any order) into key
/// ranges of even size, for [`Remote::list_ranges`]: at least about 10,000 known keys
/// each, at most 16 ranges, and none below 20,000 keys, where one page after another
/// costs a few round trips. Keys the base did not know fall in whichever range holds
/// their place (a range that gained many lists slower than the rest).
pub fn split_bounds<'k>(keys: impl ExactSizeIterator<Item = &'k str>) -> Vec<String> {
    let ranges = (keys.len() / KEYS_PER_RANGE).min(LIST_RANGES);
    if ranges < 2 {
        return Vec::new();
    }
    let step = keys.len().div_ceil(ranges);
    let mut bounds: Vec<String> = keys.step_by(step).skip(1).map(str::to_owned).collect();
    // Byte order, as listings come (the base's path order may differ a little).
    bounds.sort_unstable();
    bounds.dedup();
    bounds
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
    fn large_listings_are_cut_into_ranges_of_about_ten_thousand_keys() {
        let keys: Vec<String> = (0..1_000_000u32).rev().map(|i| format!("n/{i:07}.md")).collect();
        let bounds = |n: usize| split_bounds(keys[..n].iter().map(String::as_str));
        assert!(bounds(0).is_empty());
        assert!(bounds(19_999).is_empty(), "two ranges need 20,000 keys");
        assert_eq!(bounds(20_000).len(), 1);
        for (n, cuts) in [(100_000, 9), (1_000_000, 15)] {
            let b = bounds(n);
            assert_eq!(b.len(), cuts, "{n} keys");
            assert!(b.windows(2).all(|w| w[0] < w[1]), "ascending, whatever order the keys came in");
            // Each range holds about as many of the keys as the next.
            let mut sorted: Vec<&str> = keys[..n].iter().map(String::as_str).collect();
            sorted.sort_unstable();
            let at: Vec<usize> = b.iter().map(|k| sorted.partition_point(|s| s <= &k.as_str())).collect();
            let sizes: Vec<usize> = std::iter::once(0)
                .chain(at.iter().copied())
                .zip(at.iter().copied().chain([n]))
                .map(|(a, z)| z - a)
                .collect();
            let (lo, hi) = (sizes.iter().min().expect("ranges"), sizes.iter().max().expect("ranges"));
            assert!(hi - lo <= 1, "{sizes:?}");
        }
    }

    #[test]
    fn unsafe_keys_are_refused() {
        for (k, why) in [
            ("", "empty key"),
            ("/etc/passwd", "absolute path"),
            ("../x", "`.` or `..` segment"),
            ("a/../../x", "`.` or `..` segment"),
            ("a/./b", "`.` or `..` segment"),
            ("a\0b", "contains NUL"),
            ("a//b", "empty path segment"),
            ("a/", "empty path segment"),
        ] {
            match check_key(k) {
                Err(RemoteError::UnsafeKey { reason, .. }) => assert_eq!(reason, why, "{k:?}"),
                other => panic!("{k:?}: {other:?}"),
            }
        }
        for k in ["a", "notes/idea.md", "caf\u{e9}.md", "...", "a/.b", "back\\slash.md", "a\\..\\b"] {
            assert!(check_key(k).is_ok(), "{k:?}");
        }
    }
}
