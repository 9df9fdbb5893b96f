//! A YAML tree that remembers where every key and value is, so any problem found later
//! (a bad reference, a cycle, an unknown key) can point at its exact line and column.
//!
//! Syntax checking is done first by yaml_serde (which also rejects duplicate keys and alias
//! bombs); this file then builds the spanned tree from saphyr's marked parse. yaml_serde
//! only names the map that holds a duplicate key, so saphyr's event parser finds the
//! second key itself. It owns no meaning: the checker in `check/` decides what the nodes
//! must be.

use saphyr::{LoadableYamlNode, MarkedYamlOwned, ScalarOwned, YamlDataOwned};
use serde_json::Value;

/// A 1-based position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// Where a node starts and ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: Pos,
    pub end: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Key/value pairs in file order.
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub span: Span,
    pub kind: Kind,
}

impl Node {
    /// What kind of value this is, for messages ("a string", "a list", …).
    pub fn describe(&self) -> &'static str {
        match self.kind {
            Kind::Null => "nothing (null)",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) => "a whole number",
            Kind::Float(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a map",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            Kind::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            Kind::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The value under `key` in a map, with the key node.
    pub fn entry(&self, key: &str) -> Option<(&Node, &Node)> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(k, v)| (k, v))
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, v)| v)
    }

    /// The scalar as text (numbers and booleans included), e.g. for `version_code: 420`.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.kind {
            Kind::Str(s) => Some(s.clone()),
            Kind::Int(i) => Some(i.to_string()),
            Kind::Float(f) => Some(f.to_string()),
            Kind::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// The node as JSON, for free-form values sent to the API.
    pub fn to_json(&self) -> Value {
        match &self.kind {
            Kind::Null => Value::Null,
            Kind::Bool(b) => Value::Bool(*b),
            Kind::Int(i) => Value::from(*i),
            Kind::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            Kind::Str(s) => Value::String(s.clone()),
            Kind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(pairs) => Value::Object(
                pairs
                    .iter()
                    .map(|(k, v)| (k.scalar_text().unwrap_or_default(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// A syntax error with its position, its message and how to fix it (if more is known
/// than "check the indentation").
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub pos: Option<Pos>,
    pub span: Option<Span>,
    pub message: String,
    pub help: Option<String>,
}

/// Parses one YAML document into a spanned tree.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let invalid = |pos: Option<Pos>, message: &str| SyntaxError {
        pos,
        span: None,
        message: format!("invalid YAML: {message}"),
        help: None,
    };
    // yaml_serde first: precise syntax errors, duplicate keys, alias bombs.
    if let Err(e) = serde_yaml::from_str::<serde_yaml::Value>(text) {
        let pos = e.location().map(|l| Pos {
            line: l.line(),
            col: l.column(),
        });
        let mut message = e.to_string();
        if let Some(i) = message.find(" at line ") {
            message.truncate(i);
        }
        if let Some((map, _)) = message.split_once(": duplicate entry with key ")
            && let Some(dup) = duplicate_key(text)
        {
            return Err(dup.error(map));
        }
        if message.starts_with("duplicate entry with key ")
            && let Some(dup) = duplicate_key(text)
        {
            return Err(dup.error(""));
        }
        return Err(invalid(pos, &message));
    }
    let docs = MarkedYamlOwned::load_from_str(text).map_err(|e| {
        invalid(
            Some(Pos {
                line: e.marker().line(),
                col: e.marker().col() + 1,
            }),
            e.info(),
        )
    })?;
    match docs.len() {
        0 => Ok(Node {
            span: Span::default(),
            kind: Kind::Null,
        }),
        1 => Ok(convert(&docs[0], 0)),
        n => Err(invalid(
            None,
            &format!("the file holds {n} YAML documents; a job file holds one"),
        )),
    }
}

/// A key written twice in one map: the second occurrence, and where the first one is.
struct Duplicate {
    key: String,
    second: Span,
    first: Pos,
}

impl Duplicate {
    fn error(&self, map: &str) -> SyntaxError {
        let within = if map.is_empty() {
            String::new()
        } else {
            format!(" in `{map}`")
        };
        SyntaxError {
            pos: Some(self.second.start),
            span: Some(self.second),
            message: format!("duplicate key `{}`{within}", self.key),
            help: Some(format!(
                "`{}` is already set at line {}{}; a map holds each key once, so remove one of them",
                self.key,
                self.first.line,
                if self.first.line == self.second.start.line {
                    format!(", column {}", self.first.col)
                } else {
                    String::new()
                }
            )),
        }
    }
}

/// The first key that repeats within its map, from saphyr's events (which, unlike the
/// loaded tree, still have both keys and where they are).
fn duplicate_key(text: &str) -> Option<Duplicate> {
    use saphyr_parser::{Event, Parser};
    use std::collections::HashMap;

    enum Frame {
        Map {
            keys: HashMap<String, Pos>,
            at_key: bool,
        },
        Seq,
    }
    // A whole node (scalar, alias or finished collection) moves its map from key to value.
    fn done(stack: &mut [Frame]) {
        if let Some(Frame::Map { at_key, .. }) = stack.last_mut() {
            *at_key = !*at_key;
        }
    }
    let pos = |m: &saphyr_parser::Marker| Pos {
        line: m.line(),
        col: m.col() + 1,
    };
    let mut stack: Vec<Frame> = Vec::new();
    for ev in Parser::new_from_str(text) {
        let (ev, span) = ev.ok()?;
        match ev {
            Event::Scalar(value, ..) => {
                if let Some(Frame::Map { keys, at_key: true }) = stack.last_mut() {
                    let here = pos(&span.start);
                    if let Some(first) = keys.get(value.as_ref()) {
                        return Some(Duplicate {
                            key: value.into_owned(),
                            second: Span {
                                start: here,
                                end: pos(&span.end),
                            },
                            first: *first,
                        });
                    }
                    keys.insert(value.into_owned(), here);
                }
                done(&mut stack);
            }
            Event::Alias(_) => done(&mut stack),
            Event::MappingStart(..) => stack.push(Frame::Map {
                keys: HashMap::new(),
                at_key: true,
            }),
            Event::SequenceStart(..) => stack.push(Frame::Seq),
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                done(&mut stack);
            }
            _ => {}
        }
    }
    None
}

/// Nesting deeper than this is not a job file; refusing it keeps recursion bounded.
const MAX_DEPTH: usize = 64;

fn convert(y: &MarkedYamlOwned, depth: usize) -> Node {
    let m = |mk: &saphyr::Marker| Pos {
        line: mk.line(),
        col: mk.col() + 1,
    };
    let span = Span {
        start: m(&y.span.start),
        end: m(&y.span.end),
    };
    if depth > MAX_DEPTH {
        return Node {
            span,
            kind: Kind::Null,
        };
    }
    let kind = match &y.data {
        YamlDataOwned::Value(s) => scalar(s),
        YamlDataOwned::Representation(s, style, _) => {
            if matches!(style, saphyr::ScalarStyle::Plain) {
                scalar(&ScalarOwned::parse_from_cow(s.clone().into()))
            } else {
                Kind::Str(s.clone())
            }
        }
        YamlDataOwned::Sequence(items) => {
            Kind::Seq(items.iter().map(|i| convert(i, depth + 1)).collect())
        }
        YamlDataOwned::Mapping(map) => Kind::Map(
            map.iter()
                .map(|(k, v)| (convert(k, depth + 1), convert(v, depth + 1)))
                .collect(),
        ),
        YamlDataOwned::Tagged(_, inner) => {
            // saphyr gives the inner node of a tag a default span; keep the tag's.
            let mut n = convert(inner, depth + 1);
            if n.span.start.line == 0 {
                n.span = span;
            }
            return n;
        }
        YamlDataOwned::Alias(_) | YamlDataOwned::BadValue => Kind::Null,
    };
    Node { span, kind }
}

fn scalar(s: &ScalarOwned) -> Kind {
    match s {
        ScalarOwned::Null => Kind::Null,
        ScalarOwned::Boolean(b) => Kind::Bool(*b),
        ScalarOwned::Integer(i) => Kind::Int(*i),
        ScalarOwned::FloatingPoint(f) => Kind::Float(f.into_inner()),
        ScalarOwned::String(s) => Kind::Str(s.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let n = parse("a: 1\nb:\n  c: [x, \"y\"]\n").unwrap();
        let (k, v) = n.entry("b").unwrap();
        assert_eq!(k.span.start, Pos { line: 2, col: 1 });
        let c = v.get("c").unwrap();
        assert_eq!(c.span.start.line, 3);
        assert_eq!(c.as_seq().unwrap()[1].as_str(), Some("y"));
        assert_eq!(n.get("a").unwrap().kind, Kind::Int(1));
    }

    #[test]
    fn syntax_errors_and_duplicates() {
        assert!(parse("a: [1, 2\n").unwrap_err().pos.is_some());
        let d = parse("a: 1\na: 2\n").unwrap_err();
        assert!(d.message.contains("duplicate"), "{}", d.message);
        assert_eq!(d.pos, Some(Pos { line: 2, col: 1 }), "the second key");
        let d = parse("m:\n  x: {b: 1, c: [b, b], b: 2}\n").unwrap_err();
        assert_eq!(d.message, "duplicate key `b` in `m.x`");
        assert_eq!(d.pos, Some(Pos { line: 2, col: 24 }));
        assert_eq!(parse("").unwrap().kind, Kind::Null);
    }

    #[test]
    fn json_conversion() {
        let n = parse("x: {a: 1, b: [true, null, 2.5, s]}\n").unwrap();
        assert_eq!(
            n.get("x").unwrap().to_json(),
            serde_json::json!({"a": 1, "b": [true, null, 2.5, "s"]})
        );
    }
}
