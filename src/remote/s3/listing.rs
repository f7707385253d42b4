//! Listing a prefix: page after page, or split into key ranges listed side by side.

use std::sync::Arc;

use aws_sdk_s3::Client;

use super::RemoteError;
use super::wire::{at_version, map_err};

/// One listed object, its key in full (the prefix included).
pub(super) struct Entry {
    pub key: String,
    pub etag: String,
    pub size: u64,
}

/// What every request of one listing shares.
pub(super) struct Lister {
    pub client: Client,
    pub bucket: String,
    /// The listed prefix: `""`, or the remote's prefix and a `/`.
    pub prefix: String,
    /// The snapshot version to list at, if any.
    pub at: Option<String>,
    /// The endpoint, for error messages.
    pub endpoint: String,
}

impl Lister {
    /// Lists the keys in `(after, upto]` (`None`: unbounded) page by page, handing `out`
    /// each page as it comes.
    async fn range(
        &self,
        after: Option<&str>,
        upto: Option<&str>,
        mut out: impl FnMut(Vec<Entry>),
    ) -> Result<(), RemoteError> {
        let mut token: Option<String> = None;
        loop {
            let mut req = self.client.list_objects_v2().bucket(&self.bucket).prefix(&self.prefix);
            req = match (&token, after) {
                (Some(t), _) => req.continuation_token(t),
                (None, Some(a)) => req.start_after(a),
                (None, None) => req,
            };
            let page = req
                .customize()
                .mutate_request(at_version(self.at.clone()))
                .send()
                .await
                .map_err(|e| map_err("list", &self.prefix, (&self.bucket, &self.endpoint), &e))?;
            let mut entries = Vec::with_capacity(page.contents().len());
            let mut past = false;
            for o in page.contents() {
                let key = o.key().unwrap_or_default();
                // Keys come in byte order, so the first past the range ends it.
                if upto.is_some_and(|u| key > u) {
                    past = true;
                    break;
                }
                entries.push(Entry {
                    key: key.to_owned(),
                    etag: o.e_tag().unwrap_or_default().to_owned(),
                    size: o.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                });
            }
            out(entries);
            match page.next_continuation_token() {
                Some(t) if !past && page.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => return Ok(()),
            }
        }
    }
}

/// Lists everything under the lister's prefix into `each`, in key order. With `bounds`
/// (full keys, ascending), the ranges between them are listed at once, each on its own
/// task, and handed out in order as they complete: with a round trip of latency per
/// page, a listing of N pages then takes about N / (bounds + 1) round trips.
pub(super) async fn list(
    lister: Lister,
    bounds: &[String],
    each: &mut dyn FnMut(Entry),
) -> Result<(), RemoteError> {
    if bounds.is_empty() {
        return lister.range(None, None, |page| page.into_iter().for_each(&mut *each)).await;
    }
    let lister = Arc::new(lister);
    let edges: Vec<Option<String>> =
        std::iter::once(None).chain(bounds.iter().cloned().map(Some)).chain(std::iter::once(None)).collect();
    let tasks: Vec<_> = edges
        .windows(2)
        .map(|w| {
            let (lister, after, upto) = (Arc::clone(&lister), w[0].clone(), w[1].clone());
            tokio::spawn(async move {
                let mut all = Vec::new();
                lister.range(after.as_deref(), upto.as_deref(), |page| all.extend(page)).await.map(|()| all)
            })
        })
        .collect();
    let mut result = Ok(());
    for task in tasks {
        if result.is_err() {
            // One range failed: the listing has, and the others need not go on.
            task.abort();
            continue;
        }
        match task.await {
            Ok(Ok(entries)) => entries.into_iter().for_each(&mut *each),
            Ok(Err(e)) => result = Err(e),
            Err(e) => {
                result =
                    Err(RemoteError::Other { op: "list", detail: format!("a listing task failed: {e}") });
            }
        }
    }
    result
}
