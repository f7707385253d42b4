//! The `bmsync` command: parses arguments, prints, and picks exit codes. All the work is
//! in the library.
#![forbid(unsafe_code)]

mod args;
mod conflicts;
mod inspect;
mod logging;
mod maintain;
mod output;
mod plumbing;
mod setup;
mod sync;
mod watch;
mod words;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bmsync::{InitOptions, Repo};

use crate::args::{Cli, Command, RemoteCommand};
use crate::output::{Failure, Output, say};

fn main() -> ExitCode {
    // redb can panic on a damaged page; the store turns that into an error (exit 1 with
    // a hint), so the panic's own message must not reach the terminal.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !bmsync::store::panic_is_contained() {
            default_hook(info);
        }
    }));
    let cli = match args::command()
        .try_get_matches()
        .and_then(|m| <Cli as clap::FromArgMatches>::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    logging::init(cli.verbose);
    let code = match enter(cli.dir.as_deref(), cli.project.as_deref()).and_then(|dir| run(&cli, &dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => output::report(&f, cli.json),
    };
    // For the benchmark harness: the process's peak memory, from the kernel.
    if std::env::var_os("BMSYNC_REPORT_PEAK_RSS").is_some() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        if let Some(kib) = status.lines().find_map(|l| l.strip_prefix("VmHWM:")) {
            say(&format!("peak_rss_kib: {}", kib.trim().trim_end_matches("kB").trim()));
        }
    }
    code
}

/// A command line clap refused: its message (and, with `--json`, an error object on
/// stdout), exit 2. `--help` and `--version` print as usual.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    let _ = e.print();
    if std::env::args().any(|a| a == "--json") {
        let rendered = e.render().to_string();
        let first = rendered.lines().next().unwrap_or("the command line is not valid");
        let message = first.strip_prefix("error: ").unwrap_or(first);
        output::print_json_error(
            "usage",
            message,
            Some("`bmsync help` lists the commands and their flags"),
            2,
        );
    }
    ExitCode::from(2)
}

/// Changes to `-C DIR` if given (like `git -C`: later relative paths are relative to
/// DIR), then to the folder of `--project NAME` if given, and gives the folder the
/// command runs in.
fn enter(dir: Option<&Path>, project: Option<&str>) -> Result<PathBuf, Failure> {
    if let Some(dir) = dir {
        std::env::set_current_dir(dir)
            .map_err(|e| Failure::new(format!("cannot change to {}: {e}", dir.display()), None))?;
    }
    if let Some(name) = project {
        let p = bmsync::basic_memory::project(name).map_err(|e| {
            Failure::new(
                e.to_string(),
                Some("`bm project list` shows Basic Memory's projects; BASIC_MEMORY_CONFIG_DIR names its config folder"),
            )
            .kind("basic_memory_config")
        })?;
        std::env::set_current_dir(&p.path).map_err(|e| {
            Failure::new(format!("project {name:?}: cannot open its folder {}: {e}", p.path.display()), None)
                .kind("basic_memory_config")
        })?;
    }
    Ok(std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")))
}

/// The bmsync folder a command works on: the one `cwd` is in (found walking up, as git
/// does), and where `cwd` is inside it. `init` and the commands that need no folder run
/// in `cwd` itself.
fn folder(command: &Command, cwd: &Path) -> Result<(PathBuf, PathBuf), Failure> {
    let here = matches!(
        command,
        Command::Init { .. }
            | Command::MergeFile { .. }
            | Command::HashObject { write: false, .. }
            | Command::Completions { .. }
            | Command::Manual
    );
    if here {
        return Ok((cwd.to_owned(), PathBuf::new()));
    }
    bmsync::repo::discover(cwd).ok_or_else(|| bmsync::RepoError::NotInitialized(cwd.to_owned()).into())
}

/// A path the user gave, relative to where they are, as a path in the folder.
fn in_folder(inside: &Path, p: &str) -> String {
    if inside.as_os_str().is_empty() {
        return p.to_owned();
    }
    let mut parts: Vec<String> = inside.iter().map(|c| c.to_string_lossy().into_owned()).collect();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." if !parts.is_empty() => {
                parts.pop();
            }
            c => parts.push(c.to_owned()),
        }
    }
    let mut joined = parts.join("/");
    if p.ends_with('/') && !joined.is_empty() {
        joined.push('/');
    }
    joined
}

