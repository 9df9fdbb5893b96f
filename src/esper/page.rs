//! Decoders for Esper's three pagination styles, and the rules a walk over pages keeps.
//!
//! Esper pages lists three ways: Django REST framework (`{count,next,previous,results}`), the
//! service envelope (`{code,message,content:{count,next,previous|prev,results}}`) and the
//! `/v2/devices/` cursor (`content:{results,next_cursor,prev_cursor}`). The client drives one
//! paginator with these decoders and follows `next` exactly as given rather than computing
//! offsets (which skip or repeat items when the set changes mid-scan). The HTTP loop itself
//! lives in the client's `paginate`.
//!
//! Decoding is strict, because "no such rule" read from a page decides that a create is
//! sent: a page without its `results` list, or without a whole-number `count` where its
//! style has one, is an error, never an empty page. A [`Walk`] checks the pages against
//! each other: `count` agrees with what arrived, a `next` link stays on the configured
//! server and never leads back to a page already read, and pages keep advancing.
use std::collections::{BTreeSet, HashMap};
use std::hash::Hasher;

use serde_json::Value;

/// How a list endpoint pages its results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageStyle {
    /// `{count, next, previous, results}` with absolute `next` URLs.
    Drf,
    /// `{code, message, content: {count, next, previous|prev, results}}`.
    Envelope,
    /// `/v2/devices/` in cursor mode: `content: {results, next_cursor, prev_cursor}`.
    Cursor,
}

/// Where the next page is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// An absolute URL to fetch as is.
    Url(String),
    /// A cursor to send as `cursor=` on the same path.
    Cursor(String),
}

/// One decoded page.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub items: Vec<Value>,
    /// The link or cursor the page offers, as sent (a [`Walk`] decides whether to follow it).
    pub next: Option<Next>,
    /// `count` (or `total`); `None` only in the cursor style, which has none.
    pub count: Option<u64>,
}

/// The most pages one listing may have: far above any real fleet (10M items at 100 a page).
pub const MAX_PAGES: usize = 100_000;

/// Why a page, or a sequence of pages, cannot be trusted. None of these changes on retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    /// The body does not have the shape its style promises.
    #[error("expected {expected}, found {found}")]
    Shape {
        /// What the page should have held there, e.g. "`results` to be a list".
        expected: &'static str,
        /// What it held instead, e.g. "a string" or "nothing".
        found: &'static str,
    },
    /// More items arrived than `count` says there are.
    #[error("`count` says {count} items but {seen} arrived")]
    CountExceeded { count: u64, seen: u64 },
    /// The pages stopped (no `next`, or an empty page) before `count` items arrived.
    #[error("the listing ended after {seen} items but `count` says {count}")]
    EndedShort { count: u64, seen: u64 },
    /// A `next` link (or cursor) leads to a page that was already read.
    #[error("`next` leads back to {next}, a page already read")]
    RepeatedNext { next: String },
    /// A page holds exactly the items of an earlier one: the links move, the listing does not.
    #[error("page {page} repeats the items of page {earlier}")]
    NoProgress { page: usize, earlier: usize },
    /// A `next` link points at another scheme, host or port than the base URL; the bearer
    /// key would go with it.
    #[error("`next` link {next} points away from {base}")]
    OffHost { next: String, base: String },
    #[error("more than {0} pages")]
    TooManyPages(usize),
}

fn shape(expected: &'static str, found: Option<&Value>) -> PageError {
    PageError::Shape {
        expected,
        found: found.map(kind).unwrap_or("nothing"),
    }
}

/// Decodes a page body in the given style.
pub fn decode(style: PageStyle, body: Value) -> Result<Page, PageError> {
    let obj = match style {
        PageStyle::Drf => body,
        PageStyle::Envelope | PageStyle::Cursor => match body {
            Value::Object(mut map) => match map.remove("content") {
                Some(content @ Value::Object(_)) => content,
                Some(other) => return Err(shape("`content` to be an object", Some(&other))),
                // Some service lists are not wrapped; accept a bare page too.
                None => Value::Object(map),
            },
            other => return Err(shape("an object", Some(&other))),
        },
    };
    let Value::Object(mut map) = obj else {
        return Err(shape("a page object", Some(&obj)));
    };
    let items = match map.remove("results") {
        Some(Value::Array(items)) => items,
        other => return Err(shape("`results` to be a list", other.as_ref())),
    };
    let count = match map.get("count").or_else(|| map.get("total")) {
        Some(v) if v.is_u64() => v.as_u64(),
        None if style == PageStyle::Cursor => None,
        other => return Err(shape("`count` to be a whole number", other)),
    };
    let link = |key: &'static str, expected: &'static str| match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(shape(expected, Some(other))),
    };
    let next = match link("next_cursor", "`next_cursor` to be a string or null")? {
        Some(c) => Some(Next::Cursor(c)),
        None => link("next", "`next` to be a URL or null")?.map(Next::Url),
    };
    Ok(Page { items, next, count })
}

/// The checks across the pages of one listing, fed page by page by the paginator: which
/// URLs were read, how many items arrived, and a digest of each page's items.
#[derive(Debug)]
pub struct Walk {
    base: String,
    seen: u64,
    pages: usize,
    visited: BTreeSet<String>,
    digests: HashMap<u64, usize>,
}

