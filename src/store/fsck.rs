//! `fsck`: every check the store's invariants allow (`format-spec/store.md`,
//! "Checking a store"). Each problem is a [`Finding`]; a damaged file is a finding too,
//! never a panic.

use std::collections::{BTreeSet, HashSet};

use redb::ReadableTable;

use super::rows::{LAYOUT_CHUNKED, parse_header};
use super::{CHUNK_SIZE, CHUNKS, META, OBJECTS, Result, Store, StoreError, WORKTREE, contain};
use crate::id::{ObjectId, ObjectKind};
use crate::object::{Commit, Manifest, Tree};

/// What kind of problem a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// The store file cannot be read at all, or redb stopped on a damaged page.
    Damaged,
    /// An object's bytes do not hash to its id, do not decompress, or do not decode.
    CorruptObject,
    /// An object that a commit, tree, ref or stat-cache record names is not stored.
    MissingObject,
    /// An object of another kind than the one naming it says.
    WrongKind,
    /// A ref that points at no stored object (or `base`/`head` at a non-commit).
    DanglingRef,
    /// A chunk row that no object row owns.
    OrphanChunk,
    /// A stat-cache record, journal entry or meta record that does not decode.
    BadRecord,
}

/// One problem `fsck` found.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// What kind of problem.
    pub kind: FindingKind,
    /// What it is about: an object id, `ref NAME`, `worktree PATH`, `journal N`, `meta KEY`.
    pub subject: String,
    /// What is wrong, in words.
    pub detail: String,
}

/// What `fsck` looked at and found.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct FsckReport {
    /// Objects checked.
    pub objects: usize,
    /// Commits among them.
    pub commits: usize,
    /// Refs checked.
    pub refs: usize,
    /// Problems, in the order found.
    pub findings: Vec<Finding>,
}

impl FsckReport {
    /// Whether nothing is wrong.
    pub fn healthy(&self) -> bool {
        self.findings.is_empty()
    }

    fn add(&mut self, kind: FindingKind, subject: impl Into<String>, detail: impl Into<String>) {
        self.findings.push(Finding { kind, subject: subject.into(), detail: detail.into() });
    }

    fn damaged(&mut self, e: &StoreError) {
        self.add(FindingKind::Damaged, "store", e.to_string());
    }
}

/// The kind of problem a failed object read is.
fn read_finding(e: &StoreError) -> FindingKind {
    match e {
        StoreError::NotFound { .. } => FindingKind::MissingObject,
        StoreError::WrongKind { .. } => FindingKind::WrongKind,
        StoreError::Corrupt { .. } => FindingKind::CorruptObject,
        _ => FindingKind::Damaged,
    }
}

/// Every id a decoded object names, with the kind it must be.
fn named_by(
    kind: ObjectKind,
    bytes: &[u8],
) -> std::result::Result<Vec<(ObjectId, ObjectKind, &'static str)>, String> {
    Ok(match kind {
        ObjectKind::Blob => Vec::new(),
        ObjectKind::Tree => Tree::decode(bytes)
            .map_err(|e| e.to_string())?
            .entries()
            .iter()
            .filter(|e| e.kind.is_tree())
            .map(|e| (e.id, ObjectKind::Tree, "subtree"))
            .collect(),
        ObjectKind::Commit => {
            let c = Commit::decode(bytes).map_err(|e| e.to_string())?;
            let mut v = vec![(c.tree, ObjectKind::Tree, "root tree")];
            v.extend(c.parents.iter().map(|p| (*p, ObjectKind::Commit, "parent")));
            v.extend(c.baseline.map(|b| (b.manifest, ObjectKind::Manifest, "manifest")));
            v
        }
        ObjectKind::Manifest => {
            Manifest::decode(bytes).map_err(|e| e.to_string())?;
            Vec::new()
        }
    })
}

impl Store {
    /// Checks the whole store: every object against its id and (for trees, commits and
    /// manifests) its decoder; that every commit's root tree, subtrees, parents and
    /// manifest are stored; the blobs of commits' trees; the refs; the chunk rows; the
    /// stat-cache records, the journal and the conflict records.
    pub fn fsck(&self) -> FsckReport {
        let mut report = FsckReport::default();
        let ids = match self.object_ids() {
            Ok(ids) => ids,
            Err(e) => {
                report.damaged(&e);
                return report;
            }
        };
        report.objects = ids.len();
        let present: HashSet<ObjectId> = ids.iter().copied().collect();
        let empty_tree = Tree::default().id();
        let has = |id: &ObjectId| *id == empty_tree || present.contains(id);
        // Names to check once every object is read: (id, kind wanted, who names it).
        let mut wanted: BTreeSet<(ObjectId, ObjectKind, String)> = BTreeSet::new();
        let mut commit_trees = Vec::new();
        for id in &ids {
            let mut bytes = Vec::new();
            let kind = match self.stat(id).and_then(|s| {
                let k = s.map_or(ObjectKind::Blob, |(k, _)| k);
                if k == ObjectKind::Blob {
                    self.read_into(id, None, &mut std::io::sink())
                } else {
                    self.read_into(id, None, &mut bytes)
                }
            }) {
                Ok(k) => k,
                Err(e) => {
                    report.add(read_finding(&e), id.to_hex(), e.to_string());
                    continue;
                }
            };
            match named_by(kind, &bytes) {
                Ok(names) => {
                    if kind == ObjectKind::Commit {
                        report.commits += 1;
                        commit_trees.push(names[0].0);
                    }
                    for (n, k, what) in names {
                        wanted.insert((n, k, format!("the {what} of {kind} {id}")));
                    }
                }
                Err(reason) => report.add(
                    FindingKind::CorruptObject,
                    id.to_hex(),
                    format!("{kind} does not decode: {reason}"),
                ),
            }
        }
        // The blobs of every tree a commit records: what `restore` and `show` read.
        let mut seen = HashSet::new();
        let mut stack = commit_trees;
        while let Some(t) = stack.pop() {
            if !seen.insert(t) || t == empty_tree {
                continue;
            }
            let Ok(tree) = self.get_tree(&t) else { continue };
            for e in tree.entries() {
                if e.kind.is_tree() {
                    stack.push(e.id);
                } else {
                    wanted.insert((
                        e.id,
                        ObjectKind::Blob,
                        format!("{} {:?} in tree {t}", e.kind.as_str(), e.name),
                    ));
                }
            }
        }
        for (id, kind, by) in &wanted {
            self.check_named(&mut report, &has, *id, *kind, by);
        }
        self.check_refs(&mut report, &has);
        if let Err(e) = self.check_chunks(&mut report) {
            report.damaged(&e);
        }
        if let Err(e) = self.check_records(&mut report, &has) {
            report.damaged(&e);
        }
        report
    }

