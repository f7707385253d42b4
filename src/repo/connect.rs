//! The folder's remote: connecting, probing what it guarantees, and the opt-in to
//! lost updates.

use super::{META_ACCEPT_LOST_UPDATES, META_ENDPOINT, META_PROBE, META_REMOTE, REF_BASE, Result};
use crate::remote::{ProbeRecord, Remote, RemoteError, RemoteUrl};
use crate::{Repo, RepoError, SetRemoteReport};

/// Whether a remote failure means the remote is plainly wrong (not merely unreachable).
pub(super) fn plainly_wrong(e: &RemoteError) -> bool {
    match e {
        RemoteError::NoSuchBucket { .. }
        | RemoteError::MissingFolder { .. }
        | RemoteError::NotARemote { .. } => true,
        // A local folder that cannot be made or opened is no network hiccup.
        RemoteError::Unreachable { endpoint, .. } => endpoint.starts_with("file://"),
        _ => false,
    }
}

/// The opt-in to lost updates, as the `accept-lost-updates` meta record holds it.
#[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Accepted {
    remote: String,
    endpoint: Option<String>,
}

impl Repo {
    /// Connects to `url` with this folder's endpoint; a `file://` folder must exist, unless
    /// `create` (then it is made, with missing parents).
    pub(super) fn connect_with(&self, url: &RemoteUrl, create: bool) -> Result<Box<dyn Remote>> {
        let opts = crate::remote::S3Options { endpoint: self.endpoint.clone(), ..Default::default() };
        match url {
            RemoteUrl::File { path } if create => Ok(Box::new(crate::remote::FileRemote::create(path)?)),
            url => Ok(crate::remote::open(url, &opts)?),
        }
    }

    /// What the last probe of the remote found, whichever remote it was for.
    pub fn probe_record(&self) -> Result<Option<ProbeRecord>> {
        // A record this build cannot read is as good as none: the remote is probed again.
        Ok(self.store.meta(META_PROBE)?.and_then(|v| serde_json::from_slice(&v).ok()))
    }

    pub(super) fn set_probe_record(&self, record: &ProbeRecord) -> Result<()> {
        let json = serde_json::to_vec(record).expect("probe records serialise");
        Ok(self.store.set_meta(META_PROBE, &json)?)
    }

    /// The configured remote URL and its effective endpoint, as probe records name them.
    pub(super) fn remote_identity(&self) -> Result<(String, Option<String>)> {
        let url = self.remote.as_ref().ok_or(RepoError::NoRemote)?;
        Ok((url.to_string(), crate::remote::effective_endpoint(url, self.endpoint())))
    }

    /// The last probe's record, if it is about the remote configured now.
    pub fn fresh_probe_record(&self) -> Result<Option<ProbeRecord>> {
        let (url, endpoint) = self.remote_identity()?;
        Ok(self.probe_record()?.filter(|r| r.is_for(&url, endpoint.as_deref())))
    }

    /// Probes the configured remote now and records what it found.
    pub fn reprobe(&self) -> Result<ProbeRecord> {
        let url = self.remote.as_ref().ok_or(RepoError::NoRemote)?;
        let remote = self.connect_with(url, false)?;
        self.probe_remote(remote.as_ref())
    }

    pub(super) fn probe_remote(&self, remote: &dyn Remote) -> Result<ProbeRecord> {
        let (_, endpoint) = self.remote_identity()?;
        let record = crate::remote::probe(remote, &self.client_id, endpoint.as_deref())?;
        self.set_probe_record(&record)?;
        Ok(record)
    }

    /// Whether lost updates were accepted for the remote configured now.
    pub fn lost_updates_accepted(&self) -> Result<bool> {
        let (remote, endpoint) = self.remote_identity()?;
        let stored: Option<Accepted> =
            self.store.meta(META_ACCEPT_LOST_UPDATES)?.and_then(|v| serde_json::from_slice(&v).ok());
        Ok(stored == Some(Accepted { remote, endpoint }))
    }

