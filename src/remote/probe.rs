//! What a bucket really guarantees, found with real requests. bmsync's safety rests on
//! the bucket refusing a write whose `If-Match` / `If-None-Match` no longer holds; some
//! S3 servers accept those headers and ignore them. The probe writes one private object
//! under [`PROBE_PREFIX`], tries each condition against it, and removes it again.

use std::io::Write;

use super::{
    Body, Capabilities, Condition, Listed, ObjectInfo, Remote, RemoteError, SnapshotInfo, Version, Written,
};
use crate::id::ObjectId;
use crate::object::EntryKind;

/// Where probe objects live, under the remote's prefix (inside [`super::PRIVATE_PREFIX`]).
pub const PROBE_PREFIX: &str = ".bmsync/probe/";

/// The bytes bmsync writes over an object just before deleting it, where the bucket
/// ignores `If-Match` on DELETE (see `format-spec/remote-guarantees.md`). A view treats
/// an object with exactly these bytes as absent.
pub const TOMBSTONE: &[u8] = b"bmsync tombstone: this note was deleted; the next sync removes it\n";

/// An ETag no object has: the condition that must be refused.
const WRONG_ETAG: &str = "\"00000000000000000000000000000000\"";

/// What a probe found, and for which remote. Stored with the remote's settings in the
/// store's `meta` table (`remote-probe`, JSON).
#[allow(clippy::struct_excessive_bools)] // independent facts, each one yes or no
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProbeRecord {
    /// The remote URL probed.
    pub remote: String,
    /// The endpoint it was probed through, if one was configured.
    pub endpoint: Option<String>,
    /// When (UNIX nanoseconds).
    pub probed_ns: u64,
    /// `PUT If-None-Match: *` on an existing key was refused.
    pub if_none_match: bool,
    /// `PUT If-Match` with a wrong ETag was refused.
    pub if_match: bool,
    /// `DELETE If-Match` with a wrong ETag was refused.
    pub conditional_delete: bool,
    /// The bucket has versioning enabled.
    pub versioning: bool,
    /// The bucket has snapshots.
    pub snapshots: bool,
}

impl ProbeRecord {
    /// Both conditional PUTs hold.
    pub fn conditional_put(&self) -> bool {
        self.if_none_match && self.if_match
    }

    /// Whether this record is about `remote` reached through `endpoint`.
    pub fn is_for(&self, remote: &str, endpoint: Option<&str>) -> bool {
        self.remote == remote && self.endpoint.as_deref() == endpoint
    }

    /// The guarantee that is missing and what it costs, when a conditional PUT does not
    /// hold.
    pub fn missing_put(&self) -> Option<String> {
        let which = match (self.if_none_match, self.if_match) {
            (true, true) => return None,
            (false, false) => "ignores If-None-Match and If-Match on PUT",
            (false, true) => "ignores If-None-Match on PUT",
            (true, false) => "ignores If-Match on PUT",
        };
        Some(format!(
            "{} {which}: a teammate's concurrent write would be silently overwritten (lost updates)",
            self.remote
        ))
    }
}

