//! The job's `notify:` block: webhooks the run calls when it ends.
//!
//! Owns what the shape table cannot say: each URL is an http(s) URL once its `${NAME}`s
//! are rendered (checked here, against the environment, and then forgotten), `on` names
//! no outcome twice, and the URL is a secret: its span is marked so no diagnostic shows
//! it, and no message quotes it (they say `webhook 2` or the host). The job keeps the URL
//! as written; rendering it for real is the run's, when it sends. Types were checked by
//! the shape pass, so values of the wrong type are skipped here.

use crate::job::model::{Notify, NotifyFormat, NotifyOn};
use crate::job::node::Node;
use crate::job::template::{EnvError, subst_env};

use super::{Cx, EnvMode};

pub(super) fn notify(cx: &mut Cx, n: Option<&Node>) -> Vec<Notify> {
    let Some(items) = n.and_then(Node::as_seq) else {
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| webhook(cx, i, item))
        .collect()
}

fn webhook(cx: &mut Cx, i: usize, item: &Node) -> Option<Notify> {
    item.as_map()?;
    let path = format!("notify[{i}]");
    let which = format!("webhook {}", i + 1);
    let url_node = item.get("url")?;
    cx.secrets.push(url_node.span);
    let url = url_node.as_str()?.to_string();
    check_url(cx, url_node, &format!("{path}.url"), &which, &url);
    let format = match item.get("format").and_then(Node::as_str) {
        Some("slack") => NotifyFormat::Slack,
        _ => NotifyFormat::Json,
    };
    let mut on: Vec<NotifyOn> = Vec::new();
    if let Some(list) = item.get("on").and_then(Node::as_seq) {
        for o in list {
            let Some(v) = o.as_str().and_then(NotifyOn::parse) else {
                continue;
            };
            if on.contains(&v) {
                cx.warn(
                    o,
                    &format!("{path}.on"),
                    format!(
                        "{which}: `{}` is listed twice",
                        o.as_str().unwrap_or_default()
                    ),
                    None,
                );
            } else {
                on.push(v);
            }
        }
        if list.is_empty() {
            cx.error(
                item.get("on").unwrap_or(item),
                &format!("{path}.on"),
                format!("{which} is called on no outcome"),
                Some(
                    "list some of failure, success, threshold, interrupted, or leave `on` out for all of them"
                        .into(),
                ),
            );
        }
    }
    if on.is_empty() {
        on = NotifyOn::ALL.to_vec();
    }
    on.sort();
    Some(Notify { url, on, format })
}

/// The URL must be http(s) once rendered. Messages name the webhook and at most the
/// variable, never the URL or its value.
fn check_url(cx: &mut Cx, n: &Node, path: &str, which: &str, url: &str) {
    let rendered = match subst_env(url, cx.host.env) {
        Ok(u) => u,
        Err(EnvError::Unset(name)) if cx.env_mode == EnvMode::Lint => {
            cx.warn(
                n,
                path,
                format!("{which}: environment variable {name} is not set"),
                Some(
                    "`validate` sends nothing, so this is only a warning; export it before `run`"
                        .into(),
                ),
            );
            return;
        }
        Err(EnvError::Unset(name)) => {
            cx.error(
                n,
                path,
                format!("{which}: environment variable {name} is not set"),
                Some("export the variable that holds the webhook URL before running".into()),
            );
            return;
        }
        Err(_) => {
            cx.error(
                n,
                path,
                format!("{which}: the URL has a malformed `${{NAME}}` reference"),
                Some("write e.g. `url: ${SLACK_WEBHOOK_URL}`".into()),
            );
            return;
        }
    };
    let ok = url::Url::parse(&rendered)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
    if !ok {
        cx.error(
            n,
            path,
            format!("{which}: the URL is not an http(s) URL"),
            Some(
                "give the webhook's full URL, e.g. `url: ${SLACK_WEBHOOK_URL}` with the variable set to https://hooks.slack.com/…"
                    .into(),
            ),
        );
    } else if !url.contains("${") {
        cx.warn(
            n,
            path,
            format!("{which}: the URL is written in the job file"),
            Some(
                "a webhook URL is a credential: keep it out of version control with `url: ${SLACK_WEBHOOK_URL}`"
                    .into(),
            ),
        );
    }
}
