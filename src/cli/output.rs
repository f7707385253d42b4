//! Failures, exit codes, hints, stdout and stderr, and the progress bar.

use std::borrow::Cow;
use std::io::Write;
use std::process::ExitCode;

use bmsync::inspect::InspectError;
use bmsync::{RepoError, StoreError};

/// Exit code of a failure.
pub(crate) const EXIT_FAILURE: u8 = 1;
/// Exit code of conflicts that stopped or were kept (usage errors exit 2, from clap).
pub(crate) const EXIT_CONFLICTS: u8 = 3;

/// Why a command failed, and the exit code and hint that go with it. Every command
/// returns one; [`report`] prints it.
#[derive(Debug)]
pub(crate) struct Failure {
    /// The exit code.
    pub(crate) code: u8,
    /// A stable name of what went wrong, for `--json` (`unreachable`, `conflicts`...).
    pub(crate) kind: &'static str,
    /// What went wrong; empty for a quiet end (a closed stdout).
    pub(crate) message: String,
    /// What to do about it.
    pub(crate) hint: Option<Cow<'static, str>>,
    /// An outcome the command's output already told (open conflicts after a sync, exit
    /// 3): said as a note, not as an error, and no JSON error object follows.
    pub(crate) told: bool,
}

impl Failure {
    /// A failure with exit code 1.
    pub(crate) fn new(message: impl Into<String>, hint: Option<&'static str>) -> Self {
        Self {
            code: EXIT_FAILURE,
            kind: "error",
            message: message.into(),
            hint: hint.map(Cow::Borrowed),
            told: false,
        }
    }

    /// The same failure with another kind.
    pub(crate) fn kind(self, kind: &'static str) -> Self {
        Self { kind, ..self }
    }

    /// The same failure with another exit code.
    pub(crate) fn code(self, code: u8) -> Self {
        Self { code, ..self }
    }

    /// The same failure with a hint made for it.
    pub(crate) fn hint(self, hint: String) -> Self {
        Self { hint: Some(Cow::Owned(hint)), ..self }
    }

    /// An end with `code` and nothing more to say (the output said it all).
    pub(crate) fn quiet(code: u8) -> Self {
        Self { code, kind: "quiet", message: String::new(), hint: None, told: true }
    }

    /// An outcome the output already told, with exit `code` and a closing note.
    pub(crate) fn told(code: u8, kind: &'static str, note: String, hint: Option<&'static str>) -> Self {
        Self { code, kind, message: note, hint: hint.map(Cow::Borrowed), told: true }
    }
}

impl From<RepoError> for Failure {
    fn from(e: RepoError) -> Self {
        let hint = repo_hint(&e);
        let kind = repo_kind(&e);
        Self::new(e.to_string(), hint).kind(kind)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        RepoError::from(e).into()
    }
}

impl From<InspectError> for Failure {
    fn from(e: InspectError) -> Self {
        match e {
            InspectError::Repo(e) => e.into(),
            InspectError::Remote(e) => remote_failure(&e),
            e => Self::new(e.to_string(), None),
        }
    }
}

/// A remote error as a failure: its one line, its hint and its kind.
pub(crate) fn remote_failure(e: &bmsync::remote::RemoteError) -> Failure {
    Failure::new(e.to_string(), remote_hint(e)).kind(e.kind())
}

/// The `--json` kind of a repository error.
fn repo_kind(e: &RepoError) -> &'static str {
    match e {
        RepoError::NotInitialized(_) => "not_a_bmsync_folder",
        RepoError::NoRemote => "no_remote",
        RepoError::RemoteFailed(r) => r.kind(),
        RepoError::Busy { .. } => "busy",
        RepoError::LostUpdates { .. } => "lost_updates",
        RepoError::Store(_) => "store",
        RepoError::Scan(_) => "scan",
        _ => "error",
    }
}

