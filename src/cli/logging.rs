//! The log: what a run does, on stderr, as much as `-v`/`-vv` or `BMSYNC_LOG` ask for.
//! It never changes stdout or exit codes.

use tracing_subscriber::EnvFilter;

/// Installs the log for `verbose` (`-v` count), unless `BMSYNC_LOG` says otherwise (in
/// tracing's env-filter syntax). With neither, warnings of bmsync only.
pub(crate) fn init(verbose: u8) {
    let filter = match std::env::var("BMSYNC_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::try_new(spec.trim()).unwrap_or_else(|e| {
            crate::output::say(&format!("warning: BMSYNC_LOG is not a valid filter ({e}); using -v's level"));
            level(verbose)
        }),
        _ => level(verbose),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(verbose > 1)
        .with_timer(tracing_subscriber::fmt::time::uptime())
        .try_init();
}

/// bmsync's own events at the level `-v` asks for; the SDK's stay quiet (its debug
/// output is long and, at trace level, shows request signatures).
fn level(verbose: u8) -> EnvFilter {
    let bmsync = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    EnvFilter::new(format!("warn,bmsync={bmsync}"))
}
