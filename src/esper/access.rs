//! What a failed call says about using the API at all: [`ApiError::access`] tells an
//! unreachable server, a refused key and an unknown enterprise (the
//! [`AccessError`](crate::base::AccessError)s a run stops on with exit code 5) from every
//! other failure, which concerns only the request that met it.
//!
//! An unknown enterprise is recognised by a 404 on one of the enterprise's own lists
//! (`/enterprise/{eid}/devicegroup/`, `/v1/enterprise/{eid}/alarmrules/`, …): every
//! enterprise has them, and Esper answers another enterprise's paths as unknown
//! resources. A 404 below such a list (a device by id) may be the resource alone, so it is
//! not one.

use crate::base::AccessError;

use super::error::{ApiError, ErrorKind};

impl ApiError {
    /// The access problem this failure shows, if it shows one.
    pub fn access(&self) -> Option<AccessError> {
        match &self.kind {
            ErrorKind::Connect(_) => Some(AccessError::Unreachable {
                detail: self.to_string(),
            }),
            ErrorKind::Status { status: 401, .. } => Some(AccessError::KeyRefused {
                detail: self.to_string(),
            }),
            ErrorKind::Status { status: 403, .. } => Some(AccessError::Forbidden {
                detail: self.to_string(),
            }),
            ErrorKind::Status { status: 404, .. } => {
                enterprise_list(&self.path).map(|enterprise_id| AccessError::NoEnterprise {
                    enterprise_id: enterprise_id.to_string(),
                })
            }
            _ => None,
        }
    }
}

/// The enterprise id of a path that is one of an enterprise's lists
/// (`…/enterprise/{eid}/{list}/`, query ignored).
fn enterprise_list(path: &str) -> Option<&str> {
    let path = path.split('?').next().unwrap_or(path);
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let at = segs.iter().position(|s| *s == "enterprise")?;
    match &segs[at + 1..] {
        [eid, _list] => Some(eid),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(path: &str, status: u16) -> ApiError {
        ApiError {
            method: "GET".into(),
            path: path.into(),
            kind: ErrorKind::Status {
                status,
                body: None,
                raw: String::new(),
                retry_after: None,
            },
        }
    }

    #[test]
    fn only_failures_about_the_api_itself_are_access_problems() {
        let eid = "0b8f5c4e-1111-4222-8333-444455556666";
        let list = format!("/enterprise/{eid}/devicegroup/?limit=100&offset=0");
        assert_eq!(
            status(&list, 404).access(),
            Some(AccessError::NoEnterprise {
                enterprise_id: eid.into()
            })
        );
        let rules = format!("/v1/enterprise/{eid}/alarmrules/");
        assert!(matches!(
            status(&rules, 404).access(),
            Some(AccessError::NoEnterprise { .. })
        ));
        // A device by id may be missing on its own.
        let device = format!("/enterprise/{eid}/device/d-1/");
        assert_eq!(status(&device, 404).access(), None);
        assert_eq!(status("/v2/devices/", 404).access(), None);
        assert!(matches!(
            status(&list, 401).access(),
            Some(AccessError::KeyRefused { .. })
        ));
        assert!(matches!(
            status("/v2/devices/", 403).access(),
            Some(AccessError::Forbidden { .. })
        ));
        for other in [400, 429, 500, 502] {
            assert_eq!(status(&list, other).access(), None, "{other}");
        }
        let refused = ApiError {
            kind: ErrorKind::Connect("connection refused".into()),
            ..status(&list, 0)
        };
        let a = refused.access().unwrap();
        assert!(
            a.to_string()
                .starts_with("cannot reach the Esper API: GET /enterprise/"),
            "{a}"
        );
        let timeout = ApiError {
            kind: ErrorKind::Timeout,
            ..status(&list, 0)
        };
        assert_eq!(timeout.access(), None, "a slow server is reachable");
    }
}