impl Walk {
    /// A walk whose links must stay on `base_url`'s scheme, host and port.
    pub fn new(base_url: &str) -> Walk {
        Walk {
            base: base_url.to_string(),
            seen: 0,
            pages: 0,
            visited: BTreeSet::new(),
            digests: HashMap::new(),
        }
    }

    /// Records that the page at `url` (query included) is about to be read; a page read
    /// before means the links go in circles.
    pub fn visit(&mut self, url: &str) -> Result<(), PageError> {
        if self.visited.insert(normalized(url)) {
            Ok(())
        } else {
            Err(PageError::RepeatedNext {
                next: url.to_string(),
            })
        }
    }

    /// Takes one decoded page: its items, and where the next page is (`None` when the
    /// listing is complete), or why the page contradicts the ones before it.
    pub fn take(&mut self, page: Page) -> Result<(Vec<Value>, Option<Next>), PageError> {
        self.pages += 1;
        if self.pages > MAX_PAGES {
            return Err(PageError::TooManyPages(MAX_PAGES));
        }
        self.seen += page.items.len() as u64;
        if let Some(count) = page.count
            && self.seen > count
        {
            return Err(PageError::CountExceeded {
                count,
                seen: self.seen,
            });
        }
        if !page.items.is_empty() {
            let d = digest(&page.items);
            if let Some(earlier) = self.digests.insert(d, self.pages) {
                return Err(PageError::NoProgress {
                    page: self.pages,
                    earlier,
                });
            }
        }
        // An empty page ends the scan even if the server still offers a link: following
        // it could loop forever on a misbehaving server.
        let next = if page.items.is_empty() {
            None
        } else {
            page.next
        };
        match &next {
            None => {
                if let Some(count) = page.count
                    && self.seen < count
                {
                    return Err(PageError::EndedShort {
                        count,
                        seen: self.seen,
                    });
                }
            }
            Some(Next::Url(u)) if !same_origin(&self.base, u) => {
                return Err(PageError::OffHost {
                    next: u.clone(),
                    base: self.base.clone(),
                });
            }
            Some(_) => {}
        }
        Ok((page.items, next))
    }
}

/// A URL with its query pairs sorted, so the same page is recognised however its link
/// orders them.
fn normalized(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let mut pairs: Vec<(String, String)> = u
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            pairs.sort();
            u.set_fragment(None);
            if pairs.is_empty() {
                u.set_query(None);
            } else {
                u.query_pairs_mut().clear().extend_pairs(pairs);
            }
            u.to_string()
        }
        Err(_) => url.to_string(),
    }
}

/// Whether `other` has `base`'s scheme, host and port.
pub fn same_origin(base: &str, other: &str) -> bool {
    match (url::Url::parse(base), url::Url::parse(other)) {
        (Ok(a), Ok(b)) => {
            a.scheme() == b.scheme()
                && a.host_str() == b.host_str()
                && a.port_or_known_default() == b.port_or_known_default()
        }
        _ => false,
    }
}

