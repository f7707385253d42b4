//! Arguments: the commands, their flags and their help.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use bmsync::Repo;
use clap::{Parser, Subcommand};

use crate::output::{Failure, say};

/// Team-safe, Git-style two-way sync between a folder of notes and a bucket.
#[derive(Parser, Debug)]
#[command(name = "bmsync", version, about, after_help = EXAMPLES)]
pub(crate) struct Cli {
    /// Run as if started in DIR.
    #[arg(short = 'C', value_name = "DIR", global = true)]
    pub(crate) dir: Option<PathBuf>,
    /// Work on Basic Memory project NAME: its folder, as Basic Memory's config has it
    /// (`config.json` in `$BASIC_MEMORY_CONFIG_DIR`, else in `~/.basic-memory`).
    #[arg(long, value_name = "NAME", global = true)]
    pub(crate) project: Option<String>,
    /// Print machine-readable JSON instead of text (errors too: an object on stdout).
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Say more: -v logs what a sync does (the listing, each operation, timings) on
    /// stderr and adds request counts to summaries; -vv adds each request and retry.
    /// `BMSYNC_LOG` (tracing's env-filter syntax, e.g. `bmsync=debug`) overrides it.
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, global = true)]
    pub(crate) verbose: u8,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every sync-like command takes.
#[derive(clap::Args, Debug, Clone, Copy)]
pub(crate) struct SyncArgs {
    /// Allow up to N deletions (default: at most half of the last sync's files).
    #[arg(long, value_name = "N")]
    pub(crate) max_delete: Option<usize>,
    /// Accept an empty remote as "everything was deleted there" (otherwise refused as a
    /// likely wrong prefix or failed listing).
    #[arg(long)]
    pub(crate) allow_empty_remote: bool,
    /// Go on with a bucket that ignores conditional PUTs, accepting that a teammate's
    /// concurrent write can be silently overwritten (only for a folder you alone sync).
    /// Recorded for this remote; every sync warns.
    #[arg(long)]
    pub(crate) accept_lost_updates: bool,
}

/// How an applying command (sync, push, pull) waits for another one on the folder.
#[derive(clap::Args, Debug, Clone, Copy)]
pub(crate) struct WaitArgs {
    /// Wait up to SECS for another sync, push or pull on this folder to finish (default
    /// 60), then give up with exit 1.
    #[arg(long, value_name = "SECS")]
    pub(crate) lock_wait: Option<u64>,
}

impl WaitArgs {
    fn duration(self) -> std::time::Duration {
        self.lock_wait.map_or(bmsync::apply::DEFAULT_LOCK_WAIT, std::time::Duration::from_secs)
    }

