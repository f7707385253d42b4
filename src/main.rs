//! The `bmsync` command: parses arguments, prints, and picks exit codes. All the work is
//! in the library.
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bmsync::object::{Commit, CommitRef, ManifestRef, TreeRef};
use bmsync::{InitOptions, ObjectHasher, ObjectId, ObjectKind, Repo, RepoError, StoreError};
use clap::{Parser, Subcommand};
use serde_json::json;

/// Team-safe, Git-style two-way sync between a folder of notes and a bucket.
#[derive(Parser, Debug)]
#[command(name = "bmsync", version, about, propagate_version = true)]
struct Cli {
    /// Run as if started in DIR.
    #[arg(short = 'C', value_name = "DIR", global = true)]
    dir: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

/// Options every sync-like command takes.
#[derive(clap::Args, Debug, Clone, Copy)]
struct SyncArgs {
    /// Allow up to N deletions (default: at most half of the last sync's files).
    #[arg(long, value_name = "N")]
    max_delete: Option<usize>,
    /// Accept an empty remote as "everything was deleted there" (otherwise refused as a
    /// likely wrong prefix or failed listing).
    #[arg(long)]
    allow_empty_remote: bool,
    /// Go on with a bucket that ignores conditional PUTs, accepting that a teammate's
    /// concurrent write can be silently overwritten (only for a folder you alone sync).
    /// Recorded for this remote; every sync warns.
    #[arg(long)]
    accept_lost_updates: bool,
}

/// How an applying command (sync, push, pull) waits for another one on the folder.
#[derive(clap::Args, Debug, Clone, Copy)]
struct WaitArgs {
    /// Wait up to SECS for another sync, push or pull on this folder to finish (default
    /// 60), then give up with exit 1.
    #[arg(long, value_name = "SECS")]
    lock_wait: Option<u64>,
}

impl WaitArgs {
    fn duration(self) -> std::time::Duration {
        self.lock_wait.map_or(bmsync::apply::DEFAULT_LOCK_WAIT, std::time::Duration::from_secs)
    }

