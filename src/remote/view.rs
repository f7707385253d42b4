//! A consistent view of the remote for one sync: one listing (at a snapshot version when
//! the remote has snapshots), with every object's content id resolved as cheaply as is
//! safe: an ETag equal to the base manifest's means unchanged; otherwise bmsync's
//! metadata (one HEAD), and failing that, downloading and hashing.

use std::collections::{BTreeMap, BTreeSet};

use super::{Listed, ObjectInfo, PRIVATE_PREFIX, Remote, RemoteError, TOMBSTONE, Version};
use crate::id::{HashingWriter, ObjectHasher, ObjectId, ObjectKind};
use unicode_normalization::UnicodeNormalization;

use crate::object::{EntryKind, Manifest, NameError, check_path};

/// One object of the view, keyed by its path: the planner's own type, so that a plan reads
/// the view's objects in place (a copy of a million-object listing is hundreds of MiB).
/// In a view, `content` is always known.
pub use crate::reconcile::RemoteObject as RemoteEntry;

/// A key left out of the view, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SkippedKey {
    /// The key as listed.
    pub key: String,
    /// Why it was left out.
    pub reason: String,
}

/// How each content id was learnt: the cost of the view.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ViewStats {
    /// Objects listed.
    pub listed: u64,
    /// Content ids taken from the base manifest (ETag unchanged): free.
    pub from_base: u64,
    /// Content ids from bmsync's metadata: one HEAD each.
    pub from_metadata: u64,
    /// Content ids computed by downloading: one GET each.
    pub downloaded: u64,
}

/// An object the view read whole (in place of a HEAD), kept in a file for the apply
/// step, so that a download costs one request, not two.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Staged {
    /// The file holding the bytes (fsynced), inside the stage folder.
    pub file: std::path::PathBuf,
    /// The ETag the GET returned (the listing's).
    pub etag: String,
    /// BLAKE3 of the bytes, as hashed while they were written.
    pub content: ObjectId,
    /// Bytes written.
    pub size: u64,
    /// The kind bmsync's metadata names (a plain file without it).
    pub kind: EntryKind,
}

/// The remote as of one instant.
#[derive(Clone, Debug, Default)]
pub struct RemoteView {
    /// The snapshot version the listing was read at, when the remote has snapshots.
    pub version: Option<Version>,
    /// Objects by path, each with its content id.
    pub objects: BTreeMap<String, RemoteEntry>,
    /// The paths whose content id is only bmsync's metadata on the object (a hint), not
    /// known from the base or from hashing the bytes.
    pub hinted: BTreeSet<String>,
    /// Keys reported and skipped (unsafe, not NFC, ignored).
    pub skipped: Vec<SkippedKey>,
    /// What it cost.
    pub stats: ViewStats,
    /// Objects read whole into the stage folder, by path (see [`Staged`]).
    pub staged: BTreeMap<String, Staged>,
}

impl RemoteView {
    /// Reads the remote: takes a snapshot (when it has them) and lists at its version, so
    /// teammates writing meanwhile cannot tear the view. `ignored` says which paths the
    /// local ignore rules exclude; they are left out here too.
    pub fn fetch(
        remote: &dyn Remote,
        base: Option<&Manifest>,
        ignored: impl Fn(&str) -> bool,
    ) -> Result<Self, RemoteError> {
        Self::fetch_with(remote, base, ignored, true, HEADS_IN_FLIGHT, None)
    }

