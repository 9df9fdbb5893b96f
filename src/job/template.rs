//! The two substitution syntaxes of job files.
//!
//! `${NAME}` is an environment variable, replaced when the job is loaded. `${{ a.b.c }}` is a
//! template reference over `vars`, `item`, `steps` and `target`; this file parses and renders
//! them, and the checker (`job/check/refs.rs`) checks every reference before anything runs. Lookups are
//! supplied by the caller, so rendering stays pure.

use serde_json::Value;

/// A malformed template or a reference without a value, phrased for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

/// A piece of a templated string.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Lit(String),
    /// A dotted reference such as `item.name`, split into segments.
    Ref(Vec<String>),
}

/// Splits a string into literals and `${{ … }}` references.
pub fn parse(s: &str) -> Result<Vec<Part>, TemplateError> {
    let err = |m: String| TemplateError(m);
    let mut parts = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("${{") {
        if start > 0 {
            parts.push(Part::Lit(rest[..start].to_string()));
        }
        let after = &rest[start + 3..];
        let end = after.find("}}").ok_or_else(|| {
            err(format!(
                "unclosed template in `{s}`: `${{{{` has no matching `}}}}`"
            ))
        })?;
        let expr = after[..end].trim();
        if expr.is_empty() {
            return Err(err(format!("empty template `${{{{ }}}}` in `{s}`")));
        }
        let segs: Vec<String> = expr.split('.').map(|p| p.trim().to_string()).collect();
        if segs.iter().any(|p| {
            p.is_empty()
                || !p
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        }) {
            return Err(err(format!(
                "`{expr}` is not a reference: write dotted names such as `item.name` or `vars.package`"
            )));
        }
        parts.push(Part::Ref(segs));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        parts.push(Part::Lit(rest.to_string()));
    }
    Ok(parts)
}

/// Every reference in a string.
pub fn refs(s: &str) -> Result<Vec<Vec<String>>, TemplateError> {
    Ok(parse(s)?
        .into_iter()
        .filter_map(|p| match p {
            Part::Ref(r) => Some(r),
            Part::Lit(_) => None,
        })
        .collect())
}

/// Every string in a JSON value (keys excluded), for reference checks.
pub fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|i| strings(i, out)),
        Value::Object(map) => map.values().for_each(|i| strings(i, out)),
        _ => {}
    }
}

/// The value at `path` inside `v`: object keys by name, list items by index
/// (`results.0.id`).
pub fn lookup_path<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, seg| match v {
        Value::Object(m) => m.get(seg),
        Value::Array(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// Renders a string. A string that is exactly one reference yields the referenced value
/// itself (so `${{ vars.count }}` stays a number); otherwise values are spliced as text.
pub fn render_str(
    s: &str,
    lookup: &dyn Fn(&[String]) -> Option<Value>,
) -> Result<Value, TemplateError> {
    let missing = |r: &[String]| TemplateError(format!("`{}` has no value", r.join(".")));
    let parts = parse(s)?;
    if let [Part::Ref(r)] = parts.as_slice() {
        return lookup(r).ok_or_else(|| missing(r));
    }
    let mut out = String::new();
    for p in parts {
        match p {
            Part::Lit(l) => out.push_str(&l),
            Part::Ref(r) => match lookup(&r) {
                Some(Value::String(v)) => out.push_str(&v),
                Some(Value::Null) | None => return Err(missing(&r)),
                Some(v) => out.push_str(&v.to_string()),
            },
        }
    }
    Ok(Value::String(out))
}

/// Renders every string inside a JSON value.
pub fn render_value(
    v: &Value,
    lookup: &dyn Fn(&[String]) -> Option<Value>,
) -> Result<Value, TemplateError> {
    Ok(match v {
        Value::String(s) if s.contains("${{") => render_str(s, lookup)?,
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| render_value(i, lookup))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_value(v, lookup)?)))
                .collect::<Result<_, TemplateError>>()?,
        ),
        other => other.clone(),
    })
}

/// Why `${NAME}` could not be substituted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("environment variable {0} is not set")]
    Unset(String),
    #[error("`${{{0}}}` is not an environment variable name")]
    BadName(String),
    #[error("unclosed `${{` in `{0}`")]
    Unclosed(String),
}

/// Replaces `${NAME}` with the environment variable's value; `${{` is left alone.
pub fn subst_env(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, EnvError> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        if after.starts_with('{') {
            // A template: copy through its end untouched.
            let end = after.find("}}").map(|e| e + 2).unwrap_or(after.len());
            out.push_str(&rest[start..start + 2 + end]);
            rest = &after[end..];
            continue;
        }
        let end = after
            .find('}')
            .ok_or_else(|| EnvError::Unclosed(s.to_string()))?;
        let name = &after[..end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(EnvError::BadName(name.to_string()));
        }
        let value = env(name).ok_or_else(|| EnvError::Unset(name.to_string()))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `Some(NAME)` when the whole string is one `${NAME}` reference.
pub fn whole_env_ref(s: &str) -> Option<&str> {
    let inner = s.trim().strip_prefix("${")?.strip_suffix('}')?;
    (!inner.is_empty() && inner.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then_some(inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(r: &[String]) -> Option<Value> {
        match r.join(".").as_str() {
            "item.name" => Some(json!("0042")),
            "item.id" => Some(json!("g-1")),
            "vars.n" => Some(json!(15)),
            _ => None,
        }
    }

    #[test]
    fn parse_and_render() {
        assert_eq!(
            render_str("Battery low - ${{ item.name }}", &ctx).unwrap(),
            json!("Battery low - 0042")
        );
        assert_eq!(render_str("${{vars.n}}", &ctx).unwrap(), json!(15));
        assert_eq!(render_str("n=${{ vars.n }}", &ctx).unwrap(), json!("n=15"));
        assert!(render_str("${{ item.nope }}", &ctx).is_err());
        assert!(parse("${{ item.name").is_err());
        assert!(parse("${{ }}").is_err());
        assert!(parse("${{ a b }}").is_err());
        let body = render_value(&json!({"groups": ["${{ item.id }}"], "value": 15}), &ctx).unwrap();
        assert_eq!(body, json!({"groups": ["g-1"], "value": 15}));
    }

    #[test]
    fn env_substitution() {
        let env = |n: &str| (n == "EID").then(|| "e-1".to_string());
        assert_eq!(subst_env("x-${EID}", &env).unwrap(), "x-e-1");
        assert_eq!(
            subst_env("${{ item.id }}-${EID}", &env).unwrap(),
            "${{ item.id }}-e-1"
        );
        assert_eq!(
            subst_env("${NOPE}", &env).unwrap_err().to_string(),
            "environment variable NOPE is not set"
        );
        assert_eq!(whole_env_ref("${ESPER_API_KEY}"), Some("ESPER_API_KEY"));
        assert_eq!(whole_env_ref("abc"), None);
    }
}
