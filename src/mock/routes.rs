//! Maps a raw request path onto the mock's route table: which resource, which ids, which
//! error family, which methods, and the template string used in `Stats::by_route`. Paths
//! must match Esper's exactly, trailing slash included. Validating ids and answering is left
//! to `api`.

use axum::http::Method;

/// Which error and envelope shape a path uses (API.md §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    /// `{"errors": [...], "message": ..., "status": ...}` and classic DRF pages.
    Core,
    /// `{"code": ..., "message": ..., "content": ...}`.
    Service,
}

/// A matched resource with its raw (not yet validated) path ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    Groups {
        eid: String,
    },
    Group {
        eid: String,
        group: String,
    },
    Devices {
        eid: String,
    },
    Device {
        eid: String,
        device: String,
    },
    Apps {
        eid: String,
    },
    AppUpload {
        eid: String,
    },
    App {
        eid: String,
        app: String,
    },
    AppVersions {
        eid: String,
        app: String,
    },
    AppVersion {
        eid: String,
        app: String,
        version: String,
    },
    AlarmRules {
        eid: String,
    },
    AlarmRule {
        eid: String,
        alarm: String,
    },
    Contents {
        eid: String,
    },
    ContentUpload {
        eid: String,
    },
    ContentFile {
        eid: String,
        content: String,
    },
    Commands,
    Command {
        id: String,
    },
    CommandStats {
        id: String,
    },
    Statuses,
    Status {
        id: String,
    },
    V2Devices,
    InstallDevices {
        eid: String,
        app: String,
        version: String,
    },
    DeviceApps {
        eid: String,
        device: String,
    },
}

/// The outcome of matching a path.
#[derive(Clone, Debug)]
pub(crate) struct Matched {
    pub route: Route,
    pub template: &'static str,
    pub allowed: &'static [Method],
}

impl Route {
    pub fn family(&self) -> Family {
        match self {
            Route::Commands
            | Route::Command { .. }
            | Route::CommandStats { .. }
            | Route::Statuses
            | Route::Status { .. }
            | Route::V2Devices => Family::Service,
            _ => Family::Core,
        }
    }

    /// The enterprise id in the path, for routes that carry one.
    pub fn enterprise(&self) -> Option<&str> {
        match self {
            Route::Groups { eid }
            | Route::Group { eid, .. }
            | Route::Devices { eid }
            | Route::Device { eid, .. }
            | Route::Apps { eid }
            | Route::AppUpload { eid }
            | Route::App { eid, .. }
            | Route::AppVersions { eid, .. }
            | Route::AppVersion { eid, .. }
            | Route::AlarmRules { eid }
            | Route::AlarmRule { eid, .. }
            | Route::Contents { eid }
            | Route::ContentUpload { eid }
            | Route::ContentFile { eid, .. }
            | Route::InstallDevices { eid, .. }
            | Route::DeviceApps { eid, .. } => Some(eid),
            _ => None,
        }
    }
}

/// The family of a path that matched nothing, so even its 404 has the right shape.
pub(crate) fn family_of_path(path: &str) -> Family {
    if path.starts_with("/api/commands/") || path.starts_with("/api/v2/") {
        Family::Service
    } else {
        Family::Core
    }
}

const GET: &[Method] = &[Method::GET];
const GET_PATCH: &[Method] = &[Method::GET, Method::PATCH];
const GET_POST: &[Method] = &[Method::GET, Method::POST];
const GET_PUT: &[Method] = &[Method::GET, Method::PUT];
const POST: &[Method] = &[Method::POST];
const GET_PATCH_DELETE: &[Method] = &[Method::GET, Method::PATCH, Method::DELETE];
const GET_PUT_PATCH_DELETE: &[Method] = &[Method::GET, Method::PUT, Method::PATCH, Method::DELETE];

