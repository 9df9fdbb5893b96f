//! The typed client against the in-process mock over real HTTP: every endpoint the engine
//! uses, the three pagination styles over several pages, and the error paths.

use std::time::Duration;

use esper_bulk::esper::model::*;
use esper_bulk::esper::{CommandFilter, DeviceFilter, ErrorClass};
use esper_bulk::mock::{Faults, RateLimit};
use futures::TryStreamExt;
use serde_json::json;

use crate::support::{client, client_with_key, small, start};

#[tokio::test]
async fn groups_devices_and_all_three_pagination_styles() {
    // 120 stores x 10 devices: more than one page in every style (the client asks for
    // 100 per page on offset lists and 1000 per page on the cursor).
    let mut cfg = small(11);
    cfg.groups = 120;
    cfg.devices_per_group = 10;
    let server = start(cfg).await;
    let c = client(&server);

    let groups: Vec<DeviceGroup> = c.list_groups(None).try_collect().await.unwrap();
    assert!(
        groups.len() > 120,
        "all groups across pages, got {}",
        groups.len()
    );
    let mut ids: Vec<&str> = groups.iter().map(|g| g.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        groups.len(),
        "following `next` neither skips nor repeats"
    );
    let store = groups
        .iter()
        .find(|g| g.path.as_deref().is_some_and(|p| p.ends_with("/0007")))
        .expect("store 0007");
    assert!(store.parent.is_some());
    let by_name: Vec<DeviceGroup> = c.list_groups(Some("0007")).try_collect().await.unwrap();
    assert_eq!(by_name.len(), 1);
    assert_eq!(c.get_group(&store.id).await.unwrap().id, store.id);

    let legacy: Vec<Device> = c
        .list_devices(&DeviceFilter::default())
        .try_collect()
        .await
        .unwrap();
    assert!(legacy.len() >= 1200);
    let in_store: Vec<Device> = c
        .list_devices(&DeviceFilter {
            group: Some(store.id.clone()),
            ..Default::default()
        })
        .try_collect()
        .await
        .unwrap();
    assert_eq!(in_store.len(), 10);
    let serial = in_store[0].serial.clone().expect("devices have serials");
    let one: Vec<Device> = c
        .list_devices(&DeviceFilter {
            serial: Some(serial.clone()),
            ..Default::default()
        })
        .try_collect()
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(
        c.get_device(&one[0].id).await.unwrap().serial.as_deref(),
        Some(serial.as_str())
    );

    let cursor: Vec<Device> = c.list_devices_v2(vec![]).try_collect().await.unwrap();
    assert_eq!(cursor.len(), legacy.len(), "cursor pages cover the fleet");
    let offset: Vec<Device> = c
        .list_devices_v2_offset(vec![])
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        offset.len(),
        legacy.len(),
        "envelope pages with `prev` cover the fleet"
    );
    assert!(
        cursor.iter().all(|d| !d.groups.is_empty()),
        "v2 devices carry group objects"
    );
    let requests = server.requests();
    assert!(
        requests
            .iter()
            .filter(|r| r.path.ends_with("/v2/devices/"))
            .count()
            >= 2 + 13,
        "several pages were fetched"
    );
}

#[tokio::test]
async fn apps_versions_and_upload() {
    let server = start(small(12)).await;
    let c = client(&server);
    let apps: Vec<Application> = c
        .list_apps(Some("com.acme.kiosk"))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(apps.len(), 1);
    let versions: Vec<AppVersion> = c
        .list_app_versions(&apps[0].id, None)
        .try_collect()
        .await
        .unwrap();
    assert!(versions.iter().any(|v| v.version_code == "410"));
    let only: Vec<AppVersion> = c
        .list_app_versions(&apps[0].id, Some("400"))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(only.len(), 1);

    let dir = tempfile::tempdir().unwrap();
    let apk = dir.path().join("kiosk-4.2.0.apk");
    std::fs::write(
        &apk,
        "package=com.acme.kiosk\nversion_code=420\nversion_name=4.2.0\n",
    )
    .unwrap();
    let app = c.upload_app(&apk).await.unwrap();
    assert!(app.versions.iter().any(|v| v.version_code == "420"));
    let again = c.upload_app(&apk).await.unwrap_err();
    assert_eq!(
        again.status(),
        Some(400),
        "a second upload of the same version is refused: {again}"
    );
    let missing = c
        .upload_app(&dir.path().join("nope.apk"))
        .await
        .unwrap_err();
    assert_eq!(
        missing.class(),
        ErrorClass::Build,
        "a missing file is not sent"
    );
}

