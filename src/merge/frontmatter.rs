//! Merging Markdown notes: the frontmatter key by key, the body line by line.
//!
//! # The frontmatter grammar
//!
//! This is the whole grammar; a note that does not fit it is merged as plain text.
//!
//! ```text
//! note        = open block* close body
//! open        = "---" EOL                  ; the very first bytes, no BOM
//! close       = "---"                      ; the first later line that is exactly "---"
//! body        = everything after close     ; starts with close's line ending
//! block       = key-line cont-line*
//! key-line    = KEY ":" (SP | TAB | EOL) rest-of-line
//! KEY         = [A-Za-z0-9_] [A-Za-z0-9_.-]*
//! cont-line   = (SP | TAB) rest-of-line    ; indented value, block scalar, nested map
//!             | "-" (SP | TAB | EOL) ...   ; list item at column 0
//!             | blank line                 ; only spaces and tabs
//! EOL         = "\n" | "\r\n"
//! ```
//!
//! A key's *block* is its key line and every continuation line after it, with their
//! line endings: the raw bytes, compared and copied as they are. Keys must be unique.
//! Anything else at column 0 (a comment, a quoted or complex key, a continuation before
//! the first key) makes the frontmatter unparsed. No YAML parser is involved: the blocks
//! are split by these rules alone, so untouched keys keep their bytes exactly.

use std::collections::BTreeMap;

use super::text::{check_text, merge_checked};
use super::{MergeError, MergeLabels, MergeOptions, Side, TextMerge};

/// The result of [`merge_note`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoteMerge {
    /// Everything merged; the merged note.
    Clean(Vec<u8>),
    /// Some changes collide.
    Conflicted(NoteConflict),
}

impl NoteMerge {
    /// Whether everything merged.
    pub fn is_clean(&self) -> bool {
        matches!(self, Self::Clean(_))
    }
}

/// What collided in a note merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteConflict {
    /// Frontmatter keys changed differently on the two sides, in output order.
    pub keys: Vec<String>,
    /// Conflicts in the body (in the whole file when `whole_file`).
    pub body_conflicts: usize,
    /// The frontmatter was not merged key by key (absent or unparsed on some side), so
    /// the whole file was merged as text and `body_conflicts` counts its conflicts.
    pub whole_file: bool,
    /// The merge with markers around each conflict, when [`MergeOptions::markers`] asked
    /// for them. A conflicting key's markers hold its whole block from each side.
    pub with_markers: Option<Vec<u8>>,
}

impl NoteConflict {
    /// All conflicts: keys and body.
    pub fn conflicts(&self) -> usize {
        self.keys.len() + self.body_conflicts
    }
}

/// One top-level key of a frontmatter block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Block<'a> {
    /// The key, without the colon.
    pub key: &'a str,
    /// Its raw bytes: the key line and its continuation lines, line endings included.
    pub raw: &'a [u8],
}

/// Where a note's frontmatter is, parsed or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Located<'a> {
    /// `---` and its line ending.
    pub open: &'a [u8],
    /// The lines between the delimiters.
    pub inner: &'a [u8],
    /// Everything after the closing `---`, starting with that line's ending.
    pub body: &'a [u8],
}

impl Located<'_> {
    /// The line ending of the opening delimiter, used for lines bmsync writes into it.
    pub fn eol(&self) -> &'static [u8] {
        if self.open.ends_with(b"\r\n") { b"\r\n" } else { b"\n" }
    }
}

/// A note's frontmatter split into key blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frontmatter<'a> {
    /// Where it is.
    pub at: Located<'a>,
    /// Its keys in file order.
    pub blocks: Vec<Block<'a>>,
}

/// Lines of `bytes`, each with its `\n` (the last one may lack it).
fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes.split_inclusive(|&b| b == b'\n')
}

fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Finds the frontmatter delimiters of a note, if it has them.
pub(crate) fn locate(note: &[u8]) -> Option<Located<'_>> {
    let open_len = if note.starts_with(b"---\n") {
        4
    } else if note.starts_with(b"---\r\n") {
        5
    } else {
        return None;
    };
    let mut at = open_len;
    for line in lines(&note[open_len..]) {
        if strip_eol(line) == b"---" {
            return Some(Located {
                open: &note[..open_len],
                inner: &note[open_len..at],
                body: &note[at + 3..],
            });
        }
        at += line.len();
    }
    None
}