/// Matches `path` (as received, with `/api`) against the route table.
pub(crate) fn resolve(path: &str) -> Option<Matched> {
    let rest = path.strip_prefix("/api/")?;
    // The one path Esper publishes without its trailing slash (API.md §1.4); with one,
    // it is a 404 like any other mismatch.
    if let Some(inner) = rest.strip_suffix("/installdevices") {
        return match inner.split('/').collect::<Vec<_>>().as_slice() {
            ["enterprise", eid, "application", app, "version", version]
                if [eid, app, version].iter().all(|s| !s.is_empty()) =>
            {
                Some(Matched {
                    route: Route::InstallDevices {
                        eid: eid.to_string(),
                        app: app.to_string(),
                        version: version.to_string(),
                    },
                    template: "/enterprise/{enterprise_id}/application/{application_id}/version/{version_id}/installdevices",
                    allowed: GET,
                })
            }
            _ => None,
        };
    }
    let inner = rest.strip_suffix('/')?;
    let segs: Vec<&str> = inner.split('/').collect();
    if segs.iter().any(|s| s.is_empty()) {
        return None;
    }
    let s = |i: usize| segs[i].to_string();
    let (route, template, allowed): (Route, &'static str, &'static [Method]) = match segs.as_slice()
    {
        ["enterprise", _, "devicegroup"] => (
            Route::Groups { eid: s(1) },
            "/enterprise/{enterprise_id}/devicegroup/",
            GET,
        ),
        ["enterprise", _, "devicegroup", _] => (
            Route::Group {
                eid: s(1),
                group: s(3),
            },
            "/enterprise/{enterprise_id}/devicegroup/{group_id}/",
            GET_PATCH,
        ),
        ["enterprise", _, "device"] => (
            Route::Devices { eid: s(1) },
            "/enterprise/{enterprise_id}/device/",
            GET,
        ),
        ["enterprise", _, "device", _] => (
            Route::Device {
                eid: s(1),
                device: s(3),
            },
            "/enterprise/{enterprise_id}/device/{device_id}/",
            GET,
        ),
        ["enterprise", _, "device", _, "app"] => (
            Route::DeviceApps {
                eid: s(1),
                device: s(3),
            },
            "/enterprise/{enterprise_id}/device/{device_id}/app/",
            GET,
        ),
        ["enterprise", _, "application"] => (
            Route::Apps { eid: s(1) },
            "/enterprise/{enterprise_id}/application/",
            GET,
        ),
        ["enterprise", _, "application", "upload"] => (
            Route::AppUpload { eid: s(1) },
            "/enterprise/{enterprise_id}/application/upload/",
            POST,
        ),
        ["enterprise", _, "application", _] => (
            Route::App {
                eid: s(1),
                app: s(3),
            },
            "/enterprise/{enterprise_id}/application/{application_id}/",
            GET,
        ),
        ["enterprise", _, "application", _, "version"] => (
            Route::AppVersions {
                eid: s(1),
                app: s(3),
            },
            "/enterprise/{enterprise_id}/application/{application_id}/version/",
            GET,
        ),
        ["enterprise", _, "application", _, "version", _] => (
            Route::AppVersion {
                eid: s(1),
                app: s(3),
                version: s(5),
            },
            "/enterprise/{enterprise_id}/application/{application_id}/version/{version_id}/",
            GET,
        ),
        ["v1", "enterprise", _, "alarmrules"] => (
            Route::AlarmRules { eid: s(2) },
            "/v1/enterprise/{enterprise_id}/alarmrules/",
            GET_POST,
        ),
        ["v1", "enterprise", _, "alarmrules", _] => (
            Route::AlarmRule {
                eid: s(2),
                alarm: s(4),
            },
            "/v1/enterprise/{enterprise_id}/alarmrules/{alarm_id}/",
            GET_PUT_PATCH_DELETE,
        ),
        ["v0", "enterprise", _, "content"] => (
            Route::Contents { eid: s(2) },
            "/v0/enterprise/{enterprise_id}/content/",
            GET,
        ),
        ["v0", "enterprise", _, "content", "upload"] => (
            Route::ContentUpload { eid: s(2) },
            "/v0/enterprise/{enterprise_id}/content/upload/",
            POST,
        ),
        ["v0", "enterprise", _, "content", _] => (
            Route::ContentFile {
                eid: s(2),
                content: s(4),
            },
            "/v0/enterprise/{enterprise_id}/content/{content_id}/",
            GET_PATCH_DELETE,
        ),
        ["commands", "v0", "commands"] => (Route::Commands, "/commands/v0/commands/", GET_POST),
        ["commands", "v0", "commands", _] => (
            Route::Command { id: s(3) },
            "/commands/v0/commands/{id}/",
            GET,
        ),
        ["commands", "v0", "commands", _, "stats"] => (
            Route::CommandStats { id: s(3) },
            "/commands/v0/commands/{id}/stats/",
            GET,
        ),
        ["commands", "v0", "status"] => (Route::Statuses, "/commands/v0/status/", GET),
        ["commands", "v0", "status", _] => (
            Route::Status { id: s(3) },
            "/commands/v0/status/{id}/",
            GET_PUT,
        ),
        ["v2", "devices"] => (Route::V2Devices, "/v2/devices/", GET),
        _ => return None,
    };
    Some(Matched {
        route,
        template,
        allowed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_slash_is_required() {
        assert!(resolve("/api/v2/devices/").is_some());
        assert!(resolve("/api/v2/devices").is_none());
        assert!(resolve("/v2/devices/").is_none());
        assert!(resolve("/api//v2/devices/").is_none());
        assert!(resolve("/api/").is_none());
        assert!(resolve("").is_none());
    }

    #[test]
    fn installdevices_has_no_trailing_slash() {
        let m = resolve("/api/enterprise/e/application/a/version/v/installdevices").unwrap();
        assert_eq!(
            m.route,
            Route::InstallDevices {
                eid: "e".into(),
                app: "a".into(),
                version: "v".into()
            }
        );
        assert!(resolve("/api/enterprise/e/application/a/version/v/installdevices/").is_none());
        assert!(resolve("/api/enterprise/e/application//version/v/installdevices").is_none());
        let m = resolve("/api/enterprise/e/device/d/app/").unwrap();
        assert_eq!(
            m.route,
            Route::DeviceApps {
                eid: "e".into(),
                device: "d".into()
            }
        );
    }

    #[test]
    fn literal_segments_win_over_ids() {
        let m = resolve("/api/enterprise/e/application/upload/").unwrap();
        assert_eq!(m.route, Route::AppUpload { eid: "e".into() });
        let m = resolve("/api/enterprise/e/application/a/version/v/").unwrap();
        assert_eq!(
            m.route,
            Route::AppVersion {
                eid: "e".into(),
                app: "a".into(),
                version: "v".into()
            }
        );
        assert_eq!(m.route.family(), Family::Core);
        assert_eq!(
            resolve("/api/commands/v0/commands/x/stats/").unwrap().route,
            Route::CommandStats { id: "x".into() }
        );
    }
}
