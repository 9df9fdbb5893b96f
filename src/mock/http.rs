//! Wire-format helpers shared by the mock's handlers: the per-request context ([`Ctx`]),
//! the handler result ([`Reply`]), Esper's two error shapes, DRF-style limit/offset pages
//! with absolute `next`/`previous` links, query parsing, and RFC 3339 timestamps. Routing is
//! left to `routes`, resource logic to `api`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use tokio::time::Instant;
use url::form_urlencoded;

use super::CommandBehaviour;
use super::routes::Family;

/// Everything a handler may read about the request besides its body.
pub(crate) struct Ctx {
    pub family: Family,
    /// `http://host:port` as the client addressed us, for absolute URLs.
    pub origin: String,
    /// The raw path, `/api` included.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub enterprise_id: String,
    pub now: Instant,
    pub wall: SystemTime,
    pub seed: u64,
    pub commands: CommandBehaviour,
}

impl Ctx {
    /// The last value of a query parameter, as Django's `QueryDict.get` returns it.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A non-empty query parameter; Django filters ignore `?name=`.
    pub fn filter(&self, key: &str) -> Option<&str> {
        self.param(key).filter(|v| !v.is_empty())
    }

    /// `{origin}/api`.
    pub fn api(&self) -> String {
        format!("{}/api", self.origin)
    }

    pub fn enterprise_url(&self) -> String {
        format!("{}/enterprise/{}/", self.api(), self.enterprise_id)
    }

    pub fn not_found(&self) -> Reply {
        error(self.family, 404, "Not found.", vec!["Not found.".into()])
    }

    pub fn bad_request(&self, errors: Vec<FieldError>) -> Reply {
        field_errors(self.family, errors)
    }

    pub fn bad_field(&self, field: &str, msg: impl Into<String>) -> Reply {
        self.bad_request(vec![FieldError::new(field, msg)])
    }

    /// A 200 answer in this route's family: bare for core, enveloped for services.
    pub fn ok(&self, body: Value) -> Reply {
        self.wrap(200, body, false)
    }

    /// A 201 for a committed create.
    pub fn created(&self, body: Value) -> Reply {
        self.wrap(201, body, true)
    }

    fn wrap(&self, status: u16, body: Value, created: bool) -> Reply {
        let body = match self.family {
            Family::Core => body,
            Family::Service => json!({"code": status, "message": "Success", "content": body}),
        };
        Reply {
            status,
            body: Some(body),
            created,
        }
    }
}

/// What a handler decided: a status and an optional JSON body.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: Option<Value>,
    /// True when this answer reports a committed create (eligible for commit-then-fail).
    pub created: bool,
}

impl Reply {
    pub fn no_content() -> Reply {
        Reply {
            status: 204,
            body: None,
            created: false,
        }
    }
}

/// One validation problem; `field` may be dotted (`conditions.unit`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        FieldError {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// An error answer in the family's shape (API.md §3.1).
pub(crate) fn error(family: Family, status: u16, message: &str, errors: Vec<String>) -> Reply {
    let body = match family {
        Family::Core => json!({"errors": errors, "message": message, "status": status}),
        Family::Service => json!({"code": status, "message": message, "content": {}}),
    };
    Reply {
        status,
        body: Some(body),
        created: false,
    }
}

/// A 400 naming every bad field: `errors: ["field: msg", …]` for core routes, `content:
/// {field: [msg, …]}` for services. The message repeats the first problem so clients that
/// read only `message` still learn something.
pub(crate) fn field_errors(family: Family, errors: Vec<FieldError>) -> Reply {
    let lines: Vec<String> = errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect();
    let message = lines
        .first()
        .cloned()
        .unwrap_or_else(|| "Invalid input.".to_string());
    let body = match family {
        Family::Core => json!({"errors": lines, "message": message, "status": 400}),
        Family::Service => {
            let mut content = Map::new();
            for e in &errors {
                let entry = content
                    .entry(e.field.clone())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(list) = entry {
                    list.push(Value::String(e.message.clone()));
                }
            }
            json!({"code": 400, "message": message, "content": content})
        }
    };
    Reply {
        status: 400,
        body: Some(body),
        created: false,
    }
}

/// Parsed `limit` / `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PageParams {
    pub limit: usize,
    pub offset: usize,
}

impl PageParams {
    /// DRF `LimitOffsetPagination`: a limit that is not a positive integer means the
    /// default, an offset that is not a non-negative integer means 0, `max` caps the limit.
    pub fn from_ctx(ctx: &Ctx, default: usize, max: Option<usize>) -> PageParams {
        let limit = match ctx.param("limit").and_then(parse_count) {
            Some(n) if n > 0 => n,
            _ => default,
        };
        let limit = max.map_or(limit, |m| limit.min(m));
        let offset = ctx.param("offset").and_then(parse_count).unwrap_or(0);
        PageParams { limit, offset }
    }

    /// The slice of `items` this page covers.
    pub fn slice<'a, T>(&self, items: &'a [T]) -> &'a [T] {
        let start = self.offset.min(items.len());
        let end = start.saturating_add(self.limit).min(items.len());
        items.get(start..end).unwrap_or(&[])
    }
}

/// A non-negative integer as Python's `int()` reads it; absurdly long digit strings
/// saturate instead of failing, since Python would accept them.
fn parse_count(s: &str) -> Option<usize> {
    let t = s.trim();
    let t = t.strip_prefix('+').unwrap_or(t);
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(t.parse::<usize>().unwrap_or(usize::MAX))
}