/// What to do about a repository error, where something helps.
pub(crate) fn repo_hint(e: &RepoError) -> Option<&'static str> {
    match e {
        RepoError::NotInitialized(_) => Some(
            "run `bmsync init --remote URL` in the folder of your notes (or `--project NAME`), or pass -C DIR",
        ),
        RepoError::Scan(bmsync::worktree::ScanError::Io { .. }) => {
            Some("nothing was recorded; fix the file's permissions (or ignore it in .bmignore) and retry")
        }
        RepoError::NoRemote => Some("run `bmsync init --remote URL` (in a new folder) to set one"),
        RepoError::Store(e) => store_hint(e),
        RepoError::LostUpdates { .. } => Some(LOST_UPDATES_HINT),
        RepoError::RemoteFailed(e) => remote_hint(e),
        RepoError::Busy { .. } => {
            Some("nothing was changed; wait longer with --lock-wait SECS, or run again later")
        }
        _ => None,
    }
}

/// What to do about a store error, where something helps.
fn store_hint(e: &StoreError) -> Option<&'static str> {
    match e {
        StoreError::NewerFormat { .. } => Some("install a newer bmsync"),
        StoreError::Missing { .. } => Some("run `bmsync init` first"),
        StoreError::Open { .. } => Some(
            "your notes are untouched; if the store file is corrupt or truncated, move it aside and run `bmsync init` again",
        ),
        StoreError::NeedsRepair { .. } => Some("run `bmsync status` once, then try again"),
        _ => None,
    }
}

/// What to do about a remote that ignores conditional writes.
pub(crate) const LOST_UPDATES_HINT: &str = "use a bucket that honours conditional writes (Tigris, AWS S3, MinIO), \
or, for a folder only you sync, pass --accept-lost-updates";

const SET_URL_HINT: &str = "fix the remote with `bmsync remote set-url URL [--endpoint URL]`";

/// What to do about a remote error, where something helps.
pub(crate) fn remote_hint(e: &bmsync::remote::RemoteError) -> Option<&'static str> {
    use bmsync::remote::RemoteError as E;
    match e {
        E::NoSuchBucket { .. } | E::NotARemote { .. } | E::Unreachable { .. } => Some(SET_URL_HINT),
        E::MissingFolder { .. } => Some(
            "mount the drive, point the folder elsewhere with `bmsync remote set-url URL`, or make a new remote folder with --create",
        ),
        E::Credentials { .. } | E::Permission { .. } => {
            Some("check the credentials in the AWS environment (keys, profile) and the bucket policy")
        }
        E::NoCredentials { .. } => Some(
            "export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (Tigris: an access key from the console), or set AWS_PROFILE",
        ),
        E::WrongRegion { .. } => {
            Some("set AWS_REGION to the bucket's region, or fix the endpoint with `bmsync remote set-url`")
        }
        E::Transient { .. } => Some("nothing unsafe was done; try again in a moment"),
        E::NeedsRepair { .. } => Some("run `bmsync sync` or `bmsync remote show` once"),
        E::DiskFull { .. } => Some("free some space on the remote's disk, then sync again"),
        E::ReadOnly { .. } => Some(
            "ask for write access to the remote folder (or mount it read-write), or point this folder elsewhere with `bmsync remote set-url URL`",
        ),
        _ => None,
    }
}

/// A failed write to stdout. A closed pipe (`bmsync log | head`) is the reader saying it
/// has enough: the command ends quietly with exit 0, as ripgrep does. Anything else is an
/// error.
fn output_failure(e: &std::io::Error) -> Failure {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Failure::quiet(0)
    } else {
        Failure::new(format!("writing output: {e}"), None)
    }
}

/// A command's stdout, and whether it prints JSON. Its writes fail with a [`Failure`],
/// so `writeln!(out, ...)?` works in a command returning one.
pub(crate) struct Output<'a> {
    w: &'a mut dyn Write,
    /// `--json`: print machine-readable JSON instead of text.
    pub(crate) json: bool,
    /// `-v` given this many times: say more (request counts...).
    pub(crate) verbose: u8,
}

impl<'a> Output<'a> {
    /// Output to `w`.
    pub(crate) fn new(w: &'a mut dyn Write, json: bool, verbose: u8) -> Self {
        Self { w, json, verbose }
    }

