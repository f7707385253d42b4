//! `s3://BUCKET[/PREFIX]` on aws-sdk-s3, with Tigris's snapshot extensions done by request
//! and response customisation of the SDK (no hand-made HTTP).

use std::io::Write;

mod listing;
mod wire;

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use super::{
    Body, Capabilities, Condition, Listed, META_CONTENT_ID, META_KIND, ObjectInfo, Remote, RemoteError,
    SnapshotInfo, TOMBSTONE, Version, Written, check_key, key_problem, kind_from_meta, kind_meta,
};
use crate::id::ObjectId;
use crate::object::EntryKind;
use wire::Capture;
use wire::Consistent;
use wire::at_version;
use wire::content_from_meta;
use wire::kind_from;
use wire::map_err;
use wire::object_meta;

/// Objects at least this large go up in parts.
const MULTIPART_THRESHOLD: u64 = 16 << 20;

/// What `x-amz-copy-source` escapes in a key: everything but unreserved characters and `/`.
const COPY_SOURCE: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'/').remove(b'-').remove(b'_').remove(b'.').remove(b'~');
/// How far the server's clock may be behind ours when matching an upload's start time.
const UPLOAD_CLOCK_SKEW: Duration = Duration::from_secs(300);
/// Size of each part of a multipart upload.
const PART_SIZE: usize = 8 << 20;

/// How to reach an S3 service.
#[derive(Clone, Debug)]
pub struct S3Options {
    /// Custom endpoint (Tigris, moto, `MinIO`...). Default: `AWS_ENDPOINT_URL_S3`, then
    /// `AWS_ENDPOINT_URL`, then AWS itself.
    pub endpoint: Option<String>,
    /// Connect timeout, and the limit on each attempt of each call.
    pub timeout: Duration,
    /// Attempts per call for transient failures (throttling, 5xx, timeouts).
    pub max_attempts: u32,
    /// Explicit access key and secret; default: the standard AWS credential chain
    /// (environment, profiles, SSO, instance roles).
    pub credentials: Option<(String, String)>,
}

impl Default for S3Options {
    fn default() -> Self {
        Self { endpoint: None, timeout: Duration::from_secs(30), max_attempts: 4, credentials: None }
    }
}

/// A bucket (and prefix) on an S3-compatible service.
pub struct S3Remote {
    rt: tokio::runtime::Runtime,
    client: Client,
    bucket: String,
    prefix: String,
    caps: Capabilities,
    endpoint: String,
}

impl std::fmt::Debug for S3Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Remote")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("caps", &self.caps)
            .finish_non_exhaustive()
    }
}

pub(crate) fn endpoint_from_env() -> Option<String> {
    ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
}

