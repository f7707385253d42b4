//! Commits: a recorded state of the folder, with the remote baseline it was synced against.

use super::decode::{DecodeError, PutLe, Reader};
use crate::id::{ID_LEN, ObjectId, ObjectKind};

/// Magic bytes that open an encoded commit.
pub const COMMIT_MAGIC: &[u8; 4] = b"bmcm";
/// Most parents a commit may have.
pub const MAX_PARENTS: usize = 8;
/// Longest client id, in bytes.
pub const MAX_CLIENT_ID_LEN: usize = 64;
/// Longest commit message, in bytes.
pub const MAX_MESSAGE_LEN: usize = 1 << 20;
/// Longest remote identity (URL), in bytes.
pub const MAX_REMOTE_LEN: usize = 4096;

/// Why a client id is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid client id {0:?}: use 1 to 64 characters from A-Z a-z 0-9 . _ -")]
pub struct ClientIdError(pub String);

/// Checks a client id: 1 to 64 bytes of `[A-Za-z0-9._-]`.
pub fn check_client_id(id: &str) -> Result<(), ClientIdError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_CLIENT_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok { Ok(()) } else { Err(ClientIdError(id.to_owned())) }
}

/// What a sync knew of the remote when it recorded a commit.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct RemoteBaseline {
    /// The remote's identity: its URL, e.g. `s3://bucket/prefix`.
    pub remote: String,
    /// The Tigris snapshot version (UNIX nanoseconds) the baseline was read at, if any.
    pub snapshot: Option<u64>,
    /// The manifest object mapping each path to its remote identity.
    pub manifest: ObjectId,
}

/// An owned commit.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Commit {
    /// The root tree of the recorded state.
    pub tree: ObjectId,
    /// Parent commits, first parent first; no duplicates.
    pub parents: Vec<ObjectId>,
    /// The client that recorded it.
    pub client_id: String,
    /// When, in UNIX nanoseconds by the recording client's clock (display only: never
    /// compared across machines).
    pub timestamp_ns: i64,
    /// Free text.
    pub message: String,
    /// The remote baseline, for commits recorded by a sync.
    pub baseline: Option<RemoteBaseline>,
}

/// A commit decoded in place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitRef<'a> {
    /// Root tree.
    pub tree: ObjectId,
    /// Parents.
    pub parents: Vec<ObjectId>,
    /// Client id.
    pub client_id: &'a str,
    /// UNIX nanoseconds.
    pub timestamp_ns: i64,
    /// Message.
    pub message: &'a str,
    /// Remote identity, snapshot version and manifest, when present.
    pub baseline: Option<(&'a str, Option<u64>, ObjectId)>,
}

impl<'a> CommitRef<'a> {
    /// Decodes and validates a canonical commit encoding.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::open(bytes, ObjectKind::Commit, *COMMIT_MAGIC)?;
        let tree = r.id("root tree")?;
        let at = r.pos();
        let n = usize::from(r.u8("parent count")?);
        if n > MAX_PARENTS {
            return Err(r.invalid(at, "parent count", format!("{n} parents, at most {MAX_PARENTS}")));
        }
        let mut parents = Vec::with_capacity(n);
        for _ in 0..n {
            let at = r.pos();
            let p = r.id("parent")?;
            if parents.contains(&p) {
                return Err(r.invalid(at, "parent", format!("duplicate parent {p}")));
            }
            parents.push(p);
        }
        let timestamp_ns = r.i64("timestamp")?;
        let len = usize::from(r.u8("client id length")?);
        let at = r.pos();
        let client_id = r.str(len, 1, MAX_CLIENT_ID_LEN, "client id")?;
        check_client_id(client_id).map_err(|e| r.invalid(at, "client id", e.to_string()))?;
        let len = r.u32("message length")? as usize;
        let message = r.str(len, 0, MAX_MESSAGE_LEN, "message")?;
        let baseline = if r.flag("baseline flag")? {
            let len = usize::from(r.u16("remote length")?);
            let remote = r.str(len, 1, MAX_REMOTE_LEN, "remote")?;
            let snapshot = if r.flag("snapshot flag")? { Some(r.u64("snapshot version")?) } else { None };
            Some((remote, snapshot, r.id("manifest")?))
        } else {
            None
        };
        r.finish()?;
        Ok(Self { tree, parents, client_id, timestamp_ns, message, baseline })
    }

    /// An owned copy.
    pub fn to_owned(&self) -> Commit {
        Commit {
            tree: self.tree,
            parents: self.parents.clone(),
            client_id: self.client_id.to_owned(),
            timestamp_ns: self.timestamp_ns,
            message: self.message.to_owned(),
            baseline: self.baseline.map(|(remote, snapshot, manifest)| RemoteBaseline {
                remote: remote.to_owned(),
                snapshot,
                manifest,
            }),
        }
    }
}

impl Commit {
    /// Decodes a canonical encoding into an owned commit.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Ok(CommitRef::decode(bytes)?.to_owned())
    }

    /// The canonical encoding.
    ///
    /// # Panics
    /// If a field breaks its limit (more than 8 parents, duplicate parents, a bad client
    /// id, an over-long message or remote): callers build commits from checked values,
    /// and an encoding the decoder would refuse must never reach the store.
    pub fn encode(&self) -> Vec<u8> {
        assert!(self.parents.len() <= MAX_PARENTS, "at most {MAX_PARENTS} parents");
        assert!(check_client_id(&self.client_id).is_ok(), "client id is checked before use");
        let mut out = Vec::with_capacity(64 + ID_LEN * self.parents.len() + self.message.len());
        out.extend_from_slice(COMMIT_MAGIC);
        out.push(1);
        out.extend_from_slice(self.tree.as_bytes());
        out.push(u8::try_from(self.parents.len()).expect("checked above"));
        for (i, p) in self.parents.iter().enumerate() {
            assert!(!self.parents[..i].contains(p), "duplicate parent {p}");
            out.extend_from_slice(p.as_bytes());
        }
        out.extend_from_slice(&self.timestamp_ns.to_le_bytes());
        out.push(u8::try_from(self.client_id.len()).expect("client id is at most 64 bytes"));
        out.extend_from_slice(self.client_id.as_bytes());
        assert!(self.message.len() <= MAX_MESSAGE_LEN, "message over 1 MiB");
        out.put_u32(u32::try_from(self.message.len()).expect("checked above"));
        out.extend_from_slice(self.message.as_bytes());
        match &self.baseline {
            None => out.push(0),
            Some(b) => {
                assert!(!b.remote.is_empty() && b.remote.len() <= MAX_REMOTE_LEN, "remote length");
                out.push(1);
                out.put_u16(u16::try_from(b.remote.len()).expect("checked above"));
                out.extend_from_slice(b.remote.as_bytes());
                match b.snapshot {
                    None => out.push(0),
                    Some(v) => {
                        out.push(1);
                        out.put_u64(v);
                    }
                }
                out.extend_from_slice(b.manifest.as_bytes());
            }
        }
        out
    }

    /// The commit's id: its encoding hashed in the commit domain.
    pub fn id(&self) -> ObjectId {
        ObjectId::hash(ObjectKind::Commit, &self.encode())
    }
}
