//! The job's `coordinator:` key: the Redis several hosts share (the run's `--coordinator`
//! and `ESPER_BULK_REDIS_URL` name it too; which wins is the run's).
//!
//! Owns what the shape table cannot say: the value is a `redis://` or `rediss://` URL once
//! its `${NAME}`s are rendered (checked here, against the environment, and then
//! forgotten), and it may hold a password, so its span is marked secret, no message
//! quotes it, and a password written into the file itself is refused. The job keeps the
//! value as written; rendering it for real is the run's, when it connects.

use crate::job::node::Node;
use crate::job::template::{EnvError, subst_env};

use super::{Cx, EnvMode};

pub(super) fn coordinator(cx: &mut Cx, n: Option<&Node>) -> Option<String> {
    let n = n?;
    cx.secrets.push(n.span);
    let written = n.as_str()?.to_string();
    let path = "coordinator";
    let rendered = match subst_env(&written, cx.host.env) {
        Ok(u) => u,
        Err(EnvError::Unset(name)) if cx.env_mode == EnvMode::Lint => {
            cx.warn(
                n,
                path,
                format!("the coordinator's environment variable {name} is not set"),
                Some(
                    "`validate` sends nothing, so this is only a warning; export it before `run`"
                        .into(),
                ),
            );
            return Some(written);
        }
        Err(EnvError::Unset(name)) => {
            cx.error(
                n,
                path,
                format!("the coordinator's environment variable {name} is not set"),
                Some("export the variable that holds the Redis URL before running".into()),
            );
            return None;
        }
        Err(_) => {
            cx.error(
                n,
                path,
                "the coordinator has a malformed `${NAME}` reference".to_string(),
                Some("write e.g. `coordinator: ${ESPER_BULK_REDIS_URL}`".into()),
            );
            return None;
        }
    };
    let parsed = url::Url::parse(&rendered).ok().filter(|u| {
        matches!(u.scheme(), "redis" | "rediss") && u.host_str().is_some_and(|h| !h.is_empty())
    });
    if parsed.is_none() {
        cx.error(
            n,
            path,
            "the coordinator is not a redis:// URL".to_string(),
            Some("write e.g. `coordinator: redis://redis.internal:6379/0`".into()),
        );
        return None;
    };
    // A password typed into the job file would be committed with it; one that comes
    // from a variable is fine.
    let literal = url::Url::parse(&written)
        .ok()
        .is_some_and(|u| u.password().is_some());
    if literal {
        cx.error(
            n,
            path,
            "the coordinator URL holds a password written in the job file".to_string(),
            Some(
                "keep the password out of version control: `coordinator: ${ESPER_BULK_REDIS_URL}`, with the variable set to redis://:password@host:6379/0"
                    .into(),
            ),
        );
        return None;
    }
    Some(written)
}
