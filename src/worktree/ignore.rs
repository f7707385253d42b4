//! Ignore rules: a built-in set that always applies, plus what Basic Memory applies: the
//! global `.bmignore` in its folder (or its default rules where there is none), and the
//! project's own `.bmignore` and `.gitignore`.

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

/// What Basic Memory ignores when its global `.bmignore` does not exist (its
/// `DEFAULT_IGNORE_PATTERNS`): applied then too, so bmsync skips what `bm` skips.
pub const BASIC_MEMORY_DEFAULTS: &[&str] = &[
    ".*",
    "*.db",
    "*.db-shm",
    "*.db-wal",
    "config.json",
    ".git",
    ".svn",
    "__pycache__",
    "*.pyc",
    "*.pyo",
    "*.pyd",
    ".pytest_cache",
    ".coverage",
    "*.egg-info",
    ".tox",
    ".mypy_cache",
    ".ruff_cache",
    ".venv",
    "venv",
    "env",
    ".env",
    "node_modules",
    "build",
    "dist",
    ".cache",
    ".idea",
    ".vscode",
    ".DS_Store",
    "Thumbs.db",
    "desktop.ini",
    ".obsidian",
    "*.tmp",
    "*.swp",
    "*.swo",
    "*~",
];

/// The project's `.gitignore` at its root, which Basic Memory applies too.
pub const GITIGNORE: &str = ".gitignore";

/// The user's global ignore file, as Basic Memory has it: `.bmignore` in its folder
/// (`$BASIC_MEMORY_CONFIG_DIR`, else `~/.basic-memory`).
pub fn global_ignore_files() -> Vec<PathBuf> {
    crate::basic_memory::config_dir().map(|d| d.join(BMIGNORE)).into_iter().collect()
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
        // Every rule in force, and where it came from: what a stat-cache listing was
        // filtered by (see `digest`).
        let mut h = blake3::Hasher::new();
        for rule in BUILTIN_RULES {
            h.update(rule.as_bytes()).update(b"\n");
        }
        if let [global, ..] = global_files
            && !global_files.iter().any(|f| f.exists())
        {
            let source =
                PathBuf::from(format!("Basic Memory's defaults ({} does not exist)", global.display()));
            h.update(b"\0defaults\0");
            for rule in BASIC_MEMORY_DEFAULTS {
                h.update(rule.as_bytes()).update(b"\n");
                u.add_line(Some(source.clone()), rule)
                    .map_err(|e| IgnoreError { path: source.clone(), message: e.to_string() })?;
            }
        }
        let mut files: Vec<PathBuf> = global_files.to_vec();
        files.push(root.join(BMIGNORE));
        files.push(root.join(GITIGNORE));
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

    /// A filter answering [`matched_with_parents`](Self::matched_with_parents) for many
    /// files, each folder matched once in a row (a listing's paths share their folders).
    pub fn path_filter(&self) -> PathFilter<'_> {
        PathFilter { rules: self, last: std::cell::RefCell::default() }
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

/// Whether files are ignored, themselves or by a parent folder (see
/// [`IgnoreRules::path_filter`]). It remembers the last folder's answer.
pub struct PathFilter<'r> {
    rules: &'r IgnoreRules,
    last: std::cell::RefCell<Option<(String, bool)>>,
}

impl PathFilter<'_> {
    /// Whether the file at `rel` is ignored: what `matched_with_parents(rel, false)` says.
    pub fn ignored(&self, rel: &str) -> bool {
        // Only a path of plain segments splits into its folder and name the same way.
        let plain = !rel.starts_with('/') && !rel.ends_with('/') && !rel.contains("//");
        let Some((dir, _)) = rel.rsplit_once('/').filter(|_| plain) else {
            return self.rules.matched_with_parents(rel, false).is_some();
        };
        let mut last = self.last.borrow_mut();
        let dir_ignored = match &*last {
            Some((d, ignored)) if d == dir => *ignored,
            _ => {
                let ignored = self.rules.matched_with_parents(dir, true).is_some();
                *last = Some((dir.to_owned(), ignored));
                ignored
            }
        };
        dir_ignored || self.rules.matched(rel, false).is_some()
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
    fn the_path_filter_answers_as_matched_with_parents() {
        let (_d, r) = rules(Some("drafts/\n*.pdf\nsub/keep/\n/top.md\n"));
        let f = r.path_filter();
        let paths = [
            "a.md",
            "top.md",
            "x/top.md",
            "drafts",
            "drafts/a.md",
            "drafts/b/c.md",
            "x/drafts/y.md",
            "x/y.md",
            "x/y.pdf",
            "sub/keep/a.md",
            "sub/keep/b/c.md",
            "sub/other.md",
            "sub/keep",
            ".git/config",
            "a/node_modules/x/y.js",
            "a/node_modules/x/z.js",
            "a//b.md",
            "/a.md",
            "a/",
            "",
            "x/y.md",
        ];
        // In order, shuffled and repeated: the remembered folder never changes an answer.
        for p in paths.iter().chain(paths.iter().rev()).chain(paths.iter()) {
            assert_eq!(f.ignored(p), r.matched_with_parents(p, false).is_some(), "{p:?}");
        }
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
