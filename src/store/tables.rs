//! The store's keyed tables besides objects: prefixes, refs, worktree records, the
//! journal and metadata.

use redb::{ReadableTable, ReadableTableMetadata};

use super::rows::parse_header;
use super::{
    JOURNAL, MAX_CANDIDATES, META, META_FORMAT_VERSION, OBJECTS, REFS, Result, Store, StoreError, WORKTREE,
    WorktreeRecords, check_ref_name, contain,
};
use crate::id::{ID_LEN, IdPrefix, ObjectId};

impl Store {
    /// Resolves an abbreviated id against the store.
    pub fn resolve_prefix(&self, prefix: &IdPrefix) -> Result<ObjectId> {
        contain(&self.path, || {
            let txn = self.db.begin_read()?;
            let objects = txn.open_table(OBJECTS)?;
            let mut found = Vec::new();
            let start = prefix.lower_bound();
            for item in objects.range::<&[u8; ID_LEN]>(start.as_bytes()..)? {
                let (k, v) = item?;
                let id = ObjectId::from_bytes(*k.value());
                if !id.starts_with(prefix) {
                    break;
                }
                let (kind, _, _) = parse_header(&id, v.value())?;
                found.push((id, kind));
                if found.len() == MAX_CANDIDATES {
                    break;
                }
            }
            match found.len() {
                0 => Err(StoreError::PrefixNotFound { prefix: *prefix }),
                1 => Ok(found[0].0),
                _ => Err(StoreError::Ambiguous { prefix: *prefix, candidates: found }),
            }
        })
    }

    /// Every object id in the store, in id order (for checks and garbage collection).
    pub fn object_ids(&self) -> Result<Vec<ObjectId>> {
        contain(&self.path, || {
            let txn = self.db.begin_read()?;
            let objects = txn.open_table(OBJECTS)?;
            objects.iter()?.map(|item| Ok(ObjectId::from_bytes(*item?.0.value()))).collect()
        })
    }

    /// Reads a ref.
    pub fn get_ref(&self, name: &str) -> Result<Option<ObjectId>> {
        contain(&self.path, || {
            check_ref_name(name)?;
            let txn = self.db.begin_read()?;
            let refs = txn.open_table(REFS)?;
            Ok(refs.get(name)?.map(|v| ObjectId::from_bytes(*v.value())))
        })
    }

    /// Every ref, in name order.
    pub fn refs(&self) -> Result<Vec<(String, ObjectId)>> {
        contain(&self.path, || {
            let txn = self.db.begin_read()?;
            let refs = txn.open_table(REFS)?;
            refs.iter()?
                .map(|item| {
                    let (k, v) = item?;
                    Ok((k.value().to_owned(), ObjectId::from_bytes(*v.value())))
                })
                .collect()
        })
    }

    /// Moves a ref from `expected` to `new` (`None` means absent) in one durable
    /// transaction, or fails with [`StoreError::RefConflict`] leaving it untouched. A ref
    /// may only point at an object the store holds.
    pub fn update_ref(&self, name: &str, expected: Option<ObjectId>, new: Option<ObjectId>) -> Result<()> {
        contain(&self.path, || {
            check_ref_name(name)?;
            let txn = self.db.writer(&self.path)?.begin_write()?;
            {
                if let Some(id) = new
                    && txn.open_table(OBJECTS)?.get(id.as_bytes())?.is_none()
                {
                    return Err(StoreError::NotFound { id });
                }
                let mut refs = txn.open_table(REFS)?;
                let actual = refs.get(name)?.map(|v| ObjectId::from_bytes(*v.value()));
                if actual != expected {
                    return Err(StoreError::RefConflict { name: name.to_owned(), expected, actual });
                }
                match new {
                    Some(id) => refs.insert(name, id.as_bytes()).map(drop)?,
                    None => refs.remove(name).map(drop)?,
                }
            }
            txn.commit()?;
            Ok(())
        })
    }

    /// Every worktree record (the stat cache: one record per scanned directory), keyed
    /// by the directory's relative path (`""` for the root), and the meta record `stamp`
    /// that goes with them, read in one transaction so the two always match. The
    /// worktree module owns the value formats.
    pub fn worktree_state(&self, stamp: &str) -> Result<(WorktreeRecords, Option<Vec<u8>>)> {
        contain(&self.path, || {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(WORKTREE)?;
            let records = table
                .iter()?
                .map(|item| {
                    let (k, v) = item?;
                    Ok((k.value().to_owned(), v.value().to_vec()))
                })
                .collect::<Result<_>>()?;
            let stamp = txn.open_table(META)?.get(stamp)?.map(|v| v.value().to_vec());
            Ok((records, stamp))
        })
    }

