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
                // Only a server that ignores `start-after` sends these; they are the
                // range before's.
                if after.is_some_and(|a| key <= a) {
                    continue;
                }
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
/// (full keys), the ranges between them are listed at once, each on its own task: the
/// first range's pages are handed out as they come, each later range's as soon as the
/// ones before it are done (what arrived meanwhile waits in memory). With a round trip of
/// latency per page, a listing of N pages in R ranges of even size takes about N / R
/// round trips.
///
/// Ranges rely on S3's listing rules, which are checked: keys in byte order, none at or
/// before a range's `start-after`. A server that breaks them gets an error, never a
/// listing with keys lost or repeated.
pub(super) async fn list(
    lister: Lister,
    bounds: &[String],
    each: &mut dyn FnMut(Entry),
) -> Result<(), RemoteError> {
    if bounds.is_empty() {
        return lister.range(None, None, |page| page.into_iter().for_each(&mut *each)).await;
    }
    let mut bounds = bounds.to_vec();
    bounds.sort_unstable();
    bounds.dedup();
    let lister = Arc::new(lister);
    let edges: Vec<Option<String>> =
        std::iter::once(None).chain(bounds.into_iter().map(Some)).chain(std::iter::once(None)).collect();
    let mut tasks = Tasks(Vec::new());
    let mut pages = Vec::new();
    for w in edges.windows(2) {
        let (lister, after, upto) = (Arc::clone(&lister), w[0].clone(), w[1].clone());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        pages.push(rx);
        tasks.0.push(tokio::spawn(async move {
            // A closed channel means the listing has ended; `Tasks` aborts this one then.
            lister.range(after.as_deref(), upto.as_deref(), |page| drop(tx.send(page))).await
        }));
    }
    let mut last: Option<String> = None;
    for (i, mut rx) in pages.into_iter().enumerate() {
        while let Some(page) = rx.recv().await {
            for e in page {
                if last.as_ref().is_some_and(|l| e.key <= *l) {
                    return Err(RemoteError::Other {
                        op: "list",
                        detail: format!(
                            "the server listed {:?} after {:?}: out of S3's key order, so bmsync cannot \
                             list it in ranges",
                            e.key,
                            last.unwrap_or_default()
                        ),
                    });
                }
                // Reuses one buffer: this runs for every listed key.
                match &mut last {
                    Some(l) => l.clone_from(&e.key),
                    None => last = Some(e.key.clone()),
                }
                each(e);
            }
        }
        // The range has sent its last page; its task says how it ended.
        match (&mut tasks.0[i]).await {
            Ok(r) => r?,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => return Err(RemoteError::Other { op: "list", detail: format!("a listing task: {e}") }),
        }
    }
    Ok(())
}

/// The tasks of one listing, stopped when it ends however it ends.
struct Tasks(Vec<tokio::task::JoinHandle<Result<(), RemoteError>>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}
