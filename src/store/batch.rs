//! Write transactions: puts that become visible together, durably, on commit.

use std::io::Read;

use redb::ReadableTable;

use super::rows::{
    LAYOUT_CHUNKED, check_same, compress, corrupt, header, inline_row, parse_header, read_full,
};
use super::{
    CHUNK_SIZE, CHUNKS, META, META_FORMAT_VERSION, OBJECTS, Result, Store, StoreError, WORKTREE, contain,
};
use crate::id::{ObjectHasher, ObjectId, ObjectKind};
use crate::object;

/// A write transaction over the store: puts become visible, durably, on [`commit`](Self::commit),
/// and are discarded if the batch is dropped.
pub struct Batch<'s> {
    /// `None` only once committed (or dropped).
    pub(super) txn: Option<redb::WriteTransaction>,
    pub(super) store: &'s Store,
}

impl Batch<'_> {
    /// Adds one object (put-if-absent). Returns its id and whether it was new.
    pub fn put(&self, kind: ObjectKind, bytes: &[u8]) -> Result<(ObjectId, bool)> {
        contain(&self.store.path, || {
            object::validate(kind, bytes).map_err(|source| StoreError::Invalid { kind, source })?;
            let id = ObjectId::hash(kind, bytes);
            let mut objects = self.txn().open_table(OBJECTS)?;
            if objects.get(id.as_bytes())?.is_some() {
                return Ok((id, false));
            }
            if bytes.len() <= CHUNK_SIZE {
                objects.insert(id.as_bytes(), inline_row(kind, bytes).as_slice())?;
            } else {
                let mut chunks = self.txn().open_table(CHUNKS)?;
                for (i, c) in bytes.chunks(CHUNK_SIZE).enumerate() {
                    let idx = u32::try_from(i).map_err(|_| corrupt(&id, "object too large"))?;
                    chunks.insert((id.as_bytes(), idx), compress(c).as_slice())?;
                }
                objects.insert(id.as_bytes(), header(kind, LAYOUT_CHUNKED, bytes.len() as u64).as_slice())?;
            }
            Ok((id, true))
        })
    }

    /// Streams a blob whose id the caller computed (from a scan) into the store, one chunk
    /// in memory at a time. If the bytes read hash to another id (the file changed since
    /// it was hashed) nothing is stored and [`StoreError::BlobChanged`] says so.
    pub(crate) fn put_blob_from_reader(
        &self,
        expected: ObjectId,
        reader: &mut dyn Read,
    ) -> Result<(u64, bool)> {
        contain(&self.store.path, || {
            let mut objects = self.txn().open_table(OBJECTS)?;
            if let Some(row) = objects.get(expected.as_bytes())? {
                return Ok((parse_header(&expected, row.value())?.2, false));
            }
            let io = |source| StoreError::Io { id: expected, source };
            let mut hasher = ObjectHasher::new(ObjectKind::Blob);
            let mut first = vec![0u8; CHUNK_SIZE];
            let n0 = read_full(reader, &mut first).map_err(io)?;
            hasher.update(&first[..n0]);
            let mut buf = vec![0u8; CHUNK_SIZE];
            let mut n = if n0 < CHUNK_SIZE { 0 } else { read_full(reader, &mut buf).map_err(io)? };
            if n == 0 {
                check_same(expected, hasher.finalize())?;
                objects.insert(expected.as_bytes(), inline_row(ObjectKind::Blob, &first[..n0]).as_slice())?;
                return Ok((n0 as u64, true));
            }
            // Over one chunk: chunk 0 is `first`, then one buffer is refilled per chunk.
            let mut chunks = self.txn().open_table(CHUNKS)?;
            chunks.insert((expected.as_bytes(), 0), compress(&first).as_slice())?;
            drop(first);
            let mut total = CHUNK_SIZE as u64;
            let mut idx = 1u32;
            while n > 0 {
                hasher.update(&buf[..n]);
                chunks.insert((expected.as_bytes(), idx), compress(&buf[..n]).as_slice())?;
                total += n as u64;
                if n < CHUNK_SIZE {
                    break;
                }
                idx = idx.checked_add(1).ok_or_else(|| corrupt(&expected, "blob too large"))?;
                n = read_full(reader, &mut buf).map_err(io)?;
            }
            if let Err(e) = check_same(expected, hasher.finalize()) {
                // Keep the batch usable for its other puts: take back this blob's chunks.
                for i in 0..=idx {
                    chunks.remove((expected.as_bytes(), i))?;
                }
                return Err(e);
            }
            objects
                .insert(expected.as_bytes(), header(ObjectKind::Blob, LAYOUT_CHUNKED, total).as_slice())?;
            Ok((total, true))
        })
    }

    /// Adds an object prepared (hashed and compressed) by [`prepare`], possibly on
    /// another thread. Put-if-absent, like [`Batch::put`].
    pub(crate) fn put_prepared(&self, obj: &Prepared) -> Result<bool> {
        contain(&self.store.path, || {
            let mut objects = self.txn().open_table(OBJECTS)?;
            if objects.get(obj.id.as_bytes())?.is_some() {
                return Ok(false);
            }
            objects.insert(obj.id.as_bytes(), obj.row.as_slice())?;
            Ok(true)
        })
    }

    /// Sets (`Some`) or removes (`None`) the worktree record of one directory.
    pub(crate) fn set_worktree_record(&self, dir: &str, value: Option<&[u8]>) -> Result<()> {
        contain(&self.store.path, || {
            let mut t = self.txn().open_table(WORKTREE)?;
            match value {
                Some(v) => t.insert(dir, v).map(drop)?,
                None => t.remove(dir).map(drop)?,
            }
            Ok(())
        })
    }

    /// Writes a meta record as part of the batch.
    pub fn set_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        contain(&self.store.path, || {
            assert_ne!(key, META_FORMAT_VERSION, "the format version is written only by create");
            self.txn().open_table(META)?.insert(key, value)?;
            Ok(())
        })
    }

    fn txn(&self) -> &redb::WriteTransaction {
        self.txn.as_ref().expect("a batch holds its transaction until it is committed")
    }

    /// Makes every put durable and visible.
    pub fn commit(mut self) -> Result<()> {
        let txn = self.txn.take().expect("a batch holds its transaction until it is committed");
        contain(&self.store.path, || {
            txn.commit()?;
            Ok(())
        })
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        // Aborting touches the damaged file too: contain that as well.
        if let Some(txn) = self.txn.take() {
            let _ = contain(&self.store.path, || {
                drop(txn);
                Ok(())
            });
        }
    }
}

/// An object hashed and compressed, ready for [`Batch::put_prepared`]. Preparing is the
/// costly part of a put, so it can run in parallel while one thread writes.
#[derive(Clone, Debug)]
pub(crate) struct Prepared {
    /// The object's id.
    pub id: ObjectId,
    kind: ObjectKind,
    row: Vec<u8>,
}

impl Prepared {
    /// The object's kind.
    pub fn kind(&self) -> ObjectKind {
        self.kind
    }

    /// Bytes of its row (compressed).
    pub fn len(&self) -> usize {
        self.row.len()
    }
}

/// Hashes and compresses an object of at most [`CHUNK_SIZE`] bytes (larger blobs go
/// through [`Batch::put_blob_from_reader`]). Non-blob bytes must be canonical.
pub(crate) fn prepare(kind: ObjectKind, bytes: &[u8]) -> Result<Prepared> {
    object::validate(kind, bytes).map_err(|source| StoreError::Invalid { kind, source })?;
    let id = ObjectId::hash(kind, bytes);
    if bytes.len() > CHUNK_SIZE {
        return Err(StoreError::TooLarge { id, size: bytes.len() as u64 });
    }
    Ok(Prepared { id, kind, row: inline_row(kind, bytes) })
}
