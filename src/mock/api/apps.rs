//! Applications and their versions: the legacy DRF lists, single reads, and the multipart
//! APK upload, which here reads the mock's tiny text "APK" (see the `mock` module docs for
//! its format). Reading the multipart body is left to `server`.

use std::time::SystemTime;

use serde_json::{Value, json};

use super::super::http::{Ctx, PageParams, Reply, classic_page, rfc3339, strict_uuid};
use super::super::inventory::Inventory;
use super::Input;

const DEFAULT_LIMIT: usize = 20;

fn app_url(ctx: &Ctx, inv: &Inventory, a: usize) -> String {
    let id = inv
        .apps
        .get(a)
        .map(|x| x.id.to_string())
        .unwrap_or_default();
    format!(
        "{}/enterprise/{}/application/{id}/",
        ctx.api(),
        ctx.enterprise_id
    )
}

fn file_url(ctx: &Ctx, v: &super::super::inventory::AppVersion) -> String {
    format!("{}/files/apk/{}.apk", ctx.origin, v.id)
}

/// The short `ApplicationVersion` embedded in an `Application`.
fn render_short_version(ctx: &Ctx, inv: &Inventory, v: usize) -> Value {
    let Some(ver) = inv.versions.get(v) else {
        return Value::Null;
    };
    json!({
        "id": ver.id.to_string(),
        "version_code": ver.version_code,
        "version_name": ver.version_name,
        "build_number": ver.version_name,
        "hash_string": ver.hash,
        "min_sdk_version": "24",
        "target_sdk_version": "30",
        "download_url": file_url(ctx, ver),
        "icon_url": null,
        "release_name": null,
    })
}

fn render_app(ctx: &Ctx, inv: &Inventory, a: usize, versions: &[usize]) -> Value {
    let Some(app) = inv.apps.get(a) else {
        return Value::Null;
    };
    let versions: Vec<Value> = versions
        .iter()
        .map(|&v| render_short_version(ctx, inv, v))
        .collect();
    json!({
        "id": app.id.to_string(),
        "versions": versions,
        "application_name": app.application_name,
        "package_name": app.package_name,
        "developer": "ACME",
        "category": null,
        "content_rating": "0.0",
        "compatibility": null,
        "created_on": app.created_on,
        "updated_on": app.updated_on,
        "is_active": true,
        "is_hidden": false,
        "enterprise": ctx.enterprise_url(),
    })
}

fn render_version(ctx: &Ctx, inv: &Inventory, v: usize) -> Value {
    let Some(ver) = inv.versions.get(v) else {
        return Value::Null;
    };
    let latest = inv
        .apps
        .get(ver.app)
        .and_then(|a| a.versions.last())
        .is_some_and(|&last| last == v);
    json!({
        "id": ver.id.to_string(),
        "installed_count": inv.installed(ver.app, ctx.now).iter().filter(|x| **x == Some(v)).count(),
        "permissions": [],
        "app_file": file_url(ctx, ver),
        "app_icon": null,
        "version_code": ver.version_code,
        "version_name": ver.version_name,
        "build_number": ver.version_name,
        "size_in_mb": (ver.size_bytes as f64 / 1_048_576.0 * 100.0).round() / 100.0,
        "hash_string": ver.hash,
        "release_name": null,
        "release_comments": null,
        "release_track": null,
        "created_on": ver.created_on,
        "updated_on": ver.created_on,
        "min_sdk_version": "24",
        "target_sdk_version": "30",
        "is_enabled": true,
        "is_default": latest,
        "enterprise": ctx.enterprise_url(),
        "application": app_url(ctx, inv, ver.app),
        "approval_status": "AVAILABLE",
    })
}

fn find_app(inv: &Inventory, raw: &str) -> Option<usize> {
    strict_uuid(raw).and_then(|u| inv.app_index.get(&u).copied())
}

pub(super) fn list_apps(inv: &Inventory, ctx: &Ctx) -> Reply {
    let p = PageParams::from_ctx(ctx, DEFAULT_LIMIT, None);
    let package = ctx.filter("package_name").map(str::to_lowercase);
    let exact = ctx.filter("package_name_exact");
    let name = ctx.filter("application_name").map(str::to_lowercase);
    let matching: Vec<usize> = (0..inv.apps.len())
        .filter(|&a| {
            let app = &inv.apps[a];
            package
                .as_deref()
                .is_none_or(|q| app.package_name.to_lowercase().contains(q))
                && exact.is_none_or(|q| app.package_name == q)
                && name
                    .as_deref()
                    .is_none_or(|q| app.application_name.to_lowercase().contains(q))
        })
        .collect();
    let results = p
        .slice(&matching)
        .iter()
        .map(|&a| render_app(ctx, inv, a, &inv.apps[a].versions))
        .collect();
    ctx.ok(classic_page(ctx, matching.len(), p, results))
}