#[tokio::test]
async fn commands_progress_to_final_states() {
    let server = start(small(13)).await;
    let c = client(&server);
    let groups: Vec<DeviceGroup> = c.list_groups(Some("0001")).try_collect().await.unwrap();
    let apps: Vec<Application> = c
        .list_apps(Some("com.acme.kiosk"))
        .try_collect()
        .await
        .unwrap();
    let version = &apps[0].versions[0].id;
    let body = json!({"command_type": "GROUP", "groups": [groups[0].id], "device_type": "all", "command": "INSTALL", "command_args": {"app_version": version}, "schedule": "IMMEDIATE"});
    let created = c.create_command(&body).await.unwrap();
    assert_eq!(created.command.as_deref(), Some("INSTALL"));
    assert_eq!(c.get_command(&created.id).await.unwrap().id, created.id);
    let listed: Vec<CommandRequest> = c
        .list_commands(&CommandFilter {
            groups: vec![groups[0].id.clone()],
            ..Default::default()
        })
        .try_collect()
        .await
        .unwrap();
    assert!(listed.iter().any(|r| r.id == created.id));

    let mut stats = c.command_stats(&created.id).await.unwrap();
    for _ in 0..40 {
        if stats.total() > 0 && stats.pending() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        stats = c.command_stats(&created.id).await.unwrap();
    }
    assert_eq!(stats.total(), 4);
    assert_eq!(
        stats.pending(),
        0,
        "every device reaches a final state: {stats:?}"
    );
    let rows: Vec<CommandStatus> = c
        .command_statuses(&created.id, None)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|r| r.state == CommandState::Success));

    let reboot = json!({"command_type": "DEVICE", "devices": [rows[0].device], "device_type": "all", "command": "REBOOT", "schedule": "IMMEDIATE"});
    assert!(c.create_command(&reboot).await.is_ok());
    let bad = json!({"command_type": "DEVICE", "devices": [rows[0].device], "device_type": "active", "command": "REBOOT"});
    let e = c.create_command(&bad).await.unwrap_err();
    assert_eq!(e.status(), Some(400));
    assert!(
        e.to_string().contains("device_type"),
        "the service error body is decoded: {e}"
    );
}

#[tokio::test]
async fn alarm_rule_crud_and_field_errors() {
    let server = start(small(14)).await;
    let c = client(&server);
    let g: Vec<DeviceGroup> = c.list_groups(Some("0002")).try_collect().await.unwrap();
    let body = json!({
        "enterprise": server.enterprise_id(), "name": "Battery low - 0002", "metric": "battery_level",
        "conditions": {"comparator": "LessThanThreshold", "value": 15, "unit": "Percent"},
        "realert_interval": 3600, "groups": [g[0].id]
    });
    let rule = c.create_alarm_rule(&body).await.unwrap();
    assert_eq!(rule.groups[0].id, g[0].id, "groups come back as objects");
    assert!(rule.groups[0].name.is_some());
    let found: Vec<AlarmRule> = c
        .list_alarm_rules(Some("Battery low - 0002"))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    let none: Vec<AlarmRule> = c
        .list_alarm_rules(Some("nope"))
        .try_collect()
        .await
        .unwrap();
    assert!(none.is_empty());
    let mut changed = body.clone();
    changed["realert_interval"] = json!(600);
    assert_eq!(
        c.replace_alarm_rule(&rule.id, &changed)
            .await
            .unwrap()
            .realert_interval,
        Some(600)
    );
    assert_eq!(
        c.patch_alarm_rule(&rule.id, &json!({"is_active": false}))
            .await
            .unwrap()
            .is_active,
        Some(false)
    );
    assert_eq!(
        c.get_alarm_rule(&rule.id).await.unwrap().realert_interval,
        Some(600),
        "PATCH merges: what it leaves out stays"
    );
    assert_eq!(
        c.replace_alarm_rule(&rule.id, &body)
            .await
            .unwrap()
            .is_active,
        Some(true),
        "PUT replaces: what the body leaves out returns to its default"
    );
    c.delete_alarm_rule(&rule.id).await.unwrap();
    let gone = c.get_alarm_rule(&rule.id).await.unwrap_err();
    assert_eq!(gone.class(), ErrorClass::NotFound);

    let mut bad = body.clone();
    bad.as_object_mut().unwrap().remove("realert_interval");
    let e = c.create_alarm_rule(&bad).await.unwrap_err();
    assert_eq!(e.status(), Some(400));
    assert!(
        e.body().unwrap().summary().contains("realert_interval"),
        "{e}"
    );
}

