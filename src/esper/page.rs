//! Decoders for Esper's three pagination styles, and the link-following rules.
//!
//! Esper pages lists three ways: Django REST framework (`{count,next,previous,results}`), the
//! service envelope (`{code,message,content:{count,next,previous|prev,results}}`) and the
//! `/v2/devices/` cursor (`content:{results,next_cursor,prev_cursor}`). The client drives one
//! paginator with these decoders and follows `next` exactly as given, stopping on an empty
//! page, rather than computing offsets (which skip or repeat items when the set changes
//! mid-scan). The HTTP loop itself lives in the client.

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
    pub next: Option<Next>,
    pub count: Option<u64>,
}

/// A page body without the shape its style promises.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected}, found {found}")]
pub struct PageError {
    /// What the page should have held there, e.g. "`results` to be a list".
    pub expected: &'static str,
    /// What it held instead, e.g. "a string".
    pub found: &'static str,
}

fn shape(expected: &'static str, found: &Value) -> PageError {
    PageError {
        expected,
        found: kind(found),
    }
}

/// Decodes a page body in the given style.
pub fn decode(style: PageStyle, body: Value) -> Result<Page, PageError> {
    let obj = match style {
        PageStyle::Drf => body,
        PageStyle::Envelope | PageStyle::Cursor => match body {
            Value::Object(mut map) => match map.remove("content") {
                Some(content @ Value::Object(_)) => content,
                Some(other) => return Err(shape("`content` to be an object", &other)),
                // Some service lists are not wrapped; accept a bare page too.
                None => Value::Object(map),
            },
            other => return Err(shape("an object", &other)),
        },
    };
    let Value::Object(mut map) = obj else {
        return Err(shape("a page object", &obj));
    };
    let items = match map.remove("results") {
        Some(Value::Array(items)) => items,
        Some(Value::Null) | None => Vec::new(),
        Some(other) => return Err(shape("`results` to be a list", &other)),
    };
    let count = map
        .get("count")
        .or_else(|| map.get("total"))
        .and_then(Value::as_u64);
    let next = match map.get("next_cursor") {
        Some(Value::String(c)) if !c.is_empty() => Some(Next::Cursor(c.clone())),
        _ => match map.get("next") {
            Some(Value::String(u)) if !u.is_empty() => Some(Next::Url(u.clone())),
            _ => None,
        },
    };
    // An empty page ends the scan even if the server still offers a link: following it
    // could loop forever on a misbehaving server.
    let next = if items.is_empty() { None } else { next };
    Ok(Page { items, next, count })
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
    fn empty_page_stops_even_with_next() {
        let p = decode(
            PageStyle::Drf,
            json!({"count": 9, "next": "http://h/x/?offset=20", "results": []}),
        )
        .unwrap();
        assert_eq!(p.next, None);
    }

    #[test]
    fn malformed_pages_are_errors() {
        assert!(decode(PageStyle::Drf, json!([1, 2])).is_err());
        assert!(decode(PageStyle::Drf, json!({"results": "x"})).is_err());
        assert!(decode(PageStyle::Envelope, json!({"content": 5})).is_err());
    }
}