    /// Opens the folder holding its sync lock, saying so when it has to wait.
    fn open(self, dir: &Path) -> Result<Repo, Failure> {
        let wait = self.duration();
        Ok(Repo::open_locked(dir, wait, &mut |pid| {
            let who = pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
            say(&format!(
                "waiting for another bmsync sync on this folder{who} to finish (up to {} s)...",
                wait.as_secs()
            ));
        })?)
    }
}

/// Options of push and pull.
#[derive(clap::Args, Debug, Clone, Copy)]
struct OneWayArgs {
    /// Also carry deletions to the receiving side.
    #[arg(long)]
    delete: bool,
    /// Resolve conflicts: keep-local, keep-remote, or keep-both (a `conflict` copy).
    #[arg(long, value_enum, value_name = "HOW")]
    on_conflict: Option<OnConflictArg>,
}

/// The flag's values (`keep-local`, ...) come from these names.
#[allow(clippy::enum_variant_names)]
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
enum OnConflictArg {
    KeepLocal,
    KeepRemote,
    KeepBoth,
}

impl From<OnConflictArg> for bmsync::apply::OnConflict {
    fn from(a: OnConflictArg) -> Self {
        match a {
            OnConflictArg::KeepLocal => Self::KeepLocal,
            OnConflictArg::KeepRemote => Self::KeepRemote,
            OnConflictArg::KeepBoth => Self::KeepBoth,
        }
    }
}

impl SyncArgs {
    fn options(self) -> bmsync::apply::SyncOptions {
        bmsync::apply::SyncOptions {
            max_delete: self.max_delete,
            allow_empty_remote: self.allow_empty_remote,
            accept_lost_updates: self.accept_lost_updates,
            ..Default::default()
        }
    }
}

#[derive(Subcommand, Debug)]
enum RemoteCommand {
    /// Show the remote, what it guarantees (as last probed), and its latest snapshot.
    Show {
        /// Probe the remote's guarantees again now (writes and removes one private object).
        #[arg(long)]
        probe: bool,
    },
    /// Point the folder at another remote or endpoint, and probe it. A new URL resets the
    /// sync base: the next sync deletes and overwrites nothing, like a first sync.
    SetUrl {
        #[arg(help = "s3://BUCKET[/PREFIX] or file:///ABSOLUTE/PATH")]
        url: String,
        /// S3 endpoint (default: keep the current one; '' clears it).
        #[arg(long, value_name = "HTTP_URL")]
        endpoint: Option<String>,
        /// Create a missing file:// folder.
        #[arg(long)]
        create: bool,
    },
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Make this folder a bmsync folder (creates .bmsync/ and a client id).
    Init {
        #[arg(
            long,
            value_name = "URL",
            help = "Remote to sync with: s3://BUCKET[/PREFIX] or file:///ABSOLUTE/PATH"
        )]
        remote: Option<String>,
        /// Name this client (default: generated, stable once chosen).
        #[arg(long, value_name = "NAME")]
        client_id: Option<String>,
        #[arg(
            long,
            value_name = "HTTP_URL",
            help = "S3 endpoint (default: AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, else AWS)"
        )]
        endpoint: Option<String>,
        /// Create the file:// remote folder if it does not exist (otherwise it must).
        #[arg(long)]
        create: bool,
        /// Accept a bucket that ignores conditional PUTs (a teammate's concurrent write
        /// can then be silently overwritten): only for a folder you alone sync.
        #[arg(long)]
        accept_lost_updates: bool,
    },
    /// Sync the folder with its remote: scan, read the remote at one snapshot, plan,
    /// apply under preconditions, and record the new base.
    Sync {
        #[command(flatten)]
        args: SyncArgs,
        #[command(flatten)]
        wait: WaitArgs,
        /// Resolve conflicts one way instead of keeping both versions.
        #[arg(long, value_enum, value_name = "HOW")]
        on_conflict: Option<OnConflictArg>,
    },
    /// Send local changes to the remote only. Remote objects are deleted only with
    /// `--delete`; conflicts stop the push unless `--on-conflict` says how to resolve
    /// them.
    Push {
        #[command(flatten)]
        args: SyncArgs,
        #[command(flatten)]
        wait: WaitArgs,
        #[command(flatten)]
        one_way: OneWayArgs,
    },
    /// Bring remote changes into the folder only. Local files are deleted (to the trash)
    /// only with `--delete`; conflicts stop the pull unless `--on-conflict` says how to
    /// resolve them.
    Pull {
        #[command(flatten)]
        args: SyncArgs,
        #[command(flatten)]
        wait: WaitArgs,
        #[command(flatten)]
        one_way: OneWayArgs,
    },
    /// Show what a sync would do, writing nothing anywhere: not a byte of the folder, its
    /// state, or the bucket (which is read live, without taking a snapshot).
    Plan {
        #[command(flatten)]
        args: SyncArgs,
    },
    /// Inspect the remote.
    Remote {
        #[command(subcommand)]
        command: RemoteCommand,
    },
    /// Print an object from the store, verified against its id.
    CatObject {
        /// Object id, abbreviated id (4+ hex), or ref name.
        rev: String,
        /// Print only the object's kind.
        #[arg(short = 't', conflicts_with = "size")]
        kind: bool,
        /// Print only the object's size in bytes.
        #[arg(short = 's')]
        size: bool,
    },
    /// Show local changes since the last sync base.
    Status,
    /// Record the folder as a local commit.
    Commit {
        /// Commit message.
        #[arg(short = 'm', long, default_value = "")]
        message: String,
    },
    /// Show changes between two revisions (default: base and the folder now).
    ///
    /// Revisions: base, head, local (the folder now), or a commit or tree id (4+ hex).
    Diff {
        /// Old side (default: base).
        from: Option<String>,
        /// New side (default: local).
        to: Option<String>,
        /// Only paths under these.
        #[arg(last = true)]
        paths: Vec<String>,
        /// Per-file counts of added and removed lines instead of patches.
        #[arg(long, conflicts_with = "name_status")]
        stat: bool,
        /// One line per path with its status letter.
        #[arg(long)]
        name_status: bool,
    },
    /// List commits, newest first.
    Log {
        /// Start here (default: head, else base).
        rev: Option<String>,
        /// Show at most N commits.
        #[arg(short = 'n', long, default_value_t = 50)]
        max_count: usize,
    },
    /// Show a commit (with its changes), a tree, or a file: REV or REV:PATH.
    Show {
        /// REV or REV:PATH.
        spec: String,
    },
    /// Explain whether, and by which rule, paths are ignored.
    CheckIgnore {
        /// Paths relative to the folder.
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Move a ref (plumbing), optionally only if it still points at OLD.
    UpdateRef {
        /// Ref name, e.g. head or base.
        name: String,
        /// New target: a revision, or `none` to delete the ref.
        new: String,
        /// Expected current target (`none`: must not exist). Without it, any value.
        old: Option<String>,
    },
    /// Print the object id of files (for blobs, the same hex as `b3sum`).
    HashObject {
        /// Files to hash.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Also write the blobs into the store.
        #[arg(short = 'w')]
        write: bool,
    },
}