    /// The stat cache and the meta records `keys`, as one read transaction sees them:
    /// records are read in place, one folder at a time, rather than copied out at once.
    pub fn worktree_reader(&self, keys: &[&str]) -> Result<WorktreeReader> {
        contain(&self.path, || {
            let txn = self.db.begin_read()?;
            let meta = txn.open_table(META)?;
            let meta =
                keys.iter().map(|k| Ok(meta.get(*k)?.map(|v| v.value().to_vec()))).collect::<Result<_>>()?;
            let table = txn.open_table(WORKTREE)?;
            let len = table.len()?;
            Ok(WorktreeReader { table, meta, len, path: self.path.clone() })
        })
    }

    /// Every intent-journal entry, in sequence order. The journal records what a sync is
    /// about to do and what it has done, so that the next run can clean up after a crash;
    /// the apply module owns the entries' format. A store made before the journal existed
    /// has an empty one.
    pub(crate) fn journal(&self) -> Result<Vec<(u64, Vec<u8>)>> {
        contain(&self.path, || {
            let txn = self.db.begin_read()?;
            let table = match txn.open_table(JOURNAL) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            table
                .iter()?
                .map(|item| {
                    let (k, v) = item?;
                    Ok((k.value(), v.value().to_vec()))
                })
                .collect()
        })
    }

    /// Writes journal entries (new or replacing) and removes others, in one durable
    /// transaction, so the journal is on disk before the work it describes starts.
    /// Public only with the `test-hooks` feature, for tests that plant an interrupted
    /// sync.
    #[cfg(feature = "test-hooks")]
    pub fn journal_write(&self, put: &[(u64, Vec<u8>)], remove: &[u64]) -> Result<()> {
        self.write_journal(put, remove)
    }

    /// See `journal_write`.
    pub(crate) fn write_journal(&self, put: &[(u64, Vec<u8>)], remove: &[u64]) -> Result<()> {
        contain(&self.path, || {
            let txn = self.db.writer(&self.path)?.begin_write()?;
            {
                let mut table = txn.open_table(JOURNAL)?;
                for (k, v) in put {
                    table.insert(*k, v.as_slice())?;
                }
                for k in remove {
                    table.remove(*k)?;
                }
            }
            txn.commit()?;
            Ok(())
        })
    }

    /// Empties the journal durably.
    pub(crate) fn journal_clear(&self) -> Result<()> {
        contain(&self.path, || {
            let txn = self.db.writer(&self.path)?.begin_write()?;
            match txn.delete_table(JOURNAL) {
                Ok(_) | Err(redb::TableError::TableDoesNotExist(_)) => {}
                Err(e) => return Err(e.into()),
            }
            txn.open_table(JOURNAL)?;
            txn.commit()?;
            Ok(())
        })
    }

    /// Reads a meta record.
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        contain(&self.path, || {
            let txn = self.db.begin_read()?;
            let meta = txn.open_table(META)?;
            Ok(meta.get(key)?.map(|v| v.value().to_vec()))
        })
    }

    /// Writes a meta record durably. The format-version record is not writable.
    pub fn set_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        contain(&self.path, || {
            assert_ne!(key, META_FORMAT_VERSION, "the format version is written only by create");
            let txn = self.db.writer(&self.path)?.begin_write()?;
            txn.open_table(META)?.insert(key, value)?;
            txn.commit()?;
            Ok(())
        })
    }
}

/// The stat cache at one point in time (see [`Store::worktree_reader`]).
pub struct WorktreeReader {
    table: redb::ReadOnlyTable<&'static str, &'static [u8]>,
    meta: Vec<Option<Vec<u8>>>,
    len: u64,
    path: std::path::PathBuf,
}

impl WorktreeReader {
    /// The record of one directory, borrowed from the store's pages.
    pub fn get(&self, dir: &str) -> Result<Option<redb::AccessGuard<'static, &'static [u8]>>> {
        contain(&self.path, || Ok(self.table.get(dir)?))
    }

    /// The meta records asked for, in the order asked.
    pub fn meta(&self) -> &[Option<Vec<u8>>] {
        &self.meta
    }

    /// How many records there are.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every directory that has a record, in key order.
    pub fn dirs(&self) -> Result<Vec<String>> {
        contain(&self.path, || self.table.iter()?.map(|item| Ok(item?.0.value().to_owned())).collect())
    }
}
