//! Target resolution: the only part of planning that reads the API, and only through the
//! [`Inventory`] trait.
//!
//! Group selections are matched locally against one listing of all groups (a glob over the
//! path needs the whole tree anyway, and one scan costs fewer permits than a query per
//! pattern). Device selections are passed to the inventory as filters. The result is frozen
//! into the plan.

use std::collections::{BTreeMap, BTreeSet};

use futures::future::BoxFuture;
use globset::{Glob, GlobMatcher};

use super::export::{self, Counts, ExportPlan, PackageVersion};
use super::{FrozenTarget, Item, ItemKind, LiveContent, LiveRule, PlanError, Targets};
use crate::base::AccessError;
use crate::job::{DeviceSelector, GroupSelector, Job, StepOp, TargetSpec, VersionRef};

/// A group as the planner needs it. `path` is below the root group ("All devices").
#[derive(Debug, Clone, PartialEq)]
pub struct GroupInfo {
    pub id: String,
    pub name: String,
    pub path: String,
}

/// A failed inventory read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InventoryError {
    /// A read failed, already phrased for the user.
    #[error("{0}")]
    Read(String),
    /// The API could not be reached, or refused the key or the enterprise: no read can
    /// succeed with these settings.
    #[error(transparent)]
    Access(AccessError),
}

/// Read-only access to the fleet.
pub trait Inventory: Send + Sync {
    /// Every device group.
    fn groups(&self) -> BoxFuture<'_, Result<Vec<GroupInfo>, InventoryError>>;
    /// Devices matching a selector's filters (`group` given as an id). With `serials` set,
    /// every device whose serial is listed (in any order; the planner restores the CSV's).
    fn devices<'a>(
        &'a self,
        filter: &'a DeviceSelector,
    ) -> BoxFuture<'a, Result<Vec<Item>, InventoryError>>;
    /// The id of an app version, if it exists.
    fn app_version<'a>(
        &'a self,
        package: &'a str,
        version_code: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, InventoryError>>;
    /// Every alarm rule of the enterprise, in one paged listing; `None` when this inventory
    /// cannot list them (then each task reads its rule back by name when it runs).
    fn alarm_rules(&self) -> BoxFuture<'_, Result<Option<Vec<LiveRule>>, InventoryError>> {
        Box::pin(async { Ok(None) })
    }
    /// The groups of the devices listed so far (device id → group ids), when the inventory
    /// kept them: what a `group_move` is decided against.
    fn memberships(&self) -> Option<BTreeMap<String, Vec<String>>> {
        None
    }
    /// Every content file of the enterprise, in one paged listing; `None` when this
    /// inventory cannot list them.
    fn contents(&self) -> BoxFuture<'_, Result<Option<Vec<LiveContent>>, InventoryError>> {
        Box::pin(async { Ok(None) })
    }

    /// How many devices match a selector's filters (`group` an id), from one small read;
    /// `None` when this inventory cannot tell. What an export's estimate counts pages by.
    fn device_count<'a>(
        &'a self,
        _filter: &'a DeviceSelector,
    ) -> BoxFuture<'a, Result<Option<u64>, InventoryError>> {
        Box::pin(async { Ok(None) })
    }

    /// The versions of `package` with their install counts; `None` when this inventory
    /// cannot list them. What `export: { what: installed }` reads by.
    fn package_versions<'a>(
        &'a self,
        _package: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<PackageVersion>>, InventoryError>> {
        Box::pin(async { Ok(None) })
    }

    /// How [`Inventory::devices`] finds the devices of `serials` (a CSV's), so the plan can
    /// say what it cost; `None` (the default) when the inventory does not say.
    fn serial_method(&self, _serials: &[String]) -> Option<SerialMethod> {
        None
    }

    /// The page size, when [`Inventory::devices`] reads a selector's filters through the
    /// paced device listing (`/v2/devices/` in cursor pages), so the plan can say what the
    /// listing's own budget makes it cost; `None` (the default) otherwise.
    /// `found` is how many devices the selector listed.
    fn listing_page(&self, _filter: &DeviceSelector, _found: usize) -> Option<usize> {
        None
    }
}

/// How the devices of a CSV's serials are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SerialMethod {
    /// One filtered request per distinct serial.
    Lookup { requests: usize },
    /// A scan of the whole fleet, `page` devices a request.
    Scan { page: usize },
}

