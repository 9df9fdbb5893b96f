//! How a frozen target is written in a plan file: as items (formats 1 and 2) or, from
//! format 3, as columns that lose nothing but take a third of the space.
//!
//! A column form holds `count`, the ids (`uuids`: base64 of their 16 bytes each, when
//! every id is a canonical lowercase UUID; `ids` as strings otherwise), and the names and
//! details front-coded: each entry `<bytes shared with the previous one>:<the rest>`
//! (`null` for an item without a detail). Sequential names (`ACME-0001-002`) shrink to a
//! few bytes each. A target whose items are not all of its own kind is written as items in
//! every format, so nothing is ever dropped. Reading accepts both forms in every format.
//!
//! serde gives a field no view of its parent, so the plan's serializer says which form
//! its format writes through a scoped thread-local flag ([`columns_while`]); the plan's
//! hash, taken over the same serialization, covers the column form exactly. What the
//! target means (kinds, items) is the plan module's.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{FrozenTarget, Item, ItemKind};

thread_local! {
    static COLUMNS: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with targets serialized as columns (`on`) or items, restoring the previous
/// setting afterwards, also when `f` panics.
pub(super) fn columns_while<T>(on: bool, f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            COLUMNS.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(COLUMNS.with(|c| c.replace(on)));
    f()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 without padding.
fn b64_encode(bytes: &[u8], out: &mut String) {
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        let chars = c.len() + 1;
        for i in 0..chars {
            out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
}

fn b64_value(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    } as u32)
}

fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for c in s.chunks(4) {
        let mut n = 0u32;
        for (i, b) in c.iter().enumerate() {
            n |= b64_value(*b)? << (18 - 6 * i);
        }
        out.push((n >> 16) as u8);
        if c.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if c.len() > 3 {
            out.push(n as u8);
        }
    }
    Some(out)
}

/// The 16 bytes of a canonical (lowercase, hyphenated) UUID; `None` for any other text,
/// which then keeps its exact spelling in the `ids` column.
fn uuid_bytes(id: &str) -> Option<[u8; 16]> {
    let b = id.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut nibbles = 0usize;
    for (i, c) in b.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if *c != b'-' {
                return None;
            }
            continue;
        }
        let v = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        out[nibbles / 2] |= if nibbles.is_multiple_of(2) { v << 4 } else { v };
        nibbles += 1;
    }
    Some(out)
}

fn uuid_text(b: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(HEX[(byte >> 4) as usize] as char);
        s.push(HEX[(byte & 15) as usize] as char);
    }
    s
}

/// A front-coded column, written as one string: entries joined by newlines, each
/// `<shared>:<rest>` with `\\` and newlines inside escaped (`\\\\`, `\\n`), and an
/// entry without a colon for an item without the value. One string a column keeps a
/// pretty-printed plan from spending a line on every device; written through
/// `collect_str`, it is never built whole in memory.
struct Column<'a>(&'a [Item], fn(&Item) -> Option<&str>);

impl fmt::Display for Column<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut prev = "";
        for (n, item) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str("\n")?;
            }
            let Some(v) = (self.1)(item) else { continue };
            let mut shared = prev
                .bytes()
                .zip(v.bytes())
                .take_while(|(a, b)| a == b)
                .count();
            while !v.is_char_boundary(shared) {
                shared -= 1;
            }
            write!(f, "{shared}:")?;
            for c in v[shared..].chars() {
                match c {
                    '\\' => f.write_str("\\\\")?,
                    '\n' => f.write_str("\\n")?,
                    c => fmt::Write::write_char(f, c)?,
                }
            }
            prev = v;
        }
        Ok(())
    }
}

/// The ids' 16 bytes each in base64, written in pieces (a million ids are 21 MB of text).
struct Uuids<'a>(&'a [Item]);

impl fmt::Display for Uuids<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // 48 bytes (3 ids) encode to 64 characters without padding in between.
        let mut buf = Vec::with_capacity(48 * 64);
        let mut text = String::with_capacity(64 * 64);
        for chunk in self.0.chunks(3 * 64) {
            buf.clear();
            text.clear();
            for i in chunk {
                buf.extend_from_slice(&uuid_bytes(&i.id).ok_or(fmt::Error)?);
            }
            b64_encode(&buf, &mut text);
            f.write_str(&text)?;
        }
        Ok(())
    }
}

/// Why a column does not read back, naming the entry.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BadColumn(String);