    /// [`fetch`](Self::fetch), or with `snapshot` false, a read of the live state that
    /// takes no snapshot (for `plan`, which must write nothing, not even a snapshot).
    /// `jobs` HEADs are in flight at once; 1 sends them in listing order on this thread
    /// (the simulator's reproducible traces need that). With a `stage` folder, an object
    /// the base does not know is read whole into it instead (one GET, and its content id
    /// hashed, not hinted), for the apply step to place without reading it again; where
    /// the GET does not return the listed ETag and size, a HEAD follows as without.
    pub fn fetch_with(
        remote: &dyn Remote,
        base: Option<&Manifest>,
        ignored: impl Fn(&str) -> bool,
        snapshot: bool,
        jobs: usize,
        stage: Option<&std::path::Path>,
    ) -> Result<Self, RemoteError> {
        let version =
            if snapshot && remote.capabilities().snapshots { Some(remote.snapshot(None)?) } else { None };
        let (mut objects, listed, mut skipped, mut stats) = list_known(remote, version, base, &ignored)?;
        // Only a non-ASCII key can have a twin in another Unicode form.
        let keys: BTreeSet<String> =
            listed.iter().map(|o| &o.key).chain(objects.keys()).filter(|k| !k.is_ascii()).cloned().collect();
        // The objects the base does not know get a HEAD, for their content metadata, many
        // at once (one round trip each; a fresh download HEADs every object).
        let need: Vec<String> = listed
            .iter()
            .filter(|o| check_path(&o.key).is_ok() && !ignored(&o.key))
            .map(|o| o.key.clone())
            .collect();
        // Which of them are read whole: small ones, unless one may be a file the base knew
        // under another path (the size of a path no longer listed), which a rename
        // carries without reading it.
        let read = read_whole(&listed, &objects, &need, base, stage)?;
        let mut heads = head_all(remote, &need, &read, version, jobs, stage);
        let mut hinted_paths = BTreeSet::new();
        let mut staged = BTreeMap::new();
        for o in listed {
            if let Err(e) = check_path(&o.key) {
                let reason = unsyncable(&e, &o.key, &keys);
                skipped.push(SkippedKey { key: o.key, reason });
                continue;
            }
            if ignored(&o.key) {
                skipped
                    .push(SkippedKey { key: o.key, reason: "ignored by the local ignore rules".to_owned() });
                continue;
            }
            let (mut content, kind, mut hinted) = match heads.remove(o.key.as_str()) {
                Some(Fetched::Read(s)) if s.etag == o.etag && s.size == o.size => {
                    stats.downloaded += 1;
                    let known = (s.content, s.kind, false);
                    staged.insert(o.key.clone(), s);
                    known
                }
                fetched => {
                    let head = match fetched {
                        Some(Fetched::Read(s)) => {
                            // Read after a change the listing did not show: not the listed
                            // object's bytes.
                            let _ = std::fs::remove_file(&s.file);
                            remote.head(&o.key, version)?
                        }
                        Some(Fetched::Head(h)) => h,
                        Some(Fetched::Failed(e)) => return Err(e),
                        None => remote.head(&o.key, version)?,
                    };
                    let kind = head.kind.unwrap_or(EntryKind::File);
                    if let Some(c) = head.content {
                        // A hint from metadata; the bytes are hashed again when downloaded.
                        stats.from_metadata += 1;
                        (c, kind, true)
                    } else {
                        stats.downloaded += 1;
                        (hash_remote(remote, &o.key, version)?, kind, false)
                    }
                }
            };
            let tombstone = ObjectId::for_blob(TOMBSTONE);
            if o.size == TOMBSTONE.len() as u64 && content == tombstone {
                // A deletion under way (see `TOMBSTONE`): absent, once the bytes confirm it.
                if hinted {
                    content = hash_remote(remote, &o.key, version)?;
                    stats.downloaded += 1;
                    hinted = false;
                }
                if content == tombstone {
                    continue;
                }
            }
            if hinted {
                hinted_paths.insert(o.key.clone());
            }
            objects.insert(
                o.key.clone(),
                RemoteEntry { key: o.key, etag: o.etag, size: o.size, content: Some(content), kind },
            );
        }
        Ok(Self { version, objects, hinted: hinted_paths, skipped, stats, staged })
    }
}

impl RemoteView {
    /// The content id of one of the view's objects: a view resolves every one.
    pub fn content_of(e: &RemoteEntry) -> ObjectId {
        e.content.expect("a view resolves the content id of every object it holds")
    }

    /// Hashes the object at `path` (as of the view) in place of its metadata hint.
    /// Returns whether the hint was wrong.
    pub fn verify_hint(&mut self, remote: &dyn Remote, path: &str) -> Result<bool, RemoteError> {
        let Some(e) = self.objects.get_mut(path) else { return Ok(false) };
        if !self.hinted.remove(path) {
            return Ok(false);
        }
        let actual = hash_remote(remote, &e.key, self.version)?;
        self.stats.downloaded += 1;
        let wrong = e.content != Some(actual);
        e.content = Some(actual);
        Ok(wrong)
    }
}

