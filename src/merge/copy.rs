//! The frontmatter of a conflict copy (`NAME.conflict-CLIENT-STAMP.md`).
//!
//! A conflict copy is a second file with a note's content. If it kept the original's
//! `permalink:`, Basic Memory would see two notes claiming one permalink. So the copy
//! gets its own permalink, says what it is a copy of, and its title says it is a copy.

use super::frontmatter::{locate, split_blocks};

/// The suffix added to a conflict copy's `title:`.
const TITLE_SUFFIX: &str = " (conflict copy)";

/// The permalink Basic Memory derives from a note's path: the path without its
/// extension, camelCase split with `-`, lowercased, `_` and every character that is not
/// a letter, digit or `/` turned into `-`, runs of `-` collapsed, and `-` trimmed from
/// each path segment. (Basic Memory also transliterates non-ASCII letters; bmsync keeps
/// them, lowercased. The permalink only has to be the copy's own.)
///
/// `permalink_for_path("notes/Meeting Notes_2024.md") == "notes/meeting-notes-2024"`.
pub fn permalink_for_path(path: &str) -> String {
    let (dir, name) = path.rsplit_once('/').map_or(("", path), |(d, n)| (d, n));
    let stem = match name.rfind('.') {
        Some(dot) if dot > 0 => &name[..dot],
        _ => name,
    };
    let full = if dir.is_empty() { stem.to_owned() } else { format!("{dir}/{stem}") };
    let mut out = String::with_capacity(full.len());
    let mut prev: Option<char> = None;
    for ch in full.chars() {
        if ch.is_uppercase() && prev.is_some_and(|p| p.is_lowercase() || p.is_ascii_digit()) {
            out.push('-');
        }
        if ch == '/' {
            out.push('/');
        } else if ch.is_alphanumeric() {
            out.extend(ch.to_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
        prev = Some(ch);
    }
    let out = out.split('/').map(|seg| seg.trim_matches('-')).collect::<Vec<_>>().join("/");
    collapse_dashes(&out)
}

fn collapse_dashes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if !(ch == '-' && out.ends_with('-')) {
            out.push(ch);
        }
    }
    out
}

/// A YAML scalar for `s`: plain when it is only letters, digits and `_./-` (not first),
/// else a JSON string, which YAML reads as a double-quoted scalar.
fn yaml_scalar(s: &str) -> String {
    let plain = s.chars().next().is_some_and(|c| c.is_alphanumeric() || c == '_')
        && s.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'));
    if plain { s.to_owned() } else { serde_json::to_string(s).expect("a string always serializes") }
}

/// The value of a one-line `key: value` block, unquoted; `None` for anything else.
fn single_line_value(raw: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(raw).ok()?;
    let line = text.strip_suffix('\n').unwrap_or(text);
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.contains('\n') {
        return None;
    }
    let value = line.split_once(':')?.1.trim();
    let unquoted = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')));
    Some(unquoted.unwrap_or(value))
}

/// The copy's permalink. If the original's permalink is the one its path gives (or it
/// has none), the copy's is the one the copy's path gives. A custom permalink keeps its
/// form: it gets the copy name's suffix (`-conflict-CLIENT-STAMP`) appended.
fn copy_permalink(original: Option<&[u8]>, copy_path: &str, original_path: &str) -> String {
    let from_path = permalink_for_path(copy_path);
    let custom = original
        .and_then(single_line_value)
        .filter(|v| !v.is_empty() && *v != permalink_for_path(original_path));
    let stem = |p: &str| {
        let name = p.rsplit('/').next().unwrap_or(p);
        name.rfind('.').filter(|&d| d > 0).map_or(name, |d| &name[..d]).to_owned()
    };
    let (copy_stem, original_stem) = (stem(copy_path), stem(original_path));
    let suffix = copy_stem.strip_prefix(&original_stem).map(permalink_for_path).filter(|s| !s.is_empty());
    let link = match (custom, suffix) {
        // Already the copy's (a copy rewritten again).
        (Some(custom), Some(suffix)) if custom == from_path || custom.ends_with(&format!("-{suffix}")) => {
            custom.to_owned()
        }
        (Some(custom), Some(suffix)) => format!("{custom}-{suffix}"),
        _ => from_path,
    };
    if link.is_empty() { "conflict-copy".to_owned() } else { link }
}

