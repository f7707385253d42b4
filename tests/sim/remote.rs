//! The simulator's bucket: an in-memory remote with a logical clock, and the
//! fault-injecting wrapper every client talks through.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bmsync::remote::{
    Body, Capabilities, Condition, Listed, ObjectInfo, Remote, RemoteError, SnapshotInfo, Version, Written,
};
use bmsync::{EntryKind, ObjectId};
use rand::rngs::StdRng;

use super::world::Shared;

/// A bucket in memory. Versions come from a logical clock, so snapshots, reads at a
/// version and ETags (one per write, never reused) are the same on every run.
#[derive(Default)]
pub struct MemRemote {
    state: Mutex<MemState>,
}

#[derive(Default)]
struct MemState {
    clock: u64,
    /// Every version of every key, oldest first.
    keys: BTreeMap<String, History>,
    snapshots: Vec<SnapshotInfo>,
}

/// A key's versions: (clock, object), `None` for a deletion.
type History = Vec<(u64, Option<Arc<Obj>>)>;

struct Obj {
    etag: String,
    id: ObjectId,
    kind: EntryKind,
    data: Vec<u8>,
}

impl MemState {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn at(&self, key: &str, at: Option<Version>) -> Option<Arc<Obj>> {
        let h = self.keys.get(key)?;
        let e = match at {
            None => h.last(),
            Some(v) => h.iter().rev().find(|(ver, _)| *ver <= v),
        };
        e.and_then(|(_, o)| o.clone())
    }
}

fn info(key: &str, o: &Obj, with_content: bool) -> ObjectInfo {
    ObjectInfo {
        key: key.to_owned(),
        etag: o.etag.clone(),
        size: o.data.len() as u64,
        content: with_content.then_some(o.id),
        kind: with_content.then_some(o.kind),
    }
}

impl MemRemote {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemState> {
        self.state.lock().expect("no panic happens while the bucket is locked")
    }
}

/// The bytes of a put body.
pub fn body_bytes(body: Body<'_>) -> Result<Vec<u8>, RemoteError> {
    match body {
        Body::Bytes(b) => Ok(b.to_vec()),
        Body::File(p) => {
            std::fs::read(p).map_err(|e| RemoteError::Other { op: "put", detail: e.to_string() })
        }
    }
}

impl Remote for MemRemote {
    fn url(&self) -> String {
        "mem://sim".to_owned()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { snapshots: true, versioning: true, conditional_put: true, conditional_delete: true }
    }

    fn list(&self, at: Option<Version>, each: &mut dyn FnMut(Listed)) -> Result<(), RemoteError> {
        // Collected first: the callback is the engine's, and runs with no lock held.
        let listed: Vec<ObjectInfo> = {
            let s = self.lock();
            s.keys.keys().filter_map(|k| s.at(k, at).map(|o| info(k, &o, false))).collect()
        };
        for o in listed {
            each(Listed::Object(o));
        }
        Ok(())
    }

    fn head(&self, key: &str, at: Option<Version>) -> Result<ObjectInfo, RemoteError> {
        let o = self.lock().at(key, at).ok_or_else(|| RemoteError::NotFound { key: key.to_owned() })?;
        Ok(info(key, &o, true))
    }

    fn get(&self, key: &str, at: Option<Version>, out: &mut dyn Write) -> Result<ObjectInfo, RemoteError> {
        let o = self.lock().at(key, at).ok_or_else(|| RemoteError::NotFound { key: key.to_owned() })?;
        out.write_all(&o.data).map_err(|e| RemoteError::Other { op: "get", detail: e.to_string() })?;
        Ok(info(key, &o, true))
    }

    fn put(
        &self,
        key: &str,
        body: Body<'_>,
        content: ObjectId,
        kind: EntryKind,
        cond: &Condition,
    ) -> Result<Written, RemoteError> {
        let data = body_bytes(body)?;
        if ObjectId::for_blob(&data) != content {
            return Err(RemoteError::ContentChanged { key: key.to_owned() });
        }
        let mut s = self.lock();
        let ok = match (cond, s.at(key, None)) {
            (Condition::IfAbsent, None) => true,
            (Condition::IfMatch(want), Some(have)) => *want == have.etag,
            _ => false,
        };
        if !ok {
            return Err(RemoteError::PreconditionFailed { key: key.to_owned() });
        }
        let v = s.tick();
        let etag = format!("\"m{v}\"");
        let obj = Arc::new(Obj { etag: etag.clone(), id: content, kind, data });
        s.keys.entry(key.to_owned()).or_default().push((v, Some(obj)));
        Ok(Written { etag, version: Some(v.to_string()) })
    }