/// How many objects are sent a HEAD at once.
pub const HEADS_IN_FLIGHT: usize = 8;

/// Objects up to this size that the base does not know are read whole by a sync's view
/// (one GET, which costs about what a HEAD does) rather than sent a HEAD and then a GET.
pub const STAGE_MAX_BYTES: u64 = 1 << 20;

/// Why a key that is not a valid path is left out (`keys`: the listing's non-ASCII keys).
fn unsyncable(e: &NameError, key: &str, keys: &std::collections::BTreeSet<String>) -> String {
    match e {
        NameError::NotNfc => {
            let nfc: String = key.nfc().collect();
            let twin = if keys.contains(nfc.as_str()) { "collides with the key" } else { "is" };
            format!(
                "its name is in decomposed Unicode (NFD, as macOS tools write it) and {twin} \
                 {nfc:?} in NFC, the form bmsync syncs; it is left as it is in the bucket"
            )
        }
        e => format!("not a path bmsync can sync: {e}"),
    }
}

/// The view's objects known from the base, the rest of the listing, skipped keys, stats.
type Listing = (BTreeMap<String, RemoteEntry>, Vec<ObjectInfo>, Vec<SkippedKey>, ViewStats);

/// One listing: the objects the base knows (same ETag and size) go straight into the
/// view as they are listed (most of a large bucket); the rest are returned for the steps
/// after, in listing order. Unsafe keys are reported; bmsync's own objects left out.
fn list_known(
    remote: &dyn Remote,
    version: Option<Version>,
    base: Option<&Manifest>,
    ignored: &impl Fn(&str) -> bool,
) -> Result<Listing, RemoteError> {
    let known = |o: &ObjectInfo| {
        base.and_then(|m| m.get(&o.key))
            .filter(|e| e.etag == o.etag && e.size == o.size)
            .and_then(|e| e.content.map(|c| (c, e.kind)))
    };
    let mut objects = BTreeMap::new();
    let mut listed: Vec<ObjectInfo> = Vec::new();
    let mut skipped = Vec::new();
    let mut stats = ViewStats::default();
    let bounds = super::split_bounds(base.map_or(&[][..], Manifest::entries).iter().map(|e| e.key.as_str()));
    remote.list_ranges(version, &bounds, &mut |l| match l {
        // bmsync's own objects (probes) are never notes, nor worth a warning.
        Listed::Object(o) if o.key.starts_with(PRIVATE_PREFIX) => {}
        Listed::Object(o) => {
            stats.listed += 1;
            match known(&o).filter(|_| check_path(&o.key).is_ok() && !ignored(&o.key)) {
                // (No tombstone check: the base never holds one but as a note's own bytes,
                // and a teammate's tombstone comes with another ETag.)
                Some((content, kind)) => {
                    stats.from_base += 1;
                    let e =
                        RemoteEntry { key: o.key, etag: o.etag, size: o.size, content: Some(content), kind };
                    objects.insert(e.key.clone(), e);
                }
                None => listed.push(o),
            }
        }
        Listed::Unsafe { key, reason } => skipped.push(SkippedKey { key, reason: reason.to_owned() }),
    })?;
    Ok((objects, listed, skipped, stats))
}

/// Which of `need` a sync reads whole into `stage` (see [`RemoteView::fetch_with`]),
/// which is made when there is any.
/// `listed` is what the listing held besides the base's unchanged `objects`.
fn read_whole(
    listed: &[ObjectInfo],
    objects: &BTreeMap<String, RemoteEntry>,
    need: &[String],
    base: Option<&Manifest>,
    stage: Option<&std::path::Path>,
) -> Result<Vec<bool>, RemoteError> {
    let Some(dir) = stage.filter(|_| !need.is_empty()) else { return Ok(vec![false; need.len()]) };
    let here: std::collections::HashSet<&str> = listed.iter().map(|o| o.key.as_str()).collect();
    let gone: std::collections::HashSet<u64> = base
        .iter()
        .flat_map(|m| m.entries())
        .filter(|e| !here.contains(e.key.as_str()) && !objects.contains_key(&e.key))
        .map(|e| e.size)
        .collect();
    let size: std::collections::HashMap<&str, u64> =
        listed.iter().map(|o| (o.key.as_str(), o.size)).collect();
    let read: Vec<bool> = need
        .iter()
        .map(|k| size.get(k.as_str()).is_some_and(|&n| n <= STAGE_MAX_BYTES && !gone.contains(&n)))
        .collect();
    if read.contains(&true) {
        std::fs::create_dir_all(dir)
            .map_err(|source| RemoteError::LocalWrite { path: dir.to_owned(), source })?;
    }
    Ok(read)
}