/// Probes `remote` with real requests: writes a private object, checks that
/// `If-None-Match: *` on it, `If-Match` with a wrong ETag, and `DELETE If-Match` with a
/// wrong ETag are each refused, and removes it again. Versioning and snapshots come from
/// the remote's own report.
pub fn probe(
    remote: &dyn Remote,
    client_id: &str,
    endpoint: Option<&str>,
) -> Result<ProbeRecord, RemoteError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let key = format!("{PROBE_PREFIX}{client_id}-{now}");
    let put = |body: &[u8], cond: &Condition| {
        remote.put(&key, Body::Bytes(body), ObjectId::for_blob(body), EntryKind::File, cond)
    };
    put(b"bmsync probe: created\n", &Condition::IfAbsent)?;
    let refused = |r: Result<(), RemoteError>| match r {
        Err(RemoteError::PreconditionFailed { .. }) => Ok(true),
        Ok(()) => Ok(false),
        Err(e) => Err(e),
    };
    let found = (|| {
        let if_none_match = refused(put(b"bmsync probe: create again\n", &Condition::IfAbsent).map(drop))?;
        let if_match = refused(
            put(b"bmsync probe: wrong etag\n", &Condition::IfMatch(WRONG_ETAG.to_owned())).map(drop),
        )?;
        let conditional_delete = refused(remote.delete(&key, WRONG_ETAG))?;
        Ok((if_none_match, if_match, conditional_delete))
    })();
    // Clean up whatever is left (the object is ours alone: its key is unique).
    for _ in 0..3 {
        match remote.head(&key, None) {
            Ok(o) => match remote.delete(&key, &o.etag) {
                Ok(()) | Err(RemoteError::NotFound { .. } | RemoteError::PreconditionFailed { .. }) => {}
                Err(e) => return Err(e),
            },
            Err(RemoteError::NotFound { .. }) => break,
            Err(e) => return Err(e),
        }
    }
    let (if_none_match, if_match, conditional_delete) = found?;
    let caps = remote.capabilities();
    Ok(ProbeRecord {
        remote: remote.url(),
        endpoint: endpoint.map(str::to_owned),
        probed_ns: now,
        if_none_match,
        if_match,
        conditional_delete,
        versioning: caps.versioning,
        snapshots: caps.snapshots,
    })
}

/// A remote whose conditional-write capabilities are what a probe found.
pub struct Probed {
    inner: Box<dyn Remote>,
    record: ProbeRecord,
}

impl Probed {
    /// Wraps `inner` with the guarantees `record` found.
    pub fn new(inner: Box<dyn Remote>, record: ProbeRecord) -> Self {
        Self { inner, record }
    }

    /// What the probe found.
    pub fn record(&self) -> &ProbeRecord {
        &self.record
    }
}

impl Remote for Probed {
    fn url(&self) -> String {
        self.inner.url()
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            conditional_put: self.record.conditional_put(),
            conditional_delete: self.record.conditional_delete,
            ..self.inner.capabilities()
        }
    }
    fn list(&self, at: Option<Version>, each: &mut dyn FnMut(Listed)) -> Result<(), RemoteError> {
        self.inner.list(at, each)
    }
    fn list_ranges(
        &self,
        at: Option<Version>,
        bounds: &[String],
        each: &mut dyn FnMut(Listed),
    ) -> Result<(), RemoteError> {
        self.inner.list_ranges(at, bounds, each)
    }
    fn head(&self, key: &str, at: Option<Version>) -> Result<ObjectInfo, RemoteError> {
        self.inner.head(key, at)
    }
    fn get(&self, key: &str, at: Option<Version>, out: &mut dyn Write) -> Result<ObjectInfo, RemoteError> {
        self.inner.get(key, at, out)
    }
    fn put(
        &self,
        key: &str,
        body: Body<'_>,
        content: ObjectId,
        kind: EntryKind,
        cond: &Condition,
    ) -> Result<Written, RemoteError> {
        self.inner.put(key, body, content, kind, cond)
    }
    fn delete(&self, key: &str, if_match: &str) -> Result<(), RemoteError> {
        self.inner.delete(key, if_match)
    }
    fn copy(&self, from: &str, if_match: &str, content: ObjectId, to: &str) -> Result<Written, RemoteError> {
        self.inner.copy(from, if_match, content, to)
    }
    fn snapshot(&self, name: Option<&str>) -> Result<Version, RemoteError> {
        self.inner.snapshot(name)
    }
    fn snapshots(&self) -> Result<Vec<SnapshotInfo>, RemoteError> {
        self.inner.snapshots()
    }
    fn abort_uploads(&self, key: &str, since: Version) -> Result<usize, RemoteError> {
        self.inner.abort_uploads(key, since)
    }
}