#[tokio::test]
async fn group_move_content_and_raw() {
    let server = start(small(15)).await;
    let c = client(&server);
    let target: Vec<DeviceGroup> = c.list_groups(Some("0003")).try_collect().await.unwrap();
    let source: Vec<DeviceGroup> = c.list_groups(Some("0004")).try_collect().await.unwrap();
    let devices: Vec<Device> = c
        .list_devices(&DeviceFilter {
            group: Some(source[0].id.clone()),
            ..Default::default()
        })
        .try_collect()
        .await
        .unwrap();
    let ids: Vec<String> = devices.iter().take(2).map(|d| d.id.clone()).collect();
    c.move_devices(&target[0].id, &ids, "add").await.unwrap();
    let now: Vec<Device> = c
        .list_devices(&DeviceFilter {
            group: Some(target[0].id.clone()),
            ..Default::default()
        })
        .try_collect()
        .await
        .unwrap();
    assert_eq!(now.len(), 6, "two devices moved in");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("menu.pdf");
    std::fs::write(&file, b"%PDF-1.4 menu").unwrap();
    let content = c.upload_content(&file).await.unwrap();
    assert_eq!(content.name.as_deref(), Some("menu.pdf"));
    // `search` matches tags and description, not the name.
    let listed: Vec<Content> = c.list_content(Some("menu")).try_collect().await.unwrap();
    assert!(listed.is_empty(), "{listed:?}");
    let path = format!("/v0/enterprise/{{enterprise_id}}/content/{}/", content.id);
    let described = c
        .raw(
            "PATCH",
            &path,
            &[],
            Some(json!({"description": "menu board"})),
        )
        .await
        .unwrap();
    assert_eq!(described.status, 200);
    let listed: Vec<Content> = c.list_content(Some("board")).try_collect().await.unwrap();
    assert!(listed.iter().any(|x| x.id == content.id));
    let all: Vec<Content> = c.list_content(None).try_collect().await.unwrap();
    assert!(all.iter().any(|x| x.id == content.id));

    let raw = c
        .raw(
            "GET",
            "/enterprise/{enterprise_id}/devicegroup/",
            &[("limit".into(), "1".into())],
            None,
        )
        .await
        .unwrap();
    assert_eq!(raw.status, 200);
    assert!(raw.body["results"].is_array());
    let nf = c.raw("GET", "/no/such/path/", &[], None).await.unwrap_err();
    assert_eq!(nf.status(), Some(404));
    assert!(c.raw("BAD METHOD", "/x/", &[], None).await.is_err());
}

#[tokio::test]
async fn auth_errors_in_both_shapes() {
    let server = start(small(16)).await;
    let c = client_with_key(&server, "wrong-key");
    let core: Result<Vec<DeviceGroup>, _> = c.list_groups(None).try_collect().await;
    let e = core.unwrap_err();
    assert_eq!((e.status(), e.class()), (Some(401), ErrorClass::Auth));
    assert!(e.body().is_some(), "core error body decoded");
    let e = c
        .command_stats("00000000-0000-4000-8000-000000000000")
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(401));
    assert!(e.body().is_some(), "service error body decoded");
}

#[tokio::test]
async fn rate_limit_with_and_without_retry_after() {
    let server = start(small(17)).await;
    let c = client(&server);
    for retry_after in [true, false] {
        server.set_faults(Faults {
            rate_limit: Some(RateLimit {
                rate: 0.5,
                burst: 1,
                retry_after,
                penalty: Duration::ZERO,
            }),
            ..Faults::default()
        });
        let mut seen = None;
        for _ in 0..5 {
            if let Err(e) = c
                .get_alarm_rule("00000000-0000-4000-8000-000000000000")
                .await
                && e.status() == Some(429)
            {
                seen = Some(e);
                break;
            }
        }
        let e = seen.expect("a 429 within five quick requests");
        assert_eq!(e.class(), ErrorClass::RateLimited);
        assert_eq!(
            e.retry_after().is_some(),
            retry_after,
            "Retry-After only when the server sends it"
        );
        server.set_faults(Faults::default());
    }
    assert!(server.stats().rate_limited >= 2);
}

