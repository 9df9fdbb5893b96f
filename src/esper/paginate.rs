//! Following a list endpoint's pages: the server's `next` links (or cursors) exactly as
//! given, each page decoded by its style in [`super::page`], and the rules that keep a
//! misbehaving server from leading the client off the configured host or in circles.

use futures::{Stream, TryStreamExt};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::client::Client;
use super::error::{ApiError, ErrorKind};
use super::page::{self, Next, PageStyle};
use super::transport::{Body, display_path};
use crate::base::{Endpoint, RequestKind};

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
        enum At {
            First,
            Url(String),
            Cursor(String),
            Done,
        }
        let client = self.clone();
        let first = self.at(&endpoint, id);
        let pages = futures::stream::try_unfold((At::First, 0usize), move |(at, n)| {
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
                let body: Value = client
                    .json(RequestKind::Read, method.clone(), &target, &q, Body::None)
                    .await?;
                let shown = display_path(&client.conn.base_url, &client.url(&target), &q);
                let decode_err = |e: String| ApiError {
                    method: method.to_string(),
                    path: shown.clone(),
                    kind: ErrorKind::Decode(e),
                };
                let page = page::decode(style, body).map_err(|e| decode_err(e.to_string()))?;
                let items = page
                    .items
                    .into_iter()
                    .map(|v| serde_json::from_value::<T>(v).map_err(|e| decode_err(e.to_string())))
                    .collect::<Result<Vec<T>, _>>()?;
                let next = match page.next {
                    None => At::Done,
                    Some(Next::Cursor(c)) => At::Cursor(c),
                    Some(Next::Url(u)) => {
                        // The bearer key goes wherever `next` points: never follow a link
                        // off the configured server.
                        if !same_origin(&client.conn.base_url, &u) {
                            return Err(decode_err(format!(
                                "`next` link {u} points away from {}",
                                client.conn.base_url
                            )));
                        }
                        if u == client.url(&target) && q.is_empty() {
                            return Err(decode_err("`next` link repeats the current page".into()));
                        }
                        At::Url(u)
                    }
                };
                // A bound far above any real fleet (10M items at 100 per page) stops a
                // server that keeps inventing pages.
                if n > 100_000 {
                    return Err(decode_err(
                        "more than 100000 pages; refusing to continue".into(),
                    ));
                }
                Ok(Some((items, (next, n + 1))))
            }
        });
        pages
            .map_ok(|items| futures::stream::iter(items.into_iter().map(Ok)))
            .try_flatten()
    }
}

fn same_origin(base: &str, other: &str) -> bool {
    match (url::Url::parse(base), url::Url::parse(other)) {
        (Ok(a), Ok(b)) => {
            a.scheme() == b.scheme()
                && a.host_str() == b.host_str()
                && a.port_or_known_default() == b.port_or_known_default()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert!(same_origin(
            "http://127.0.0.1:80/api",
            "http://127.0.0.1/api/x/?offset=2"
        ));
        assert!(!same_origin(
            "https://a-api.esper.cloud/api",
            "https://evil.example/api/x"
        ));
    }
}
