//! The revision grammar (`format-spec/revisions.md`): what `show`, `diff`, `restore` and
//! `log` accept, and how it resolves against the store.

use super::{REF_BASE, REF_HEAD, REV_LOCAL, Result};
use crate::id::{ID_LEN, IdPrefix, ObjectId, ObjectKind};
use crate::remote::Version;
use crate::store::StoreError;
use crate::{Repo, RepoError};

/// The forms a revision takes, for the error that names an unknown one.
pub const REVISION_FORMS: &str = "a commit id or an unambiguous prefix of one (4+ hex), head (or HEAD), base, \
local (the folder now), REV~N, REV^N, @{TIME} (the newest local commit at or before TIME), remote (the bucket now), \
remote@{TIME} (the bucket at TIME), snapshot:VERSION, each optionally followed by :PATH; TIME is RFC 3339, \
e.g. 2026-11-20T10:00:00Z or 2026-11-20T11:00:00.5+01:00";

/// A revision, resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rev {
    /// The folder as it is now.
    Local,
    /// A stored commit.
    Commit(ObjectId),
    /// A stored tree named by its id.
    Tree(ObjectId),
    /// A ref that is not set yet (`base` before the first sync): the empty tree.
    Empty,
    /// The bucket: now (`None`) or read at a version (UNIX nanoseconds).
    Remote(Option<Version>),
}

/// Splits `REV:PATH` at the colon that ends the revision: colons inside `@{...}` and the
/// one of `snapshot:` belong to the revision. `None` path: no colon.
pub fn split_rev_path(spec: &str) -> (&str, Option<&str>) {
    let skip = if spec.starts_with("snapshot:") { "snapshot:".len() } else { 0 };
    let mut depth = 0u32;
    for (i, ch) in spec.char_indices().skip_while(|(i, _)| *i < skip) {
        match ch {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ':' if depth == 0 => return (&spec[..i], Some(&spec[i + 1..])),
            _ => {}
        }
    }
    (spec, None)
}

fn bad(rev: &str, reason: impl Into<String>) -> RepoError {
    RepoError::BadRevision { rev: rev.to_owned(), reason: reason.into() }
}

