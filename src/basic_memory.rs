//! Basic Memory's configuration, read the way `bm` reads it: its folder
//! (`BASIC_MEMORY_CONFIG_DIR`, else `~/.basic-memory`), the projects in its
//! `config.json`, and the global `.bmignore` there. Only names and paths are read: other
//! fields (an API key among them) are never kept or printed.

use std::path::{Path, PathBuf};

/// The config file's name in Basic Memory's folder.
pub const CONFIG_FILE: &str = "config.json";

/// Why a project could not be found.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Neither `BASIC_MEMORY_CONFIG_DIR` nor `HOME` is set.
    #[error("cannot find Basic Memory's config: neither BASIC_MEMORY_CONFIG_DIR nor HOME is set")]
    NoHome,
    /// No config file.
    #[error("{}: no Basic Memory config here (is Basic Memory set up? `bm project list` makes it)", path.display())]
    Missing {
        /// The file looked for.
        path: PathBuf,
    },
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not the JSON Basic Memory writes.
    #[error("{}: not a valid Basic Memory config: {detail}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// No project of that name.
    #[error("{}: no project named {name:?} (projects: {})", path.display(), if known.is_empty() { "none".to_owned() } else { known.join(", ") })]
    UnknownProject {
        /// The config file.
        path: PathBuf,
        /// The name asked for.
        name: String,
        /// The projects it has.
        known: Vec<String>,
    },
}

/// Basic Memory's folder: `$BASIC_MEMORY_CONFIG_DIR`, else `~/.basic-memory`.
pub fn config_dir() -> Option<PathBuf> {
    match std::env::var_os("BASIC_MEMORY_CONFIG_DIR") {
        Some(d) if !d.is_empty() => Some(PathBuf::from(d)),
        _ => std::env::var_os("HOME").map(|h| Path::new(&h).join(".basic-memory")),
    }
}

/// A project of Basic Memory's config.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Project {
    /// Its name.
    pub name: String,
    /// Its folder on this machine (for a cloud project, the local sync folder).
    pub path: PathBuf,
}

/// Every project in `dir`'s `config.json`, in name order.
pub fn projects_in(dir: &Path) -> Result<Vec<Project>, ConfigError> {
    let path = dir.join(CONFIG_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ConfigError::Missing { path }),
        Err(source) => return Err(ConfigError::Read { path, source }),
    };
    let malformed = |detail: String| ConfigError::Malformed { path: path.clone(), detail };
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| malformed(e.to_string()))?;
    let Some(projects) = v.get("projects") else { return Ok(Vec::new()) };
    let projects =
        projects.as_object().ok_or_else(|| malformed("\"projects\" is not an object".to_owned()))?;
    let mut out = Vec::with_capacity(projects.len());
    for (name, p) in projects {
        // Older configs map a name to its path; newer ones to an object with `path`
        // (and, for a cloud project, the local folder it syncs).
        let folder = match p {
            serde_json::Value::String(s) => Some(s.as_str()),
            serde_json::Value::Object(o) => {
                let cloud = o.get("mode").and_then(serde_json::Value::as_str) == Some("cloud");
                let local = ["local_sync_path", "cloud_sync_path"]
                    .iter()
                    .find_map(|k| o.get(*k).and_then(serde_json::Value::as_str));
                match (cloud, local) {
                    (true, Some(l)) => Some(l),
                    _ => o.get("path").and_then(serde_json::Value::as_str),
                }
            }
            _ => None,
        };
        let folder = folder.ok_or_else(|| malformed(format!("project {name:?} has no path")))?;
        out.push(Project { name: name.clone(), path: expand_home(folder) });
    }
    Ok(out)
}

/// The project `name` in Basic Memory's config (see [`config_dir`]).
pub fn project(name: &str) -> Result<Project, ConfigError> {
    let dir = config_dir().ok_or(ConfigError::NoHome)?;
    let all = projects_in(&dir)?;
    all.iter().find(|p| p.name == name).cloned().ok_or_else(|| ConfigError::UnknownProject {
        path: dir.join(CONFIG_FILE),
        name: name.to_owned(),
        known: all.into_iter().map(|p| p.name).collect(),
    })
}

/// `~/x` as Basic Memory writes it, with the home folder filled in.
fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tmp");
        std::fs::write(d.path().join(CONFIG_FILE), text).expect("write");
        d
    }

    #[test]
    fn both_config_shapes_and_cloud_projects() {
        let d = config(
            r#"{"projects": {"main": {"path": "/n/main", "mode": "local"},
                             "team": {"path": "/n/team", "mode": "cloud", "local_sync_path": "/sync/team"},
                             "old": "/n/old"},
                "cloud_api_key": "bmc_secret"}"#,
        );
        let p = projects_in(d.path()).expect("projects");
        let got: Vec<(&str, &Path)> = p.iter().map(|p| (p.name.as_str(), p.path.as_path())).collect();
        assert_eq!(
            got,
            [("main", Path::new("/n/main")), ("old", Path::new("/n/old")), ("team", Path::new("/sync/team"))]
        );
    }

    #[test]
    fn missing_and_malformed_configs_name_the_file() {
        let d = tempfile::tempdir().expect("tmp");
        let e = projects_in(d.path()).expect_err("missing");
        assert!(matches!(e, ConfigError::Missing { .. }) && e.to_string().contains("config.json"), "{e}");
        for bad in ["{", r#"{"projects": []}"#, r#"{"projects": {"x": 3}}"#] {
            let d = config(bad);
            let e = projects_in(d.path()).expect_err("malformed");
            assert!(matches!(e, ConfigError::Malformed { .. }), "{bad}: {e}");
            assert!(e.to_string().contains(&d.path().join(CONFIG_FILE).display().to_string()), "{e}");
        }
    }
}
