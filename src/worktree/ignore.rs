//! Ignore rules: a built-in set that always applies, plus gitignore-style `.bmignore`
//! files (the folder's own, and the user's global ones).

use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};

/// What a Basic Memory project must never sync. Always applied; `.bmignore` files
/// cannot re-include these.
pub const BUILTIN_RULES: &[&str] = &[
    // Every dotfile and dot-folder (Basic Memory keeps its own state in them). First, so
    // that `check-ignore` names the more specific rules below when they match too.
    ".*",
    ".bmsync/",
    ".git/",
    ".obsidian/",
    ".trash/",
    ".DS_Store",
    "*.db",
    "*.db-shm",
    "*.db-wal",
    "*.tmp",
    "*.swp",
    "*.swo",
    "*~",
    "Thumbs.db",
    "desktop.ini",
    "node_modules/",
    "__pycache__/",
    ".venv/",
];

/// The folder's own ignore file, at its root.
pub const BMIGNORE: &str = ".bmignore";

/// Why a path is ignored.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct IgnoreMatch {
    /// `built-in`, or the ignore file the rule came from.
    pub source: String,
    /// The rule as written.
    pub pattern: String,
}

/// Errors reading ignore files.
#[derive(Debug, thiserror::Error)]
#[error("ignore file {path}: {message}")]
pub struct IgnoreError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub message: String,
}

/// The ignore rules in force for one folder.
#[derive(Debug)]
pub struct IgnoreRules {
    builtin: Gitignore,
    user: Gitignore,
    digest: [u8; 32],
}

/// The user's global ignore files: `~/.basic-memory/.bmignore` and, when
/// `BASIC_MEMORY_CONFIG_DIR` is set, `$BASIC_MEMORY_CONFIG_DIR/.bmignore`.
pub fn global_ignore_files() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(home) = std::env::var_os("HOME") {
        v.push(Path::new(&home).join(".basic-memory").join(BMIGNORE));
    }
    if let Some(dir) = std::env::var_os("BASIC_MEMORY_CONFIG_DIR") {
        v.push(Path::new(&dir).join(BMIGNORE));
    }
    v
}