#[tokio::test]
async fn connect_errors_are_classed_and_unsent() {
    // A port that was just free: bind, note it, drop.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conn = esper_bulk::esper::Connection::new(
        &format!("http://127.0.0.1:{port}/api"),
        "e",
        esper_bulk::esper::ApiKey::new("k"),
    );
    let c = esper_bulk::esper::Client::new(conn, Default::default()).unwrap();
    let e = c.get_group("x").await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Connect);
    assert!(!e.maybe_processed(), "nothing reached a server");
}

#[tokio::test]
async fn other_commands_filters_and_move() {
    let mut cfg = small(18);
    cfg.offline_fraction = 0.5;
    let server = start(cfg).await;
    let c = client(&server);
    let all: Vec<Device> = c
        .list_devices(&DeviceFilter::default())
        .try_collect()
        .await
        .unwrap();
    let offline: Vec<Device> = c
        .list_devices(&DeviceFilter {
            state: Some("60".into()),
            ..Default::default()
        })
        .try_collect()
        .await
        .unwrap();
    assert!(!offline.is_empty() && offline.len() < all.len());
    assert!(
        offline
            .iter()
            .all(|d| d.state.as_deref() == Some("OFFLINE"))
    );
    let named: Vec<Device> = c
        .list_devices(&DeviceFilter {
            name: Some(all[0].name.clone()),
            ..Default::default()
        })
        .try_collect()
        .await
        .unwrap();
    assert!(named.iter().any(|d| d.id == all[0].id));

    for (command, args) in [
        ("UNINSTALL", json!({"package_name": "com.acme.scanner"})),
        ("UPDATE_HEARTBEAT", json!({})),
        (
            "SET_DEVICE_LOCKDOWN_STATE",
            json!({"state": "LOCKED", "message": "closed"}),
        ),
    ] {
        let body = json!({"command_type": "DEVICE", "devices": [all[0].id], "device_type": "all", "command": command, "command_args": args, "schedule": "IMMEDIATE"});
        let r = c
            .create_command(&body)
            .await
            .unwrap_or_else(|e| panic!("{command}: {e}"));
        assert_eq!(r.command.as_deref(), Some(command));
    }
    let no_pkg = json!({"command_type": "DEVICE", "devices": [all[0].id], "device_type": "all", "command": "UNINSTALL", "command_args": {}});
    assert_eq!(
        c.create_command(&no_pkg).await.unwrap_err().status(),
        Some(400)
    );

    let dest: Vec<DeviceGroup> = c.list_groups(Some("0001")).try_collect().await.unwrap();
    let mover = all
        .iter()
        .find(|d| d.groups.iter().all(|g| g.id != dest[0].id))
        .unwrap();
    c.move_devices(&dest[0].id, std::slice::from_ref(&mover.id), "move")
        .await
        .unwrap();
    let moved = c.get_device(&mover.id).await.unwrap();
    assert!(
        moved.groups.iter().any(|g| g.id == dest[0].id),
        "action=move with device_ids moves the device"
    );
    let bad = c
        .move_devices(
            &dest[0].id,
            &["00000000-0000-4000-8000-000000000000".to_string()],
            "add",
        )
        .await
        .unwrap_err();
    assert_eq!(bad.status(), Some(400));
}

#[test]
fn a_bad_ca_bundle_is_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("ca.pem");
    std::fs::write(&pem, "not a certificate").unwrap();
    let conn = esper_bulk::esper::Connection::new(
        "https://acme-api.esper.cloud/api",
        "e",
        esper_bulk::esper::ApiKey::new("k"),
    );
    let opts = esper_bulk::esper::ClientOptions {
        ca_cert: Some(pem.clone()),
        ..Default::default()
    };
    let e = esper_bulk::esper::Client::new(conn.clone(), opts).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Build);
    assert!(e.to_string().contains("ca.pem"), "{e}");
    let missing = esper_bulk::esper::ClientOptions {
        ca_cert: Some(dir.path().join("nope.pem")),
        ..Default::default()
    };
    assert!(esper_bulk::esper::Client::new(conn.clone(), missing).is_err());
    let plain =
        esper_bulk::esper::Connection::new("ftp://x/api", "e", esper_bulk::esper::ApiKey::new("k"));
    assert!(esper_bulk::esper::Client::new(plain, Default::default()).is_err());
}