/// A failure and the exit code it maps to.
#[derive(Debug)]
pub(crate) struct Failure {
    code: u8,
    message: String,
    hint: Option<&'static str>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

impl From<RepoError> for Failure {
    fn from(e: RepoError) -> Self {
        let hint = match &e {
            RepoError::NotInitialized(_) => Some("run `bmsync init` in the folder, or pass -C DIR"),
            RepoError::Scan(bmsync::worktree::ScanError::Io { .. }) => {
                Some("nothing was recorded; fix the file's permissions (or ignore it in .bmignore) and retry")
            }
            RepoError::Store(StoreError::NewerFormat { .. }) => Some("install a newer bmsync"),
            RepoError::LostUpdates { .. } => Some(LOST_UPDATES_HINT),
            RepoError::RemoteFailed(e) => remote_hint(e),
            RepoError::Busy { .. } => {
                Some("nothing was changed; wait longer with --lock-wait SECS, or run again later")
            }
            _ => None,
        };
        Self { code: 1, message: e.to_string(), hint }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        RepoError::from(e).into()
    }
}

const LOST_UPDATES_HINT: &str = "use a bucket that honours conditional writes (Tigris, AWS S3, MinIO), \
or, for a folder only you sync, pass --accept-lost-updates";

const SET_URL_HINT: &str = "fix the remote with `bmsync remote set-url URL [--endpoint URL]`";

fn remote_hint(e: &bmsync::remote::RemoteError) -> Option<&'static str> {
    use bmsync::remote::RemoteError as E;
    match e {
        E::NoSuchBucket { .. } | E::NotARemote { .. } | E::Unreachable { .. } => Some(SET_URL_HINT),
        E::MissingFolder { .. } => {
            Some("mount the drive, or point the folder elsewhere with `bmsync remote set-url URL`")
        }
        E::Credentials { .. } | E::Permission { .. } => {
            Some("check the credentials in the AWS environment (keys, profile) and the bucket policy")
        }
        E::DiskFull { .. } => Some("free some space on the remote's disk, then sync again"),
        _ => None,
    }
}

/// A failed write to stdout. A closed pipe (`bmsync log | head`) is the reader saying it
/// has enough: the command ends quietly with exit 0, as ripgrep does. Anything else is an
/// error.
fn output_failure(e: &std::io::Error) -> Failure {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Failure { code: 0, message: String::new(), hint: None }
    } else {
        Failure { code: 1, message: format!("writing output: {e}"), hint: None }
    }
}