/// What [`head_all`] learnt of one key.
enum Fetched {
    /// Its metadata (a HEAD).
    Head(ObjectInfo),
    /// Its bytes, in the stage folder (a GET).
    Read(Staged),
    /// The request failed.
    Failed(RemoteError),
}

/// Sends a HEAD for each of `keys` (a GET into the `stage` folder for those `read`
/// marks), `jobs` at a time; each key's result (errors included, for the caller to meet in listing order). A
/// panic in a request thread goes on as itself.
fn head_all<'k>(
    remote: &dyn Remote,
    keys: &'k [String],
    read: &[bool],
    at: Option<Version>,
    jobs: usize,
    stage: Option<&std::path::Path>,
) -> std::collections::HashMap<&'k str, Fetched> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let out = std::sync::Mutex::new(std::collections::HashMap::with_capacity(keys.len()));
    let work = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(key) = keys.get(i) else { break };
            let r = match stage.filter(|_| read[i]) {
                // A read that fails here (a full disk, an object a GET cannot read)
                // only costs the saving: a HEAD follows, as without a stage.
                Some(dir) => {
                    read_into(remote, key, at, &dir.join(i.to_string())).map(Fetched::Read).or_else(|_| {
                        let _ = std::fs::remove_file(dir.join(i.to_string()));
                        remote.head(key, at).map(Fetched::Head)
                    })
                }
                None => remote.head(key, at).map(Fetched::Head),
            };
            let r = r.unwrap_or_else(Fetched::Failed);
            let failed = matches!(r, Fetched::Failed(_));
            out.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(key.as_str(), r);
            if failed {
                // The first error ends the view anyway: stop sending more.
                next.store(keys.len(), Ordering::Relaxed);
            }
        }
    };
    match jobs.clamp(1, keys.len().max(1)) {
        1 => work(),
        n => std::thread::scope(|s| {
            let threads: Vec<_> = (0..n).map(|_| s.spawn(work)).collect();
            for t in threads {
                if let Err(panic) = t.join() {
                    std::panic::resume_unwind(panic);
                }
            }
        }),
    }
    out.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Downloads an object into `file` (fsynced), hashing it on the way.
fn read_into(
    remote: &dyn Remote,
    key: &str,
    at: Option<Version>,
    file: &std::path::Path,
) -> Result<Staged, RemoteError> {
    let local = |source: std::io::Error| RemoteError::LocalWrite { path: file.to_owned(), source };
    let mut f = std::fs::File::create(file).map_err(local)?;
    let mut tee = HashingWriter::new(ObjectKind::Blob, &mut f);
    let info = remote.get(key, at, &mut tee)?;
    let (content, size) = tee.finish();
    f.sync_all().map_err(local)?;
    let kind = info.kind.filter(|k| !k.is_tree()).unwrap_or(EntryKind::File);
    Ok(Staged { file: file.to_owned(), etag: info.etag, content, size, kind })
}