/// What resolution found: frozen targets, app version ids and group_move destinations.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    pub targets: Targets,
    pub versions: BTreeMap<(String, String), String>,
    /// `group_move.to` as written → (group id, path).
    pub groups: BTreeMap<String, (String, String)>,
    /// Things worth a look that do not stop the plan (e.g. CSV serials not in the fleet).
    pub warnings: Vec<String>,
    /// The tenant's alarm rules, when the job manages some and the inventory listed them.
    pub rules: Option<Vec<LiveRule>>,
    /// The groups of the devices the targets listed, when the job moves devices.
    pub memberships: Option<BTreeMap<String, Vec<String>>>,
    /// The tenant's content files, when the job uploads some and the inventory listed them.
    pub contents: Option<Vec<LiveContent>>,
    /// `app_upload` steps that name their package and version code: the version's id
    /// when it exists already, `None` when it does not.
    pub uploads: BTreeMap<(String, String), Option<String>>,
    /// How targets were read, where that is worth telling (e.g. CSV serials looked up one
    /// by one).
    pub notes: Vec<String>,
    /// The group path of each listed device (by id), when the groups were listed anyway:
    /// what `devices.csv` names a device's group by.
    pub device_groups: BTreeMap<String, String>,
    /// Export steps by id: what they read and what it costs.
    pub exports: BTreeMap<String, ExportPlan>,
}