/// The key of a key line, if `line` is one.
fn key_of(line: &[u8]) -> Option<&str> {
    let colon = line.iter().position(|&b| b == b':')?;
    let (key, after) = (&line[..colon], &line[colon + 1..]);
    let first_ok = key.first().is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_');
    let rest_ok = key.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    let after_ok = matches!(after.first(), None | Some(b' ' | b'\t' | b'\n' | b'\r'));
    if !(first_ok && rest_ok && after_ok) {
        return None;
    }
    std::str::from_utf8(key).ok()
}

fn is_continuation(line: &[u8]) -> bool {
    match line.first() {
        Some(b' ' | b'\t') => true,
        Some(b'-') => matches!(line.get(1), None | Some(b' ' | b'\t' | b'\n' | b'\r')),
        _ => strip_eol(line).is_empty(),
    }
}

/// Splits frontmatter lines into key blocks, or `None` if they break the grammar.
pub(crate) fn split_blocks(inner: &[u8]) -> Option<Vec<Block<'_>>> {
    let mut blocks: Vec<Block<'_>> = Vec::new();
    let mut start = 0;
    let mut key: Option<&str> = None;
    let mut at = 0;
    for line in lines(inner) {
        if let Some(next) = key_of(line) {
            if let Some(key) = key {
                blocks.push(Block { key, raw: &inner[start..at] });
            }
            if blocks.iter().any(|b| b.key == next) {
                return None;
            }
            key = Some(next);
            start = at;
        } else if key.is_none() || !is_continuation(line) {
            return None;
        }
        at += line.len();
    }
    if let Some(key) = key {
        blocks.push(Block { key, raw: &inner[start..] });
    }
    Some(blocks)
}

/// A note's frontmatter, if it has one that fits the grammar.
pub(crate) fn parse(note: &[u8]) -> Option<Frontmatter<'_>> {
    let at = locate(note)?;
    let blocks = split_blocks(at.inner)?;
    Some(Frontmatter { at, blocks })
}

/// The merged value of one key.
#[derive(Debug, Clone, Copy)]
enum Entry<'a> {
    Kept(&'a [u8]),
    Conflict { base: Option<&'a [u8]>, current: Option<&'a [u8]>, other: Option<&'a [u8]> },
}

/// The three-way rule for one value: a change on one side wins over no change, the
/// same change on both sides is that change, and two different changes collide.
/// `None` is "absent", so additions and deletions follow the same rule.
fn pick<'a>(base: Option<&'a [u8]>, current: Option<&'a [u8]>, other: Option<&'a [u8]>) -> Option<Entry<'a>> {
    if current == other || other == base {
        current.map(Entry::Kept)
    } else if current == base {
        other.map(Entry::Kept)
    } else {
        Some(Entry::Conflict { base, current, other })
    }
}

/// Merges the frontmatter key by key.
///
/// Key order is a change like any other: if current kept the order of the keys it shares
/// with base, other's order is taken, else current's (so a reorder on both sides keeps
/// current's). Keys that only the side whose order is not taken has go right after the
/// key that precedes them on that side (after the keys already placed there), or first
/// if none does.
fn merge_keys<'a>(
    base: &Frontmatter<'a>,
    current: &Frontmatter<'a>,
    other: &Frontmatter<'a>,
) -> Vec<(&'a str, Entry<'a>)> {
    let map = |fm: &Frontmatter<'a>| fm.blocks.iter().map(|b| (b.key, b.raw)).collect::<BTreeMap<_, _>>();
    let (b, c, o) = (map(base), map(current), map(other));
    let decide = |key: &str| pick(b.get(key).copied(), c.get(key).copied(), o.get(key).copied());
    // The order of the keys `fm` shares with `with` (additions and deletions are no reorder).
    let order = |fm: &Frontmatter<'a>, with: &BTreeMap<&str, &[u8]>| {
        fm.blocks.iter().map(|b| b.key).filter(|k| with.contains_key(k)).collect::<Vec<_>>()
    };
    let (first, second) =
        if order(current, &b) == order(base, &c) { (other, current) } else { (current, other) };
    let mut out: Vec<(&str, Entry<'_>)> =
        first.blocks.iter().filter_map(|blk| decide(blk.key).map(|e| (blk.key, e))).collect();
    let in_first = map(first);
    // Where the next key of the second side goes: after its last key seen in `out`.
    let mut insert_at = 0;
    for blk in &second.blocks {
        if let Some(i) = out.iter().position(|(k, _)| *k == blk.key) {
            insert_at = i + 1;
        } else if !in_first.contains_key(blk.key)
            && let Some(entry) = decide(blk.key)
        {
            out.insert(insert_at, (blk.key, entry));
            insert_at += 1;
        }
    }
    out
}