impl IgnoreRules {
    /// Loads the built-in rules, `ROOT/.bmignore`, and the given global files (missing
    /// files are fine; unreadable or invalid ones are an error, since silently dropping
    /// a rule could sync what the user meant to keep private).
    pub fn load(root: &Path, global_files: &[PathBuf]) -> Result<Self, IgnoreError> {
        let mut b = GitignoreBuilder::new(root);
        for rule in BUILTIN_RULES {
            b.add_line(None, rule)
                .map_err(|e| IgnoreError { path: "built-in".into(), message: e.to_string() })?;
        }
        let builtin =
            b.build().map_err(|e| IgnoreError { path: "built-in".into(), message: e.to_string() })?;
        let mut u = GitignoreBuilder::new(root);
        let mut files: Vec<PathBuf> = global_files.to_vec();
        files.push(root.join(BMIGNORE));
        // Every rule in force, and where it came from: what a stat-cache listing was
        // filtered by (see `digest`).
        let mut h = blake3::Hasher::new();
        for rule in BUILTIN_RULES {
            h.update(rule.as_bytes()).update(b"\n");
        }
        for f in &files {
            h.update(b"\0").update(f.as_os_str().as_encoded_bytes()).update(b"\0");
            let text = match std::fs::read_to_string(f) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(IgnoreError { path: f.clone(), message: e.to_string() }),
            };
            h.update(&(text.len() as u64).to_le_bytes()).update(text.as_bytes());
            for line in text.lines() {
                u.add_line(Some(f.clone()), line)
                    .map_err(|e| IgnoreError { path: f.clone(), message: e.to_string() })?;
            }
        }
        let user =
            u.build().map_err(|e| IgnoreError { path: root.join(BMIGNORE), message: e.to_string() })?;
        Ok(Self { builtin, user, digest: *h.finalize().as_bytes() })
    }

    /// A hash of every rule and the file it came from: equal digests, equal rules. The
    /// scanner trusts a cached folder listing only under the rules it was filtered by.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// Whether `rel` (relative, `/`-separated) is ignored by a rule naming it directly.
    /// The scanner never descends into ignored folders, so parents need no check there.
    pub fn matched(&self, rel: &str, is_dir: bool) -> Option<IgnoreMatch> {
        Self::explain(&self.builtin.matched(rel, is_dir))
            .or_else(|| Self::explain(&self.user.matched(rel, is_dir)))
    }

    /// Like [`matched`](Self::matched), but also reports a match on any parent folder:
    /// what `check-ignore` answers for an arbitrary path.
    pub fn matched_with_parents(&self, rel: &str, is_dir: bool) -> Option<IgnoreMatch> {
        let mut prefix = String::new();
        let parts: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
        for (i, part) in parts.iter().enumerate() {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            let last = i + 1 == parts.len();
            if let Some(m) = self.matched(&prefix, if last { is_dir } else { true }) {
                return Some(m);
            }
        }
        None
    }

    fn explain(m: &ignore::Match<&ignore::gitignore::Glob>) -> Option<IgnoreMatch> {
        match m {
            ignore::Match::Ignore(g) => Some(IgnoreMatch {
                source: g.from().map_or_else(|| "built-in".to_owned(), |p| p.display().to_string()),
                pattern: g.original().to_owned(),
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(bmignore: Option<&str>) -> (tempfile::TempDir, IgnoreRules) {
        let d = tempfile::tempdir().expect("tmp");
        if let Some(text) = bmignore {
            std::fs::write(d.path().join(BMIGNORE), text).expect("write");
        }
        let r = IgnoreRules::load(d.path(), &[]).expect("load");
        (d, r)
    }

    #[test]
    fn builtin_rules_cover_what_must_never_sync() {
        let (_d, r) = rules(None);
        for (path, dir) in [
            (".bmsync", true),
            (".git", true),
            (".obsidian", true),
            (".trash", true),
            (".DS_Store", false),
            ("sub/.DS_Store", false),
            ("memory.db", false),
            ("memory.db-wal", false),
            ("memory.db-shm", false),
            ("x.tmp", false),
            ("a/.note.md.swp", false),
            ("n.swo", false),
            ("n.md~", false),
            ("Thumbs.db", false),
            ("desktop.ini", false),
            ("node_modules", true),
            ("a/__pycache__", true),
            (".venv", true),
            (".hidden", false),
            (".config", true),
        ] {
            let m = r.matched(path, dir);
            assert_eq!(m.as_ref().map(|m| m.source.as_str()), Some("built-in"), "{path}");
        }
        for path in ["notes/idea.md", "img/cat.png", "db/notes.md", "a.dbx"] {
            assert_eq!(r.matched(path, false), None, "{path}");
        }
        assert!(r.matched_with_parents(".git/config", false).is_some());
        assert!(r.matched_with_parents("a/node_modules/x/y.js", false).is_some());
    }

    #[test]
    fn bmignore_adds_rules_but_cannot_unignore_builtins() {
        let (d, r) = rules(Some("drafts/\n*.pdf\n!.git\n!keep.tmp\n"));
        let m = r.matched("drafts", true).expect("ignored");
        assert_eq!(m.pattern, "drafts/");
        assert_eq!(m.source, d.path().join(BMIGNORE).display().to_string());
        assert!(r.matched("drafts", false).is_none(), "a file named drafts is not a folder");
        assert!(r.matched("a/b.pdf", false).is_some());
        assert!(r.matched(".git", true).is_some());
        assert!(r.matched("keep.tmp", false).is_some());
    }

    #[test]
    fn global_files_apply_and_missing_ones_are_fine() {
        let d = tempfile::tempdir().expect("tmp");
        let g = d.path().join("global.bmignore");
        std::fs::write(&g, "secret/\n").expect("write");
        let r = IgnoreRules::load(d.path(), &[g.clone(), d.path().join("missing")]).expect("load");
        assert_eq!(r.matched("secret", true).map(|m| m.source), Some(g.display().to_string()));
    }
}
