//! Request accounting: a remote wrapper that counts the requests a sync makes and the
//! bytes they move, so a summary can say what a sync cost.

use std::io::Write;
use std::sync::Mutex;

use super::{
    Body, Capabilities, Condition, Listed, ObjectInfo, Remote, RemoteError, SnapshotInfo, Version, Written,
};
use crate::id::ObjectId;
use crate::object::EntryKind;

/// Requests made and bytes moved, by kind. A listing counts once however many pages it
/// takes; a copy within the bucket moves no bytes through this machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RequestCounts {
    /// Listings.
    pub list: u64,
    /// HEAD requests.
    pub head: u64,
    /// GET requests.
    pub get: u64,
    /// PUT requests (a multipart upload counts once).
    pub put: u64,
    /// Copies within the bucket.
    pub copy: u64,
    /// DELETE requests.
    pub delete: u64,
    /// Snapshots taken or listed.
    pub snapshot: u64,
    /// Bytes of object bodies sent.
    pub bytes_sent: u64,
    /// Bytes of object bodies received.
    pub bytes_received: u64,
}

/// A remote that counts what passes through it to `inner`.
pub struct Counted<'a> {
    inner: &'a dyn Remote,
    counts: Mutex<RequestCounts>,
}

impl<'a> Counted<'a> {
    /// Counts requests to `inner` from now on.
    pub fn new(inner: &'a dyn Remote) -> Self {
        Self { inner, counts: Mutex::default() }
    }

    /// The counts so far.
    pub fn counts(&self) -> RequestCounts {
        *self.counts.lock().expect("no panic happens while counting")
    }

    fn count(&self, f: impl FnOnce(&mut RequestCounts)) {
        f(&mut self.counts.lock().expect("no panic happens while counting"));
    }
}

struct CountingWriter<'w> {
    out: &'w mut dyn Write,
    n: u64,
}

impl Write for CountingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let k = self.out.write(buf)?;
        self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

impl Remote for Counted<'_> {
    fn url(&self) -> String {
        self.inner.url()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn list(&self, at: Option<Version>, each: &mut dyn FnMut(Listed)) -> Result<(), RemoteError> {
        self.count(|c| c.list += 1);
        self.inner.list(at, each)
    }
    fn head(&self, key: &str, at: Option<Version>) -> Result<ObjectInfo, RemoteError> {
        self.count(|c| c.head += 1);
        self.inner.head(key, at)
    }
    fn get(&self, key: &str, at: Option<Version>, out: &mut dyn Write) -> Result<ObjectInfo, RemoteError> {
        let mut w = CountingWriter { out, n: 0 };
        let r = self.inner.get(key, at, &mut w);
        let n = w.n;
        self.count(|c| {
            c.get += 1;
            c.bytes_received += n;
        });
        r
    }
    fn put(
        &self,
        key: &str,
        body: Body<'_>,
        content: ObjectId,
        kind: EntryKind,
        cond: &Condition,
    ) -> Result<Written, RemoteError> {
        let size = match body {
            Body::Bytes(b) => b.len() as u64,
            Body::File(p) => std::fs::metadata(p).map_or(0, |m| m.len()),
        };
        let r = self.inner.put(key, body, content, kind, cond);
        self.count(|c| {
            c.put += 1;
            c.bytes_sent += size;
        });
        r
    }
    fn delete(&self, key: &str, if_match: &str) -> Result<(), RemoteError> {
        self.count(|c| c.delete += 1);
        self.inner.delete(key, if_match)
    }
    fn copy(&self, from: &str, if_match: &str, content: ObjectId, to: &str) -> Result<Written, RemoteError> {
        self.count(|c| c.copy += 1);
        self.inner.copy(from, if_match, content, to)
    }
    fn snapshot(&self, name: Option<&str>) -> Result<Version, RemoteError> {
        self.count(|c| c.snapshot += 1);
        self.inner.snapshot(name)
    }
    fn snapshots(&self) -> Result<Vec<SnapshotInfo>, RemoteError> {
        self.count(|c| c.snapshot += 1);
        self.inner.snapshots()
    }
    fn abort_uploads(&self, key: &str, since: Version) -> Result<usize, RemoteError> {
        self.inner.abort_uploads(key, since)
    }
}
