//! Generates a Basic Memory-like vault: `cargo run --release --example genvault -- DIR N [SEED]`.

// Sizes are sampled as floats and clamped to a small positive range before the cast.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::format_push_string)]
#[path = "../benches/support/genvault.rs"]
mod genvault;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(dir), Some(Ok(n))) = (args.first(), args.get(1).map(|s| s.parse::<usize>())) else {
        eprintln!("usage: genvault DIR N [SEED]");
        return std::process::ExitCode::from(2);
    };
    let seed = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    match genvault::generate(std::path::Path::new(dir), n, seed) {
        Ok(paths) => {
            println!("wrote {} files under {dir}", paths.len());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
