//! Words for people: counts with their plurals, sizes, snapshot ids, lists.

/// `1 file`, `2 files`: `noun` is the singular; the plural adds an `s` (`-y` becomes
/// `-ies`), which every noun bmsync counts follows.
pub(crate) fn count(n: impl TryInto<u64>, noun: &str) -> String {
    let n = n.try_into().unwrap_or(u64::MAX);
    if n == 1 {
        format!("1 {noun}")
    } else if let Some(stem) = noun.strip_suffix('y').filter(|s| !s.ends_with(['a', 'e', 'o', 'u'])) {
        format!("{n} {stem}ies")
    } else {
        format!("{n} {noun}s")
    }
}

/// A size as people read it: `0 B`, `812 B`, `1.91 MiB`.
pub(crate) fn size(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}

/// A snapshot as a short id: the UTC second it was taken (a snapshot version is its time
/// in nanoseconds), which `remote@{TIME}` takes back. A version that is no time is
/// printed as it is.
pub(crate) fn snapshot(version: u64) -> String {
    // Versions before 2001 are not nanosecond times.
    if version < 1_000_000_000_000_000_000 {
        return version.to_string();
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(version);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `a`, `a and b`, `a, b and c`.
pub(crate) fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals_sizes_and_lists() {
        assert_eq!(count(1u64, "conflict"), "1 conflict");
        assert_eq!(count(0u64, "conflict"), "0 conflicts");
        assert_eq!(count(2u64, "copy"), "2 copies");
        assert_eq!(count(2u64, "key"), "2 keys");
        assert_eq!(size(0), "0 B");
        assert_eq!(size(2_097_343), "2.00 MiB");
        assert_eq!(and_list(&["a".into(), "b".into(), "c".into()]), "a, b and c");
        assert_eq!(snapshot(1_796_147_731_853_469_056), "2026-12-01T17:55:31Z");
        assert_eq!(snapshot(42), "42");
    }
}