/// Resolves every target and app version a job uses.
pub async fn resolve(job: &Job, inv: &dyn Inventory) -> Result<Resolved, PlanError> {
    let mut out = Resolved::default();
    let only_exported = only_exported(job);
    let has_exports = job.steps.iter().any(|s| matches!(s.op, StepOp::Export(_)));
    let needs_groups = has_exports
        || job.targets.values().any(|t| {
            matches!(t, TargetSpec::Groups(_))
                || matches!(t, TargetSpec::Devices(d) if d.group.is_some())
        })
        || job
            .steps
            .iter()
            .any(|s| matches!(s.op, StepOp::GroupMove { .. }));
    let groups = if needs_groups {
        inv.groups().await?
    } else {
        Vec::new()
    };
    if job
        .steps
        .iter()
        .any(|s| matches!(s.op, StepOp::AlarmRule { .. }))
    {
        out.rules = inv.alarm_rules().await?;
    }
    if job
        .steps
        .iter()
        .any(|s| matches!(s.op, StepOp::ContentUpload { .. }))
    {
        out.contents = inv.contents().await?;
    }
    for (name, spec) in &job.targets {
        // An export reads its target itself, streamed; listing it here would hold every
        // device in memory and in the plan file.
        if only_exported.contains(name.as_str()) {
            continue;
        }
        if let Some(t) = resolve_one(name, spec, &groups, inv, &mut out.warnings).await? {
            if let TargetSpec::Devices(sel) = spec
                && !sel.serials.is_empty()
                && let Some(how) = inv.serial_method(&sel.serials)
            {
                out.notes.push(serial_note(
                    name,
                    t.items.len(),
                    how,
                    job.limits.device_list_rate(),
                ));
            } else if let TargetSpec::Devices(sel) = spec
                && sel.serials.is_empty()
                && sel.ids.is_empty()
                && let Some(page) = inv.listing_page(sel, t.items.len())
                && let Some(note) =
                    listing_note(name, t.items.len(), page, job.limits.device_list_rate())
            {
                out.notes.push(note);
            }
            out.targets.insert(name.clone(), t);
        }
    }
    if job
        .steps
        .iter()
        .any(|s| matches!(s.op, StepOp::GroupMove { .. }))
    {
        out.memberships = inv.memberships();
    }
    // No read of its own: the groups and the devices' memberships were read already.
    if !groups.is_empty()
        && let Some(members) = inv.memberships()
    {
        let path: BTreeMap<&str, &str> = groups
            .iter()
            .map(|g| (g.id.as_str(), g.path.as_str()))
            .collect();
        for t in out.targets.values().filter(|t| t.kind == ItemKind::Device) {
            for d in &t.items {
                if let Some(p) = members
                    .get(&d.id)
                    .and_then(|ids| ids.iter().find_map(|g| path.get(g.as_str())))
                {
                    out.device_groups.insert(d.id.clone(), p.to_string());
                }
            }
        }
    }
    for step in &job.steps {
        if let StepOp::GroupMove { group, .. } = &step.op {
            let found = groups
                .iter()
                .find(|g| g.id == *group || g.path == *group)
                .or_else(|| {
                    let by_name: Vec<&GroupInfo> =
                        groups.iter().filter(|g| g.name == *group).collect();
                    (by_name.len() == 1).then(|| by_name[0])
                });
            match found {
                Some(g) => {
                    out.groups
                        .insert(group.clone(), (g.id.clone(), g.path.clone()));
                }
                None => return Err(PlanError::UnknownGroup(group.clone())),
            }
        }
    }
    for (name, spec) in &job.targets {
        if let TargetSpec::Union(members) = spec {
            let mut seen = BTreeSet::new();
            let mut items = Vec::new();
            let mut kind = ItemKind::Group;
            for m in members {
                if let Some(t) = out.targets.get(m) {
                    kind = t.kind;
                    for i in &t.items {
                        if seen.insert(i.id.clone()) {
                            items.push(i.clone());
                        }
                    }
                }
            }
            if items.is_empty() {
                return Err(PlanError::EmptyTarget(
                    name.clone(),
                    format!("its members {} select nothing", members.join(", ")),
                ));
            }
            out.targets
                .insert(name.clone(), FrozenTarget { kind, items });
        }
    }
    for step in &job.steps {
        if let StepOp::Export(spec) = &step.op {
            let plan = plan_export(job, spec, &groups, inv).await?;
            out.exports.insert(step.id.clone(), plan);
        }
    }
    for step in &job.steps {
        if let StepOp::AppUpload {
            package: Some(package),
            version_code: Some(code),
            ..
        } = &step.op
            && let std::collections::btree_map::Entry::Vacant(e) =
                out.uploads.entry((package.clone(), code.clone()))
        {
            e.insert(inv.app_version(package, code).await?);
        }
    }
    for step in &job.steps {
        if let StepOp::AppInstall {
            version:
                VersionRef::Package {
                    package,
                    version_code,
                },
            ..
        } = &step.op
        {
            let key = (package.clone(), version_code.clone());
            if out.versions.contains_key(&key) {
                continue;
            }
            match inv.app_version(package, version_code).await? {
                Some(id) => {
                    out.versions.insert(key, id);
                }
                None => {
                    return Err(PlanError::UnknownVersion {
                        package: package.clone(),
                        version_code: version_code.clone(),
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Targets that only export steps name (no other step, no union): they are not listed
/// at plan time.
fn only_exported(job: &Job) -> BTreeSet<&str> {
    let mut exported = BTreeSet::new();
    let mut used = BTreeSet::new();
    for step in &job.steps {
        match &step.op {
            StepOp::Export(e) => exported.extend(e.target.as_deref()),
            StepOp::AppInstall { to, .. }
            | StepOp::AppUninstall { to, .. }
            | StepOp::Command { to, .. } => {
                used.insert(to.as_str());
            }
            StepOp::GroupMove { devices, .. } => {
                used.insert(devices.as_str());
            }
            _ => {}
        }
        used.extend(step.for_each.as_deref());
    }
    for spec in job.targets.values() {
        if let TargetSpec::Union(members) = spec {
            used.extend(members.iter().map(String::as_str));
        }
    }
    exported.retain(|t| !used.contains(t));
    exported
}

/// An export step's scope, method and requests, from counts only.
async fn plan_export(
    job: &Job,
    spec: &crate::job::ExportSpec,
    groups: &[GroupInfo],
    inv: &dyn Inventory,
) -> Result<ExportPlan, PlanError> {
    use crate::job::ExportWhat as W;
    let target = spec.target.as_deref().and_then(|t| job.targets.get(t));
    if let (Some(TargetSpec::Groups(sel)), Some(name)) = (target, &spec.target) {
        check_patterns(name, sel, groups)?;
    }
    let scope = match (spec.what, target) {
        // A group export writes exactly the target's groups.
        (W::Groups, Some(TargetSpec::Groups(sel))) => export::ExportScope::Groups {
            groups: select_groups(sel, groups)
                .into_iter()
                .map(|i| export::ScopeGroup {
                    path: i.detail.unwrap_or_default(),
                    id: i.id,
                })
                .collect(),
            skip: Vec::new(),
        },
        _ => export::scope_of(target, groups),
    };
    let devices = if matches!(spec.what, W::Devices | W::Installed) {
        let mut total = Some(0u64);
        for sel in scope.listings() {
            total = match (total, inv.device_count(&sel).await?) {
                (Some(a), Some(b)) => Some(a + b),
                _ => None,
            };
        }
        match &scope {
            export::ExportScope::Devices { ids, serials, .. }
                if !ids.is_empty() || !serials.is_empty() =>
            {
                // A scan of the fleet for the listed devices: every page is read.
                total
            }
            _ => total,
        }
    } else {
        None
    };
    let mut versions = Vec::new();
    let mut method = None;
    if spec.what == W::Installed
        && let Some(package) = &spec.package
    {
        let listed = inv.package_versions(package).await?;
        let known = listed.is_some();
        versions = listed
            .unwrap_or_default()
            .into_iter()
            .filter(|v| {
                spec.version_code
                    .as_ref()
                    .is_none_or(|c| v.version_code == *c)
            })
            .collect();
        // Only an inventory that listed the versions can say one does not exist.
        if known
            && versions.is_empty()
            && let Some(code) = &spec.version_code
        {
            return Err(PlanError::UnknownVersion {
                package: package.clone(),
                version_code: code.clone(),
            });
        }
        method = Some(export::installed_method(
            if scope.is_all() { None } else { devices },
            &versions,
        ));
    }
    let counts = Counts {
        groups: groups.len() as u64,
        devices,
        apps: None,
        rules: None,
    };
    let rows = match spec.what {
        W::Devices => devices,
        W::Groups => match &scope {
            export::ExportScope::Groups { groups, .. } => Some(groups.len() as u64),
            _ => Some(groups.len() as u64),
        },
        W::Installed if scope.is_all() => Some(versions.iter().map(|v| v.installed).sum()),
        _ => None,
    };
    Ok(ExportPlan {
        requests: export::requests(spec, &scope, &counts, &versions, method),
        spec: spec.clone(),
        scope,
        versions,
        method,
        rows,
    })
}

/// `target `t`: 12 devices by serial lookup (12 requests)`. A scan names the device
/// listing's own budget, which paces its pages far below the job's rate.
fn serial_note(target: &str, found: usize, how: SerialMethod, list_rate: f64) -> String {
    let devices = crate::base::count(found as u64, "device", "devices");
    match how {
        SerialMethod::Lookup { requests } => format!(
            "target `{target}`: {devices} by serial lookup ({})",
            crate::base::count(requests as u64, "request", "requests")
        ),
        SerialMethod::Scan { page } => format!(
            "target `{target}`: {devices} by a scan of the whole fleet ({page} devices a \
             request; `/v2/devices/` pages are paced at {} by limits.device_list_rate, \
             inside the job's rate)",
            crate::base::per_second(list_rate)
        ),
    }
}

/// What listing a target of `found` devices in pages of `page` costs under the device
/// listing's budget `list_rate` (pages a second): the first page at once, then one every
/// `1/list_rate`. `None` for a single page, which waits for nothing.
fn listing_note(target: &str, found: usize, page: usize, list_rate: f64) -> Option<String> {
    let (pages, took) = listing_cost(found, page, list_rate);
    if pages < 2 {
        return None;
    }
    Some(format!(
        "target `{target}`: {} listed in {pages} pages of `/v2/devices/` ({page} a page), \
         paced at {} by limits.device_list_rate: about {took} of listing",
        crate::base::count(found as u64, "device", "devices"),
        crate::base::per_second(list_rate)
    ))
}

/// Pages and time (`8m 15s`) of listing `found` devices in pages of `page` under the
/// device listing's budget `list_rate` (pages a second): the first page at once, then one
/// every `1/list_rate`.
pub fn listing_cost(found: usize, page: usize, list_rate: f64) -> (usize, String) {
    let pages = found.div_ceil(page.max(1)).max(1);
    let secs = ((pages - 1) as f64 / list_rate.max(0.0001)).round() as u64;
    let took = match (secs / 60, secs % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m {s}s"),
    };
    (pages, took)
}

async fn resolve_one(
    name: &str,
    spec: &TargetSpec,
    groups: &[GroupInfo],
    inv: &dyn Inventory,
    warnings: &mut Vec<String>,
) -> Result<Option<FrozenTarget>, PlanError> {
    match spec {
        TargetSpec::Groups(sel) => {
            check_patterns(name, sel, groups)?;
            let items = select_groups(sel, groups);
            if items.is_empty() {
                let sample: Vec<&str> = groups.iter().take(5).map(|g| g.path.as_str()).collect();
                return Err(PlanError::EmptyTarget(
                    name.to_string(),
                    format!(
                        "no group matches {}; group paths look like: {}",
                        describe(sel),
                        sample.join(", ")
                    ),
                ));
            }
            Ok(Some(FrozenTarget {
                kind: ItemKind::Group,
                items,
            }))
        }
        TargetSpec::Devices(sel) => {
            let mut filter = sel.clone();
            if let Some(g) = &sel.group {
                // The device list filters by group id; accept a path or name in the job.
                let found = groups
                    .iter()
                    .find(|x| x.id == *g || x.path == *g || x.name == *g);
                match found {
                    Some(x) => filter.group = Some(x.id.clone()),
                    None => {
                        return Err(PlanError::EmptyTarget(
                            name.to_string(),
                            format!("group `{g}` does not exist"),
                        ));
                    }
                }
            }
            let mut items = inv.devices(&filter).await?;
            if !sel.serials.is_empty() {
                // Keep the CSV's order and say which serials the fleet does not have.
                let by_serial: BTreeMap<&str, &Item> = items
                    .iter()
                    .filter_map(|i| Some((i.detail.as_deref()?, i)))
                    .collect();
                let missing: Vec<&str> = sel
                    .serials
                    .iter()
                    .map(String::as_str)
                    .filter(|s| !by_serial.contains_key(s))
                    .collect();
                if !missing.is_empty() {
                    let shown: Vec<&str> = missing.iter().take(5).copied().collect();
                    warnings.push(format!("target `{name}`: {} of {} serials from the CSV are not in the fleet (e.g. {})", missing.len(), sel.serials.len(), shown.join(", ")));
                }
                let mut seen = BTreeSet::new();
                items = sel
                    .serials
                    .iter()
                    .filter_map(|s| by_serial.get(s.as_str()).map(|i| (*i).clone()))
                    .filter(|i| seen.insert(i.id.clone()))
                    .collect();
            }
            if items.is_empty() {
                return Err(PlanError::EmptyTarget(
                    name.to_string(),
                    "no device matches the filters".into(),
                ));
            }
            Ok(Some(FrozenTarget {
                kind: ItemKind::Device,
                items,
            }))
        }
        TargetSpec::Union(_) => Ok(None),
    }
}

/// A pattern with glob syntax may legitimately match nothing today; a plain name or path
/// is a promise that the group exists.
fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '{'])
}

/// Refuses selections whose patterns match no group. An `exclude` that matches nothing is
/// the dangerous case: a typo there silently widens the selection (a reboot of the lab as
/// well as the stores), so every exclude entry, glob or not, must match at least one group.
/// An include that is a plain name or path and matches nothing is refused too, since it
/// is almost always a typo that would otherwise narrow the run without a word.
fn check_patterns(
    target: &str,
    sel: &GroupSelector,
    groups: &[GroupInfo],
) -> Result<(), PlanError> {
    let matches_any = |raw: &str| {
        let m = matcher(raw);
        groups.iter().any(|g| {
            raw == g.name || raw == g.path || m.as_ref().is_some_and(|m| m.is_match(&g.path))
        })
    };
    let suggest = |raw: &str| {
        let paths: Vec<&str> = groups.iter().map(|g| g.path.as_str()).collect();
        crate::job::closest(raw, &paths).map(str::to_string)
    };
    for raw in &sel.exclude {
        if !matches_any(raw) {
            return Err(PlanError::NoMatch {
                target: target.to_string(),
                field: "exclude",
                pattern: raw.clone(),
                suggestion: suggest(raw),
            });
        }
    }
    for raw in sel.names.iter().filter(|n| !is_glob(n)) {
        if !matches_any(raw) {
            return Err(PlanError::NoMatch {
                target: target.to_string(),
                field: "name",
                pattern: raw.clone(),
                suggestion: suggest(raw),
            });
        }
    }
    for id in &sel.ids {
        if !groups.iter().any(|g| g.id == *id) {
            return Err(PlanError::NoMatch {
                target: target.to_string(),
                field: "id",
                pattern: id.clone(),
                suggestion: None,
            });
        }
    }
    Ok(())
}

fn describe(sel: &GroupSelector) -> String {
    let mut parts: Vec<String> = sel.names.iter().map(|n| format!("`{n}`")).collect();
    parts.extend(sel.ids.iter().map(|i| format!("id {i}")));
    if sel.all {
        parts.push("all".into());
    }
    parts.join(", ")
}

pub(super) fn matcher(pattern: &str) -> Option<GlobMatcher> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .ok()
        .map(|g: Glob| g.compile_matcher())
}

/// Applies a group selector to the listing; keeps listing order, drops duplicates.
pub fn select_groups(sel: &GroupSelector, groups: &[GroupInfo]) -> Vec<Item> {
    let includes: Vec<(String, Option<GlobMatcher>)> =
        sel.names.iter().map(|n| (n.clone(), matcher(n))).collect();
    let excludes: Vec<(String, Option<GlobMatcher>)> = sel
        .exclude
        .iter()
        .map(|n| (n.clone(), matcher(n)))
        .collect();
    let hit = |pats: &[(String, Option<GlobMatcher>)], g: &GroupInfo| {
        pats.iter().any(|(raw, m)| {
            *raw == g.name || *raw == g.path || m.as_ref().is_some_and(|m| m.is_match(&g.path))
        })
    };
    groups
        .iter()
        .filter(|g| sel.all || sel.ids.contains(&g.id) || hit(&includes, g))
        .filter(|g| !hit(&excludes, g))
        .map(|g| Item {
            kind: ItemKind::Group,
            id: g.id.clone(),
            name: g.name.clone(),
            detail: Some(g.path.clone()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paced_listing_says_what_it_costs() {
        // 100,000 devices at 1,000 a page under the default 12/m: 99 waits of 5 s.
        let note = listing_note("fleet", 100_000, 1000, 0.2).unwrap();
        assert_eq!(
            note,
            "target `fleet`: 100000 devices listed in 100 pages of `/v2/devices/` (1000 a \
             page), paced at 12/m by limits.device_list_rate: about 8m 15s of listing"
        );
        assert!(listing_note("fleet", 1000, 1000, 0.2).is_none());
        assert!(
            listing_note("fleet", 1001, 1000, 0.2)
                .unwrap()
                .contains("about 5s")
        );
    }
    use crate::base::Hint;

    fn g(id: &str, path: &str) -> GroupInfo {
        GroupInfo {
            id: id.into(),
            name: path.rsplit('/').next().unwrap().into(),
            path: path.into(),
        }
    }

    #[test]
    fn globs_over_paths() {
        let all = vec![
            g("1", "Stores"),
            g("2", "Stores/North"),
            g("3", "Stores/North/0001"),
            g("4", "Stores/Lab"),
            g("5", "Warehouse"),
        ];
        let sel = |names: &[&str], ex: &[&str]| GroupSelector {
            names: names.iter().map(|s| s.to_string()).collect(),
            exclude: ex.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let ids = |items: Vec<Item>| items.into_iter().map(|i| i.id).collect::<Vec<_>>();
        assert_eq!(
            ids(select_groups(&sel(&["Stores/*"], &["Stores/Lab"]), &all)),
            vec!["2"]
        );
        assert_eq!(
            ids(select_groups(&sel(&["Stores/**"], &[]), &all)),
            vec!["2", "3", "4"]
        );
        assert_eq!(
            ids(select_groups(&sel(&["Warehouse"], &[]), &all)),
            vec!["5"]
        );
        assert_eq!(ids(select_groups(&sel(&["0001"], &[]), &all)), vec!["3"]);
        let every = GroupSelector {
            all: true,
            exclude: vec!["Stores/**".into()],
            ..Default::default()
        };
        assert_eq!(ids(select_groups(&every, &all)), vec!["1", "5"]);
    }

    // See: #9 — a typo in `exclude` must never widen a selection.
    #[test]
    fn patterns_that_match_nothing_are_refused() {
        let all = vec![g("1", "Stores/North"), g("2", "Stores/Lab")];
        let sel = |names: &[&str], ex: &[&str]| GroupSelector {
            names: names.iter().map(|s| s.to_string()).collect(),
            exclude: ex.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let err = check_patterns("t", &sel(&["Stores/*"], &["Stores/Labb"]), &all).unwrap_err();
        assert_eq!(
            err,
            PlanError::NoMatch {
                target: "t".into(),
                field: "exclude",
                pattern: "Stores/Labb".into(),
                suggestion: Some("Stores/Lab".into()),
            }
        );
        assert!(err.hint().unwrap().contains("did you mean `Stores/Lab`?"));
        // A glob exclude that matches nothing is refused too; a glob include is not.
        assert!(check_patterns("t", &sel(&["Stores/*"], &["Lab/*"]), &all).is_err());
        assert!(check_patterns("t", &sel(&["Depots/*", "Stores/*"], &[]), &all).is_ok());
        assert!(check_patterns("t", &sel(&["Stores/Nort"], &[]), &all).is_err());
        assert!(check_patterns("t", &sel(&["North", "Stores/Lab"], &["Lab"]), &all).is_ok());
        let by_id = GroupSelector {
            ids: vec!["9".into()],
            ..Default::default()
        };
        assert!(check_patterns("t", &by_id, &all).is_err());
    }
}