/// A [`Column`] read back: `count` entries.
fn decode_column(text: &str, count: usize) -> Result<Vec<Option<String>>, BadColumn> {
    if count == 0 {
        return if text.is_empty() {
            Ok(Vec::new())
        } else {
            Err(BadColumn(
                "a column of an empty target holds entries".into(),
            ))
        };
    }
    let mut out = Vec::with_capacity(count);
    let mut prev = String::new();
    for entry in text.split('\n') {
        let Some((n, rest)) = entry.split_once(':') else {
            if !entry.is_empty() {
                return Err(BadColumn(format!("`{entry}` is not front-coded")));
            }
            out.push(None);
            continue;
        };
        let head = n
            .parse::<usize>()
            .ok()
            .and_then(|n| prev.get(..n))
            .ok_or_else(|| BadColumn(format!("`{entry}` is not front-coded")))?;
        let mut v = String::with_capacity(head.len() + rest.len());
        v.push_str(head);
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                v.push(c);
                continue;
            }
            match chars.next() {
                Some('n') => v.push('\n'),
                Some('\\') => v.push('\\'),
                _ => return Err(BadColumn(format!("`{entry}` has a bad escape"))),
            }
        }
        prev.clone_from(&v);
        out.push(Some(v));
    }
    if out.len() != count {
        return Err(BadColumn(format!(
            "a column holds {} entries for {count} items",
            out.len()
        )));
    }
    Ok(out)
}

/// A string serialized from its `Display`, piece by piece.
struct Collect<'a, T: fmt::Display>(&'a T);

impl<T: fmt::Display> Serialize for Collect<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self.0)
    }
}

/// Items, as formats 1 and 2 wrote them.
#[derive(Serialize)]
struct ItemsForm<'a> {
    kind: ItemKind,
    items: std::borrow::Cow<'a, [Item]>,
}

impl Serialize for FrozenTarget {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let columns = COLUMNS.with(Cell::get) && self.items.iter().all(|i| i.kind == self.kind);
        if !columns {
            return ItemsForm {
                kind: self.kind,
                items: std::borrow::Cow::Borrowed(&self.items),
            }
            .serialize(s);
        }
        let mut m = s.serialize_map(Some(5))?;
        m.serialize_entry("kind", &self.kind)?;
        m.serialize_entry("count", &self.items.len())?;
        if self.items.iter().all(|i| uuid_bytes(&i.id).is_some()) {
            m.serialize_entry("uuids", &Collect(&Uuids(&self.items)))?;
        } else {
            m.serialize_entry("ids", &Collect(&Column(&self.items, |i| Some(&i.id))))?;
        }
        m.serialize_entry("names", &Collect(&Column(&self.items, |i| Some(&i.name))))?;
        m.serialize_entry(
            "details",
            &Collect(&Column(&self.items, |i| i.detail.as_deref())),
        )?;
        m.end()
    }
}

