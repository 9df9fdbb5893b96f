//! Export steps in the plan: which devices or groups an export reads (its scope, decided
//! from the group listing without listing a single device), how `what: installed` reads
//! (per version or per device, whichever costs fewer requests), and the requests it will
//! make, from the counts the listings report.
//!
//! Pure: the counts come from the resolver's [`super::Inventory`] reads. Reading and
//! writing the rows is the Esper adapter's (`esper::adapter::export`) and the file sink's
//! (`crate::export`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Endpoint;
use super::resolve::{GroupInfo, select_groups};
use crate::job::{DeviceSelector, ExportSpec, ExportWhat, GroupSelector, TargetSpec};

/// Rows a listing page holds (the client asks for 100).
pub const PAGE: u64 = 100;

/// Which devices (or groups) an export reads. Kept as filters, not as frozen items, so
/// that a 100,000-device export neither lists its devices at plan time nor stores them in
/// the plan file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExportScope {
    /// Every device (or group) of the enterprise.
    All,
    /// The devices in these groups and their subgroups (`?group=<id>` each; no group here
    /// is below another), except those whose own group is in `skip` (what the target's
    /// `exclude` left out).
    Groups {
        groups: Vec<ScopeGroup>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        skip: Vec<String>,
    },
    /// The legacy device list's filters (`group` an id), plus, for a CSV or id list, the
    /// devices to keep from a scan of the fleet.
    Devices {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        serial: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tags: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ids: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        serials: Vec<String>,
    },
}

/// A group an export lists the devices of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeGroup {
    pub id: String,
    pub path: String,
}

/// How `what: installed` finds which devices have the package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstalledMethod {
    /// `…/version/{id}/installdevices` for each version, pages of 100 devices.
    PerVersion,
    /// The target's devices, then each device's app list filtered by package.
    PerDevice,
}

impl InstalledMethod {
    pub fn describe(self) -> &'static str {
        match self {
            InstalledMethod::PerVersion => "installdevices per version",
            InstalledMethod::PerDevice => "per-device app lists",
        }
    }
}

/// A version of the exported package, with the count Esper reports for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageVersion {
    pub id: String,
    pub app_id: String,
    pub version_code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_name: Option<String>,
    /// Devices with this version installed, as the version listing says.
    pub installed: u64,
}

/// Everything a run needs to make an export step's requests, decided at plan time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportPlan {
    pub spec: ExportSpec,
    pub scope: ExportScope,
    /// `what: installed`: the package's versions (only `version_code`'s, when given).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<PackageVersion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<InstalledMethod>,
    /// The requests it will make, from the counts known at plan time; a listing whose size
    /// was not known counts one page.
    pub requests: BTreeMap<Endpoint, u64>,
    /// Rows expected, when the counts tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
}

/// The scope of an export of `target` (every device or group without one). `groups` is
/// the tenant's group listing, paths below the root.
pub fn scope_of(target: Option<&TargetSpec>, groups: &[GroupInfo]) -> ExportScope {
    match target {
        None | Some(TargetSpec::Union(_)) => ExportScope::All,
        Some(TargetSpec::Groups(sel)) => groups_scope(sel, groups),
        Some(TargetSpec::Devices(sel)) => devices_scope(sel, groups),
    }
}

fn groups_scope(sel: &GroupSelector, groups: &[GroupInfo]) -> ExportScope {
    let selected = select_groups(sel, groups);
    let paths: Vec<&str> = selected
        .iter()
        .filter_map(|i| i.detail.as_deref())
        .collect();
    let below = |p: &str, top: &str| {
        p.len() > top.len() && p.starts_with(top) && p.as_bytes()[top.len()] == b'/'
    };
    let top: Vec<ScopeGroup> = selected
        .iter()
        .filter_map(|i| {
            let p = i.detail.as_deref()?;
            (!paths.iter().any(|q| below(p, q))).then(|| ScopeGroup {
                id: i.id.clone(),
                path: p.to_string(),
            })
        })
        .collect();
    // Groups the target's `exclude` names, and everything below them, that lie inside a
    // listed group: their devices come with the listing and are dropped.
    let excluded = if sel.exclude.is_empty() {
        Vec::new()
    } else {
        select_groups(
            &GroupSelector {
                names: sel.exclude.clone(),
                ..GroupSelector::default()
            },
            groups,
        )
    };
    let ex_paths: Vec<&str> = excluded
        .iter()
        .filter_map(|i| i.detail.as_deref())
        .collect();
    let skip = groups
        .iter()
        .filter(|g| ex_paths.iter().any(|x| g.path == *x || below(&g.path, x)))
        .filter(|g| top.iter().any(|t| below(&g.path, &t.path)))
        .map(|g| g.id.clone())
        .collect();
    ExportScope::Groups { groups: top, skip }
}

fn devices_scope(sel: &DeviceSelector, groups: &[GroupInfo]) -> ExportScope {
    let group = sel.group.as_ref().map(|g| {
        groups
            .iter()
            .find(|x| x.id == *g || x.path == *g || x.name == *g)
            .map_or_else(|| g.clone(), |x| x.id.clone())
    });
    ExportScope::Devices {
        group,
        name: sel.name.clone(),
        serial: sel.serial.clone(),
        state: sel.state.clone(),
        tags: sel.tags.clone(),
        ids: sel.ids.clone(),
        serials: sel.serials.clone(),
    }
}

