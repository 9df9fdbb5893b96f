//! Following a list endpoint's pages: the server's `next` links (or cursors) exactly as
//! given, each page decoded by its style in [`super::page`], and checked against the pages
//! before it by a [`Walk`], so a misbehaving server cannot lead the client off the
//! configured host, in circles, or to "nothing exists" from a page that is not a page.
//!
//! Every way a listing fails here is an [`ErrorKind::Page`] (or a decode error for an item),
//! which no retry can change. A page whose request failed transiently is asked for again,
//! alone, when the client has a [`PageRetry`]; deciding which failures those are is the
//! caller's.

use futures::{Stream, TryStreamExt};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::client::{Client, PageRetry};
use super::error::{ApiError, ErrorKind};
use super::page::{self, Next, PageStyle, Walk};
use super::transport::{Body, display_path};
use crate::base::{Endpoint, RequestKind};

/// Where the next request of a listing goes.
enum At {
    First,
    Url(String),
    Cursor(String),
    Done,
}

impl Client {
    /// A stream of every item of a list endpoint, following the server's `next` links
    /// exactly.
    pub fn paginate<T: DeserializeOwned + Send + 'static>(
        &self,
        endpoint: Endpoint,
        id: Option<&str>,
        query: Vec<(String, String)>,
        style: PageStyle,
    ) -> impl Stream<Item = Result<T, ApiError>> + Send + 'static {
        let kind = match endpoint {
            Endpoint::ListDevicesV2 => RequestKind::DeviceList,
            _ => RequestKind::Read,
        };
        self.paginate_kind(self.at(&endpoint, id), query, style, kind)
    }

    /// [`Client::paginate`] from a first path already made (an endpoint with two ids).
    pub(super) fn paginate_from<T: DeserializeOwned + Send + 'static>(
        &self,
        first: Result<(reqwest::Method, String), ApiError>,
        query: Vec<(String, String)>,
        style: PageStyle,
    ) -> impl Stream<Item = Result<T, ApiError>> + Send + 'static {
        self.paginate_kind(first, query, style, RequestKind::Read)
    }

    /// Every page, each request of the given kind (what the throttle paces it as).
    fn paginate_kind<T: DeserializeOwned + Send + 'static>(
        &self,
        first: Result<(reqwest::Method, String), ApiError>,
        query: Vec<(String, String)>,
        style: PageStyle,
        kind: RequestKind,
    ) -> impl Stream<Item = Result<T, ApiError>> + Send + 'static {
        let client = self.clone();
        let walk = Walk::new(&self.conn.base_url);
        let pages = futures::stream::try_unfold((At::First, walk), move |(at, mut walk)| {
            let client = client.clone();
            let first = first.clone();
            let query = query.clone();
            async move {
                let (method, path) = first?;
                let (target, q) = match at {
                    At::Done => return Ok(None),
                    At::First => (path.clone(), query.clone()),
                    At::Url(u) => (u, Vec::new()),
                    At::Cursor(c) => {
                        let mut q: Vec<_> = query
                            .iter()
                            .filter(|(k, _)| k != "cursor")
                            .cloned()
                            .collect();
                        q.push(("cursor".into(), c));
                        (path.clone(), q)
                    }
                };
                let url = client.full_url(&target);
                let shown = display_path(&client.conn.base_url, &url, &q);
                let fail = |kind: ErrorKind| ApiError {
                    method: method.to_string(),
                    path: shown.clone(),
                    kind,
                };
                let full = url::Url::parse_with_params(&url, &q)
                    .map(|u| u.to_string())
                    .unwrap_or_else(|_| url.clone());
                // Checked before sending, so a link back to a page already read costs
                // no request.
                walk.visit(&full).map_err(|e| fail(ErrorKind::Page(e)))?;
                let body: Value = client.page(kind, &method, &target, &q).await?;
                let page = page::decode(style, body).map_err(|e| fail(ErrorKind::Page(e)))?;
                let (items, next) = walk.take(page).map_err(|e| fail(ErrorKind::Page(e)))?;
                let items = items
                    .into_iter()
                    .map(|v| {
                        serde_json::from_value::<T>(v)
                            .map_err(|e| fail(ErrorKind::Decode(e.to_string())))
                    })
                    .collect::<Result<Vec<T>, _>>()?;
                let next = match next {
                    None => At::Done,
                    Some(Next::Cursor(c)) => At::Cursor(c),
                    Some(Next::Url(u)) => At::Url(u),
                };
                Ok(Some((items, (next, walk))))
            }
        });
        pages
            .map_ok(|items| futures::stream::iter(items.into_iter().map(Ok)))
            .try_flatten()
    }

    /// One page's body, asked for again after a backoff while the client's [`PageRetry`]
    /// allows.
    async fn page(
        &self,
        kind: RequestKind,
        method: &reqwest::Method,
        target: &str,
        q: &[(String, String)],
    ) -> Result<Value, ApiError> {
        let once = || self.json(kind, method.clone(), target, q, Body::None);
        let Some(PageRetry {
            backoff,
            when,
            max_retry_after,
        }) = &self.page_retry
        else {
            return once().await;
        };
        use backon::Retryable;
        let cap = *max_retry_after;
        once.retry(*backoff)
            .sleep(tokio::time::sleep)
            .when(|e: &ApiError| when(e))
            .adjust(|e: &ApiError, d| d.map(|d| d.max(e.retry_after().unwrap_or_default().min(cap))))
            .notify(|e: &ApiError, d: std::time::Duration| {
                tracing::warn!(error = %e, wait_ms = d.as_millis() as u64, "listing page failed; asking for it again");
            })
            .await
    }
}
