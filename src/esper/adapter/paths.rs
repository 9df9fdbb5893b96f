//! The planner's [`Paths`]: how `plan` writes a request as `METHOD /path`, from the
//! client's one path table ([`crate::esper::routes`]).
//!
//! The plan names requests by [`Endpoint`] and holds no paths, so its review text (the
//! estimate and `--show-requests`) asks here. What goes into the table, and how ids are
//! encoded, stays with the client; this file only joins method, path and query for
//! display.

use crate::base::Endpoint;
use crate::esper::routes;
use crate::plan::{Paths, WriteSpec};

/// The client's paths, for [`crate::plan::plan_text`].
#[derive(Debug, Clone, Copy, Default)]
pub struct EsperPaths;

impl Paths for EsperPaths {
    fn template(&self, endpoint: &Endpoint) -> String {
        let (method, template) = routes::route(endpoint);
        format!("{method} {template}")
    }

    fn write(&self, w: &WriteSpec, enterprise_id: &str) -> String {
        let (method, _) = routes::route(&w.endpoint);
        let path = routes::path(&w.endpoint, enterprise_id, w.id.as_deref());
        if w.query.is_empty() {
            format!("{method} {path}")
        } else {
            let q: Vec<String> = w.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{method} {path}?{}", q.join("&"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn write(endpoint: Endpoint, id: Option<&str>, query: &[(&str, &str)]) -> WriteSpec {
        WriteSpec {
            endpoint,
            id: id.map(str::to_string),
            query: query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: Value::Null,
            note: None,
        }
    }

    #[test]
    fn requests_print_as_before_endpoints() {
        // The strings plans printed when they wrote paths themselves.
        for (e, want) in [
            (Endpoint::CreateCommand, "POST /commands/v0/commands/"),
            (
                Endpoint::CommandStats,
                "GET /commands/v0/commands/{id}/stats/",
            ),
            (Endpoint::CommandStatuses, "GET /commands/v0/status/"),
            (
                Endpoint::ListAlarmRules,
                "GET /v1/enterprise/{enterprise_id}/alarmrules/",
            ),
            (
                Endpoint::CreateAlarmRule,
                "POST /v1/enterprise/{enterprise_id}/alarmrules/",
            ),
            (
                Endpoint::MoveDevices,
                "PATCH /enterprise/{enterprise_id}/devicegroup/{id}/",
            ),
            (
                Endpoint::ListApps,
                "GET /enterprise/{enterprise_id}/application/",
            ),
            (
                Endpoint::UploadApp,
                "POST /enterprise/{enterprise_id}/application/upload/",
            ),
            (
                Endpoint::ListContent,
                "GET /v0/enterprise/{enterprise_id}/content/",
            ),
            (
                Endpoint::UploadContent,
                "POST /v0/enterprise/{enterprise_id}/content/upload/",
            ),
        ] {
            assert_eq!(EsperPaths.template(&e), want);
        }
        assert_eq!(
            EsperPaths.write(
                &write(Endpoint::MoveDevices, Some("g-1"), &[("action", "add")]),
                "e-1"
            ),
            "PATCH /enterprise/e-1/devicegroup/g-1/?action=add"
        );
        assert_eq!(
            EsperPaths.write(&write(Endpoint::UpdateAlarmRule, None, &[]), "e-1"),
            "PUT /v1/enterprise/e-1/alarmrules/{id}/"
        );
        let raw = Endpoint::Raw {
            method: "PATCH".into(),
            path: "/v1/enterprise/{enterprise_id}/alarmrules/${{ steps.a.id }}/".into(),
        };
        assert_eq!(
            EsperPaths.template(&raw),
            "PATCH /v1/enterprise/{enterprise_id}/alarmrules/${{ steps.a.id }}/"
        );
        assert_eq!(
            EsperPaths.write(&write(raw, None, &[("a", "1"), ("b", "2")]), "e-1"),
            "PATCH /v1/enterprise/e-1/alarmrules/${{ steps.a.id }}/?a=1&b=2"
        );
    }
}
