//! A deterministic generator of Basic Memory-like vaults, for benchmarks and tests:
//! nested folders of Markdown notes with YAML frontmatter, log-normal sizes around
//! 3-8 KiB, and about 1% binary attachments.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};

const WORDS: &[&str] = &[
    "memory",
    "note",
    "project",
    "idea",
    "meeting",
    "decision",
    "agent",
    "context",
    "graph",
    "relation",
    "observation",
    "sync",
    "team",
    "bucket",
    "snapshot",
    "merge",
    "draft",
    "review",
    "plan",
    "insight",
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "for",
    "with",
    "on",
    "about",
];

/// Notes per folder, roughly; folders nest up to three levels.
const PER_FOLDER: usize = 100;

/// Writes `n` files under `root` from `seed`; returns their relative paths.
pub fn generate(root: &Path, n: usize, seed: u64) -> io::Result<Vec<PathBuf>> {
    let mut rng = StdRng::seed_from_u64(seed);
    // Median e^8.5 ≈ 4.9 KiB; most notes fall between 3 and 8 KiB.
    let sizes = LogNormal::new(8.5, 0.35).expect("valid log-normal parameters");
    let folders = n.div_ceil(PER_FOLDER).max(1);
    let mut paths = Vec::with_capacity(n);
    for i in 0..n {
        let f = i % folders;
        let dir = PathBuf::from(format!("area-{:02}", f % 16))
            .join(format!("topic-{:03}", f / 16 % 64))
            .join(if f >= 1024 { format!("sub-{:04}", f / 1024) } else { String::from("notes") });
        fs::create_dir_all(root.join(&dir))?;
        let (name, bytes) = if rng.random_ratio(1, 100) {
            let len = rng.random_range(20_000..200_000);
            let mut b = vec![0u8; len];
            rng.fill(b.as_mut_slice());
            (format!("attachment-{i:06}.png"), b)
        } else {
            let target: f64 = sizes.sample(&mut rng);
            (format!("note-{i:06}.md"), note(&mut rng, i, target.clamp(200.0, 200_000.0) as usize))
        };
        let rel = dir.join(name);
        fs::write(root.join(&rel), bytes)?;
        paths.push(rel);
    }
    Ok(paths)
}

fn note(rng: &mut StdRng, i: usize, len: usize) -> Vec<u8> {
    let mut s = format!(
        "---\ntitle: Note {i}\ntype: note\npermalink: notes/note-{i}\ntags:\n- {}\n- {}\n---\n\n# Note {i}\n\n",
        WORDS[rng.random_range(0..WORDS.len())],
        WORDS[rng.random_range(0..WORDS.len())]
    );
    while s.len() < len {
        match rng.random_range(0..12) {
            0 => s.push_str("\n## Observations\n"),
            1 => s.push_str(&format!(
                "- [idea] {} #tag{}\n",
                WORDS[rng.random_range(0..WORDS.len())],
                rng.random_range(0..50)
            )),
            2 => s.push_str(&format!("- relates_to [[Note {}]]\n", rng.random_range(0..10_000))),
            _ => {
                for _ in 0..rng.random_range(8..20) {
                    s.push_str(WORDS[rng.random_range(0..WORDS.len())]);
                    s.push(' ');
                }
                s.push_str(".\n");
            }
        }
    }
    s.into_bytes()
}