    fn delete(&self, key: &str, if_match: &str) -> Result<(), RemoteError> {
        let mut s = self.lock();
        match s.at(key, None) {
            None => return Err(RemoteError::NotFound { key: key.to_owned() }),
            Some(o) if o.etag != if_match => {
                return Err(RemoteError::PreconditionFailed { key: key.to_owned() });
            }
            Some(_) => {}
        }
        let v = s.tick();
        s.keys.entry(key.to_owned()).or_default().push((v, None));
        Ok(())
    }

    fn copy(&self, from: &str, if_match: &str, content: ObjectId, to: &str) -> Result<Written, RemoteError> {
        let mut s = self.lock();
        let src = match s.at(from, None) {
            Some(o) if o.etag == if_match && o.id == content => o,
            _ => return Err(RemoteError::PreconditionFailed { key: from.to_owned() }),
        };
        if s.at(to, None).is_some() {
            return Err(RemoteError::PreconditionFailed { key: to.to_owned() });
        }
        let v = s.tick();
        let etag = format!("\"m{v}\"");
        let obj = Arc::new(Obj { etag: etag.clone(), id: src.id, kind: src.kind, data: src.data.clone() });
        s.keys.entry(to.to_owned()).or_default().push((v, Some(obj)));
        Ok(Written { etag, version: Some(v.to_string()) })
    }

    fn snapshot(&self, name: Option<&str>) -> Result<Version, RemoteError> {
        let mut s = self.lock();
        let v = s.tick();
        s.snapshots.push(SnapshotInfo { version: v, name: name.map(str::to_owned) });
        Ok(v)
    }

    fn snapshots(&self) -> Result<Vec<SnapshotInfo>, RemoteError> {
        Ok(self.lock().snapshots.clone())
    }
}

/// The panic payload of a simulated crash (`kill -9` at a remote call).
pub struct SimCrash;

/// How a call fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fail {
    /// A temporary failure before the call reaches the bucket.
    Transient,
    /// Permission denied.
    Permanent,
    /// The call succeeds on the bucket, but its answer is lost: the client sees a timeout.
    LostAck,
}

/// How the first listing of a sync misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListFault {
    /// It fails outright.
    Fail,
    /// One page arrives, then the connection drops.
    Truncated,
    /// It returns nothing, successfully (a wrong prefix, a broken proxy).
    Empty,
}

/// The faults armed for one sync. Call indices count every remote call of the sync.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Crash at this call: before it reaches the bucket, or just after (`crash_after`).
    pub crash_at: Option<u32>,
    /// Whether the crashing call reaches the bucket first.
    pub crash_after: bool,
    /// Fail this call.
    pub fail_at: Option<(u32, Fail)>,
    /// Misbehave on the first listing.
    pub list: Option<ListFault>,
    /// A teammate writes the key of this call (or another key) just before it.
    pub teammate_at: Option<u32>,
    /// The user edits a local file while the sync runs.
    pub local_change: Option<LocalWhen>,
}

/// When the user's edit during a sync happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalWhen {
    /// At the listing: after the scan, before the plan is applied.
    AfterScan,
    /// At the first write of the apply step (or its first live read).
    MidApply,
}

impl Faults {
    /// Whether nothing is armed.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

#[derive(Default)]
struct Armed {
    faults: Faults,
    calls: u32,
    listed: bool,
    list_faulted: bool,
    local_fired: bool,
    rng: Option<StdRng>,
}

/// What the wrapper must do around one call.
#[derive(Default)]
#[allow(clippy::struct_excessive_bools, reason = "one flag per hook, decided together under one lock")]
struct Pre {
    n: u32,
    teammate: bool,
    local_change: bool,
    crash_before: bool,
    crash_after: bool,
    fail: Option<Fail>,
}

/// One client's view of the bucket, with faults. Logs every successful write for the
/// invariants.
pub struct FaultRemote {
    inner: Arc<dyn Remote>,
    client: usize,
    root: PathBuf,
    shared: Arc<Mutex<Shared>>,
    armed: Mutex<Armed>,
    /// Whether a mid-apply edit may also land during a download (see
    /// `Config::edit_during_download`).
    during_download: bool,
}

impl FaultRemote {
    /// Wraps the shared bucket for client `client`, whose folder is `root`.
    pub fn new(
        inner: Arc<dyn Remote>,
        client: usize,
        root: PathBuf,
        shared: Arc<Mutex<Shared>>,
        during_download: bool,
    ) -> Self {
        Self { inner, client, root, shared, armed: Mutex::new(Armed::default()), during_download }
    }