impl<'de> Deserialize<'de> for FrozenTarget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<FrozenTarget, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FrozenTarget;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a frozen target (`kind` with `items`, or with columns)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<FrozenTarget, A::Error> {
                let mut kind = None;
                let mut items: Option<Vec<Item>> = None;
                let mut count: Option<usize> = None;
                let mut uuids: Option<String> = None;
                let mut ids: Option<String> = None;
                let mut names: Option<String> = None;
                let mut details: Option<String> = None;
                while let Some(key) = a.next_key::<std::borrow::Cow<'de, str>>()? {
                    match &*key {
                        "kind" => kind = Some(a.next_value::<ItemKind>()?),
                        "items" => items = Some(a.next_value()?),
                        "count" => count = Some(a.next_value()?),
                        "uuids" => uuids = Some(a.next_value()?),
                        "ids" => ids = Some(a.next_value()?),
                        "names" => names = Some(a.next_value()?),
                        "details" => details = Some(a.next_value()?),
                        _ => {
                            a.next_value::<de::IgnoredAny>()?;
                        }
                    }
                }
                let kind = kind.ok_or_else(|| de::Error::missing_field("kind"))?;
                if let Some(items) = items {
                    return Ok(FrozenTarget { kind, items });
                }
                let count = count.ok_or_else(|| de::Error::missing_field("count"))?;
                let column = |text: Option<String>, field: &'static str| {
                    let text = text.ok_or_else(|| de::Error::missing_field(field))?;
                    decode_column(&text, count)
                        .map_err(|e| de::Error::custom(format!("`{field}`: {e}")))
                };
                let ids: Vec<String> = match (uuids, ids) {
                    (Some(u), None) => {
                        let bytes = b64_decode(&u)
                            .filter(|b| b.len() == count * 16)
                            .ok_or_else(|| {
                                de::Error::custom(format!("`uuids` is not base64 of {count} UUIDs"))
                            })?;
                        bytes.chunks(16).map(uuid_text).collect()
                    }
                    (None, Some(ids)) => column(Some(ids), "ids")?
                        .into_iter()
                        .map(|i| i.ok_or_else(|| de::Error::custom("an id is null")))
                        .collect::<Result<_, _>>()?,
                    _ => return Err(de::Error::custom("a target needs one of `uuids` or `ids`")),
                };
                let names = column(names, "names")?;
                let details = column(details, "details")?;
                if ids.len() != count {
                    return Err(de::Error::custom(format!(
                        "a target's columns do not all hold its {count} items"
                    )));
                }
                let items = ids
                    .into_iter()
                    .zip(names)
                    .zip(details)
                    .map(|((id, name), detail)| {
                        Ok(Item {
                            kind,
                            id,
                            name: name.ok_or_else(|| de::Error::custom("a name is null"))?,
                            detail,
                        })
                    })
                    .collect::<Result<_, A::Error>>()?;
                Ok(FrozenTarget { kind, items })
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(items: Vec<Item>) -> FrozenTarget {
        FrozenTarget {
            kind: ItemKind::Device,
            items,
        }
    }

    fn device(id: &str, name: &str, detail: Option<&str>) -> Item {
        Item {
            kind: ItemKind::Device,
            id: id.into(),
            name: name.into(),
            detail: detail.map(str::to_string),
        }
    }

    #[test]
    fn base64_round_trips_every_length() {
        for n in 0..40u8 {
            let bytes: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            let mut s = String::new();
            b64_encode(&bytes, &mut s);
            assert_eq!(b64_decode(&s).unwrap(), bytes, "{n}");
        }
        assert!(b64_decode("a").is_none());
        assert!(b64_decode("ab=c").is_none());
    }

    #[test]
    fn only_canonical_uuids_become_bytes() {
        let id = "d9de041b-d2b6-4091-8b48-294afd65dc05";
        assert_eq!(uuid_text(&uuid_bytes(id).unwrap()), id);
        assert!(uuid_bytes("D9DE041B-d2b6-4091-8b48-294afd65dc05").is_none());
        assert!(uuid_bytes("d9de041bd2b6-4091-8b48-294afd65dc05-").is_none());
        assert!(uuid_bytes("dev-1").is_none());
    }

    #[test]
    fn columns_round_trip_without_loss() {
        let t = target(vec![
            device(
                "d9de041b-d2b6-4091-8b48-294afd65dc05",
                "ACME-0001",
                Some("R58"),
            ),
            device("d9de041b-d2b6-4091-8b48-294afd65dc06", "ACME-0002", None),
            device(
                "d9de041b-d2b6-4091-8b48-294afd65dc07",
                "ÄCME:é",
                Some("R58:1"),
            ),
            device("00000000-0000-0000-0000-000000000000", "", Some("")),
            device(
                "00000000-0000-0000-0000-000000000001",
                "new\nline \\n",
                Some("\\"),
            ),
        ]);
        let text = columns_while(true, || serde_json::to_string(&t).unwrap());
        assert!(text.contains("\"uuids\""), "{text}");
        assert!(text.contains(r#""names":"0:ACME-0001\n8:2\n"#), "{text}");
        let back: FrozenTarget = serde_json::from_str(&text).unwrap();
        assert_eq!(back, t);
        // Ids that are not UUIDs keep their spelling; items of another kind stay items.
        let odd = target(vec![
            device("dev-1", "a", None),
            device("dev-12", "a", None),
        ]);
        let text = columns_while(true, || serde_json::to_string(&odd).unwrap());
        assert!(text.contains(r#""ids":"0:dev-1\n5:2""#), "{text}");
        assert_eq!(serde_json::from_str::<FrozenTarget>(&text).unwrap(), odd);
        let mut mixed = odd.clone();
        mixed.items[0].kind = ItemKind::Group;
        let text = columns_while(true, || serde_json::to_string(&mixed).unwrap());
        assert!(text.contains("\"items\""), "{text}");
        assert_eq!(serde_json::from_str::<FrozenTarget>(&text).unwrap(), mixed);
        // Outside a format-3 plan, items.
        assert!(serde_json::to_string(&t).unwrap().contains("\"items\""));
    }

    #[test]
    fn damaged_columns_are_refused() {
        for bad in [
            r#"{"kind":"device","count":2,"uuids":"AAAA","names":"0:a\n0:b","details":"\n"}"#,
            r#"{"kind":"device","count":1,"ids":"0:a","names":"9:a","details":""}"#,
            r#"{"kind":"device","count":1,"ids":"0:a","names":"0:a\n0:b","details":""}"#,
            r#"{"kind":"device","count":1,"ids":"0:a","names":"0:a\\x","details":""}"#,
            r#"{"kind":"device","count":1,"names":"0:a","details":""}"#,
        ] {
            assert!(serde_json::from_str::<FrozenTarget>(bad).is_err(), "{bad}");
        }
    }
}