fn marker(out: &mut Vec<u8>, ch: u8, label: &str, eol: &[u8]) {
    out.extend(std::iter::repeat_n(ch, 7));
    if !label.is_empty() {
        out.push(b' ');
        out.extend_from_slice(label.as_bytes());
    }
    out.extend_from_slice(eol);
}

/// Writes merged frontmatter; `None` if a key conflicts and `labels` is `None`.
fn write_frontmatter(
    out: &mut Vec<u8>,
    entries: &[(&str, Entry<'_>)],
    labels: Option<&MergeLabels>,
    eol: &[u8],
) -> Option<()> {
    for (_, entry) in entries {
        match *entry {
            Entry::Kept(raw) => out.extend_from_slice(raw),
            Entry::Conflict { base, current, other } => {
                let labels = labels?;
                marker(out, b'<', &labels.current, eol);
                out.extend_from_slice(current.unwrap_or_default());
                marker(out, b'|', &labels.base, eol);
                out.extend_from_slice(base.unwrap_or_default());
                marker(out, b'=', "", eol);
                out.extend_from_slice(other.unwrap_or_default());
                marker(out, b'>', &labels.other, eol);
            }
        }
    }
    Some(())
}

/// Merges a Markdown note: its frontmatter key by key, its body as text
/// ([`merge_text`](super::merge_text)).
///
/// When all three versions have frontmatter that fits the grammar (module docs) with
/// the same opening line, each top-level key merges on its own: a key changed (added,
/// deleted) on one side only takes that change, the same change on both sides is taken
/// once, and different changes to one key (a deletion against an edit included) are a
/// conflict on that key. Otherwise the whole file is merged as text.
///
/// A conflict writes no markers unless `opts.markers` asks for them.
pub fn merge_note(
    base: &[u8],
    current: &[u8],
    other: &[u8],
    opts: &MergeOptions,
) -> Result<NoteMerge, MergeError> {
    check_text(Side::Base, base)?;
    check_text(Side::Current, current)?;
    check_text(Side::Other, other)?;
    let (Some(b), Some(c), Some(o)) = (parse(base), parse(current), parse(other)) else {
        return Ok(whole_file(base, current, other, opts));
    };
    if b.at.open != c.at.open || c.at.open != o.at.open {
        return Ok(whole_file(base, current, other, opts));
    }
    let entries = merge_keys(&b, &c, &o);
    let keys: Vec<String> = entries
        .iter()
        .filter(|(_, e)| matches!(e, Entry::Conflict { .. }))
        .map(|(k, _)| (*k).to_owned())
        .collect();
    let body = merge_checked(b.at.body, c.at.body, o.at.body, opts);
    let eol = c.at.eol();
    let assemble = |labels: Option<&MergeLabels>, body: &[u8]| {
        let mut out = c.at.open.to_vec();
        write_frontmatter(&mut out, &entries, labels, eol)?;
        out.extend_from_slice(b"---");
        out.extend_from_slice(body);
        Some(out)
    };
    if keys.is_empty()
        && let TextMerge::Clean(body) = &body
    {
        return Ok(NoteMerge::Clean(assemble(None, body).expect("no key conflicts")));
    }
    let with_markers =
        opts.markers.then(|| assemble(Some(&opts.labels), body.bytes()).expect("labels given"));
    Ok(NoteMerge::Conflicted(NoteConflict {
        keys,
        body_conflicts: body.conflicts(),
        whole_file: false,
        with_markers,
    }))
}

fn whole_file(base: &[u8], current: &[u8], other: &[u8], opts: &MergeOptions) -> NoteMerge {
    match merge_checked(base, current, other, opts) {
        TextMerge::Clean(bytes) => NoteMerge::Clean(bytes),
        TextMerge::Conflicted { conflicts, with_markers } => NoteMerge::Conflicted(NoteConflict {
            keys: Vec::new(),
            body_conflicts: conflicts,
            whole_file: true,
            with_markers: opts.markers.then_some(with_markers),
        }),
    }
}