/// DRF's `next` / `previous` links for a limit/offset page over `count` items.
pub(crate) fn page_links(ctx: &Ctx, count: usize, p: PageParams) -> (Value, Value) {
    let next_offset = p.offset.saturating_add(p.limit);
    let next = if next_offset < count {
        Value::String(page_url(ctx, p.limit, Some(next_offset)))
    } else {
        Value::Null
    };
    let previous = if p.offset == 0 {
        Value::Null
    } else if p.offset <= p.limit {
        Value::String(page_url(ctx, p.limit, None))
    } else {
        Value::String(page_url(ctx, p.limit, Some(p.offset - p.limit)))
    };
    (next, previous)
}

/// The current URL with `limit` and `offset` replaced (offset removed when `None`), query
/// keys sorted, as DRF's `replace_query_param` builds it.
fn page_url(ctx: &Ctx, limit: usize, offset: Option<usize>) -> String {
    let mut keys: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (k, v) in &ctx.query {
        if k != "limit" && k != "offset" {
            keys.entry(k.as_str()).or_default().push(v.as_str());
        }
    }
    let limit_s = limit.to_string();
    let offset_s = offset.map(|o| o.to_string());
    keys.insert("limit", vec![&limit_s]);
    if let Some(o) = &offset_s {
        keys.insert("offset", vec![o]);
    }
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, vs) in &keys {
        for v in vs {
            ser.append_pair(k, v);
        }
    }
    format!("{}{}?{}", ctx.origin, ctx.path, ser.finish())
}

/// A classic DRF page: `{count, next, previous, results}`.
pub(crate) fn classic_page(ctx: &Ctx, count: usize, p: PageParams, results: Vec<Value>) -> Value {
    let (next, previous) = page_links(ctx, count, p);
    json!({"count": count, "next": next, "previous": previous, "results": results})
}

/// Splits a comma-separated id list, ignoring blanks.
pub(crate) fn csv(s: &str) -> Vec<&str> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .collect()
}

/// Parses a query string into ordered pairs, `+` and `%xx` decoded.
pub(crate) fn parse_query(q: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Django's UUID path converter: the 36-character hyphenated form only.
pub(crate) fn strict_uuid(s: &str) -> Option<uuid::Uuid> {
    if s.len() != 36 {
        return None;
    }
    uuid::Uuid::try_parse(s).ok()
}

/// `2024-01-01T00:00:00.000000Z`.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A fixed instant for the seeded inventory, so two runs render byte-identical objects.
pub(crate) fn inventory_time(offset_secs: u64) -> String {
    // 2024-01-01T00:00:00Z
    rfc3339(UNIX_EPOCH + Duration::from_secs(1_704_067_200 + offset_secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(query: &str) -> Ctx {
        Ctx {
            family: Family::Core,
            origin: "http://h:1".into(),
            path: "/api/x/".into(),
            query: parse_query(query),
            enterprise_id: "e".into(),
            now: Instant::now(),
            wall: SystemTime::now(),
            seed: 0,
            commands: CommandBehaviour::default(),
        }
    }

    #[test]
    fn limits_fall_back_like_drf() {
        let p = |q: &str| PageParams::from_ctx(&ctx(q), 20, Some(1000));
        assert_eq!(
            p(""),
            PageParams {
                limit: 20,
                offset: 0
            }
        );
        assert_eq!(
            p("limit=0&offset=-3"),
            PageParams {
                limit: 20,
                offset: 0
            }
        );
        assert_eq!(
            p("limit=abc&offset=x"),
            PageParams {
                limit: 20,
                offset: 0
            }
        );
        assert_eq!(
            p("limit=99999999999999999999999"),
            PageParams {
                limit: 1000,
                offset: 0
            }
        );
        assert_eq!(
            p("limit=5&offset=7"),
            PageParams {
                limit: 5,
                offset: 7
            }
        );
        let huge = PageParams::from_ctx(&ctx("limit=99999999999999999999&offset=9"), 20, None);
        assert_eq!(huge.slice(&[1, 2, 3]), &[] as &[i32]);
        assert_eq!(
            PageParams {
                limit: usize::MAX,
                offset: 1
            }
            .slice(&[1, 2, 3]),
            &[2, 3]
        );
    }

    #[test]
    fn links_follow_drf() {
        let c = ctx("name=a+b&offset=4&limit=2");
        let (next, prev) = page_links(
            &c,
            7,
            PageParams {
                limit: 2,
                offset: 4,
            },
        );
        assert_eq!(next, json!("http://h:1/api/x/?limit=2&name=a+b&offset=6"));
        assert_eq!(prev, json!("http://h:1/api/x/?limit=2&name=a+b&offset=2"));
        let (next, prev) = page_links(
            &c,
            6,
            PageParams {
                limit: 2,
                offset: 2,
            },
        );
        assert_eq!(next, json!("http://h:1/api/x/?limit=2&name=a+b&offset=4"));
        assert_eq!(prev, json!("http://h:1/api/x/?limit=2&name=a+b"));
        let (next, prev) = page_links(
            &c,
            6,
            PageParams {
                limit: 2,
                offset: 4,
            },
        );
        assert_eq!((next, prev.is_string()), (Value::Null, true));
        let (_, prev) = page_links(
            &c,
            6,
            PageParams {
                limit: usize::MAX,
                offset: 0,
            },
        );
        assert_eq!(prev, Value::Null);
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(inventory_time(0), "2024-01-01T00:00:00.000000Z");
        assert_eq!(
            inventory_time(86_400 * 60 + 3661),
            "2024-03-01T01:01:01.000000Z"
        );
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn uuids_must_be_hyphenated() {
        assert!(strict_uuid("67e55044-10b1-426f-9247-bb680e5fe0c8").is_some());
        assert!(strict_uuid("67e5504410b1426f9247bb680e5fe0c8").is_none());
        assert!(strict_uuid("{67e55044-10b1-426f-9247-bb680e5fe0c}").is_none());
        assert!(strict_uuid("x").is_none());
    }
}