/// Parses RFC 3339 (`2026-11-20T10:00:00Z`, `2026-11-20 10:00:00.123456789+02:00`) into
/// UNIX nanoseconds.
pub fn parse_time(text: &str) -> Option<i128> {
    let bytes = text.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let digits = text.get(r)?;
        if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    };
    let punctuated = bytes.len() >= 20
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && matches!(bytes[10], b'T' | b't' | b' ')
        && bytes[13] == b':'
        && bytes[16] == b':';
    if !punctuated {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let valid = (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour <= 23
        && minute <= 59
        && second <= 60;
    if !valid {
        return None;
    }
    let mut pos = 19;
    let mut nanos: i128 = 0;
    if bytes.get(pos) == Some(&b'.') {
        let start = pos + 1;
        pos = start;
        while bytes.get(pos).is_some_and(u8::is_ascii_digit) {
            pos += 1;
        }
        let digits = &text[start..pos];
        if digits.is_empty() || digits.len() > 9 {
            return None;
        }
        nanos = i128::from(digits.parse::<i64>().ok()?) * 10i128.pow(u32::try_from(9 - digits.len()).ok()?);
    }
    let offset_s: i64 = match &text[pos..] {
        "Z" | "z" => 0,
        zone if zone.len() == 6 && (zone.starts_with('+') || zone.starts_with('-')) && &zone[3..4] == ":" => {
            let (zh, zm) = (num(pos + 1..pos + 3)?, num(pos + 4..pos + 6)?);
            if zh > 23 || zm > 59 {
                return None;
            }
            let secs = zh * 3600 + zm * 60;
            if zone.starts_with('-') { -secs } else { secs }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    Some(i128::from(secs) * 1_000_000_000 + nanos)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The TIME of `@{TIME}` as nanoseconds, or the error naming the forms.
fn time_of(rev: &str, inner: &str) -> Result<i128> {
    parse_time(inner).ok_or_else(|| {
        bad(
            rev,
            format!(
                "{inner:?} is not an RFC 3339 time (e.g. 2026-11-20T10:00:00Z or 2026-11-20T11:00:00.5+01:00)"
            ),
        )
    })
}

/// Splits `NAME@{TIME}` into the name and the time text.
fn at_time(s: &str) -> Option<(&str, &str)> {
    let inner = s.strip_suffix('}')?;
    let at = inner.find("@{")?;
    Some((&inner[..at], &inner[at + 2..]))
}

impl Repo {
    /// Resolves any revision (see [`REVISION_FORMS`]). Remote revisions are only parsed
    /// here: reading the bucket is the caller's.
    pub fn resolve_rev(&self, rev: &str) -> Result<Rev> {
        if rev == REV_LOCAL {
            return Ok(Rev::Local);
        }
        if rev == "remote" {
            return Ok(Rev::Remote(None));
        }
        if let Some(v) = rev.strip_prefix("snapshot:") {
            let v = v
                .parse::<Version>()
                .map_err(|_| bad(rev, "a snapshot version is a number (UNIX nanoseconds)"))?;
            return Ok(Rev::Remote(Some(v)));
        }
        if let Some(("remote", t)) = at_time(rev) {
            let ns = time_of(rev, t)?;
            let v = Version::try_from(ns.max(0)).map_err(|_| bad(rev, "time out of range"))?;
            return Ok(Rev::Remote(Some(v)));
        }
        let lower = rev.to_ascii_lowercase();
        if (lower == REF_BASE || lower == REF_HEAD) && self.store.get_ref(&lower)?.is_none() {
            return Ok(Rev::Empty);
        }
        let id = self.resolve(rev)?;
        match self.store.stat(&id)?.map(|(k, _)| k) {
            Some(ObjectKind::Commit) => Ok(Rev::Commit(id)),
            Some(ObjectKind::Tree) => Ok(Rev::Tree(id)),
            Some(kind) => Err(RepoError::NotATree { rev: rev.to_owned(), kind }),
            None => Err(StoreError::NotFound { id }.into()),
        }
    }

    /// Resolves a revision that names a stored object: a ref, an id or prefix, `@{TIME}`,
    /// with `~N` and `^N` suffixes.
    pub fn resolve(&self, rev: &str) -> Result<ObjectId> {
        // The suffixes start at the first `~` or `^` outside `@{...}`.
        let mut depth = 0u32;
        let mut cut = rev.len();
        for (i, ch) in rev.char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => depth = depth.saturating_sub(1),
                '~' | '^' if depth == 0 => {
                    cut = i;
                    break;
                }
                _ => {}
            }
        }
        let mut id = self.resolve_base(rev, &rev[..cut])?;
        let mut rest = &rev[cut..];
        while let Some(op) = rest.chars().next() {
            rest = &rest[1..];
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let n: usize = if digits == 0 {
                1
            } else {
                rest[..digits].parse().map_err(|_| bad(rev, format!("{} is not a count", &rest[..digits])))?
            };
            rest = &rest[digits..];
            let step = |id: ObjectId, nth: usize| -> Result<ObjectId> {
                let c = self.store.get_commit(&id).map_err(|e| match e {
                    StoreError::WrongKind { found, .. } => {
                        bad(rev, format!("{id} is a {found}, not a commit"))
                    }
                    e => e.into(),
                })?;
                c.parents.get(nth).copied().ok_or_else(|| {
                    bad(
                        rev,
                        format!(
                            "commit {} has {} parent(s), not a parent number {}",
                            id.short(12),
                            c.parents.len(),
                            nth + 1
                        ),
                    )
                })
            };
            match op {
                '~' => {
                    for _ in 0..n {
                        id = step(id, 0)?;
                    }
                }
                '^' if n == 0 => {}
                '^' => id = step(id, n - 1)?,
                _ => return Err(bad(rev, format!("unexpected {op:?}"))),
            }
        }
        Ok(id)
    }

    /// The part of a revision before its suffixes.
    fn resolve_base(&self, rev: &str, base: &str) -> Result<ObjectId> {
        if let Some((name, t)) = at_time(base) {
            let ns = time_of(rev, t)?;
            let starts: Vec<ObjectId> = if name.is_empty() {
                self.store.refs()?.into_iter().map(|(_, id)| id).collect()
            } else {
                vec![self.resolve_base(rev, name)?]
            };
            return self
                .commit_at(&starts, ns)
                .and_then(|c| c.ok_or_else(|| bad(rev, format!("no local commit at or before {t}"))));
        }
        if base == REV_LOCAL
            || base == "remote"
            || base.starts_with("remote@{")
            || base.starts_with("snapshot:")
        {
            return Err(bad(
                rev,
                format!("{base} is not a commit of this folder's history (show and restore read it)"),
            ));
        }
        let lower = base.to_ascii_lowercase();
        let name = if lower == REF_BASE || lower == REF_HEAD { lower.as_str() } else { base };
        if let Ok(Some(id)) = self.store.get_ref(name) {
            return Ok(id);
        }
        if name == REF_BASE || name == REF_HEAD {
            return Err(bad(rev, format!("{name} is not set yet")));
        }
        if base.len() == ID_LEN * 2
            && let Ok(id) = base.parse::<ObjectId>()
        {
            if self.store.contains(&id)? {
                return Ok(id);
            }
            return Err(StoreError::NotFound { id }.into());
        }
        let prefix = IdPrefix::parse(base).map_err(|_| RepoError::UnknownRevision(rev.to_owned()))?;
        Ok(self.store.resolve_prefix(&prefix)?)
    }

    /// The newest commit at or before `ns` among `starts` and their ancestors.
    fn commit_at(&self, starts: &[ObjectId], ns: i128) -> Result<Option<ObjectId>> {
        let mut best: Option<(i64, ObjectId)> = None;
        for (id, c) in self.walk(starts, false)? {
            if i128::from(c.timestamp_ns) <= ns && best.is_none_or(|(t, _)| c.timestamp_ns > t) {
                best = Some((c.timestamp_ns, id));
            }
        }
        Ok(best.map(|(_, id)| id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_parse_with_fractions_and_offsets() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("2026-11-20T10:00:00Z"), Some(1_795_168_800 * 1_000_000_000));
        assert_eq!(parse_time("2026-11-20T11:00:00+01:00"), parse_time("2026-11-20T10:00:00Z"));
        assert_eq!(parse_time("2026-11-20T09:30:00-00:30"), parse_time("2026-11-20T10:00:00Z"));
        assert_eq!(parse_time("1970-01-01T00:00:00.5Z"), Some(500_000_000));
        assert_eq!(parse_time("1970-01-01 00:00:01.000000001z"), Some(1_000_000_001));
        assert_eq!(parse_time("2024-02-29T00:00:00Z"), Some(1_709_164_800 * 1_000_000_000));
        for bad in [
            "2026-11-20",
            "2026-11-20T10:00:00",
            "2025-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-20T10:00:00.Z",
            "2026-11-20T10:00:00.1234567890Z",
            "2026-11-20T10:00:00+0100",
            "yesterday",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_path_follows_the_colon_that_ends_the_revision() {
        assert_eq!(split_rev_path("head:notes/a.md"), ("head", Some("notes/a.md")));
        assert_eq!(split_rev_path("head"), ("head", None));
        assert_eq!(split_rev_path("@{2026-11-20T10:00:00Z}:a.md"), ("@{2026-11-20T10:00:00Z}", Some("a.md")));
        assert_eq!(
            split_rev_path("remote@{2026-11-20T10:00:00+01:00}"),
            ("remote@{2026-11-20T10:00:00+01:00}", None)
        );
        assert_eq!(split_rev_path("snapshot:123:notes/"), ("snapshot:123", Some("notes/")));
        assert_eq!(split_rev_path("base~2:"), ("base~2", Some("")));
    }
}