    /// Records the opt-in to lost updates, for the remote configured now only.
    pub fn accept_lost_updates(&self) -> Result<()> {
        let (remote, endpoint) = self.remote_identity()?;
        let json = serde_json::to_vec(&Accepted { remote, endpoint }).expect("serialises");
        Ok(self.store.set_meta(META_ACCEPT_LOST_UPDATES, &json)?)
    }

    /// Points the folder at another remote (or endpoint) and probes it. A new URL resets
    /// the sync base, so the next sync is a first sync: it deletes and overwrites nothing.
    /// `endpoint`: `None` keeps the current one, `Some("")` clears it.
    pub fn set_remote(&mut self, url: &str, endpoint: Option<&str>, create: bool) -> Result<SetRemoteReport> {
        let parsed = RemoteUrl::parse(url)?;
        if let RemoteUrl::File { path } = &parsed
            && !create
        {
            crate::remote::FileRemote::check_folder(path)?;
        }
        let new_endpoint = match endpoint {
            None => self.endpoint.clone(),
            Some("") => None,
            Some(e) => Some(e.to_owned()),
        };
        let mut report =
            SetRemoteReport { base_reset: self.remote.as_ref() != Some(&parsed), ..Default::default() };
        let text = parsed.to_string();
        let batch = self.store.batch()?;
        batch.set_meta(META_REMOTE, text.as_bytes())?;
        batch.set_meta(META_ENDPOINT, new_endpoint.as_deref().unwrap_or("").as_bytes())?;
        batch.commit()?;
        if report.base_reset
            && let Some(base) = self.base()?
        {
            self.store.update_ref(REF_BASE, Some(base), None)?;
        }
        self.remote = Some(parsed.clone());
        self.endpoint = new_endpoint;
        match self.connect_with(&parsed, create).and_then(|r| self.probe_remote(r.as_ref())) {
            Ok(record) => report.probe = Some(record),
            Err(RepoError::RemoteFailed(e)) => report.remote_error = Some(e),
            Err(e) => return Err(e),
        }
        Ok(report)
    }

    /// Connects to the configured remote (credentials and region from the standard AWS
    /// environment), with the guarantees its probe found. When no probe is recorded for
    /// this remote and endpoint (they changed, or `init` could not reach it), it is
    /// probed now. A `file://` folder must exist and be a bmsync remote: one that vanished
    /// is never made again.
    pub fn open_remote(&self) -> Result<Box<dyn Remote>> {
        self.open_remote_probing(true)
    }

    /// [`Repo::open_remote`] without probing (for reads: `plan`, `remote show`): a remote
    /// without a fresh probe reports its conditional writes as assumed.
    pub fn connect_remote(&self) -> Result<Box<dyn Remote>> {
        self.open_remote_probing(false)
    }

    pub(super) fn open_remote_probing(&self, probe: bool) -> Result<Box<dyn Remote>> {
        let url = self.remote.as_ref().ok_or(RepoError::NoRemote)?;
        let remote: Box<dyn Remote> = match url {
            RemoteUrl::File { path } => Box::new(crate::remote::FileRemote::open_existing(path)?),
            url @ RemoteUrl::S3 { .. } => self.connect_with(url, false)?,
        };
        let record = match self.fresh_probe_record()? {
            Some(r) => r,
            None if probe => self.probe_remote(remote.as_ref())?,
            None => return Ok(remote),
        };
        Ok(Box::new(crate::remote::Probed::new(remote, record)))
    }

    /// Connects to the configured remote for reading only (for `plan`): a `file://`
    /// remote's index is opened read-only, so nothing in its folder changes.
    pub fn open_remote_read_only(&self) -> Result<Box<dyn crate::remote::Remote>> {
        let url = self.remote.as_ref().ok_or(RepoError::NoRemote)?;
        let opts = crate::remote::S3Options { endpoint: self.endpoint.clone(), ..Default::default() };
        Ok(crate::remote::open_read_only(url, &opts)?)
    }
}
