//! `--limit`: narrowing a job's resolved targets to what a few patterns match, like
//! Ansible's `--limit`, before the plan is compiled.
//!
//! A pattern is a group path, name or id, or a glob over group paths (matched as the job's
//! own group selections are), or a device name, serial or id (globs too). A group is kept
//! when a pattern matches it or a group above it (`Stores/North` keeps
//! `Stores/North/0042`); a device when a pattern matches it or one of its groups. Every
//! target (unions included) keeps only what matched, so the run touches the intersection
//! of the job and the limit. Reading the group listing a device's groups need is the
//! only read, through [`Inventory`], and only when a device target is limited. Reading
//! `@file` patterns is the caller's.

use std::collections::BTreeMap;

use globset::GlobMatcher;

use super::resolve::matcher;
use super::{GroupInfo, Inventory, Item, ItemKind, PlanError, Resolved};

/// Narrows every target of `resolved` to the items `patterns` match. Refused when the
/// limit keeps nothing at all; a target it empties is reported in the returned warnings
/// (its steps then have no tasks), as is a pattern that matched nothing.
pub async fn apply(
    resolved: &mut Resolved,
    patterns: &[String],
    inv: &dyn Inventory,
) -> Result<Vec<String>, PlanError> {
    if patterns.is_empty() {
        return Ok(Vec::new());
    }
    let has_devices = resolved
        .targets
        .values()
        .any(|t| t.kind == ItemKind::Device);
    // A device's groups, by path, so `--limit Stores/North` keeps the devices in it.
    let groups_of: BTreeMap<String, Vec<String>> = match (has_devices, inv.memberships()) {
        (true, Some(members)) => {
            let groups: Vec<GroupInfo> = inv.groups().await?;
            let path: BTreeMap<&str, &str> = groups
                .iter()
                .map(|g| (g.id.as_str(), g.path.as_str()))
                .collect();
            members
                .into_iter()
                .map(|(device, ids)| {
                    let paths = ids
                        .iter()
                        .filter_map(|id| path.get(id.as_str()).map(|p| p.to_string()))
                        .collect();
                    (device, paths)
                })
                .collect()
        }
        _ => BTreeMap::new(),
    };
    let pats: Vec<(String, Option<GlobMatcher>)> =
        patterns.iter().map(|p| (p.clone(), matcher(p))).collect();
    let hit = |p: &(String, Option<GlobMatcher>), s: &str| {
        p.0 == s || p.1.as_ref().is_some_and(|m| m.is_match(s))
    };
    // A path and every path above it.
    let with_parents = |path: &str| -> Vec<String> {
        let mut out = Vec::new();
        let mut at = path;
        loop {
            out.push(at.to_string());
            match at.rfind('/') {
                Some(i) => at = &at[..i],
                None => break,
            }
        }
        out
    };
    let keys = |item: &Item| -> Vec<String> {
        let mut k = vec![item.id.clone(), item.name.clone()];
        match item.kind {
            ItemKind::Group => {
                if let Some(path) = &item.detail {
                    k.extend(with_parents(path));
                }
            }
            ItemKind::Device => {
                k.extend(item.detail.clone());
                for g in groups_of.get(&item.id).into_iter().flatten() {
                    k.extend(with_parents(g));
                }
            }
        }
        k
    };
    let mut used = vec![false; pats.len()];
    let mut warnings = Vec::new();
    let mut kept_any = false;
    for (name, target) in resolved.targets.iter_mut() {
        let before = target.items.len();
        target.items.retain(|item| {
            let k = keys(item);
            let mut keep = false;
            for (i, p) in pats.iter().enumerate() {
                if k.iter().any(|s| hit(p, s)) {
                    used[i] = true;
                    keep = true;
                }
            }
            keep
        });
        if target.items.is_empty() {
            warnings.push(format!(
                "--limit leaves target `{name}` empty ({before} before): its steps have no tasks"
            ));
        } else {
            kept_any = true;
        }
    }
    if !kept_any {
        return Err(PlanError::LimitMatchesNothing {
            patterns: patterns.to_vec(),
        });
    }
    for (p, used) in patterns.iter().zip(used) {
        if !used {
            warnings.push(format!("--limit `{p}` matches nothing the job targets"));
        }
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::DeviceSelector;
    use crate::plan::{FrozenTarget, InventoryError};
    use futures::future::BoxFuture;

    struct Fleet;

    impl Inventory for Fleet {
        fn groups(&self) -> BoxFuture<'_, Result<Vec<GroupInfo>, InventoryError>> {
            Box::pin(async {
                Ok(vec![GroupInfo {
                    id: "g1".into(),
                    name: "0042".into(),
                    path: "Stores/North/0042".into(),
                }])
            })
        }
        fn devices<'a>(
            &'a self,
            _: &'a DeviceSelector,
        ) -> BoxFuture<'a, Result<Vec<Item>, InventoryError>> {
            Box::pin(async { Ok(Vec::new()) })
        }
        fn app_version<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
        ) -> BoxFuture<'a, Result<Option<String>, InventoryError>> {
            Box::pin(async { Ok(None) })
        }
        fn memberships(&self) -> Option<BTreeMap<String, Vec<String>>> {
            Some(BTreeMap::from([("d1".to_string(), vec!["g1".to_string()])]))
        }
    }

    fn item(kind: ItemKind, id: &str, name: &str, detail: &str) -> Item {
        Item {
            kind,
            id: id.into(),
            name: name.into(),
            detail: Some(detail.into()),
        }
    }

    fn resolved() -> Resolved {
        let mut r = Resolved::default();
        r.targets.insert(
            "stores".into(),
            FrozenTarget {
                kind: ItemKind::Group,
                items: vec![
                    item(ItemKind::Group, "g1", "0042", "Stores/North/0042"),
                    item(ItemKind::Group, "g2", "0007", "Stores/South/0007"),
                ],
            },
        );
        r.targets.insert(
            "tills".into(),
            FrozenTarget {
                kind: ItemKind::Device,
                items: vec![
                    item(ItemKind::Device, "d1", "POS-1", "SER1"),
                    item(ItemKind::Device, "d2", "POS-2", "SER2"),
                ],
            },
        );
        r
    }

    fn ids(r: &Resolved, t: &str) -> Vec<String> {
        r.targets[t].items.iter().map(|i| i.id.clone()).collect()
    }

    #[test]
    fn a_limit_keeps_the_intersection() {
        futures::executor::block_on(keeps_the_intersection());
    }

    async fn keeps_the_intersection() {
        // A parent path keeps the groups below it and the devices in them.
        let mut r = resolved();
        let w = apply(&mut r, &["Stores/North".into()], &Fleet)
            .await
            .unwrap();
        assert_eq!(
            (ids(&r, "stores"), ids(&r, "tills")),
            (vec!["g1".into()], vec!["d1".into()])
        );
        assert!(w.is_empty(), "{w:?}");
        // Globs over paths, serials and names.
        let mut r = resolved();
        let w = apply(
            &mut r,
            &["Stores/*/0007".into(), "SER2".into(), "nope".into()],
            &Fleet,
        )
        .await
        .unwrap();
        assert_eq!(
            (ids(&r, "stores"), ids(&r, "tills")),
            (vec!["g2".into()], vec!["d2".into()])
        );
        assert_eq!(w, ["--limit `nope` matches nothing the job targets"]);
        // A device name empties the group target, which is said.
        let mut r = resolved();
        let w = apply(&mut r, &["POS-*".into()], &Fleet).await.unwrap();
        assert!(ids(&r, "stores").is_empty());
        assert_eq!(ids(&r, "tills").len(), 2);
        assert!(w[0].contains("leaves target `stores` empty"), "{w:?}");
        // Nothing at all is refused.
        let mut r = resolved();
        let err = apply(&mut r, &["Warehouse/**".into()], &Fleet)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "--limit `Warehouse/**` matches nothing the job targets"
        );
    }
}