pub(super) fn get_app(inv: &Inventory, ctx: &Ctx, raw: &str) -> Reply {
    match find_app(inv, raw) {
        Some(a) => ctx.ok(render_app(ctx, inv, a, &inv.apps[a].versions)),
        None => ctx.not_found(),
    }
}

pub(super) fn list_versions(inv: &Inventory, ctx: &Ctx, raw: &str) -> Reply {
    let Some(a) = find_app(inv, raw) else {
        return ctx.not_found();
    };
    let p = PageParams::from_ctx(ctx, DEFAULT_LIMIT, None);
    let code = ctx.filter("version_code");
    let matching: Vec<usize> = inv.apps[a]
        .versions
        .iter()
        .copied()
        .filter(|&v| code.is_none_or(|c| inv.versions.get(v).is_some_and(|x| x.version_code == c)))
        .collect();
    let results = p
        .slice(&matching)
        .iter()
        .map(|&v| render_version(ctx, inv, v))
        .collect();
    ctx.ok(classic_page(ctx, matching.len(), p, results))
}

pub(super) fn get_version(inv: &Inventory, ctx: &Ctx, app: &str, raw: &str) -> Reply {
    let Some(a) = find_app(inv, app) else {
        return ctx.not_found();
    };
    match strict_uuid(raw).and_then(|u| inv.version_index.get(&u).copied()) {
        Some(v) if inv.versions.get(v).is_some_and(|x| x.app == a) => {
            ctx.ok(render_version(ctx, inv, v))
        }
        _ => ctx.not_found(),
    }
}

/// What the mock APK declares.
#[derive(Debug, PartialEq)]
struct MockApk {
    package: String,
    version_code: String,
    version_name: String,
    application_name: Option<String>,
}