/// A hash of a page's items as JSON, without building the text.
fn digest(items: &[Value]) -> u64 {
    struct H(std::collections::hash_map::DefaultHasher);
    impl std::io::Write for H {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.write(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut h = H(Default::default());
    // Writing into a hasher cannot fail.
    let _ = serde_json::to_writer(&mut h, items);
    h.0.finish()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn drf_page() {
        let p = decode(PageStyle::Drf, json!({"count": 3, "next": "http://h/api/x/?limit=2&offset=2", "previous": null, "results": [1, 2]})).unwrap();
        assert_eq!(p.items.len(), 2);
        assert_eq!(p.count, Some(3));
        assert_eq!(
            p.next,
            Some(Next::Url("http://h/api/x/?limit=2&offset=2".into()))
        );
    }

    #[test]
    fn envelope_prev_or_previous() {
        for prev in ["prev", "previous"] {
            let p = decode(PageStyle::Envelope, json!({"code": 200, "message": "ok", "content": {"count": 1, "next": null, prev: null, "results": [{"id": "a"}]}})).unwrap();
            assert_eq!(p.items.len(), 1);
            assert_eq!(p.next, None);
        }
    }

    #[test]
    fn cursor_page() {
        let p = decode(
            PageStyle::Cursor,
            json!({"content": {"results": [1], "next_cursor": "abc", "prev_cursor": null}}),
        )
        .unwrap();
        assert_eq!(p.next, Some(Next::Cursor("abc".into())));
        let last = decode(
            PageStyle::Cursor,
            json!({"content": {"results": [1], "next_cursor": null}}),
        )
        .unwrap();
        assert_eq!(last.next, None);
    }

    #[test]
    fn malformed_pages_are_errors() {
        let drf = |v| decode(PageStyle::Drf, v);
        assert!(drf(json!([1, 2])).is_err());
        assert!(decode(PageStyle::Envelope, json!({"content": 5})).is_err());
        // Each of these once read as "nothing exists", and a create followed.
        for (body, want) in [
            (json!({}), "expected `results` to be a list, found nothing"),
            (
                json!({"count": 0, "next": null, "results": null}),
                "expected `results` to be a list, found null",
            ),
            (
                json!({"count": 1, "results": "x"}),
                "expected `results` to be a list, found a string",
            ),
            (
                json!({"errors": ["boom"], "message": "boom", "status": 500}),
                "expected `results` to be a list, found nothing",
            ),
            (
                json!({"results": []}),
                "expected `count` to be a whole number, found nothing",
            ),
            (
                json!({"count": "3", "results": []}),
                "expected `count` to be a whole number, found a string",
            ),
            (
                json!({"count": -1, "results": []}),
                "expected `count` to be a whole number, found a number",
            ),
            (
                json!({"count": 1, "next": 7, "results": [1]}),
                "expected `next` to be a URL or null, found a number",
            ),
        ] {
            assert_eq!(drf(body.clone()).unwrap_err().to_string(), want, "{body}");
        }
        let service_error = json!({"code": 500, "message": "internal", "content": {}});
        assert!(decode(PageStyle::Envelope, service_error).is_err());
        assert!(decode(PageStyle::Cursor, json!({"content": {"next_cursor": "a"}})).is_err());
    }

    fn page(items: &[u64], next: Option<&str>, count: Option<u64>) -> Page {
        Page {
            items: items.iter().map(|i| json!({ "id": i })).collect(),
            next: next.map(|n| Next::Url(n.to_string())),
            count,
        }
    }

    const BASE: &str = "http://h/api";

    #[test]
    fn a_walk_follows_consistent_pages_to_the_end() {
        let mut w = Walk::new(BASE);
        w.visit("http://h/api/x/?offset=0&limit=2").unwrap();
        let (items, next) = w
            .take(page(
                &[1, 2],
                Some("http://h/api/x/?limit=2&offset=2"),
                Some(3),
            ))
            .unwrap();
        assert_eq!((items.len(), next.is_some()), (2, true));
        w.visit("http://h/api/x/?limit=2&offset=2").unwrap();
        let (_, next) = w.take(page(&[3], None, Some(3))).unwrap();
        assert_eq!(next, None);
        // The cursor style has no count; an empty page ends it even with a cursor.
        let mut c = Walk::new(BASE);
        let empty = Page {
            items: vec![],
            next: Some(Next::Cursor("more".into())),
            count: None,
        };
        assert_eq!(c.take(empty).unwrap().1, None);
    }

    #[test]
    fn counts_that_contradict_the_items_are_errors() {
        let mut w = Walk::new(BASE);
        assert_eq!(
            w.take(page(&[1, 2, 3], Some("http://h/api/x/?offset=3"), Some(2))),
            Err(PageError::CountExceeded { count: 2, seen: 3 })
        );
        // Empty while count says more remain, with or without a link.
        for next in [None, Some("http://h/api/x/?offset=9")] {
            let mut w = Walk::new(BASE);
            assert_eq!(
                w.take(page(&[], next, Some(5))),
                Err(PageError::EndedShort { count: 5, seen: 0 })
            );
        }
        let mut w = Walk::new(BASE);
        w.take(page(&[1], Some("http://h/api/x/?offset=1"), Some(3)))
            .unwrap();
        assert_eq!(
            w.take(page(&[2], None, Some(3))),
            Err(PageError::EndedShort { count: 3, seen: 2 })
        );
        // A count that went down mid-scan (a rule deleted) is fine once it agrees.
        let mut w = Walk::new(BASE);
        w.take(page(&[1], Some("http://h/api/x/?offset=1"), Some(3)))
            .unwrap();
        assert!(w.take(page(&[2], None, Some(2))).is_ok());
    }

    #[test]
    fn links_that_circle_stall_or_leave_the_host_are_errors() {
        let mut w = Walk::new(BASE);
        w.visit("http://h/api/x/?limit=2&offset=0").unwrap();
        w.visit("http://h/api/x/?offset=2&limit=2").unwrap();
        assert_eq!(
            w.visit("http://h/api/x/?offset=0&limit=2"),
            Err(PageError::RepeatedNext {
                next: "http://h/api/x/?offset=0&limit=2".into()
            }),
            "the same page however its query is ordered"
        );
        let mut w = Walk::new(BASE);
        w.take(page(&[1, 2], Some("http://h/api/x/?o=1"), Some(1_000)))
            .unwrap();
        assert_eq!(
            w.take(page(&[1, 2], Some("http://h/api/x/?o=2"), Some(1_000))),
            Err(PageError::NoProgress {
                page: 2,
                earlier: 1
            })
        );
        for evil in [
            "https://h/api/x/",
            "http://h:8080/api/x/",
            "http://evil/api/x/",
            "/api/x/",
        ] {
            let mut w = Walk::new(BASE);
            assert!(
                matches!(
                    w.take(page(&[1], Some(evil), None)),
                    Err(PageError::OffHost { .. })
                ),
                "{evil}"
            );
        }
        assert!(same_origin(
            "http://127.0.0.1:80/api",
            "http://127.0.0.1/api/x/?offset=2"
        ));
    }
}
