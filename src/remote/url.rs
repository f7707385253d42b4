//! Remotes: where a folder syncs to. For now, the remote URL forms and their checks.

use std::fmt;
use std::path::PathBuf;

/// A parsed remote URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteUrl {
    /// `s3://BUCKET[/PREFIX]`: an S3-compatible bucket (Tigris snapshots when enabled).
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix without leading or trailing `/`; empty for the whole bucket.
        prefix: String,
    },
    /// `file:///ABSOLUTE/PATH`: the embedded remote, a folder.
    File {
        /// The folder.
        path: PathBuf,
    },
}

/// Why a string is not a remote URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid remote {url:?}: {reason} (use s3://BUCKET[/PREFIX] or file:///ABSOLUTE/PATH)")]
pub struct RemoteUrlError {
    /// The rejected text.
    pub url: String,
    /// Why.
    pub reason: String,
}

impl RemoteUrl {
    /// Parses `s3://BUCKET[/PREFIX]` or `file:///ABSOLUTE/PATH`.
    pub fn parse(url: &str) -> Result<Self, RemoteUrlError> {
        let err = |reason: &str| RemoteUrlError { url: url.to_owned(), reason: reason.to_owned() };
        if url.len() > crate::object::MAX_REMOTE_LEN {
            return Err(err("longer than 4096 bytes"));
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let bucket_ok = (3..=63).contains(&bucket.len())
                && bucket
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
                && bucket.as_bytes()[0].is_ascii_alphanumeric()
                && bucket.as_bytes()[bucket.len() - 1].is_ascii_alphanumeric();
            if !bucket_ok {
                return Err(err(
                    "bucket names are 3 to 63 characters of a-z 0-9 . - starting and ending alphanumeric",
                ));
            }
            if let Some(why) = bucket_rule_broken(bucket) {
                return Err(err(why));
            }
            let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
            if !prefix.is_empty()
                && prefix
                    .split('/')
                    .any(|s| s.is_empty() || s == "." || s == ".." || s.contains(['\\', '\0']))
            {
                return Err(err("the prefix has an empty, `.`, `..` or unsafe segment"));
            }
            return Ok(Self::S3 { bucket: bucket.to_owned(), prefix: prefix.to_owned() });
        }
        if let Some(rest) = url.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(err("a file remote needs an absolute path, as in file:///srv/notes"));
            }
            if rest.contains('\0') {
                return Err(err("the path contains NUL"));
            }
            return Ok(Self::File { path: PathBuf::from(rest) });
        }
        Err(err("unknown scheme"))
    }
}

/// The S3 bucket naming rules beyond the character set and length, if one is broken.
fn bucket_rule_broken(bucket: &str) -> Option<&'static str> {
    if bucket.contains("..") || bucket.contains(".-") || bucket.contains("-.") {
        Some("a bucket name has no `..`, `.-` or `-.`")
    } else if bucket.split('.').count() == 4 && bucket.split('.').all(|p| p.parse::<u8>().is_ok()) {
        Some("a bucket name is not an IP address")
    } else if ["xn--", "sthree-", "amzn-s3-demo-"].iter().any(|p| bucket.starts_with(p)) {
        Some("a bucket name does not start with `xn--`, `sthree-` or `amzn-s3-demo-`")
    } else if ["-s3alias", "--ol-s3", "--x-s3", "--table-s3", ".mrap"].iter().any(|p| bucket.ends_with(p)) {
        Some("a bucket name does not end with `-s3alias`, `--ol-s3`, `--x-s3`, `--table-s3` or `.mrap`")
    } else {
        None
    }
}

impl fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            Self::File { path } => write!(f, "file://{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        assert_eq!(
            RemoteUrl::parse("s3://team-notes/vault/").expect("valid").to_string(),
            "s3://team-notes/vault"
        );
        assert_eq!(RemoteUrl::parse("s3://team-notes").expect("valid").to_string(), "s3://team-notes");
        assert!(RemoteUrl::parse("s3://notes.example.com").is_ok(), "dots between labels are fine");
        assert!(RemoteUrl::parse("s3://192.168.1.team").is_ok(), "only an IP address is refused");
        assert_eq!(
            RemoteUrl::parse("file:///srv/notes").expect("valid"),
            RemoteUrl::File { path: "/srv/notes".into() }
        );
        for bad in [
            "s3://A",
            "s3://ab",
            "s3://bucket/a//b",
            "s3://bucket/../x",
            "file://rel/path",
            "http://x",
            "",
            "s3://my..bucket",
            "s3://my.-bucket",
            "s3://192.168.1.10",
            "s3://xn--bucket",
            "s3://bucket-s3alias",
            "s3://my_bucket",
        ] {
            assert!(RemoteUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