    /// What `write!` and `writeln!` call.
    pub(crate) fn write_fmt(&mut self, args: std::fmt::Arguments<'_>) -> Result<(), Failure> {
        self.w.write_fmt(args).map_err(|e| output_failure(&e))
    }

    /// Writes bytes as they are.
    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        self.w.write_all(bytes).map_err(|e| output_failure(&e))
    }

    /// Writes one JSON value on its own line.
    pub(crate) fn json_line(&mut self, v: &serde_json::Value) -> Result<(), Failure> {
        writeln!(self, "{v}")
    }
}

/// Writes one line to stderr. A closed stderr is ignored: there is no one left to tell
/// (`eprintln!` would panic instead).
pub(crate) fn say(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// What a damaged store's error says (`StoreError::Damaged`, `StoreError::Corrupt`),
/// however deep in other errors it is wrapped.
const DAMAGED: &str = "the local state is damaged";

/// What to do about a damaged store.
const DAMAGED_HINT: &str = "your notes are untouched. Move the state aside (`mv .bmsync .bmsync.damaged`) and run \
`bmsync init --remote URL` again with the same remote: the next sync is then a union that deletes nothing";

/// Prints a failure: `error: ...`, then `hint: ...`, on stderr; with `--json`, also an
/// object on stdout (`{"error": {"kind", "message", "hint", "exit_code"}}`). An outcome
/// the output already told is a plain note. Gives the exit code. The one place any
/// command's failure is reported.
pub(crate) fn report(f: &Failure, json: bool) -> ExitCode {
    // An empty message is a quiet end (a closed stdout).
    if !f.message.is_empty() {
        let hint = if f.message.contains(DAMAGED) { Some(DAMAGED_HINT) } else { f.hint.as_deref() };
        if f.told {
            say(&f.message);
        } else {
            say(&format!("error: {}", f.message));
        }
        if let Some(h) = hint {
            say(&format!("hint: {h}"));
        }
        if json && !f.told {
            print_json_error(f.kind, &f.message, hint, f.code);
        }
    }
    ExitCode::from(f.code)
}

/// The `--json` error object on stdout: `{"error": {kind, message, hint, exit_code}}`.
pub(crate) fn print_json_error(kind: &str, message: &str, hint: Option<&str>, code: u8) {
    let v =
        serde_json::json!({ "error": { "kind": kind, "message": message, "hint": hint, "exit_code": code } });
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
}

/// A progress bar on stderr, drawn only on a terminal and never with `--json`: files
/// done of the round's operations, and bytes moved of the bytes to move.
pub(crate) struct Bar {
    shown: Option<indicatif::ProgressBar>,
    bytes: std::sync::atomic::AtomicU64,
    total: std::sync::atomic::AtomicU64,
}

impl Bar {
    pub(crate) fn new(visible: bool) -> Self {
        let bar = visible.then(|| {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} files  {msg}")
                    .expect("a valid template"),
            );
            b
        });
        Self { shown: bar, bytes: 0.into(), total: 0.into() }
    }

    fn bytes_msg(&self) -> String {
        let done = self.bytes.load(std::sync::atomic::Ordering::Relaxed);
        let total = self.total.load(std::sync::atomic::Ordering::Relaxed);
        format!("{} / {}", indicatif::HumanBytes(done), indicatif::HumanBytes(total))
    }
}

impl bmsync::apply::Progress for Bar {
    fn start(&self, ops: u64, bytes: u64) {
        self.bytes.store(0, std::sync::atomic::Ordering::Relaxed);
        self.total.store(bytes, std::sync::atomic::Ordering::Relaxed);
        if let Some(b) = &self.shown {
            b.set_position(0);
            b.set_length(ops);
            b.set_message(self.bytes_msg());
        }
    }

    fn done(&self, _path: &str, bytes: u64) {
        self.bytes.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        if let Some(b) = &self.shown {
            b.inc(1);
            b.set_message(self.bytes_msg());
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.shown {
            b.finish_and_clear();
        }
    }
}