/// Downloads an object and hashes it.
fn hash_remote(remote: &dyn Remote, key: &str, at: Option<Version>) -> Result<ObjectId, RemoteError> {
    let mut h = ObjectHasher::new(ObjectKind::Blob);
    remote.get(key, at, &mut h)?;
    Ok(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::ManifestEntry;
    use crate::remote::{Body, Condition, FileRemote};

    /// A remote that notes the cuts of each listing.
    struct Cuts<'r>(&'r dyn Remote, std::sync::Mutex<Vec<Vec<String>>>);

    impl Remote for Cuts<'_> {
        fn url(&self) -> String {
            self.0.url()
        }
        fn capabilities(&self) -> super::super::Capabilities {
            self.0.capabilities()
        }
        fn list(&self, at: Option<Version>, each: &mut dyn FnMut(Listed)) -> Result<(), RemoteError> {
            self.list_ranges(at, &[], each)
        }
        fn list_ranges(
            &self,
            at: Option<Version>,
            bounds: &[String],
            each: &mut dyn FnMut(Listed),
        ) -> Result<(), RemoteError> {
            self.1.lock().expect("not poisoned").push(bounds.to_vec());
            self.0.list_ranges(at, bounds, each)
        }
        fn head(&self, key: &str, at: Option<Version>) -> Result<ObjectInfo, RemoteError> {
            self.0.head(key, at)
        }
        fn get(
            &self,
            key: &str,
            at: Option<Version>,
            out: &mut dyn std::io::Write,
        ) -> Result<ObjectInfo, RemoteError> {
            self.0.get(key, at, out)
        }
        fn put(
            &self,
            key: &str,
            body: Body<'_>,
            content: ObjectId,
            kind: EntryKind,
            cond: &Condition,
        ) -> Result<super::super::Written, RemoteError> {
            self.0.put(key, body, content, kind, cond)
        }
        fn delete(&self, key: &str, if_match: &str) -> Result<(), RemoteError> {
            self.0.delete(key, if_match)
        }
        fn snapshot(&self, name: Option<&str>) -> Result<Version, RemoteError> {
            self.0.snapshot(name)
        }
        fn snapshots(&self) -> Result<Vec<super::super::SnapshotInfo>, RemoteError> {
            self.0.snapshots()
        }
    }

    #[test]
    fn a_bucket_the_base_knew_large_is_listed_in_ranges() {
        let d = tempfile::tempdir().expect("tmp");
        let file = FileRemote::open(d.path()).expect("open");
        let r = Cuts(&file, std::sync::Mutex::default());
        let etag = r
            .put(
                "n/00000.md",
                Body::Bytes(b"x"),
                ObjectId::for_blob(b"x"),
                EntryKind::File,
                &Condition::IfAbsent,
            )
            .expect("put")
            .etag;
        let base = |n: u32| {
            Manifest::new(
                (0..n)
                    .map(|i| ManifestEntry {
                        path: format!("n/{i:05}.md"),
                        key: format!("n/{i:05}.md"),
                        etag: etag.clone(),
                        size: 1,
                        content: Some(ObjectId::for_blob(b"x")),
                        kind: EntryKind::File,
                    })
                    .collect(),
            )
            .expect("manifest")
        };
        for (n, cuts) in [(1, 0), (19_999, 0), (25_000, 1), (60_000, 5)] {
            let v = RemoteView::fetch(&r, Some(&base(n)), |_: &str| false).expect("view");
            assert_eq!(v.objects.len(), 1, "the listing is the same");
            let bounds = r.1.lock().expect("not poisoned").pop().expect("listed");
            assert_eq!(bounds.len(), cuts, "a base of {n}: {bounds:?}");
        }
        let v = RemoteView::fetch(&r, None, |_: &str| false).expect("view");
        assert_eq!(v.objects.len(), 1);
        assert!(r.1.lock().expect("not poisoned").pop().expect("listed").is_empty(), "no base, no cuts");
    }

    #[test]
    fn content_ids_come_from_base_then_metadata() {
        let d = tempfile::tempdir().expect("tmp");
        let r = FileRemote::open(d.path()).expect("open");
        let put = |k: &str, b: &[u8]| {
            r.put(k, Body::Bytes(b), ObjectId::for_blob(b), EntryKind::File, &Condition::IfAbsent)
                .expect("put")
                .etag
        };
        let ea = put("a.md", b"alpha");
        put("b.md", b"bravo");
        put("x.tmp", b"junk");
        let base = Manifest::new(vec![ManifestEntry {
            path: "a.md".into(),
            key: "a.md".into(),
            etag: ea,
            size: 5,
            content: Some(ObjectId::for_blob(b"alpha")),
            kind: EntryKind::File,
        }])
        .expect("manifest");
        let v = RemoteView::fetch(&r, Some(&base), |p: &str| p == "x.tmp").expect("view");
        assert!(v.version.is_some(), "file remotes have snapshots");
        assert_eq!(v.objects.len(), 2);
        assert_eq!(v.objects["b.md"].content, Some(ObjectId::for_blob(b"bravo")));
        assert_eq!(
            (v.stats.listed, v.stats.from_base, v.stats.from_metadata, v.stats.downloaded),
            (3, 1, 1, 0)
        );
        assert_eq!(v.skipped.len(), 1);
    }
}