/// A one-line `title:` block with [`TITLE_SUFFIX`] added to its value, or `None` when the
/// value is not a one-line plain or quoted scalar (left as it is), is empty, or already
/// ends with the suffix.
fn suffixed_title(raw: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(raw).ok()?;
    let body = text.trim_end_matches(['\r', '\n']);
    let eol = &text[body.len()..];
    if body.contains('\n') {
        return None;
    }
    let value_end = body.trim_end().len();
    let (head, tail) = body.split_at(value_end);
    let value = head.split_once(':')?.1.trim_start();
    let suffix = TITLE_SUFFIX.trim_start();
    let is_quoted = |q: char| value.len() >= 2 && value.starts_with(q) && value.ends_with(q);
    let new_head = if is_quoted('"') || is_quoted('\'') {
        let inner = &value[1..value.len() - 1];
        if inner.is_empty() || inner.ends_with(suffix) {
            return None;
        }
        format!("{}{TITLE_SUFFIX}{}", &head[..head.len() - 1], &head[head.len() - 1..])
    } else {
        let special = value.starts_with(['"', '\'', '|', '>', '[', '{', '&', '*', '!', '#', '%', '@', '`']);
        if value.is_empty() || special || value.contains(" #") || value.ends_with(suffix) {
            return None;
        }
        format!("{head}{TITLE_SUFFIX}")
    };
    Some(format!("{new_head}{tail}{eol}").into_bytes())
}

/// Rewrites the frontmatter of a conflict copy of a Markdown note so that it does not
/// claim the original's identity:
///
/// * `permalink:` gets the copy's own value (see [`permalink_for_path`]; a custom
///   permalink gets the copy's `-conflict-…` suffix), and right after it come
///   `conflict_of: ORIGINAL_PATH` and `conflict: KIND`. Without a `permalink:` key the
///   three are added at the end of the frontmatter; without frontmatter a block with
///   the three is put before the note. Existing `conflict_of:`/`conflict:` keys (a copy
///   of a copy) are replaced.
/// * A one-line `title:` gets ` (conflict copy)` appended to its value (inside the
///   quotes of a quoted one), so Basic Memory lists the copy recognisably.
/// * Frontmatter that does not fit the merge grammar (`format-spec/merge.md`) is left as
///   it is, with the three keys appended at its end; YAML readers such as Basic
///   Memory's take the last of duplicate keys, so the appended permalink is the one
///   read.
///
/// Every other byte is unchanged. Files whose `copy_path` does not end in `.md`, and
/// notes that are not UTF-8, are returned unchanged.
pub fn conflict_copy_note(
    bytes: &[u8],
    copy_path: &str,
    original_path: &str,
    conflict_kind: &str,
) -> Vec<u8> {
    if !super::is_note(copy_path) || std::str::from_utf8(bytes).is_err() {
        return bytes.to_vec();
    }
    let keys = |permalink: &str, eol: &[u8]| {
        let mut out = Vec::new();
        for (key, value) in
            [("permalink", permalink), ("conflict_of", original_path), ("conflict", conflict_kind)]
        {
            out.extend_from_slice(format!("{key}: {}", yaml_scalar(value)).as_bytes());
            out.extend_from_slice(eol);
        }
        out
    };
    let Some(at) = locate(bytes) else {
        let eol: &[u8] = match bytes.iter().position(|&b| b == b'\n') {
            Some(i) if i > 0 && bytes[i - 1] == b'\r' => b"\r\n",
            _ => b"\n",
        };
        let mut out = b"---".to_vec();
        out.extend_from_slice(eol);
        out.extend(keys(&copy_permalink(None, copy_path, original_path), eol));
        out.extend_from_slice(b"---");
        out.extend_from_slice(eol);
        out.extend_from_slice(bytes);
        return out;
    };
    let eol = at.eol();
    let inner_start = at.open.len();
    let inner_end = inner_start + at.inner.len();
    let mut out = bytes[..inner_start].to_vec();
    match split_blocks(at.inner) {
        None => {
            out.extend_from_slice(at.inner);
            out.extend(keys(&copy_permalink(None, copy_path, original_path), eol));
        }
        Some(blocks) => {
            let original = blocks.iter().find(|b| b.key == "permalink").map(|b| b.raw);
            let new_keys = keys(&copy_permalink(original, copy_path, original_path), eol);
            for block in &blocks {
                match block.key {
                    "permalink" => out.extend_from_slice(&new_keys),
                    "conflict_of" | "conflict" => {}
                    "title" => out.extend(suffixed_title(block.raw).unwrap_or_else(|| block.raw.to_vec())),
                    _ => out.extend_from_slice(block.raw),
                }
            }
            if original.is_none() {
                out.extend(new_keys);
            }
        }
    }
    out.extend_from_slice(&bytes[inner_end..]);
    out
}
