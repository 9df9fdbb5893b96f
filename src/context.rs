//! Named connection contexts: `config.toml` (`$XDG_CONFIG_HOME/esper-bulk/config.toml`, else
//! `~/.config/esper-bulk/config.toml`, or `--config PATH`) with `[contexts.NAME]` tables of
//! a server (`tenant` or `base_url`), an `enterprise_id` and where the key is
//! (`api_key_file` or `api_key_env`), and which one is chosen (`--context`, else
//! `ESPER_BULK_CONTEXT`, else `default_context`).
//!
//! It owns the file's format, finding the file, refusing a literal key in it (without ever
//! echoing one: parse errors are reported by line, not by the source text), choosing a
//! context and writing one (`mock --write-context`, `context use`) while keeping the rest
//! of the file as the person wrote it. How a context ranks against flags, the job and the
//! environment is [`crate::run`]'s connection resolution; reading the key is too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::base::Hint;
use crate::job::KeySource;

/// The variable that chooses a context when `--context` is not given.
pub const CONTEXT_ENV: &str = "ESPER_BULK_CONTEXT";

/// The largest config file read; a config is a few dozen lines.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("reading the config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// Found before parsing, so the value is never read into an error or a log.
    #[error("{}:{line}: a literal `api_key` is not allowed in a config file", path.display())]
    LiteralKey { path: PathBuf, line: usize },
    #[error("context `{name}` in {}: {problem}", path.display())]
    Invalid {
        path: PathBuf,
        name: String,
        problem: String,
    },
    #[error("no context `{name}` in {} (chosen by {by})", path.display())]
    Unknown {
        name: String,
        by: Selection,
        path: PathBuf,
        known: Vec<String>,
    },
    #[error("no context chosen and no default_context in {}", path.display())]
    NoneChosen { path: PathBuf, known: Vec<String> },
    #[error("no config file: set XDG_CONFIG_HOME or HOME, or pass --config")]
    NoConfigDir,
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{0}` is not a context name (letters, digits, `-`, `_` and `.`)")]
    BadName(String),
}

impl Hint for ContextError {
    fn hint(&self) -> Option<String> {
        match self {
            ContextError::LiteralKey { .. } => Some(
                "never store keys in config.toml: put the key in a file (chmod 600) and write `api_key_file = \"/path/to/key\"`, or `api_key_env = \"VAR\"`; and revoke this key"
                    .into(),
            ),
            ContextError::Unknown { known, path, .. } if known.is_empty() => Some(format!(
                "add a [contexts.NAME] table to {}, or run `esper-bulk mock --write-context NAME`",
                path.display()
            )),
            ContextError::Unknown { known, .. } => {
                Some(format!("known contexts: {}", known.join(", ")))
            }
            ContextError::NoneChosen { known, .. } if known.is_empty() => Some(
                "add a [contexts.NAME] table, or run `esper-bulk mock --write-context NAME`"
                    .into(),
            ),
            ContextError::NoneChosen { known, .. } => Some(format!(
                "name one ({}), pass --context NAME, or run `esper-bulk context use NAME`",
                known.join(", ")
            )),
            ContextError::Invalid { .. } => Some(
                "a context holds `tenant` or `base_url`, `enterprise_id`, and `api_key_file` or `api_key_env`"
                    .into(),
            ),
            _ => None,
        }
    }
}

/// How a context was chosen, for messages that say where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// `--context NAME`.
    Flag,
    /// `ESPER_BULK_CONTEXT`.
    Env,
    /// `default_context` in the file.
    Default,
    /// Named as a command's argument (`context show NAME`, `context use NAME`).
    Named,
}

impl Selection {
    /// Named by the person for this command, rather than a standing default: a context
    /// chosen so that cannot be honoured is an error, a default one steps aside.
    pub fn is_explicit(self) -> bool {
        !matches!(self, Selection::Default)
    }
}

impl std::fmt::Display for Selection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Selection::Flag => "--context",
            Selection::Env => CONTEXT_ENV,
            Selection::Default => "default_context",
            Selection::Named => "name",
        })
    }
}

/// One `[contexts.NAME]` table, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    pub name: String,
    /// The API base URL (`tenant` already turned into one).
    pub base_url: String,
    /// The tenant name, when the context gives one instead of `base_url`.
    pub tenant: Option<String>,
    pub enterprise_id: Option<String>,
    /// Where the key is; a relative `api_key_file` is relative to the config file.
    pub key: Option<KeySource>,
}

