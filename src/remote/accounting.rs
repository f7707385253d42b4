//! Request accounting: a remote wrapper that counts the requests a sync makes and the
//! bytes they move, so a summary can say what a sync cost, and logs each request (its
//! precondition, outcome and time) at `debug` level, under the `bmsync::remote` target.

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

    /// Counts and logs one listing that `list` makes.
    fn listing(
        &self,
        at: Option<Version>,
        each: &mut dyn FnMut(Listed),
        list: impl FnOnce(&mut dyn FnMut(Listed)) -> Result<(), RemoteError>,
    ) -> Result<(), RemoteError> {
        self.count(|c| c.list += 1);
        let started = std::time::Instant::now();
        let mut n = 0u64;
        let r = list(&mut |l| {
            n += 1;
            each(l);
        });
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let at = at.map(|v| format!(" at snapshot {v}")).unwrap_or_default();
        match &r {
            Ok(()) => tracing::info!(target: "bmsync::remote", "listed {n} objects{at} in {ms:.1} ms"),
            Err(e) => {
                tracing::info!(target: "bmsync::remote", "listing{at} failed after {n} objects, {ms:.1} ms: {e}");
            }
        }
        r
    }

    fn count(&self, f: impl FnOnce(&mut RequestCounts)) {
        f(&mut self.counts.lock().expect("no panic happens while counting"));
    }
}

/// Runs one request, logging what it was, how it ended and how long it took. Keys are
/// logged; credentials never reach here.
fn logged<T>(
    op: &str,
    key: &str,
    what: &str,
    f: impl FnOnce() -> Result<T, RemoteError>,
) -> Result<T, RemoteError> {
    let started = std::time::Instant::now();
    let r = f();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    match &r {
        Ok(_) => tracing::debug!(target: "bmsync::remote", "{op} {key:?}{what}: ok in {ms:.1} ms"),
        Err(e) => tracing::debug!(target: "bmsync::remote", "{op} {key:?}{what}: {e} (after {ms:.1} ms)"),
    }
    r
}

/// A condition as the log shows it.
fn cond_words(cond: &Condition) -> String {
    match cond {
        Condition::IfAbsent => " if none exists (If-None-Match: *)".to_owned(),
        Condition::IfMatch(etag) => format!(" if its ETag is still {etag} (If-Match)"),
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
        self.listing(at, each, |each| self.inner.list(at, each))
    }
    fn list_ranges(
        &self,
        at: Option<Version>,
        bounds: &[String],
        each: &mut dyn FnMut(Listed),
    ) -> Result<(), RemoteError> {
        self.listing(at, each, |each| self.inner.list_ranges(at, bounds, each))
    }
    fn head(&self, key: &str, at: Option<Version>) -> Result<ObjectInfo, RemoteError> {
        self.count(|c| c.head += 1);
        logged("HEAD", key, "", || self.inner.head(key, at))
    }
    fn get(&self, key: &str, at: Option<Version>, out: &mut dyn Write) -> Result<ObjectInfo, RemoteError> {
        let mut w = CountingWriter { out, n: 0 };
        let r = logged("GET", key, "", || self.inner.get(key, at, &mut w));
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
        let what = format!(" ({size} bytes){}", cond_words(cond));
        let r = logged("PUT", key, &what, || self.inner.put(key, body, content, kind, cond));
        self.count(|c| {
            c.put += 1;
            c.bytes_sent += size;
        });
        r
    }
    fn delete(&self, key: &str, if_match: &str) -> Result<(), RemoteError> {
        self.count(|c| c.delete += 1);
        let what = format!(" if its ETag is still {if_match} (If-Match)");
        logged("DELETE", key, &what, || self.inner.delete(key, if_match))
    }
    fn copy(&self, from: &str, if_match: &str, content: ObjectId, to: &str) -> Result<Written, RemoteError> {
        self.count(|c| c.copy += 1);
        let what = format!(" from {from:?} if its ETag is still {if_match}, none at the target");
        logged("COPY", to, &what, || self.inner.copy(from, if_match, content, to))
    }
    fn snapshot(&self, name: Option<&str>) -> Result<Version, RemoteError> {
        self.count(|c| c.snapshot += 1);
        logged("SNAPSHOT", name.unwrap_or(""), "", || self.inner.snapshot(name))
    }
    fn snapshots(&self) -> Result<Vec<SnapshotInfo>, RemoteError> {
        self.count(|c| c.snapshot += 1);
        self.inner.snapshots()
    }
    fn abort_uploads(&self, key: &str, since: Version) -> Result<usize, RemoteError> {
        self.inner.abort_uploads(key, since)
    }
}