impl S3Remote {
    /// Connects to `bucket` (keys under `prefix`), reading credentials and region from
    /// the standard AWS chain, and learns what the bucket can do.
    pub fn connect(bucket: &str, prefix: &str, opts: &S3Options) -> Result<Self, RemoteError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| RemoteError::Other { op: "start runtime", detail: e.to_string() })?;
        let endpoint = opts.endpoint.clone().or_else(endpoint_from_env);
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(opts.timeout)
            .operation_attempt_timeout(opts.timeout)
            .build();
        let shared = rt.block_on(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .timeout_config(timeouts)
                .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(opts.max_attempts))
                .load(),
        );
        let mut b = aws_sdk_s3::config::Builder::from(&shared).force_path_style(true).interceptor(Consistent);
        if let Some((key, secret)) = &opts.credentials {
            b = b.credentials_provider(aws_sdk_s3::config::Credentials::new(
                key, secret, None, None, "bmsync",
            ));
        }
        if shared.region().is_none() {
            b = b.region(aws_sdk_s3::config::Region::new("us-east-1"));
        }
        if let Some(ep) = &endpoint {
            b = b.endpoint_url(ep);
        }
        let client = Client::from_conf(b.build());
        let mut me = Self {
            rt,
            client,
            bucket: bucket.to_owned(),
            prefix: prefix.trim_end_matches('/').to_owned(),
            // Assumed until a probe says otherwise (see `remote::probe`).
            caps: Capabilities {
                snapshots: false,
                versioning: false,
                conditional_put: true,
                conditional_delete: true,
            },
            endpoint: endpoint.unwrap_or_else(|| "AWS S3".to_owned()),
        };
        me.caps = me.probe()?;
        Ok(me)
    }

    /// `HeadBucket` (snapshots) and `GetBucketVersioning`.
    fn probe(&self) -> Result<Capabilities, RemoteError> {
        let cap = Capture::new("x-tigris-enable-snapshot");
        let head = self.rt.block_on(
            self.client.head_bucket().bucket(&self.bucket).customize().interceptor(cap.clone()).send(),
        );
        if let Err(e) = head {
            // A HEAD answer has no body, so no error code: a 404 is the bucket; a 403 is
            // asked again with a GET, whose answer says whether the credentials are wrong.
            return Err(match map_err("head bucket", &self.bucket, self.at(), &e) {
                RemoteError::NotFound { .. } => {
                    RemoteError::NoSuchBucket { bucket: self.bucket.clone(), endpoint: self.endpoint.clone() }
                }
                RemoteError::Permission { .. } => self
                    .rt
                    .block_on(self.client.list_objects_v2().bucket(&self.bucket).max_keys(1).send())
                    .map_err(|e| map_err("list", &self.bucket, self.at(), &e))
                    .err()
                    .unwrap_or_else(|| map_err("head bucket", &self.bucket, self.at(), &e)),
                other => other,
            });
        }
        let snapshots = cap.take().is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let versioning = self
            .rt
            .block_on(self.client.get_bucket_versioning().bucket(&self.bucket).send())
            .ok()
            .and_then(|v| v.status().map(|s| s.as_str() == "Enabled"))
            .unwrap_or(false);
        Ok(Capabilities { snapshots, versioning, conditional_put: true, conditional_delete: true })
    }

    /// The bucket and endpoint, for error messages.
    fn at(&self) -> (&str, &str) {
        (&self.bucket, &self.endpoint)
    }

    fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() { key.to_owned() } else { format!("{}/{key}", self.prefix) }
    }

    fn at_header(&self, at: Option<Version>) -> Result<Option<String>, RemoteError> {
        match at {
            Some(_) if !self.caps.snapshots => Err(RemoteError::NoSnapshots { remote: self.url() }),
            Some(v) => Ok(Some(v.to_string())),
            None => Ok(None),
        }
    }

    async fn put_multipart(
        &self,
        full: &str,
        path: &std::path::Path,
        content: ObjectId,
        kind: EntryKind,
        cond: &Condition,
    ) -> Result<Written, RemoteError> {
        use tokio::io::AsyncReadExt;
        let err = |source: std::io::Error| RemoteError::LocalRead { path: path.to_owned(), source };
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .set_metadata(Some(object_meta(content, kind)))
            .send()
            .await
            .map_err(|e| map_err("put", full, self.at(), &e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_owned();
        let result: Result<Written, RemoteError> = async {
            let mut f = tokio::fs::File::open(path).await.map_err(err)?;
            // Hash what is sent: a file that changes during the upload is never completed
            // under a content id it no longer has.
            let mut hasher = crate::id::ObjectHasher::new(crate::id::ObjectKind::Blob);
            let mut parts = Vec::new();
            let mut n = 1;
            loop {
                let mut buf = Vec::with_capacity(PART_SIZE);
                (&mut f).take(PART_SIZE as u64).read_to_end(&mut buf).await.map_err(err)?;
                if buf.is_empty() && n > 1 {
                    break;
                }
                hasher.update(&buf);
                let last = buf.len() < PART_SIZE;
                let part = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(full)
                    .upload_id(&upload_id)
                    .part_number(n)
                    .body(ByteStream::from(buf))
                    .send()
                    .await
                    .map_err(|e| map_err("put", full, self.at(), &e))?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(n)
                        .set_e_tag(part.e_tag().map(str::to_owned))
                        .build(),
                );
                n += 1;
                if last {
                    break;
                }
            }
            if hasher.finalize() != content {
                // The file changed while it was uploaded.
                return Err(RemoteError::ContentChanged { key: full.to_owned() });
            }
            let mut req = self
                .client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(full)
                .upload_id(&upload_id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build());
            req = match cond {
                Condition::IfAbsent => req.if_none_match("*"),
                Condition::IfMatch(etag) => req.if_match(etag),
            };
            let done = req.send().await.map_err(|e| map_err("put", full, self.at(), &e))?;
            Ok(Written {
                etag: done.e_tag().unwrap_or_default().to_owned(),
                version: done.version_id().map(str::to_owned),
            })
        }
        .await;
        if result.is_err() {
            // Leave no parts behind for a write that did not happen.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(full)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }
}

impl Remote for S3Remote {
    fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    fn list(&self, at: Option<Version>, each: &mut dyn FnMut(Listed)) -> Result<(), RemoteError> {
        self.list_ranges(at, &[], each)
    }

    fn list_ranges(
        &self,
        at: Option<Version>,
        bounds: &[String],
        each: &mut dyn FnMut(Listed),
    ) -> Result<(), RemoteError> {
        let at = self.at_header(at)?;
        let prefix = if self.prefix.is_empty() { String::new() } else { format!("{}/", self.prefix) };
        let bounds: Vec<String> = bounds.iter().map(|b| format!("{prefix}{b}")).collect();
        let lister = listing::Lister {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            prefix: prefix.clone(),
            at,
            endpoint: self.endpoint.clone(),
        };
        self.rt.block_on(listing::list(lister, &bounds, &mut |e| {
            // Without a prefix the listed key is the key: no copy.
            let key = match e.key.strip_prefix(&prefix) {
                Some(k) if !prefix.is_empty() => k.to_owned(),
                _ => e.key,
            };
            each(match key_problem(&key) {
                Some(reason) => Listed::Unsafe { key, reason },
                None => {
                    Listed::Object(ObjectInfo { key, etag: e.etag, size: e.size, content: None, kind: None })
                }
            });
        }))
    }

    fn head(&self, key: &str, at: Option<Version>) -> Result<ObjectInfo, RemoteError> {
        check_key(key)?;
        let at = self.at_header(at)?;
        let full = self.full_key(key);
        let out = self
            .rt
            .block_on(
                self.client
                    .head_object()
                    .bucket(&self.bucket)
                    .key(&full)
                    .customize()
                    .mutate_request(at_version(at))
                    .send(),
            )
            .map_err(|e| map_err("head", key, self.at(), &e))?;
        Ok(ObjectInfo {
            key: key.to_owned(),
            etag: out.e_tag().unwrap_or_default().to_owned(),
            size: out.content_length().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
            content: content_from_meta(out.metadata()),
            kind: Some(kind_from(out.metadata())),
        })
    }

    fn get(&self, key: &str, at: Option<Version>, out: &mut dyn Write) -> Result<ObjectInfo, RemoteError> {
        check_key(key)?;
        let at = self.at_header(at)?;
        let full = self.full_key(key);
        self.rt.block_on(async {
            let mut resp = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&full)
                .customize()
                .mutate_request(at_version(at))
                .send()
                .await
                .map_err(|e| map_err("get", key, self.at(), &e))?;
            let info = ObjectInfo {
                key: key.to_owned(),
                etag: resp.e_tag().unwrap_or_default().to_owned(),
                size: resp.content_length().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                content: content_from_meta(resp.metadata()),
                kind: Some(kind_from(resp.metadata())),
            };
            while let Some(chunk) = resp
                .body
                .try_next()
                .await
                .map_err(|e| RemoteError::Transient { op: "get", detail: format!("{key}: {e}") })?
            {
                out.write_all(&chunk)
                    .map_err(|e| RemoteError::Other { op: "get", detail: format!("{key}: {e}") })?;
            }
            Ok(info)
        })
    }

    fn put(
        &self,
        key: &str,
        body: Body<'_>,
        content: ObjectId,
        kind: EntryKind,
        cond: &Condition,
    ) -> Result<Written, RemoteError> {
        check_key(key)?;
        let full = self.full_key(key);
        self.rt.block_on(async {
            if let Body::File(p) = body {
                let len = std::fs::metadata(p)
                    .map_err(|source| RemoteError::LocalRead { path: p.to_owned(), source })?
                    .len();
                if len >= MULTIPART_THRESHOLD {
                    return self.put_multipart(&full, p, content, kind, cond).await;
                }
            }
            let stream = match body {
                Body::Bytes(b) => ByteStream::from(b.to_vec()),
                Body::File(p) => ByteStream::from_path(p).await.map_err(|e| RemoteError::LocalRead {
                    path: p.to_owned(),
                    source: std::io::Error::other(e),
                })?,
            };
            let mut req = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(&full)
                .set_metadata(Some(object_meta(content, kind)))
                .body(stream);
            req = match cond {
                Condition::IfAbsent => req.if_none_match("*"),
                Condition::IfMatch(etag) => req.if_match(etag),
            };
            let out = req.send().await.map_err(|e| map_err("put", key, self.at(), &e))?;
            Ok(Written {
                etag: out.e_tag().unwrap_or_default().to_owned(),
                version: out.version_id().map(str::to_owned),
            })
        })
    }

    fn delete(&self, key: &str, if_match: &str) -> Result<(), RemoteError> {
        check_key(key)?;
        let full = self.full_key(key);
        self.rt
            .block_on(self.client.delete_object().bucket(&self.bucket).key(&full).if_match(if_match).send())
            .map_err(|e| map_err("delete", key, self.at(), &e))?;
        Ok(())
    }

    fn copy(&self, from: &str, if_match: &str, content: ObjectId, to: &str) -> Result<Written, RemoteError> {
        check_key(from)?;
        check_key(to)?;
        // Many S3 servers ignore conditions on CopyObject, so the destination is claimed
        // first by a tombstone under If-None-Match: *. Teammates read a tombstone as
        // absent and create only under If-None-Match, so the copy lands on our own
        // tombstone and never on their work.
        let tomb = self.put(
            to,
            Body::Bytes(TOMBSTONE),
            ObjectId::for_blob(TOMBSTONE),
            EntryKind::File,
            &Condition::IfAbsent,
        )?;
        let source = format!(
            "{}/{}",
            self.bucket,
            percent_encoding::utf8_percent_encode(&self.full_key(from), COPY_SOURCE)
        );
        let req = self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .key(self.full_key(to))
            .copy_source(source)
            .copy_source_if_match(if_match);
        let copied = match self.rt.block_on(req.send()) {
            Ok(out) => out,
            Err(e) => {
                let _ = self.delete(to, &tomb.etag);
                return Err(map_err("copy", from, self.at(), &e));
            }
        };
        // And checked after: the copy carried the content the caller saw at `from` (its
        // metadata names it), or it is taken back.
        let now = self.head(to, None)?;
        if now.content != Some(content) {
            let _ = self.delete(to, &now.etag);
            return Err(RemoteError::PreconditionFailed { key: from.to_owned() });
        }
        let version = copied.version_id().map(str::to_owned);
        Ok(Written { etag: now.etag, version })
    }

    fn snapshot(&self, name: Option<&str>) -> Result<Version, RemoteError> {
        if !self.caps.snapshots {
            return Err(RemoteError::NoSnapshots { remote: self.url() });
        }
        let value = name.map_or_else(|| "true".to_owned(), |n| format!("true; name={n}"));
        let cap = Capture::new("x-tigris-snapshot-version");
        self.rt
            .block_on(
                self.client
                    .create_bucket()
                    .bucket(&self.bucket)
                    .customize()
                    .interceptor(cap.clone())
                    .mutate_request(move |r| {
                        r.headers_mut().insert("X-Tigris-Snapshot", value.clone());
                    })
                    .send(),
            )
            .map_err(|e| map_err("snapshot", &self.bucket, self.at(), &e))?;
        cap.take().and_then(|v| v.trim().parse().ok()).ok_or_else(|| RemoteError::Other {
            op: "snapshot",
            detail: "the response carried no X-Tigris-Snapshot-Version".to_owned(),
        })
    }

    fn snapshots(&self) -> Result<Vec<SnapshotInfo>, RemoteError> {
        if !self.caps.snapshots {
            return Err(RemoteError::NoSnapshots { remote: self.url() });
        }
        let bucket = self.bucket.clone();
        let out = self
            .rt
            .block_on(
                self.client
                    .list_buckets()
                    .customize()
                    .mutate_request(move |r| {
                        r.headers_mut().insert("X-Tigris-Snapshot", bucket.clone());
                    })
                    .send(),
            )
            .map_err(|e| map_err("list snapshots", &self.bucket, self.at(), &e))?;
        Ok(out.buckets().iter().filter_map(|b| parse_snapshot_entry(b.name().unwrap_or_default())).collect())
    }

    fn abort_uploads(&self, key: &str, since: Version) -> Result<usize, RemoteError> {
        let full = self.full_key(key);
        // Clocks differ between us and the server: allow for some skew.
        let since = std::time::UNIX_EPOCH + Duration::from_nanos(since) - UPLOAD_CLOCK_SKEW;
        let mut n = 0;
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        loop {
            let out = self
                .rt
                .block_on(
                    self.client
                        .list_multipart_uploads()
                        .bucket(&self.bucket)
                        .prefix(&full)
                        .set_key_marker(key_marker.clone())
                        .set_upload_id_marker(id_marker.clone())
                        .send(),
                )
                .map_err(|e| map_err("list uploads", key, self.at(), &e))?;
            for u in out.uploads() {
                let (Some(k), Some(id)) = (u.key(), u.upload_id()) else { continue };
                let started = u.initiated().and_then(|t| std::time::SystemTime::try_from(*t).ok());
                if k != full || started.is_some_and(|t| t < since) {
                    continue;
                }
                self.rt
                    .block_on(
                        self.client.abort_multipart_upload().bucket(&self.bucket).key(k).upload_id(id).send(),
                    )
                    .map_err(|e| map_err("abort upload", key, self.at(), &e))?;
                n += 1;
            }
            if out.is_truncated() != Some(true) {
                break;
            }
            key_marker = out.next_key_marker().map(str::to_owned);
            id_marker = out.next_upload_id_marker().map(str::to_owned);
        }
        Ok(n)
    }
}

/// A snapshot as `ListBuckets` (with `X-Tigris-Snapshot`) names it: the version, optionally
/// followed by `; name=NAME`.
fn parse_snapshot_entry(s: &str) -> Option<SnapshotInfo> {
    let mut parts = s.split(';').map(str::trim);
    let version = parts.next()?.parse().ok()?;
    let name = parts.find_map(|p| p.strip_prefix("name=")).map(str::to_owned);
    Some(SnapshotInfo { version, name })
}