impl Context {
    /// Where the key comes from, in words (never the key): `file /x (readable)`,
    /// `environment variable X (set)`, or `none`.
    pub fn key_origin(&self, env: &dyn Fn(&str) -> Option<String>) -> String {
        match &self.key {
            Some(KeySource::File(f)) => {
                let state = match std::fs::metadata(f) {
                    Ok(m) if m.is_file() => "readable",
                    Ok(_) => "not a file",
                    Err(_) => "missing",
                };
                format!("file {f} ({state})")
            }
            Some(KeySource::Env(v)) => {
                let state = if env(v).is_some_and(|k| !k.is_empty()) {
                    "set"
                } else {
                    "not set"
                };
                format!("environment variable {v} ({state})")
            }
            None => "none (from the job or ESPER_API_KEY)".into(),
        }
    }
}

/// A context and how it was chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct Chosen {
    pub context: Context,
    pub by: Selection,
    pub file: PathBuf,
}

impl Chosen {
    /// `context `prod` (--context)`: where a value came from, in error messages.
    pub fn label(&self) -> String {
        format!("context `{}` ({})", self.context.name, self.by)
    }
}

/// The config file, read and checked.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Where it is (or would be: a missing default file is an empty config).
    pub path: PathBuf,
    pub default_context: Option<String>,
    pub contexts: BTreeMap<String, Context>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    default_context: Option<String>,
    #[serde(default)]
    contexts: BTreeMap<String, RawContext>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContext {
    tenant: Option<String>,
    base_url: Option<String>,
    enterprise_id: Option<String>,
    api_key_file: Option<PathBuf>,
    api_key_env: Option<String>,
}

/// Where the config file is: `flag`, else `$XDG_CONFIG_HOME/esper-bulk/config.toml`, else
/// `$HOME/.config/esper-bulk/config.toml`. The XDG spec ignores a relative
/// `XDG_CONFIG_HOME`, and so does this.
pub fn config_path(
    flag: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<PathBuf, ContextError> {
    if let Some(f) = flag {
        return Ok(f.to_path_buf());
    }
    let set = |n: &str| env(n).filter(|v| !v.is_empty());
    set("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| set("HOME").map(|h| PathBuf::from(h).join(".config")))
        .map(|d| d.join("esper-bulk").join("config.toml"))
        .ok_or(ContextError::NoConfigDir)
}

impl Config {
    /// Reads `path`. A missing file is an empty config unless `must_exist` (a `--config`
    /// that names nothing is a mistake, not an empty file).
    pub fn load(path: &Path, must_exist: bool) -> Result<Config, ContextError> {
        let text = match crate::util::read_text(path, MAX_CONFIG_BYTES) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
                return Ok(Config {
                    path: path.to_path_buf(),
                    ..Config::default()
                });
            }
            Err(source) => {
                return Err(ContextError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        Config::parse(path, &text)
    }

    /// Parses the text of the file at `path` (named in errors; relative key files are
    /// relative to its directory).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ContextError> {
        if let Some(line) = literal_key_line(text) {
            return Err(ContextError::LiteralKey {
                path: path.to_path_buf(),
                line,
            });
        }
        let doc: FileDoc = toml::from_str(text).map_err(|e| ContextError::Parse {
            path: path.to_path_buf(),
            line: e.span().map_or(1, |s| {
                text.get(..s.start).unwrap_or(text).matches('\n').count() + 1
            }),
            // The message alone: toml's full rendering quotes the source line.
            message: e.message().trim_end_matches('.').to_string(),
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut contexts = BTreeMap::new();
        for (name, raw) in doc.contexts {
            let ctx = check(path, dir, &name, raw)?;
            contexts.insert(name, ctx);
        }
        Ok(Config {
            path: path.to_path_buf(),
            default_context: doc.default_context.filter(|d| !d.is_empty()),
            contexts,
        })
    }

    /// The context `flag` names, else `ESPER_BULK_CONTEXT`'s, else `default_context`'s;
    /// `None` when none is chosen. A name that is not in the file is an error.
    pub fn choose(
        &self,
        flag: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Chosen>, ContextError> {
        let wanted = flag
            .map(|f| (f.to_string(), Selection::Flag))
            .or_else(|| {
                env(CONTEXT_ENV)
                    .filter(|v| !v.is_empty())
                    .map(|v| (v, Selection::Env))
            })
            .or_else(|| {
                self.default_context
                    .clone()
                    .map(|d| (d, Selection::Default))
            });
        let Some((name, by)) = wanted else {
            return Ok(None);
        };
        match self.contexts.get(&name) {
            Some(c) => Ok(Some(Chosen {
                context: c.clone(),
                by,
                file: self.path.clone(),
            })),
            None => Err(ContextError::Unknown {
                name,
                by,
                path: self.path.clone(),
                known: self.contexts.keys().cloned().collect(),
            }),
        }
    }
}

/// The first line holding `api_key = …` (bare or quoted key, in a table or inline), if
/// any. `api_key_file` and `api_key_env` are other keys.
fn literal_key_line(text: &str) -> Option<usize> {
    for (i, line) in text.lines().enumerate() {
        let code = line.split('#').next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("api_key") {
            let before = rest[..at].chars().next_back();
            let after = rest[at + "api_key".len()..].trim_start_matches(['"', '\'']);
            let bounded = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '-'));
            if bounded && after.trim_start().starts_with('=') {
                return Some(i + 1);
            }
            rest = &rest[at + "api_key".len()..];
        }
    }
    None
}

fn check(path: &Path, dir: &Path, name: &str, raw: RawContext) -> Result<Context, ContextError> {
    let invalid = |problem: String| ContextError::Invalid {
        path: path.to_path_buf(),
        name: name.to_string(),
        problem,
    };
    let base_url = match (&raw.tenant, &raw.base_url) {
        (Some(_), Some(_)) => return Err(invalid("both `tenant` and `base_url` are set".into())),
        (None, None) => return Err(invalid("neither `tenant` nor `base_url` is set".into())),
        (Some(t), None) => crate::job::tenant_base_url(t)
            .ok_or_else(|| invalid(format!("`{t}` is not a tenant name")))?,
        (None, Some(u)) => {
            let ok = url::Url::parse(u)
                .is_ok_and(|p| matches!(p.scheme(), "http" | "https") && p.has_host());
            if !ok {
                return Err(invalid(format!("`{u}` is not an http(s) URL")));
            }
            u.clone()
        }
    };
    let key = match (raw.api_key_file, raw.api_key_env) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "both `api_key_file` and `api_key_env` are set".into(),
            ));
        }
        (Some(f), None) => Some(KeySource::File(dir.join(f).display().to_string())),
        (None, Some(v)) if v.is_empty() => return Err(invalid("`api_key_env` is empty".into())),
        (None, Some(v)) => Some(KeySource::Env(v)),
        (None, None) => None,
    };
    Ok(Context {
        name: name.to_string(),
        base_url,
        tenant: raw.tenant,
        enterprise_id: raw.enterprise_id.filter(|e| !e.is_empty()),
        key,
    })
}