    /// Arms the faults of the next sync; `rng` drives the teammate's and the user's
    /// choices inside it.
    pub fn arm(&self, faults: Faults, rng: StdRng) {
        *self.armed.lock().expect("unpoisoned") = Armed { faults, rng: Some(rng), ..Armed::default() };
    }

    /// No faults: the quiescent phase and the setup.
    pub fn disarm(&self) {
        *self.armed.lock().expect("unpoisoned") = Armed::default();
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().expect("no panic happens while the shared state is locked")
    }

    /// Decides, under the lock, what happens around call `op`; then does the hooks
    /// (teammate, local edit) with no lock of ours held.
    fn before(&self, op: &'static str, key: Option<&str>, at: Option<Version>) -> Result<Pre, RemoteError> {
        let (pre, rng) = {
            let mut a = self.armed.lock().expect("unpoisoned");
            let n = a.calls;
            a.calls += 1;
            let f = a.faults.clone();
            // The listing comes after the scan. The apply step starts with the first call
            // that writes or reads the live bucket (the view reads at its snapshot).
            let due = match f.local_change {
                Some(LocalWhen::AfterScan) => op == "list",
                Some(LocalWhen::MidApply) => {
                    a.listed
                        && (matches!(op, "put" | "delete" | "copy")
                            || (op == "head" && at.is_none())
                            || (op == "get" && self.during_download))
                }
                None => false,
            };
            let local_change = due && !a.local_fired;
            if local_change {
                a.local_fired = true;
            }
            let pre = Pre {
                n,
                teammate: f.teammate_at == Some(n),
                local_change,
                crash_before: f.crash_at == Some(n) && !f.crash_after,
                crash_after: f.crash_at == Some(n) && f.crash_after,
                fail: f.fail_at.filter(|(k, _)| *k == n).map(|(_, kind)| kind),
            };
            let rng = if pre.teammate || pre.local_change { a.rng.take() } else { None };
            (pre, rng)
        };
        let mut rng = rng;
        if pre.teammate {
            let r = rng.as_mut().expect("armed with an rng");
            let line = self.shared().teammate_race(&*self.inner, key, r);
            self.event(&format!("call {} {op}: {line}", pre.n));
        }
        if pre.local_change {
            let r = rng.as_mut().expect("armed with an rng");
            let line = self.shared().local_change(self.client, &self.root, r);
            self.event(&format!("call {} {op}: {line}", pre.n));
        }
        if let Some(r) = rng {
            self.armed.lock().expect("unpoisoned").rng = Some(r);
        }
        if pre.crash_before {
            self.crash(pre.n, op, key, "before");
        }
        match pre.fail {
            Some(Fail::Transient) => {
                self.event(&format!("call {} {op} {}: transient failure", pre.n, key.unwrap_or("")));
                Err(RemoteError::Transient { op, detail: "simulated timeout".to_owned() })
            }
            Some(Fail::Permanent) => {
                self.event(&format!("call {} {op} {}: permission denied", pre.n, key.unwrap_or("")));
                Err(RemoteError::Permission { op, detail: "simulated denial".to_owned() })
            }
            _ => Ok(pre),
        }
    }

    /// After the call reached the bucket: a crash or a lost answer.
    fn after<T>(
        &self,
        pre: &Pre,
        op: &'static str,
        key: Option<&str>,
        r: Result<T, RemoteError>,
    ) -> Result<T, RemoteError> {
        if pre.crash_after {
            self.crash(pre.n, op, key, "after");
        }
        if pre.fail == Some(Fail::LostAck) {
            let how = if r.is_ok() { "succeeded" } else { "failed" };
            self.event(&format!("call {} {op} {}: {how}, answer lost", pre.n, key.unwrap_or("")));
            return Err(RemoteError::Transient { op, detail: "simulated lost answer".to_owned() });
        }
        r
    }

    fn crash(&self, n: u32, op: &str, key: Option<&str>, when: &str) -> ! {
        self.event(&format!("call {n} {op} {}: CRASH {when}", key.unwrap_or("")));
        std::panic::panic_any(SimCrash)
    }