    fn check_named(
        &self,
        report: &mut FsckReport,
        has: &impl Fn(&ObjectId) -> bool,
        id: ObjectId,
        kind: ObjectKind,
        by: &str,
    ) {
        if !has(&id) {
            report.add(FindingKind::MissingObject, id.to_hex(), format!("{by} is not stored"));
        } else if let Ok(Some((found, _))) = self.stat(&id)
            && found != kind
        {
            report.add(FindingKind::WrongKind, id.to_hex(), format!("{by} is a {found}, not a {kind}"));
        }
    }

    fn check_refs(&self, report: &mut FsckReport, has: &impl Fn(&ObjectId) -> bool) {
        let refs = match self.refs() {
            Ok(r) => r,
            Err(e) => return report.damaged(&e),
        };
        report.refs = refs.len();
        for (name, id) in refs {
            let subject = format!("ref {name}");
            if !has(&id) {
                report.add(FindingKind::DanglingRef, subject, format!("points at {id}, which is not stored"));
            } else if matches!(name.as_str(), "base" | "head")
                && let Ok(Some((kind, _))) = self.stat(&id)
                && kind != ObjectKind::Commit
            {
                report.add(FindingKind::DanglingRef, subject, format!("points at {kind} {id}, not a commit"));
            }
        }
    }

    /// Every chunk row belongs to a chunked object row, within its chunk count.
    fn check_chunks(&self, report: &mut FsckReport) -> Result<()> {
        contain(&self.path, || {
            let txn = self.db.begin_read()?;
            let objects = txn.open_table(OBJECTS)?;
            let chunks = txn.open_table(CHUNKS)?;
            for item in chunks.iter()? {
                let (k, _) = item?;
                let (raw, idx) = k.value();
                let id = ObjectId::from_bytes(*raw);
                let owned = match objects.get(raw)? {
                    Some(row) => match parse_header(&id, row.value()) {
                        Ok((_, layout, size)) => {
                            layout == LAYOUT_CHUNKED && u64::from(idx) < size.div_ceil(CHUNK_SIZE as u64)
                        }
                        Err(_) => true, // already reported as a corrupt object
                    },
                    None => false,
                };
                if !owned {
                    report.add(
                        FindingKind::OrphanChunk,
                        id.to_hex(),
                        format!("chunk {idx} belongs to no object row"),
                    );
                }
            }
            Ok(())
        })
    }

    /// The stat cache, the journal and the conflict records decode; the stat cache's
    /// trees and stored blobs are stored (the scanner trusts them unchecked).
    fn check_records(&self, report: &mut FsckReport, has: &impl Fn(&ObjectId) -> bool) -> Result<()> {
        let rows: Vec<(String, Vec<u8>)> = contain(&self.path, || {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(WORKTREE)?;
            table
                .iter()?
                .map(|item| {
                    let (k, v) = item?;
                    Ok((k.value().to_owned(), v.value().to_vec()))
                })
                .collect()
        })?;
        for (dir, bytes) in rows {
            let subject = format!("worktree {dir:?}");
            let Some(record) = crate::worktree::stat_cache::DirRecord::decode(&bytes) else {
                report.add(FindingKind::BadRecord, subject, "stat-cache record does not decode");
                continue;
            };
            if !has(&record.tree) {
                report.add(
                    FindingKind::MissingObject,
                    record.tree.to_hex(),
                    format!("the tree of {subject} is not stored"),
                );
            }
            for c in record.children.iter().filter(|c| c.stored && !has(&c.entry.id)) {
                report.add(
                    FindingKind::MissingObject,
                    c.entry.id.to_hex(),
                    format!("{subject} says {:?} is stored, and it is not", c.entry.name),
                );
            }
        }
        for (seq, bytes) in self.journal()? {
            if let Err(e) = serde_json::from_slice::<crate::apply::journal::Entry>(&bytes) {
                report.add(
                    FindingKind::BadRecord,
                    format!("journal {seq}"),
                    format!("entry does not decode: {e}"),
                );
            }
        }
        let conflicts = contain(&self.path, || {
            let txn = self.db.begin_read()?;
            Ok(txn.open_table(META)?.get(crate::conflicts::META_CONFLICTS)?.map(|v| v.value().to_vec()))
        })?;
        if let Some(bytes) = conflicts
            && let Err(e) = serde_json::from_slice::<Vec<crate::conflicts::ConflictRecord>>(&bytes)
        {
            report.add(
                FindingKind::BadRecord,
                "meta conflicts",
                format!("conflict records do not decode: {e}"),
            );
        }
        Ok(())
    }
}