fn valid_package(p: &str) -> bool {
    let parts: Vec<&str> = p.split('.').collect();
    parts.len() >= 2
        && parts.iter().all(|s| {
            s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// A real APK (a ZIP with a binary `AndroidManifest.xml`, read as the engine reads it), or
/// the mock's text "APK"; anything else is refused as Esper refuses a file that is not an
/// APK.
fn read_apk(data: &[u8]) -> Result<MockApk, String> {
    if !data.starts_with(b"PK\x03\x04") {
        return parse_mock_apk(data);
    }
    let info = crate::apk::read(data)
        .map_err(|e| format!("The uploaded file is not a valid APK: {e}."))?;
    Ok(MockApk {
        version_name: info
            .version_name
            .unwrap_or_else(|| info.version_code.clone()),
        package: info.package,
        version_code: info.version_code,
        application_name: None,
    })
}

/// Reads the text "APK"; the error says what is wrong in words a test author can act on.
fn parse_mock_apk(data: &[u8]) -> Result<MockApk, String> {
    let text = std::str::from_utf8(data).map_err(|_| {
        "The uploaded file is not a valid APK (the mock expects a text mock APK).".to_string()
    })?;
    let (mut package, mut code, mut name, mut app_name) = (None, None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(format!(
                "The uploaded file is not a valid APK: unexpected line \"{line}\"."
            ));
        };
        let v = v.trim().to_string();
        match k.trim() {
            "package" => package = Some(v),
            "version_code" => code = Some(v),
            "version_name" => name = Some(v),
            "application_name" => app_name = Some(v),
            _ => {}
        }
    }
    let package = package
        .filter(|p| valid_package(p))
        .ok_or("The uploaded file is not a valid APK: missing or invalid package.")?;
    let code = code
        .filter(|c| !c.is_empty() && c.len() <= 50 && c.bytes().all(|b| b.is_ascii_digit()))
        .ok_or("The uploaded file is not a valid APK: missing or invalid version_code.")?;
    Ok(MockApk {
        version_name: name
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| code.clone()),
        package,
        version_code: code,
        application_name: app_name.filter(|n| !n.is_empty()),
    })
}

pub(super) fn upload(
    inv: &mut Inventory,
    rng: &mut fastrand::Rng,
    ctx: &Ctx,
    input: Input,
) -> Reply {
    let Input::Multipart(parts) = input else {
        return ctx.bad_field("app_file", "No file was submitted.");
    };
    let Some(part) = parts.iter().find(|p| p.name == "app_file") else {
        return ctx.bad_field("app_file", "No file was submitted.");
    };
    let apk = match read_apk(&part.data) {
        Ok(a) => a,
        Err(e) => return ctx.bad_field("app_file", e),
    };
    let existing = (0..inv.apps.len()).find(|&a| inv.apps[a].package_name == apk.package);
    if let Some(a) = existing
        && inv.apps[a].versions.iter().any(|&v| {
            inv.versions
                .get(v)
                .is_some_and(|x| x.version_code == apk.version_code)
        })
    {
        return ctx.bad_field(
            "app_file",
            format!(
                "Version code {} already exists for {}.",
                apk.version_code, apk.package
            ),
        );
    }
    let now = rfc3339(SystemTime::now());
    let a = match existing {
        Some(a) => a,
        None => {
            let name = apk
                .application_name
                .clone()
                .unwrap_or_else(|| apk.package.clone());
            inv.add_app(rng, &name, &apk.package, now.clone())
        }
    };
    let v = inv.add_version(rng, a, &apk.version_code, &apk.version_name, now);
    inv.created.app_versions += 1;
    ctx.created(json!({"application": render_app(ctx, inv, a, &[v])}))
}

/// `…/version/{version_id}/installdevices`: the devices that have this version now.
pub(super) fn install_devices(inv: &Inventory, ctx: &Ctx, app: &str, raw: &str) -> Reply {
    let (Some(a), Some(v)) = (
        find_app(inv, app),
        strict_uuid(raw).and_then(|u| inv.version_index.get(&u).copied()),
    ) else {
        return ctx.not_found();
    };
    if inv.versions[v].app != a {
        return ctx.not_found();
    }
    let p = PageParams::from_ctx(ctx, DEFAULT_LIMIT, None);
    let search = ctx.filter("search").map(str::to_lowercase);
    let having: Vec<usize> = inv
        .installed(a, ctx.now)
        .into_iter()
        .enumerate()
        .filter(|(_, x)| *x == Some(v))
        .map(|(d, _)| d)
        .filter(|&d| {
            search
                .as_deref()
                .is_none_or(|q| inv.devices[d].device_name.to_lowercase().contains(q))
        })
        .collect();
    let results = p
        .slice(&having)
        .iter()
        .map(|&d| {
            let dev = &inv.devices[d];
            json!({
                "id": dev.id.to_string(),
                "device_name": dev.device_name,
                "alias_name": dev.alias_name,
                "group_name": inv.groups.get(dev.group).map(|g| g.name.clone()),
            })
        })
        .collect();
    ctx.ok(classic_page(ctx, having.len(), p, results))
}

/// `…/device/{device_id}/app/`: the device's installed apps (`DeviceApp`).
pub(super) fn device_apps(inv: &Inventory, ctx: &Ctx, raw: &str) -> Reply {
    let Some(d) = strict_uuid(raw).and_then(|u| inv.device_index.get(&u).copied()) else {
        return ctx.not_found();
    };
    let p = PageParams::from_ctx(ctx, DEFAULT_LIMIT, None);
    let package = ctx.filter("package_name");
    let apps: Vec<(usize, usize)> = (0..inv.apps.len())
        .filter(|&a| package.is_none_or(|q| inv.apps[a].package_name == q))
        .filter_map(|a| Some((a, inv.installed(a, ctx.now).get(d).copied().flatten()?)))
        .collect();
    let results = p
        .slice(&apps)
        .iter()
        .map(|&(a, v)| {
            let (app, ver) = (&inv.apps[a], &inv.versions[v]);
            json!({
                "id": ver.id.to_string(),
                "app_name": app.application_name,
                "package_name": app.package_name,
                "version_code": ver.version_code,
                "version_name": ver.version_name,
                "state": "INSTALLED",
                "is_kiosk_app": false,
                "whitelisted": false,
            })
        })
        .collect();
    ctx.ok(classic_page(ctx, apps.len(), p, results))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mock_apk_format() {
        let apk = parse_mock_apk(
            b"# demo\npackage=com.acme.kiosk\nversion_code=420\nversion_name=4.2.0\n",
        )
        .unwrap();
        assert_eq!(apk.package, "com.acme.kiosk");
        assert_eq!(apk.version_code, "420");
        assert_eq!(apk.version_name, "4.2.0");
        assert_eq!(
            parse_mock_apk(b"package=a.b\nversion_code=1")
                .unwrap()
                .version_name,
            "1"
        );
        assert!(parse_mock_apk(b"package=a.b\nversion_code=x1").is_err());
        assert!(parse_mock_apk(b"package=nodots\nversion_code=1").is_err());
        assert!(parse_mock_apk(b"PK\x03\x04\xff\xfe").is_err());
        assert!(parse_mock_apk(b"just text").is_err());
    }

    #[test]
    fn real_apks_are_read_and_other_zips_refused() {
        let apk = read_apk(&crate::apk::write::minimal_apk("com.acme.scan", 77, "7.7")).unwrap();
        assert_eq!(
            (
                apk.package.as_str(),
                apk.version_code.as_str(),
                apk.version_name.as_str()
            ),
            ("com.acme.scan", "77", "7.7")
        );
        let e = read_apk(b"PK\x03\x04 not really a zip").unwrap_err();
        assert!(
            e.starts_with("The uploaded file is not a valid APK: "),
            "{e}"
        );
    }
}