/// Runs one command: each arm opens what the command needs and hands it on.
fn run(cli: &Cli, cwd: &Path) -> Result<(), Failure> {
    let (root, inside) = folder(&cli.command, cwd)?;
    let dir = root.as_path();
    let here = |paths: &[String]| -> Vec<String> { paths.iter().map(|p| in_folder(&inside, p)).collect() };
    let mut stdout = std::io::stdout().lock();
    let out = &mut Output::new(&mut stdout, cli.json, cli.verbose);
    match &cli.command {
        Command::Init { remote, client_id, endpoint, create, accept_lost_updates } => {
            let mut opts = InitOptions::default();
            opts.remote.clone_from(remote);
            opts.client_id.clone_from(client_id);
            opts.endpoint.clone_from(endpoint);
            opts.create = *create;
            opts.accept_lost_updates = *accept_lost_updates;
            setup::init(out, dir, &opts)
        }
        Command::Watch { args, interval, debounce, full_every } => {
            watch::watch(out, dir, &watch::options(args, *interval, *debounce, *full_every))
        }
        Command::Sync { args, wait, on_conflict, conflict_style } => {
            let opts = {
                let mut o = args.options();
                o.on_conflict = on_conflict.map(Into::into);
                o.conflict_style = (*conflict_style).into();
                o
            };
            sync::sync(out, &wait.open(dir)?, &opts)
        }
        Command::Push { args, wait, one_way } | Command::Pull { args, wait, one_way } => {
            let direction = if matches!(cli.command, Command::Push { .. }) {
                bmsync::apply::Direction::Push
            } else {
                bmsync::apply::Direction::Pull
            };
            let opts = {
                let mut o = args.options();
                o.direction = direction;
                o.delete = one_way.delete;
                o.on_conflict = one_way.on_conflict.map(Into::into);
                o
            };
            sync::sync(out, &wait.open(dir)?, &opts)
        }
        Command::Plan { args } => sync::plan(out, &Repo::open_read_only(dir)?, &args.options()),
        Command::Remote { command: RemoteCommand::Show { probe } } => {
            setup::remote_show(out, &Repo::open(dir)?, *probe)
        }
        Command::Remote { command: RemoteCommand::SetUrl { url, endpoint, create } } => {
            setup::set_url(out, dir, url, endpoint.as_deref(), *create)
        }
        Command::HashObject { files, write } => {
            let repo = if *write { Some(Repo::open(dir)?) } else { None };
            plumbing::hash_object(out, repo.as_ref(), files)
        }
        Command::Status { offline } => inspect::status(out, &Repo::open(dir)?, !*offline),
        Command::MergeFile { stdout, labels, quiet, diff3: _, current, base, other } => {
            conflicts::merge_file(out, [current, base, other], labels, *stdout, *quiet)
        }
        Command::Conflicts => conflicts::list(out, &Repo::open(dir)?),
        Command::Resolve { path, keep, wait } => {
            conflicts::resolve(out, &wait.open(dir)?, &in_folder(&inside, path), (*keep).into())
        }
        Command::Commit { message } => inspect::commit(out, &Repo::open(dir)?, message),
        Command::Diff { args, paths, stat, name_status } => {
            let repo = Repo::open(dir)?;
            let mode = if *stat {
                inspect::DiffMode::Stat
            } else if *name_status {
                inspect::DiffMode::NameStatus
            } else {
                inspect::DiffMode::Patch
            };
            let (from, to, paths) = inspect::diff_args(&repo, args, paths)?;
            inspect::diff(out, &repo, &from, &to, &here(&paths), mode)
        }
        Command::Log { rev, max_count, first_parent, paths } => {
            inspect::log(out, &Repo::open(dir)?, rev.as_deref(), *max_count, *first_parent, &here(paths))
        }
        Command::Show { spec } => inspect::show(out, &Repo::open(dir)?, spec),
        Command::Fsck => maintain::fsck(out, dir),
        Command::Gc { keep, wait } => maintain::gc(out, &wait.open(dir)?, *keep),
        Command::Restore { paths, from, force } => {
            // Restore only reads the store: a read-only open changes no byte of it.
            let repo = match Repo::open_read_only(dir) {
                Err(bmsync::RepoError::Store(bmsync::StoreError::NeedsRepair { .. })) => Repo::open(dir)?,
                r => r?,
            };
            inspect::restore(out, &repo, &here(paths), from, *force)
        }
        Command::Trash => maintain::trash(out, dir),
        Command::Completions { shell } => plumbing::completions(out, *shell),
        Command::Manual => plumbing::manual(out),
        Command::CheckIgnore { paths } => inspect::check_ignore(out, dir, &here(paths)),
        Command::UpdateRef { name, new, old } => {
            plumbing::update_ref(out, &Repo::open(dir)?, name, new, old.as_deref())
        }
        Command::CatObject { rev, kind, size } => {
            plumbing::cat_object(out, &Repo::open(dir)?, rev, *kind, *size)
        }
    }
}