/// Writes one line to stderr. A closed stderr is ignored: there is no one left to tell
/// (`eprintln!` would panic instead).
fn say(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

fn io_failure(path: &Path, e: &std::io::Error) -> Failure {
    Failure { code: 1, message: format!("{}: {e}", path.display()), hint: None }
}

mod worktree_cmds;

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

/// The text summary of a sync: what moved, then every conflict, race and warning.
fn summary_text(remote_url: &str, s: &bmsync::apply::SyncSummary, secs: f64) -> String {
    let snap = s.snapshot.map(|v| format!(" at snapshot {v}")).unwrap_or_default();
    let mut text = format!(
        "Synced with {}{snap}: {} uploaded, {} downloaded, {} deleted here, {} deleted there, {} conflicts ({} bytes up, {} down, {secs:.2} s)\n",
        remote_url,
        s.uploaded,
        s.downloaded,
        s.deleted_local,
        s.deleted_remote,
        s.conflicts.len(),
        s.bytes_up,
        s.bytes_down
    );
    for c in &s.conflicts {
        let copy = c.local_copy.as_deref().map(|p| format!("; your version is in {p}")).unwrap_or_default();
        let _ = writeln!(text, "conflict: {} ({:?}){copy}", c.path, c.reason);
    }
    if let Some(r) = &s.recovered {
        let _ = writeln!(
            text,
            "recovered from an interrupted sync: {} operations unfinished, {} temporary files removed, {} uploads aborted",
            r.unfinished, r.temp_files, r.uploads_aborted
        );
    }
    for p in &s.resolved {
        let _ = writeln!(text, "conflict resolved as asked: {p}");
    }
    if s.held_back > 0 {
        let _ = writeln!(text, "{} changes left for the other direction", s.held_back);
    }
    for p in &s.changed_after_apply {
        let _ = writeln!(text, "changed by a teammate right after this sync, left for next time: {p}");
    }
    for p in &s.raced {
        let _ = writeln!(text, "changed during the sync, left for next time: {p}");
    }
    for k in &s.local_skipped {
        let _ = writeln!(text, "warning: skipped {}: {}", k.path, k.reason);
    }
    for c in &s.collisions {
        let _ = writeln!(text, "{}", worktree_cmds::collision_line(c));
    }
    for k in &s.remote_skipped {
        let _ = writeln!(text, "warning: remote key {:?} skipped: {}", k.key, k.reason);
    }
    text
}

fn sync_cmd(
    out: &mut dyn Write,
    json: bool,
    repo: &Repo,
    opts: &bmsync::apply::SyncOptions,
) -> Result<(), Failure> {
    let started = std::time::Instant::now();
    let remote = repo.open_remote()?;
    let bar = Bar::new(!json && std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let s = bmsync::apply::sync_with_progress(repo, remote.as_ref(), opts, &bar).map_err(|e| match e {
        bmsync::apply::SyncError::LostUpdates { .. } => {
            Failure { code: 1, message: e.to_string(), hint: Some(LOST_UPDATES_HINT) }
        }
        bmsync::apply::SyncError::Remote(ref r) if remote_hint(r).is_some() => {
            Failure { code: 1, message: e.to_string(), hint: remote_hint(r) }
        }
        bmsync::apply::SyncError::Conflicts { .. } => Failure {
            code: 3,
            message: e.to_string(),
            hint: Some(
                "resolve them with --on-conflict keep-local|keep-remote|keep-both, or run `bmsync sync`",
            ),
        },
        e => Failure {
            code: 1,
            message: e.to_string(),
            hint: Some("nothing unsafe was done; what succeeded is recorded"),
        },
    })?;
    for w in &s.warnings {
        say(&format!("warning: {w}"));
    }
    let secs = started.elapsed().as_secs_f64();
    let written = if json {
        let mut v = serde_json::to_value(&s).expect("summaries serialise");
        v["seconds"] = json!(secs);
        v["remote"] = json!(remote.url());
        writeln!(out, "{v}")
    } else {
        out.write_all(summary_text(&remote.url(), &s, secs).as_bytes())
    };
    written.map_err(|e| output_failure(&e))?;
    if !s.raced.is_empty() {
        return Err(Failure {
            code: 1,
            message: format!(
                "{} paths kept changing during {} rounds and are not synced yet",
                s.raced.len(),
                s.rounds
            ),
            hint: Some("run `bmsync sync` again when they are quiet"),
        });
    }
    if s.conflicts.is_empty() {
        Ok(())
    } else {
        Err(Failure {
            code: 3,
            message: format!("{} conflicts: both versions were kept", s.conflicts.len()),
            hint: None,
        })
    }
}

/// A progress bar on stderr, drawn only on a terminal and never with `--json`: files
/// done of the round's operations, and bytes moved of the bytes to move.
struct Bar {
    shown: Option<indicatif::ProgressBar>,
    bytes: std::sync::atomic::AtomicU64,
    total: std::sync::atomic::AtomicU64,
}

impl Bar {
    fn new(visible: bool) -> Self {
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

fn plan_cmd(
    out: &mut dyn Write,
    json: bool,
    repo: &Repo,
    opts: &bmsync::apply::SyncOptions,
) -> Result<(), Failure> {
    let remote = repo.open_remote_read_only()?;
    let p = bmsync::apply::make_plan(repo, remote.as_ref(), opts, true).map_err(|e| Failure {
        code: 1,
        message: e.to_string(),
        hint: Some("nothing was changed"),
    })?;
    let written = if json {
        writeln!(out, "{}", serde_json::to_string(&p.plan).expect("plans serialise"))
    } else {
        let mut counts: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
        for op in &p.plan.ops {
            *counts.entry(format!("{:?}", op.action)).or_default() += 1;
        }
        let mut text = format!(
            "Plan against {} ({:?} mode): {} operations\n",
            remote.url(),
            p.plan.mode,
            p.plan.ops.len()
        );
        for (action, n) in &counts {
            let _ = writeln!(text, "  {n:>6}  {action}");
        }
        if !p.plan.ops.is_empty() {
            let _ = writeln!(text, "\n{:<14} {:<20} path", "action", "reason");
        }
        for op in &p.plan.ops {
            let from = op.from.as_deref().map(|f| format!(" (from {f})")).unwrap_or_default();
            let _ = writeln!(
                text,
                "{:<14} {:<20} {}{from}",
                format!("{:?}", op.action),
                format!("{:?}", op.reason),
                op.path
            );
        }
        out.write_all(text.as_bytes())
    };
    written.map_err(|e| output_failure(&e))
}

fn remote_show(out: &mut dyn Write, json: bool, repo: &Repo, probe: bool) -> std::io::Result<()> {
    let fail = |e: RepoError| std::io::Error::other(Failure::from(e));
    if probe {
        repo.reprobe().map_err(fail)?;
    }
    let remote = repo.connect_remote().map_err(fail)?;
    let record = repo.fresh_probe_record().map_err(fail)?;
    let caps = remote.capabilities();
    let latest = if caps.snapshots {
        let snaps =
            remote.snapshots().map_err(|e| std::io::Error::other(Failure::from(RepoError::from(e))))?;
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
    if json {
        let v = json!({ "remote": remote.url(), "endpoint": repo.endpoint(), "capabilities": caps,
                        "probe": record, "probed_at": probed_at, "latest_snapshot": latest });
        return writeln!(out, "{v}");
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

/// What a damaged store's error says (`StoreError::Damaged`, `StoreError::Corrupt`),
/// however deep in other errors it is wrapped.
const DAMAGED: &str = "the local state is damaged";

/// What to do about a damaged store.
const DAMAGED_HINT: &str = "your notes are untouched. Move the state aside (`mv .bmsync .bmsync.damaged`) and run \
`bmsync init --remote URL` again with the same remote: the next sync is then a union that deletes nothing";

fn main() -> ExitCode {
    // redb can panic on a damaged page; the store turns that into an error (exit 1 with
    // a hint), so the panic's own message must not reach the terminal.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !bmsync::store::panic_is_contained() {
            default_hook(info);
        }
    }));
    let cli = Cli::parse();
    // Like `git -C`: later relative paths are relative to DIR.
    if let Some(dir) = &cli.dir
        && let Err(e) = std::env::set_current_dir(dir)
    {
        say(&format!("error: cannot change to {}: {e}", dir.display()));
        return ExitCode::from(1);
    }
    let dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let code = run_and_report(&cli, &dir);
    // For the benchmark harness: the process's peak memory, from the kernel.
    if std::env::var_os("BMSYNC_REPORT_PEAK_RSS").is_some() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        if let Some(kib) = status.lines().find_map(|l| l.strip_prefix("VmHWM:")) {
            say(&format!("peak_rss_kib: {}", kib.trim().trim_end_matches("kB").trim()));
        }
    }
    code
}

fn run_and_report(cli: &Cli, dir: &Path) -> ExitCode {
    match run(cli, dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            // An empty message is a quiet end (a closed stdout).
            if !f.message.is_empty() {
                say(&format!("error: {}", f.message));
                let hint = if f.message.contains(DAMAGED) { Some(DAMAGED_HINT) } else { f.hint };
                if let Some(h) = hint {
                    say(&format!("hint: {h}"));
                }
            }
            ExitCode::from(f.code)
        }
    }
}

#[allow(clippy::too_many_lines)] // one arm per command, each a few lines
fn run(cli: &Cli, dir: &Path) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    let res = match &cli.command {
        Command::Init { remote, client_id, endpoint, create, accept_lost_updates } => {
            let opts = InitOptions {
                remote: remote.clone(),
                client_id: client_id.clone(),
                endpoint: endpoint.clone(),
                create: *create,
                accept_lost_updates: *accept_lost_updates,
            };
            let (repo, report) = Repo::init_with_report(dir, &opts)?;
            let remote = repo.remote().map(ToString::to_string);
            if cli.json {
                let v = json!({ "root": dir, "client_id": repo.client_id(), "remote": remote,
                                "probe": report.probe,
                                "remote_error": report.remote_error.as_ref().map(ToString::to_string) });
                writeln!(out, "{v}")
            } else {
                writeln!(
                    out,
                    "Initialised bmsync in {} (client id {}, remote {})",
                    dir.join(bmsync::repo::STATE_DIR).display(),
                    repo.client_id(),
                    remote.as_deref().unwrap_or("none yet")
                )
                .map_err(|e| output_failure(&e))?;
                report_probe(report.probe.as_ref(), report.remote_error.as_ref(), true);
                Ok(())
            }
        }
        Command::Sync { args, wait, on_conflict } => {
            let opts =
                bmsync::apply::SyncOptions { on_conflict: on_conflict.map(Into::into), ..args.options() };
            return sync_cmd(&mut out, cli.json, &wait.open(dir)?, &opts);
        }
        Command::Push { args, wait, one_way } | Command::Pull { args, wait, one_way } => {
            let direction = if matches!(cli.command, Command::Push { .. }) {
                bmsync::apply::Direction::Push
            } else {
                bmsync::apply::Direction::Pull
            };
            let opts = bmsync::apply::SyncOptions {
                direction,
                delete: one_way.delete,
                on_conflict: one_way.on_conflict.map(Into::into),
                ..args.options()
            };
            return sync_cmd(&mut out, cli.json, &wait.open(dir)?, &opts);
        }
        Command::Plan { args } => {
            return plan_cmd(&mut out, cli.json, &Repo::open_read_only(dir)?, &args.options());
        }
        Command::Remote { command: RemoteCommand::Show { probe } } => {
            remote_show(&mut out, cli.json, &Repo::open(dir)?, *probe)
        }
        Command::Remote { command: RemoteCommand::SetUrl { url, endpoint, create } } => {
            let mut repo = Repo::open(dir)?;
            let r = repo.set_remote(url, endpoint.as_deref(), *create)?;
            if cli.json {
                let v = json!({ "remote": repo.remote().map(ToString::to_string), "endpoint": repo.endpoint(),
                                "base_reset": r.base_reset, "probe": r.probe,
                                "remote_error": r.remote_error.as_ref().map(ToString::to_string) });
                writeln!(out, "{v}")
            } else {
                let reset =
                    if r.base_reset { "; the next sync is a first sync (deletes nothing)" } else { "" };
                writeln!(
                    out,
                    "Remote set to {}{reset}",
                    repo.remote().map(ToString::to_string).unwrap_or_default()
                )
                .map_err(|e| output_failure(&e))?;
                report_probe(r.probe.as_ref(), r.remote_error.as_ref(), repo.lost_updates_accepted()?);
                Ok(())
            }
        }
        Command::HashObject { files, write } => {
            let repo = if *write { Some(Repo::open(dir)?) } else { None };
            let mut rows = Vec::new();
            for f in files {
                let (id, size) = hash_file(f)?;
                if let Some(repo) = &repo {
                    let mut file = std::fs::File::open(f).map_err(|e| io_failure(f, &e))?;
                    let batch = repo.store().batch()?;
                    batch.put_blob_from_reader(id, &mut file)?;
                    batch.commit()?;
                }
                rows.push((f, id, size));
            }
            if cli.json {
                let v: Vec<_> =
                    rows.iter().map(|(f, id, size)| json!({ "path": f, "id": id, "size": size })).collect();
                writeln!(out, "{}", serde_json::Value::Array(v))
            } else {
                rows.iter().try_for_each(|(_, id, _)| writeln!(out, "{id}"))
            }
        }
        Command::Status => worktree_cmds::status(&mut out, cli.json, &Repo::open(dir)?),
        Command::Commit { message } => worktree_cmds::commit(&mut out, cli.json, &Repo::open(dir)?, message),
        Command::Diff { from, to, paths, stat, name_status } => {
            let repo = Repo::open(dir)?;
            let mode = if *stat {
                worktree_cmds::DiffMode::Stat
            } else if *name_status {
                worktree_cmds::DiffMode::NameStatus
            } else {
                worktree_cmds::DiffMode::Patch
            };
            let from = from.as_deref().unwrap_or(bmsync::repo::REF_BASE);
            let to = to.as_deref().unwrap_or(bmsync::repo::REV_LOCAL);
            worktree_cmds::diff(&mut out, cli.json, &repo, from, to, paths, mode)
        }
        Command::Log { rev, max_count } => {
            let repo = Repo::open(dir)?;
            let start = rev.as_deref().map(|r| repo.resolve(r)).transpose()?;
            worktree_cmds::log(&mut out, cli.json, &repo, start, *max_count)
        }
        Command::Show { spec } => worktree_cmds::show(&mut out, cli.json, &Repo::open(dir)?, spec),
        Command::CheckIgnore { paths } => worktree_cmds::check_ignore(&mut out, cli.json, dir, paths),
        Command::UpdateRef { name, new, old } => {
            let repo = Repo::open(dir)?;
            let target = |r: &str| if r == "none" { Ok(None) } else { repo.resolve(r).map(Some) };
            let new = target(new)?;
            let old = match old {
                Some(o) => target(o)?,
                None => repo.store().get_ref(name)?,
            };
            repo.store().update_ref(name, old, new)?;
            if cli.json {
                writeln!(out, "{}", json!({ "ref": name, "old": old, "new": new }))
            } else {
                Ok(())
            }
        }
        Command::CatObject { rev, kind, size } => {
            let repo = Repo::open(dir)?;
            let id = repo.resolve(rev)?;
            if *kind || *size {
                let (k, n) = repo.store().stat(&id)?.ok_or(StoreError::NotFound { id })?;
                let v = if *kind { k.to_string() } else { n.to_string() };
                if cli.json {
                    writeln!(out, "{}", json!({ "id": id, "kind": k, "size": n }))
                } else {
                    writeln!(out, "{v}")
                }
            } else {
                let (k, bytes) = repo.store().get(&id)?;
                print_object(&mut out, cli.json, id, k, &bytes)
            }
        }
    };
    res.map_err(|e| match e.downcast::<Failure>() {
        Ok(f) => f,
        Err(e) => output_failure(&e),
    })
}