fn check_name(name: &str) -> Result<(), ContextError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(ContextError::BadName(name.to_string()))
    }
}

/// The file as it is now, to edit in place (comments and order kept); empty if missing.
/// A file that does not parse is never overwritten.
fn editable(path: &Path) -> Result<toml_edit::DocumentMut, ContextError> {
    let text = match crate::util::read_text(path, MAX_CONFIG_BYTES) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(ContextError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    Config::parse(path, &text)?;
    text.parse::<toml_edit::DocumentMut>()
        .map_err(|e| ContextError::Parse {
            path: path.to_path_buf(),
            line: 1,
            message: e.message().to_string(),
        })
}

fn save(path: &Path, doc: &toml_edit::DocumentMut) -> Result<(), ContextError> {
    crate::util::atomic_write(path, doc.to_string().as_bytes()).map_err(|source| {
        ContextError::Write {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// What [`write_context`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// The file the key went into (mode 0600).
    pub key_file: PathBuf,
    /// Whether the context became `default_context` (there was none).
    pub made_default: bool,
}

/// Adds or replaces `[contexts.NAME]` in the config file at `path`: this server and
/// enterprise, with `key` in a file `NAME.key` next to the config (mode 0600, referenced
/// by `api_key_file`, never written into the config itself). It becomes `default_context`
/// when the file has none.
pub fn write_context(
    path: &Path,
    name: &str,
    base_url: &str,
    enterprise_id: &str,
    key: &str,
) -> Result<Written, ContextError> {
    check_name(name)?;
    let mut doc = editable(path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let key_file = dir.join(format!("{name}.key"));
    write_secret(&key_file, key)?;
    let contexts = doc
        .entry("contexts")
        .or_insert_with(|| {
            let mut t = toml_edit::Table::new();
            t.set_implicit(true);
            toml_edit::Item::Table(t)
        })
        .as_table_mut()
        .ok_or_else(|| ContextError::Invalid {
            path: path.to_path_buf(),
            name: name.to_string(),
            problem: "`contexts` is not a table".into(),
        })?;
    let mut table = toml_edit::Table::new();
    table["base_url"] = toml_edit::value(base_url);
    table["enterprise_id"] = toml_edit::value(enterprise_id);
    table["api_key_file"] = toml_edit::value(key_file.display().to_string());
    contexts.insert(name, toml_edit::Item::Table(table));
    let made_default = !doc.contains_key("default_context");
    if made_default {
        // toml_edit writes a table's plain values before its sub-tables, so this lands
        // above `[contexts.…]` as TOML requires.
        doc.insert("default_context", toml_edit::value(name));
    }
    save(path, &doc)?;
    Ok(Written {
        key_file,
        made_default,
    })
}

/// Makes `name` (which must be in the file) the `default_context`.
pub fn use_context(path: &Path, name: &str) -> Result<(), ContextError> {
    let config = Config::load(path, true)?;
    if !config.contexts.contains_key(name) {
        return Err(ContextError::Unknown {
            name: name.to_string(),
            by: Selection::Named,
            path: path.to_path_buf(),
            known: config.contexts.keys().cloned().collect(),
        });
    }
    let mut doc = editable(path)?;
    doc.insert("default_context", toml_edit::value(name));
    save(path, &doc)
}

/// Writes a secret readable by its owner only, atomically.
fn write_secret(path: &Path, secret: &str) -> Result<(), ContextError> {
    let err = |source| ContextError::Write {
        path: path.to_path_buf(),
        source,
    };
    // The temporary file `atomic_write` renames into place is created 0600; this keeps
    // it so however the platform's default differs.
    crate::util::atomic_write(path, format!("{secret}\n").as_bytes()).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ContextError> {
        Config::parse(Path::new("/cfg/config.toml"), text)
    }

    const FILE: &str = r#"
default_context = "staging"

[contexts.staging]
tenant = "acme-staging"
enterprise_id = "e-stg"
api_key_env = "STAGING_KEY"

[contexts.prod]
base_url = "https://acme-api.esper.cloud/api"
enterprise_id = "e-prod"
api_key_file = "prod.key"
"#;

    #[test]
    fn contexts_are_read_and_relative_key_files_are_next_to_the_config() {
        let c = parse(FILE).unwrap();
        assert_eq!(c.default_context.as_deref(), Some("staging"));
        let stg = &c.contexts["staging"];
        assert_eq!(stg.base_url, "https://acme-staging-api.esper.cloud/api");
        assert_eq!(stg.key, Some(KeySource::Env("STAGING_KEY".into())));
        let prod = &c.contexts["prod"];
        assert_eq!(prod.key, Some(KeySource::File("/cfg/prod.key".into())));
        assert_eq!(prod.enterprise_id.as_deref(), Some("e-prod"));
    }

    #[test]
    fn the_flag_beats_the_variable_which_beats_the_default() {
        let c = parse(FILE).unwrap();
        let env = |n: &str| (n == CONTEXT_ENV).then(|| "prod".to_string());
        let none = |_: &str| None;
        let pick = |flag, env: &dyn Fn(&str) -> Option<String>| {
            let ch = c.choose(flag, env).unwrap().unwrap();
            (ch.context.name, ch.by)
        };
        assert_eq!(pick(None, &none), ("staging".into(), Selection::Default));
        assert_eq!(pick(None, &env), ("prod".into(), Selection::Env));
        assert_eq!(
            pick(Some("staging"), &env),
            ("staging".into(), Selection::Flag)
        );
        let err = c.choose(Some("qa"), &none).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no context `qa` in /cfg/config.toml (chosen by --context)"
        );
        assert_eq!(err.hint().unwrap(), "known contexts: prod, staging");
        assert!(parse("").unwrap().choose(None, &none).unwrap().is_none());
    }

    #[test]
    fn a_literal_key_is_refused_without_being_echoed() {
        for text in [
            "[contexts.p]\ntenant = \"a\"\napi_key = \"sk_live_0123456789\"\n",
            "[contexts.p]\ntenant = \"a\"\n\"api_key\"=sk_live_0123456789\n",
            "contexts = { p = { tenant = \"a\", api_key = \"sk_live_0123456789\" } }\n",
        ] {
            let err = parse(text).unwrap_err();
            assert!(matches!(err, ContextError::LiteralKey { .. }), "{err}");
            let shown = format!("{err} {}", err.hint().unwrap());
            assert!(!shown.contains("sk_live"), "{shown}");
        }
        assert!(literal_key_line("api_key_file = \"k\"\napi_key_env = \"V\"\n").is_none());
        assert!(literal_key_line("# api_key = \"x\"\n").is_none());
    }

    #[test]
    fn bad_contexts_are_named() {
        let cases = [
            (
                "[contexts.a]\ntenant = \"x\"\nbase_url = \"https://h/api\"\n",
                "both `tenant` and `base_url` are set",
            ),
            (
                "[contexts.a]\nenterprise_id = \"e\"\n",
                "neither `tenant` nor `base_url` is set",
            ),
            (
                "[contexts.a]\ntenant = \"x.example/\"\n",
                "`x.example/` is not a tenant name",
            ),
            (
                "[contexts.a]\nbase_url = \"ftp://h\"\n",
                "`ftp://h` is not an http(s) URL",
            ),
            (
                "[contexts.a]\ntenant = \"x\"\napi_key_file = \"k\"\napi_key_env = \"K\"\n",
                "both `api_key_file` and `api_key_env` are set",
            ),
        ];
        for (text, problem) in cases {
            let err = parse(text).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("context `a` in /cfg/config.toml: {problem}")
            );
        }
        let err = parse("[contexts.a]\ntenant = \"x\"\ntenat = 1\n").unwrap_err();
        assert!(
            matches!(err, ContextError::Parse { line: 3, .. }),
            "unknown keys are refused, by line: {err}"
        );
        let err = parse("[contexts.a]\ntenant = sk_live_secret\n").unwrap_err();
        assert!(!err.to_string().contains("sk_live"), "{err}");
    }

    #[test]
    fn the_config_path_follows_xdg() {
        let env = |n: &str| match n {
            "XDG_CONFIG_HOME" => Some("/x".to_string()),
            "HOME" => Some("/home/u".to_string()),
            _ => None,
        };
        assert_eq!(
            config_path(None, &env).unwrap(),
            PathBuf::from("/x/esper-bulk/config.toml")
        );
        let relative = |n: &str| match n {
            "XDG_CONFIG_HOME" => Some("rel".to_string()),
            "HOME" => Some("/home/u".to_string()),
            _ => None,
        };
        assert_eq!(
            config_path(None, &relative).unwrap(),
            PathBuf::from("/home/u/.config/esper-bulk/config.toml")
        );
        assert_eq!(
            config_path(Some(Path::new("/c.toml")), &env).unwrap(),
            PathBuf::from("/c.toml")
        );
        assert!(config_path(None, &|_| None).is_err());
    }

    #[test]
    fn writing_a_context_keeps_the_file_and_puts_the_key_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("esper-bulk/config.toml");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            "# my contexts\n[contexts.prod]\ntenant = \"acme\" # production\n",
        )
        .unwrap();
        let w = write_context(&path, "mock", "http://127.0.0.1:9/api", "e-1", "k-123").unwrap();
        assert!(w.made_default);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("# production"), "{text}");
        assert!(!text.contains("k-123"), "the key stays out of the config");
        let c = Config::load(&path, true).unwrap();
        assert_eq!(c.default_context.as_deref(), Some("mock"));
        assert_eq!(c.contexts["mock"].base_url, "http://127.0.0.1:9/api");
        assert_eq!(
            c.contexts["mock"].key,
            Some(KeySource::File(w.key_file.display().to_string()))
        );
        assert_eq!(std::fs::read_to_string(&w.key_file).unwrap(), "k-123\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&w.key_file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Again: replaced, not added; the default stays.
        let w = write_context(&path, "mock", "http://127.0.0.1:10/api", "e-2", "k-2").unwrap();
        assert!(!w.made_default);
        let c = Config::load(&path, true).unwrap();
        assert_eq!(c.contexts.len(), 2);
        assert_eq!(c.contexts["mock"].enterprise_id.as_deref(), Some("e-2"));
        use_context(&path, "prod").unwrap();
        let c = Config::load(&path, true).unwrap();
        assert_eq!(c.default_context.as_deref(), Some("prod"));
        assert!(use_context(&path, "nope").is_err());
        assert!(write_context(&path, "../x", "http://h/api", "e", "k").is_err());
        // A broken file is not overwritten.
        std::fs::write(&path, "[contexts\n").unwrap();
        assert!(write_context(&path, "mock", "http://h/api", "e", "k").is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "[contexts\n");
    }

    #[test]
    fn a_missing_file_is_empty_unless_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("none.toml");
        assert!(Config::load(&p, false).unwrap().contexts.is_empty());
        assert!(matches!(
            Config::load(&p, true),
            Err(ContextError::Read { .. })
        ));
    }
}
