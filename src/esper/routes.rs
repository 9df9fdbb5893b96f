//! The one table of Esper paths: every [`Endpoint`]'s method and path template, and the
//! function that fills a template in.
//!
//! The client's request functions take their paths from here, and so does everything that
//! shows a request to a person (`plan`'s estimate and `--show-requests`, through the
//! adapter), which is why a path is written exactly once. Paths are written exactly as
//! Esper publishes them, trailing slashes included. What each request sends, and when, is
//! the client's and the adapter's business; this file only names places.

use crate::base::Endpoint;

// Paths more than one endpoint shares (the method tells them apart).
const COMMANDS: &str = "/commands/v0/commands/";
const ALARM_RULES: &str = "/v1/enterprise/{enterprise_id}/alarmrules/";
const ALARM_RULE: &str = "/v1/enterprise/{enterprise_id}/alarmrules/{id}/";
const GROUP: &str = "/enterprise/{enterprise_id}/devicegroup/{id}/";

/// The method and path template of `endpoint`. Templates hold `{enterprise_id}` and at
/// most one `{id}`; a raw request's are the job's own.
pub fn route(endpoint: &Endpoint) -> (&str, &str) {
    match endpoint {
        Endpoint::CreateCommand => ("POST", COMMANDS),
        Endpoint::ListCommands => ("GET", COMMANDS),
        Endpoint::GetCommand => ("GET", "/commands/v0/commands/{id}/"),
        Endpoint::CommandStats => ("GET", "/commands/v0/commands/{id}/stats/"),
        Endpoint::CommandStatuses => ("GET", "/commands/v0/status/"),
        Endpoint::ListAlarmRules => ("GET", ALARM_RULES),
        Endpoint::CreateAlarmRule => ("POST", ALARM_RULES),
        Endpoint::GetAlarmRule => ("GET", ALARM_RULE),
        Endpoint::UpdateAlarmRule => ("PUT", ALARM_RULE),
        Endpoint::PatchAlarmRule => ("PATCH", ALARM_RULE),
        Endpoint::DeleteAlarmRule => ("DELETE", ALARM_RULE),
        Endpoint::ListGroups => ("GET", "/enterprise/{enterprise_id}/devicegroup/"),
        Endpoint::GetGroup => ("GET", GROUP),
        Endpoint::MoveDevices => ("PATCH", GROUP),
        Endpoint::ListDevices => ("GET", "/enterprise/{enterprise_id}/device/"),
        Endpoint::GetDevice => ("GET", "/enterprise/{enterprise_id}/device/{id}/"),
        Endpoint::ListDevicesV2 => ("GET", "/v2/devices/"),
        Endpoint::ListApps => ("GET", "/enterprise/{enterprise_id}/application/"),
        Endpoint::ListAppVersions => (
            "GET",
            "/enterprise/{enterprise_id}/application/{id}/version/",
        ),
        Endpoint::UploadApp => ("POST", "/enterprise/{enterprise_id}/application/upload/"),
        Endpoint::ListContent => ("GET", "/v0/enterprise/{enterprise_id}/content/"),
        Endpoint::UploadContent => ("POST", "/v0/enterprise/{enterprise_id}/content/upload/"),
        // No trailing slash: Esper publishes this one without it (API.md §1.4).
        Endpoint::InstallDevices => (
            "GET",
            "/enterprise/{enterprise_id}/application/{application_id}/version/{id}/installdevices",
        ),
        Endpoint::ListDeviceApps => ("GET", "/enterprise/{enterprise_id}/device/{id}/app/"),
        Endpoint::Raw { method, path } => (method, path),
    }
}

/// The path of `endpoint` below the base URL, with `{enterprise_id}` and `{id}` filled in.
/// The id is percent-encoded, so an id from a job file cannot change the path; without an
/// id, `{id}` stays as written (a plan shows a rule found only at run time that way). A
/// raw request's path is the user's: only `{enterprise_id}` is filled in.
pub fn path(endpoint: &Endpoint, enterprise_id: &str, id: Option<&str>) -> String {
    let (_, template) = route(endpoint);
    let mut p = template.to_string();
    if let (Some(id), false) = (id, matches!(endpoint, Endpoint::Raw { .. })) {
        p = p.replace("{id}", &seg(id));
    }
    p.replace("{enterprise_id}", enterprise_id)
}

/// [`path`] for the one endpoint that names two ids: an app version's
/// `installdevices`, below its application.
pub fn install_devices_path(enterprise_id: &str, application_id: &str, version_id: &str) -> String {
    path(&Endpoint::InstallDevices, enterprise_id, Some(version_id))
        .replace("{application_id}", &seg(application_id))
}

/// Percent-encodes an id used as a path segment.
fn seg(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_in() {
        assert_eq!(
            path(&Endpoint::UpdateAlarmRule, "e-1", Some("r/1")),
            "/v1/enterprise/e-1/alarmrules/r%2F1/"
        );
        assert_eq!(
            path(&Endpoint::UpdateAlarmRule, "e-1", None),
            "/v1/enterprise/e-1/alarmrules/{id}/"
        );
        let raw = Endpoint::Raw {
            method: "PATCH".into(),
            path: "/v1/enterprise/{enterprise_id}/x/{id}/".into(),
        };
        assert_eq!(path(&raw, "e-1", Some("y")), "/v1/enterprise/e-1/x/{id}/");
        assert_eq!(
            route(&raw),
            ("PATCH", "/v1/enterprise/{enterprise_id}/x/{id}/")
        );
    }

    #[test]
    fn every_named_endpoint_has_an_absolute_template() {
        for e in Endpoint::NAMED {
            let (method, template) = route(&e);
            // `installdevices` is published without its trailing slash.
            let slash = template.ends_with('/') || e == Endpoint::InstallDevices;
            assert!(!method.is_empty() && template.starts_with('/') && slash);
            assert!(template.matches("{id}").count() <= 1, "{e:?}");
        }
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(seg("abc-1"), "abc-1");
        assert_eq!(seg("../x"), "..%2Fx");
    }
}