fn hash_file(path: &Path) -> Result<(ObjectId, u64), Failure> {
    let file = std::fs::File::open(path).map_err(|e| io_failure(path, &e))?;
    let mut h = ObjectHasher::new(ObjectKind::Blob);
    let mut reader = std::io::BufReader::with_capacity(1 << 16, file);
    let mut size = 0u64;
    loop {
        let buf = std::io::BufRead::fill_buf(&mut reader).map_err(|e| io_failure(path, &e))?;
        if buf.is_empty() {
            break;
        }
        h.update(buf);
        let n = buf.len();
        size += n as u64;
        std::io::BufRead::consume(&mut reader, n);
    }
    Ok((h.finalize(), size))
}

fn print_object(
    out: &mut dyn Write,
    json: bool,
    id: ObjectId,
    kind: ObjectKind,
    bytes: &[u8],
) -> std::io::Result<()> {
    // The store verified and decoded-checked these bytes on the way in and out.
    let corrupt = |e: bmsync::object::DecodeError| std::io::Error::other(format!("object {id}: {e}"));
    match kind {
        ObjectKind::Blob if !json => out.write_all(bytes),
        ObjectKind::Blob => {
            let text = std::str::from_utf8(bytes).ok();
            writeln!(out, "{}", json!({ "id": id, "kind": kind, "size": bytes.len(), "text": text }))
        }
        ObjectKind::Tree => {
            let tree = TreeRef::decode(bytes).map_err(corrupt)?.to_owned();
            if json {
                writeln!(out, "{}", json!({ "id": id, "kind": kind, "entries": tree.entries() }))
            } else {
                tree.entries().iter().try_for_each(|e| {
                    writeln!(out, "{:<10} {} {:>10}\t{}", e.kind.as_str(), e.id, e.size, e.name)
                })
            }
        }
        ObjectKind::Commit => {
            let c: Commit = CommitRef::decode(bytes).map_err(corrupt)?.to_owned();
            if json {
                writeln!(out, "{}", json!({ "id": id, "kind": kind, "commit": c }))
            } else {
                writeln!(out, "tree {}", c.tree)?;
                c.parents.iter().try_for_each(|p| writeln!(out, "parent {p}"))?;
                writeln!(out, "client {}", c.client_id)?;
                writeln!(out, "timestamp {}", c.timestamp_ns)?;
                if let Some(b) = &c.baseline {
                    writeln!(out, "remote {}", b.remote)?;
                    if let Some(v) = b.snapshot {
                        writeln!(out, "snapshot {v}")?;
                    }
                    writeln!(out, "manifest {}", b.manifest)?;
                }
                writeln!(out)?;
                writeln!(out, "{}", c.message)
            }
        }
        ObjectKind::Manifest => {
            let m = ManifestRef::decode(bytes).map_err(corrupt)?.to_owned();
            if json {
                writeln!(out, "{}", json!({ "id": id, "kind": kind, "entries": m.entries() }))
            } else {
                m.entries().iter().try_for_each(|e| {
                    let content = e.content.map_or_else(|| "-".to_owned(), |c| c.to_hex());
                    writeln!(out, "{content} {} {:>10} {}\t{}", e.etag, e.size, e.key, e.path)
                })
            }
        }
    }
}
