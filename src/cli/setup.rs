//! Setting up: init and remote (show, set-url).

use std::path::Path;

use bmsync::{InitOptions, Repo, RepoError};
use serde_json::json;

use crate::output::{Failure, LOST_UPDATES_HINT, Output, say};

/// `init`: makes `dir` a bmsync folder, and says what the remote's probe found.
pub(crate) fn init(out: &mut Output<'_>, dir: &Path, opts: &InitOptions) -> Result<(), Failure> {
    let (repo, report) = Repo::init_with_report(dir, opts)?;
    let remote = repo.remote().map(ToString::to_string);
    if out.json {
        return out.json_line(&json!({ "root": dir, "client_id": repo.client_id(), "remote": remote,
                                      "probe": report.probe,
                                      "remote_error": report.remote_error.as_ref().map(ToString::to_string) }));
    }
    writeln!(
        out,
        "Initialised bmsync in {} (client id {}, remote {})",
        dir.join(bmsync::repo::STATE_DIR).display(),
        repo.client_id(),
        remote.as_deref().unwrap_or("none yet")
    )?;
    report_probe(report.probe.as_ref(), report.remote_error.as_ref(), true);
    Ok(())
}

/// `remote set-url`: points the folder elsewhere, and says what the new probe found.
pub(crate) fn set_url(
    out: &mut Output<'_>,
    dir: &Path,
    url: &str,
    endpoint: Option<&str>,
    create: bool,
) -> Result<(), Failure> {
    let mut repo = Repo::open(dir)?;
    let r = repo.set_remote(url, endpoint, create)?;
    if out.json {
        return out.json_line(
            &json!({ "remote": repo.remote().map(ToString::to_string), "endpoint": repo.endpoint(),
                                      "base_reset": r.base_reset, "probe": r.probe,
                                      "remote_error": r.remote_error.as_ref().map(ToString::to_string) }),
        );
    }
    let reset = if r.base_reset { "; the next sync is a first sync (deletes nothing)" } else { "" };
    writeln!(out, "Remote set to {}{reset}", repo.remote().map(ToString::to_string).unwrap_or_default())?;
    report_probe(r.probe.as_ref(), r.remote_error.as_ref(), repo.lost_updates_accepted()?);
    Ok(())
}

const NO_SNAPSHOTS_WARNING: &str = "warning: this bucket has no snapshots. bmsync still syncs safely: \
every write is conditional, so a teammate's concurrent change becomes a conflict, never a lost update. \
What you give up: a consistent point-in-time view of the bucket for each sync (a listing can see a \
teammate's half-finished batch, which the next sync then completes) and point-in-time recovery. \
On Tigris, create the bucket with snapshots enabled (X-Tigris-Enable-Snapshot: true) to have both.";

/// Says on stderr what a probe found that the user should know.
fn report_probe(
    probe: Option<&bmsync::remote::ProbeRecord>,
    err: Option<&bmsync::remote::RemoteError>,
    accepted: bool,
) {
    if let Some(e) = err {
        say(&format!(
            "warning: the remote could not be probed yet: {e}\nhint: the remote is kept; the first sync probes it. \
             To change it: `bmsync remote set-url URL [--endpoint URL]`"
        ));
    }
    if let Some(p) = probe {
        match p.missing_put() {
            Some(m) if accepted => {
                say(&format!(
                    "warning: {m}; accepted (--accept-lost-updates): sync this folder from one place only"
                ));
            }
            Some(m) => say(&format!("warning: {m}; syncs will refuse to run\nhint: {LOST_UPDATES_HINT}")),
            None => {}
        }
        if !p.snapshots {
            say(NO_SNAPSHOTS_WARNING);
        }
    }
}

/// `remote show`: the remote, its guarantees as probed, and its latest snapshot.
pub(crate) fn remote_show(out: &mut Output<'_>, repo: &Repo, probe: bool) -> Result<(), Failure> {
    if probe {
        repo.reprobe()?;
    }
    let remote = repo.connect_remote()?;
    let record = repo.fresh_probe_record()?;
    let caps = remote.capabilities();
    let latest = if caps.snapshots {
        let snaps = remote.snapshots().map_err(RepoError::from)?;
        snaps.into_iter().max_by_key(|s| s.version)
    } else {
        None
    };
    let probed_at = record.as_ref().map(|r| {
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_nanos(r.probed_ns),
        )
        .to_string()
    });
    if out.json {
        return out
            .json_line(&json!({ "remote": remote.url(), "endpoint": repo.endpoint(), "capabilities": caps,
                                      "probe": record, "probed_at": probed_at, "latest_snapshot": latest }));
    }
    let yes = |b: bool| if b { "yes" } else { "no" };
    // Each guarantee as the probe found it; unprobed ones are said to be assumed.
    let probed = |b: Option<bool>| match b {
        Some(true) => "yes (probed)",
        Some(false) => "NO (probed): bmsync refuses to sync without --accept-lost-updates",
        None => "assumed (not probed yet: run `bmsync remote show --probe`)",
    };
    let probed_delete = |b: Option<bool>| match b {
        Some(true) => "yes (probed)",
        Some(false) => "no (probed): deletes go through a conditional tombstone first",
        None => "assumed (not probed yet)",
    };
    writeln!(out, "remote:             {}", remote.url())?;
    if let Some(e) = repo.endpoint() {
        writeln!(out, "endpoint:           {e}")?;
    }
    writeln!(out, "snapshots:          {}", yes(caps.snapshots))?;
    writeln!(out, "versioning:         {}", yes(caps.versioning))?;
    writeln!(out, "PUT If-None-Match:  {}", probed(record.as_ref().map(|r| r.if_none_match)))?;
    writeln!(out, "PUT If-Match:       {}", probed(record.as_ref().map(|r| r.if_match)))?;
    writeln!(out, "conditional delete: {}", probed_delete(record.as_ref().map(|r| r.conditional_delete)))?;
    writeln!(out, "probed:             {}", probed_at.as_deref().unwrap_or("never"))?;
    match latest {
        Some(s) => writeln!(
            out,
            "latest snapshot:    {}{}",
            s.version,
            s.name.map(|n| format!(" ({n})")).unwrap_or_default()
        ),
        None if caps.snapshots => writeln!(out, "latest snapshot:    none yet"),
        None => Ok(()),
    }
}