    fn event(&self, line: &str) {
        let mut s = self.shared();
        s.trace_line(&format!("    {line}"));
    }
}

impl Remote for FaultRemote {
    fn url(&self) -> String {
        self.inner.url()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn list(&self, at: Option<Version>, each: &mut dyn FnMut(Listed)) -> Result<(), RemoteError> {
        let pre = self.before("list", None, at)?;
        let fault = {
            let mut a = self.armed.lock().expect("unpoisoned");
            a.listed = true;
            let f = if a.list_faulted { None } else { a.faults.list };
            a.list_faulted = true;
            f
        };
        let r = match fault {
            None => self.inner.list(at, each),
            Some(ListFault::Fail) => {
                self.event(&format!("call {} list: fails", pre.n));
                Err(RemoteError::Transient { op: "list", detail: "simulated listing failure".to_owned() })
            }
            Some(ListFault::Empty) => {
                self.event(&format!("call {} list: returns nothing", pre.n));
                Ok(())
            }
            Some(ListFault::Truncated) => {
                let mut all = Vec::new();
                self.inner.list(at, &mut |l| all.push(l))?;
                let half = all.len() / 2;
                self.event(&format!("call {} list: truncated after {half} of {}", pre.n, all.len()));
                for l in all.into_iter().take(half) {
                    each(l);
                }
                Err(RemoteError::Transient { op: "list", detail: "simulated truncated page".to_owned() })
            }
        };
        self.after(&pre, "list", None, r)
    }

    fn head(&self, key: &str, at: Option<Version>) -> Result<ObjectInfo, RemoteError> {
        let pre = self.before("head", Some(key), at)?;
        let r = self.inner.head(key, at);
        self.after(&pre, "head", Some(key), r)
    }

    fn get(&self, key: &str, at: Option<Version>, out: &mut dyn Write) -> Result<ObjectInfo, RemoteError> {
        let pre = self.before("get", Some(key), at)?;
        let mut buf = Vec::new();
        let r = self.inner.get(key, at, &mut buf);
        if pre.crash_after && r.is_ok() {
            // A crash mid-download: half the bytes arrived.
            out.write_all(&buf[..buf.len() / 2])
                .map_err(|e| RemoteError::Other { op: "get", detail: e.to_string() })?;
            self.crash(pre.n, "get", Some(key), "mid-download");
        }
        let r = r.and_then(|i| {
            out.write_all(&buf).map_err(|e| RemoteError::Other { op: "get", detail: e.to_string() })?;
            Ok(i)
        });
        self.after(&pre, "get", Some(key), r)
    }

    fn put(
        &self,
        key: &str,
        body: Body<'_>,
        content: ObjectId,
        kind: EntryKind,
        cond: &Condition,
    ) -> Result<Written, RemoteError> {
        let pre = self.before("put", Some(key), None)?;
        let r = self.inner.put(key, body, content, kind, cond);
        if let Ok(w) = &r {
            self.shared().logged_put(Some(self.client), key, &w.etag, content);
        }
        self.after(&pre, "put", Some(key), r)
    }

    fn delete(&self, key: &str, if_match: &str) -> Result<(), RemoteError> {
        let pre = self.before("delete", Some(key), None)?;
        let r = self.inner.delete(key, if_match);
        self.after(&pre, "delete", Some(key), r)
    }

    fn copy(&self, from: &str, if_match: &str, content: ObjectId, to: &str) -> Result<Written, RemoteError> {
        let pre = self.before("copy", Some(to), None)?;
        let r = self.inner.copy(from, if_match, content, to);
        if let Ok(w) = &r {
            self.shared().logged_put(Some(self.client), to, &w.etag, content);
        }
        self.after(&pre, "copy", Some(to), r)
    }

    fn snapshot(&self, name: Option<&str>) -> Result<Version, RemoteError> {
        let pre = self.before("snapshot", None, None)?;
        let r = self.inner.snapshot(name);
        let r = self.after(&pre, "snapshot", None, r);
        // A named snapshot is the one a base is paired with, the engine's last remote
        // call before it moves the base ref.
        if let (Ok(v), Some(_)) = (&r, name) {
            self.shared().recording(*v, &self.root);
        }
        r
    }

    fn snapshots(&self) -> Result<Vec<SnapshotInfo>, RemoteError> {
        self.inner.snapshots()
    }
}