impl ExportScope {
    /// The device lists to walk: a selector per listing (`group` an id).
    pub fn listings(&self) -> Vec<DeviceSelector> {
        match self {
            ExportScope::All => vec![DeviceSelector::default()],
            ExportScope::Groups { groups, .. } => groups
                .iter()
                .map(|g| DeviceSelector {
                    group: Some(g.id.clone()),
                    ..DeviceSelector::default()
                })
                .collect(),
            ExportScope::Devices {
                group,
                name,
                serial,
                state,
                tags,
                ..
            } => vec![DeviceSelector {
                group: group.clone(),
                name: name.clone(),
                serial: serial.clone(),
                state: state.clone(),
                tags: tags.clone(),
                ..DeviceSelector::default()
            }],
        }
    }

    /// Whether the scope is the whole fleet.
    pub fn is_all(&self) -> bool {
        matches!(self, ExportScope::All)
    }
}

/// Pages of a listing of `n` rows: at least one (an empty listing is one request).
pub fn pages(n: u64) -> u64 {
    n.div_ceil(PAGE).max(1)
}

/// The cheaper way to read `what: installed` for `devices` target devices (`None`:
/// unknown) and the package's versions: per version unless one request per device costs
/// less. With the whole fleet and many installs, per version wins; for a handful of
/// devices, their app lists do.
pub fn installed_method(devices: Option<u64>, versions: &[PackageVersion]) -> InstalledMethod {
    let per_version: u64 = versions.iter().map(|v| pages(v.installed)).sum();
    match devices {
        Some(d) if d < per_version => InstalledMethod::PerDevice,
        _ => InstalledMethod::PerVersion,
    }
}

/// The requests of an export, from what resolution counted: `devices` in the scope,
/// `groups` in the tenant, `apps` (with their versions) and `rules`.
pub fn requests(
    spec: &ExportSpec,
    scope: &ExportScope,
    counts: &Counts,
    versions: &[PackageVersion],
    method: Option<InstalledMethod>,
) -> BTreeMap<Endpoint, u64> {
    let mut r = BTreeMap::new();
    let mut add = |e: Endpoint, n: u64| *r.entry(e).or_insert(0) += n;
    let listings = scope.listings().len() as u64;
    let device_pages = match counts.devices {
        Some(d) => pages(d).max(listings),
        None => listings,
    };
    match spec.what {
        ExportWhat::Devices => {
            add(Endpoint::ListGroups, pages(counts.groups));
            add(Endpoint::ListDevices, device_pages);
        }
        ExportWhat::Groups => add(Endpoint::ListGroups, pages(counts.groups)),
        ExportWhat::Apps => {
            add(Endpoint::ListApps, pages(counts.apps.unwrap_or(0)));
            add(Endpoint::ListAppVersions, counts.apps.unwrap_or(1).max(1));
        }
        ExportWhat::Installed => {
            add(Endpoint::ListApps, 1);
            add(Endpoint::ListAppVersions, 1);
            match method.unwrap_or(InstalledMethod::PerVersion) {
                InstalledMethod::PerVersion => {
                    add(
                        Endpoint::InstallDevices,
                        versions.iter().map(|v| pages(v.installed)).sum(),
                    );
                    if !scope.is_all() {
                        add(Endpoint::ListDevices, device_pages);
                    }
                }
                InstalledMethod::PerDevice => {
                    add(Endpoint::ListDevices, device_pages);
                    add(Endpoint::ListDeviceApps, counts.devices.unwrap_or(1));
                }
            }
        }
        ExportWhat::AlarmRules => add(Endpoint::ListAlarmRules, pages(counts.rules.unwrap_or(0))),
        ExportWhat::Commands => {
            add(Endpoint::ListCommands, 1);
            add(Endpoint::CommandStatuses, 1);
        }
    }
    r
}

/// What resolution counted for an export's estimate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub groups: u64,
    pub devices: Option<u64>,
    pub apps: Option<u64>,
    pub rules: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(id: &str, path: &str) -> GroupInfo {
        GroupInfo {
            id: id.into(),
            name: path.rsplit('/').next().unwrap_or(path).into(),
            path: path.into(),
        }
    }

    #[test]
    fn group_scopes_list_only_the_topmost_groups_and_skip_excluded_subtrees() {
        let all = vec![
            g("s", "Stores"),
            g("n", "Stores/North"),
            g("n1", "Stores/North/0001"),
            g("so", "Stores/South"),
            g("so2", "Stores/South/0002"),
            g("w", "Warehouse"),
        ];
        let sel = GroupSelector {
            names: vec!["Stores/**".into()],
            exclude: vec!["Stores/South/0002".into()],
            ..GroupSelector::default()
        };
        let ExportScope::Groups { groups, skip } = groups_scope(&sel, &all) else {
            panic!("a groups scope")
        };
        let ids: Vec<&str> = groups.iter().map(|g| g.id.as_str()).collect();
        assert_eq!(
            ids,
            ["n", "so"],
            "subgroups come with their parent's listing"
        );
        assert_eq!(skip, ["so2"]);
    }

    #[test]
    fn installed_reads_per_device_only_when_that_is_fewer_requests() {
        let v = |n| PackageVersion {
            id: "v".into(),
            app_id: "a".into(),
            version_code: "1".into(),
            version_name: None,
            installed: n,
        };
        assert_eq!(
            installed_method(Some(3), &[v(5_000)]),
            InstalledMethod::PerDevice
        );
        assert_eq!(
            installed_method(Some(100_000), &[v(90_000), v(10_000)]),
            InstalledMethod::PerVersion
        );
        assert_eq!(installed_method(None, &[v(1)]), InstalledMethod::PerVersion);
    }
}