    /// Opens the folder holding its sync lock, saying so when it has to wait.
    pub(crate) fn open(self, dir: &Path) -> Result<Repo, Failure> {
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
pub(crate) struct OneWayArgs {
    /// Also carry deletions to the receiving side.
    #[arg(long)]
    pub(crate) delete: bool,
    /// Resolve conflicts: keep-local, keep-remote, or keep-both (a `conflict` copy).
    #[arg(long, value_enum, value_name = "HOW")]
    pub(crate) on_conflict: Option<OnConflictArg>,
}

/// The flag's values (`keep-local`, ...) come from these names.
#[allow(clippy::enum_variant_names)]
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub(crate) enum OnConflictArg {
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

/// The values of `sync --conflict-style`.
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub(crate) enum ConflictStyleArg {
    Copy,
    Markers,
}

impl From<ConflictStyleArg> for bmsync::apply::ConflictStyle {
    fn from(a: ConflictStyleArg) -> Self {
        match a {
            ConflictStyleArg::Copy => Self::Copy,
            ConflictStyleArg::Markers => Self::Markers,
        }
    }
}

/// The values of `resolve --keep`.
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub(crate) enum KeepArg {
    Local,
    Remote,
    Both,
    Merged,
}

impl From<KeepArg> for bmsync::conflicts::Keep {
    fn from(a: KeepArg) -> Self {
        match a {
            KeepArg::Local => Self::Local,
            KeepArg::Remote => Self::Remote,
            KeepArg::Both => Self::Both,
            KeepArg::Merged => Self::Merged,
        }
    }
}

impl SyncArgs {
    pub(crate) fn options(self) -> bmsync::apply::SyncOptions {
        let mut o = bmsync::apply::SyncOptions::default();
        o.max_delete = self.max_delete;
        o.allow_empty_remote = self.allow_empty_remote;
        o.accept_lost_updates = self.accept_lost_updates;
        o
    }
}

/// The examples of the top-level help.
const EXAMPLES: &str = "Examples:
  bmsync init --remote file:///mnt/team/notes --create   a folder, synced with a shared drive
  bmsync init --project main --remote s3://team-notes    a Basic Memory project, with a bucket
  bmsync status                                           what changed here, and in the bucket
  bmsync sync                                             both ways; conflicts keep both versions
  bmsync plan                                             what a sync would do, changing nothing
  bmsync watch                                            keep syncing until Ctrl-C
  bmsync --json sync                                      the same, for scripts and agents

Any command works from a subfolder of a bmsync folder (or pass -C DIR).
`bmsync help COMMAND` shows a command's flags; `bmsync completions SHELL` prints completions.";

/// The exit codes of the commands that sync, for their help.
const SYNC_EXIT_CODES: &str = "Exit codes:
  0  synced (or nothing to do)
  1  an error: nothing unsafe was done, and what succeeded is recorded (the message says
     what to fix; the mass-delete guard's refusal names the flag to pass)
  2  a usage error (a flag or argument clap did not accept)
  3  conflicts: both versions were kept (`bmsync conflicts` lists them), or, for push and
     pull, conflicts stopped the run before anything changed

Examples:
  bmsync sync                          both ways
  bmsync sync --on-conflict keep-both  settle conflicts by keeping both versions
  bmsync push --delete                 send local changes and deletions only
  bmsync plan --max-delete 30          preview a sync that deletes up to 30 files";

/// The commands in the groups the top-level help shows them in.
const GROUPS: [(&str, &[&str]); 3] = [
    (
        "Everyday",
        &["init", "status", "sync", "push", "pull", "plan", "watch", "conflicts", "resolve", "remote"],
    ),
    ("History", &["commit", "diff", "log", "show", "restore", "trash"]),
    (
        "Maintenance and plumbing",
        &[
            "fsck",
            "gc",
            "check-ignore",
            "merge-file",
            "hash-object",
            "cat-object",
            "update-ref",
            "completions",
            "manual",
        ],
    ),
];

/// The command line's definition, with the top-level help listing commands in groups.
/// Completions and the manual are made from this same definition.
pub(crate) fn command() -> clap::Command {
    let cmd = <Cli as clap::CommandFactory>::command();
    let width = cmd.get_subcommands().map(|c| c.get_name().len()).max().unwrap_or(0);
    let mut groups = String::new();
    for (title, names) in GROUPS {
        let _ = writeln!(groups, "{title}:");
        for name in names {
            let about = cmd
                .find_subcommand(name)
                .and_then(|c| c.get_about())
                .map(ToString::to_string)
                .unwrap_or_default();
            // The gist: the about up to its first colon, full stop or parenthesis.
            let end =
                [": ", ". ", " ("].iter().filter_map(|sep| about.find(sep)).min().unwrap_or(about.len());
            let first = about[..end].trim_end_matches('.');
            let _ = writeln!(groups, "  {name:<width$}  {first}");
        }
        groups.push('\n');
    }
    cmd.help_template(format!(
        "{{about-with-newline}}\n{{usage-heading}} {{usage}}\n\n{groups}Options:\n{{options}}\n{{after-help}}"
    ))
}

/// The revision grammar, for the help of every command that takes one.
pub(crate) const REVISIONS_HELP: &str = "Revisions:
  a1b2c3d4              a commit id, or an unambiguous prefix of one (4+ hex)
  head, HEAD, base      the last local commit; the last sync
  local                 the folder as it is now
  REV~N, REV^N          N first parents back; the Nth parent (of a merge)
  @{TIME}               the newest local commit at or before TIME
  remote                the bucket now
  remote@{TIME}         the bucket as it was at TIME (a bucket with snapshots)
  snapshot:VERSION      the bucket at a snapshot version (UNIX nanoseconds)
  REV:PATH              a file or folder at REV (a trailing slash allowed)
TIME is RFC 3339: 2026-11-20T10:00:00Z, 2026-11-20T11:00:00.250+01:00.
Examples: show @{2026-11-20T10:00:00Z}:notes/idea.md, show remote@{2026-11-20T10:00:00Z}:notes/,
  diff base~2 head -- notes/, restore notes/idea.md --from base~3";

#[derive(Subcommand, Debug)]
pub(crate) enum RemoteCommand {
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
pub(crate) enum Command {
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
    #[command(after_help = SYNC_EXIT_CODES)]
    Sync {
        #[command(flatten)]
        args: SyncArgs,
        #[command(flatten)]
        wait: WaitArgs,
        /// Resolve conflicts one way instead of keeping both versions.
        #[arg(long, value_enum, value_name = "HOW")]
        on_conflict: Option<OnConflictArg>,
        /// What edits that overlap leave: `copy` (default: the remote version at the
        /// path, yours in a conflict copy), or `markers` (one file with diff3-style
        /// conflict markers, on both sides).
        #[arg(long, value_enum, value_name = "STYLE", default_value = "copy")]
        conflict_style: ConflictStyleArg,
    },
    /// Sync continuously until Ctrl-C or SIGTERM: the folder's changes as they happen
    /// (file events, debounced), the bucket's by a cheap probe every interval. Each round
    /// is a `sync`; a failed one is retried with backoff. With --json, one event per line.
    Watch {
        #[command(flatten)]
        args: SyncArgs,
        /// Probe the bucket every SECS seconds.
        #[arg(long, value_name = "SECS", default_value_t = 30.0)]
        interval: f64,
        /// Sync a change once the folder was quiet for SECS seconds.
        #[arg(long, value_name = "SECS", default_value_t = 1.0)]
        debounce: f64,
        /// Sync fully every N probes (writes by other tools do not touch the marker).
        #[arg(long, value_name = "N", default_value_t = 10)]
        full_every: u32,
    },
    /// Send local changes to the remote only. Remote objects are deleted only with
    /// `--delete`; conflicts stop the push unless `--on-conflict` says how to resolve
    /// them.
    #[command(after_help = SYNC_EXIT_CODES)]
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
    #[command(after_help = SYNC_EXIT_CODES)]
    Pull {
        #[command(flatten)]
        args: SyncArgs,
        #[command(flatten)]
        wait: WaitArgs,
        #[command(flatten)]
        one_way: OneWayArgs,
    },
    /// Show what a sync would do, writing nothing anywhere: not a byte of the folder, its
    /// state, or the bucket (which is read live, without taking a snapshot). Exit 1 when
    /// the mass-delete guard would refuse the plan (the plan is shown), 3 when it holds
    /// conflicts.
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
    /// List the open conflicts: what collided, where each version is, who met it.
    Conflicts,
    /// Settle one open conflict; the next sync carries the result to teammates.
    Resolve {
        /// The conflict's path (or its copy's path), relative to the folder.
        path: String,
        /// Which version to keep: local (yours, from the copy, goes back to the path),
        /// remote (the path's version stays), both (keep both files), merged (the path
        /// as you edited it).
        #[arg(long, value_enum, value_name = "WHICH")]
        keep: KeepArg,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Three-way merge of one file, as `git merge-file`: the changes from BASE to OTHER
    /// go into CURRENT. Exit 0 when clean, else the number of conflicts (255: not text).
    MergeFile {
        /// Print the result instead of writing it to CURRENT.
        #[arg(short = 'p', long = "stdout")]
        stdout: bool,
        /// Labels for the conflict markers: current, then base, then other (default:
        /// the file names).
        #[arg(short = 'L', value_name = "LABEL", action = clap::ArgAction::Append)]
        labels: Vec<String>,
        /// Say nothing about conflicts.
        #[arg(short = 'q', long)]
        quiet: bool,
        /// Markers show the base too (always: bmsync writes diff3-style markers).
        #[arg(long)]
        diff3: bool,
        current: PathBuf,
        base: PathBuf,
        other: PathBuf,
    },
    /// Show local changes since the last sync base, and whether the bucket changed since
    /// then (one listing; nothing is downloaded).
    Status {
        /// Do not look at the bucket.
        #[arg(long)]
        offline: bool,
    },
    /// Record the folder as a local commit.
    Commit {
        /// Commit message.
        #[arg(short = 'm', long, default_value = "")]
        message: String,
    },
    /// Show changes between two revisions (default: base and the folder now).
    ///
    /// `diff PATH...` (no `--` needed when PATH is not a revision) compares base and the
    /// folder under those paths.
    #[command(after_help = REVISIONS_HELP)]
    Diff {
        /// [OLD [NEW]] [PATH...]: the old side (default: base) and the new side (default:
        /// local), then paths; an argument that is not a revision starts the paths.
        #[arg(value_name = "REV_OR_PATH")]
        args: Vec<String>,
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
    /// List commits, newest first: every ancestor once, what merges brought in too.
    #[command(after_help = REVISIONS_HELP)]
    Log {
        /// Start here (default: head, else base).
        rev: Option<String>,
        /// Show at most N commits.
        #[arg(short = 'n', long, default_value_t = 50)]
        max_count: usize,
        /// Follow only first parents (hide what merges brought in).
        #[arg(long)]
        first_parent: bool,
        /// Only commits that changed these paths (files or folders).
        #[arg(last = true)]
        paths: Vec<String>,
    },
    /// Show a commit (with its changes), a tree, or a file: REV or REV:PATH. A file's
    /// bytes are printed exactly as they are.
    #[command(after_help = REVISIONS_HELP)]
    Show {
        /// REV or REV:PATH.
        spec: String,
    },
    /// Bring files or folders back as a revision has them: from the local store, or from
    /// the bucket's past (`remote@{TIME}`, `snapshot:VERSION`). Restored files are local
    /// changes the next sync carries. Nothing is deleted, and a file with other content
    /// is overwritten only with `--force` (its old bytes go to .bmsync/trash/).
    #[command(after_help = REVISIONS_HELP)]
    Restore {
        /// Files or folders, relative to the folder.
        #[arg(required = true)]
        paths: Vec<String>,
        /// The revision to restore from.
        #[arg(long, value_name = "REV")]
        from: String,
        /// Overwrite files that exist with other content (the old bytes go to the trash).
        #[arg(long)]
        force: bool,
    },
    /// List the trash: what syncs, `resolve` and `restore --force` moved aside, by round,
    /// newest first. `restore PATH --from trash` brings a file back.
    Trash,
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
    /// Check the store: every object against its id, every tree, commit and manifest
    /// decodes, what commits and refs name is stored, the stat cache and the journal.
    /// Exit 0 when all is well, 1 with the findings listed.
    Fsck,
    /// Remove what nothing needs: objects no retained commit, ref, stat-cache record or
    /// conflict reaches (every commit the refs reach is retained, with its ancestors),
    /// and trash older than DAYS. Safe to interrupt at any point.
    Gc {
        /// Keep trash of the last DAYS days (default 30).
        #[arg(long, value_name = "DAYS", default_value_t = 30)]
        keep: u64,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Print shell completions for bmsync (bash, zsh, fish, powershell, elvish).
    ///
    /// bash: `bmsync completions bash > ~/.local/share/bash-completion/completions/bmsync`;
    /// zsh: into a folder on $fpath as `_bmsync`; fish: `~/.config/fish/completions/bmsync.fish`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print bmsync's manual page (roff): `bmsync manual > bmsync.1; man ./bmsync.1`.
    Manual,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_is_in_one_help_group() {
        let cmd = <Cli as clap::CommandFactory>::command();
        let grouped: Vec<&str> = GROUPS.iter().flat_map(|(_, names)| names.iter().copied()).collect();
        for c in cmd.get_subcommands() {
            let n = grouped.iter().filter(|g| **g == c.get_name()).count();
            assert_eq!(n, 1, "{} is in {n} help groups", c.get_name());
        }
        assert_eq!(grouped.len(), cmd.get_subcommands().count(), "a group names a command that is gone");
        command().debug_assert();
    }
}
