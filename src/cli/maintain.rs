//! The store's upkeep: fsck and gc.

use std::path::Path;

use bmsync::repo::{STATE_DIR, STORE_FILE};
use bmsync::store::{Finding, FindingKind, FsckReport, Store, StoreError};
use serde_json::json;

use crate::output::{Failure, Output};

type Out<'a, 'b> = &'a mut Output<'b>;

fn kind_name(k: FindingKind) -> String {
    serde_json::to_value(k).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// `fsck`: checks the store; exit 1 when anything is wrong.
pub(crate) fn fsck(out: Out<'_, '_>, dir: &Path) -> Result<(), Failure> {
    let path = dir.join(STATE_DIR).join(STORE_FILE);
    let report = match Store::open(&path) {
        Ok(store) => store.fsck(),
        Err(e @ (StoreError::Missing { .. } | StoreError::Locked { .. })) => return Err(e.into()),
        // A store that does not even open is the finding.
        Err(e) => FsckReport {
            findings: vec![Finding {
                kind: FindingKind::Damaged,
                subject: "store".into(),
                detail: e.to_string(),
            }],
            ..FsckReport::default()
        },
    };
    if out.json {
        let mut v = serde_json::to_value(&report).expect("reports serialise");
        v["healthy"] = json!(report.healthy());
        out.json_line(&v)?;
    } else {
        for f in &report.findings {
            writeln!(out, "{} {}: {}", kind_name(f.kind), f.subject, f.detail)?;
        }
        writeln!(
            out,
            "checked {} ({}) and {}: {}",
            crate::words::count(report.objects, "object"),
            crate::words::count(report.commits, "commit"),
            crate::words::count(report.refs, "ref"),
            if report.healthy() {
                "no problems".to_owned()
            } else {
                crate::words::count(report.findings.len(), "problem")
            }
        )?;
    }
    if report.healthy() {
        Ok(())
    } else {
        // The findings are the output; the exit code says there were some.
        Err(Failure::quiet(crate::output::EXIT_FAILURE))
    }
}

/// `gc`: removes unreachable objects and trash older than `keep_days`.
pub(crate) fn gc(out: Out<'_, '_>, repo: &bmsync::Repo, keep_days: u64) -> Result<(), Failure> {
    let mut opts = bmsync::repo::GcOptions::default();
    opts.keep_trash = Some(std::time::Duration::from_secs(keep_days.saturating_mul(24 * 3600)));
    let r = repo.gc(&opts)?;
    if out.json {
        return out.json_line(&serde_json::to_value(&r).expect("reports serialise"));
    }
    writeln!(
        out,
        "removed {} of {} ({} kept: reachable), {} older than {}",
        r.removed,
        crate::words::count(r.objects, "object"),
        r.reachable,
        crate::words::count(r.trash_removed, "trash round"),
        crate::words::count(keep_days, "day")
    )
}

/// `trash`: the trash's rounds, newest first.
pub(crate) fn trash(out: Out<'_, '_>, dir: &Path) -> Result<(), Failure> {
    let rounds = bmsync::restore::trash_rounds(dir);
    let when = |stamp: u64| {
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(stamp))
            .to_string()
    };
    if out.json {
        let v: Vec<_> = rounds
            .iter()
            .map(|r| json!({ "stamp": r.stamp, "time": when(r.stamp), "files": r.files }))
            .collect();
        return out.json_line(&serde_json::Value::Array(v));
    }
    if rounds.is_empty() {
        return writeln!(out, "The trash is empty");
    }
    for r in &rounds {
        writeln!(out, "{} (.bmsync/trash/{})", when(r.stamp), r.stamp)?;
        for f in &r.files {
            writeln!(out, "  {f}")?;
        }
    }
    Ok(())
}
