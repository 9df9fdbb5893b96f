//! Decoding of realistic Esper bodies kept in tests/fixtures/esper (written from the API
//! reference, oddities included): groups as URLs and as objects, integer ids, `prev` versus
//! `previous`, absent optional fields, and all three error shapes.

use esper_bulk::esper::ErrorBody;
use esper_bulk::esper::model::*;
use esper_bulk::esper::page::{Next, PageStyle, decode};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/esper/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn items<T: serde::de::DeserializeOwned>(style: PageStyle, name: &str) -> (Vec<T>, Option<Next>) {
    let page = decode(style, fixture(name)).unwrap();
    (
        page.items
            .into_iter()
            .map(|v| serde_json::from_value(v).unwrap())
            .collect(),
        page.next,
    )
}

#[test]
fn device_groups_reduce_parent_urls() {
    let (groups, next): (Vec<DeviceGroup>, _) = items(PageStyle::Drf, "devicegroup_page.json");
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0].parent, None);
    assert_eq!(
        groups[1].parent.as_deref(),
        Some("9b8a7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d")
    );
    assert_eq!(
        groups[1].path.as_deref(),
        Some("All devices/Stores/North/0042")
    );
    assert!(matches!(next, Some(Next::Url(u)) if u.ends_with("offset=2")));
}

#[test]
fn legacy_devices_groups_as_urls_state_as_int() {
    let (devices, next): (Vec<Device>, _) = items(PageStyle::Drf, "device_legacy_page.json");
    let d = &devices[0];
    assert_eq!(d.name, "ACME-0042-07");
    assert_eq!(d.alias.as_deref(), Some("Till 7"));
    assert_eq!(
        d.serial.as_deref(),
        Some("R58M12345678"),
        "serial comes from hardwareInfo"
    );
    assert_eq!(d.state.as_deref(), Some("OFFLINE"), "60 is offline");
    assert_eq!(d.groups[0].id, "3a6f0d5e-1c2b-4e3f-8a9b-0c1d2e3f4a5b");
    assert_eq!(d.tags, vec!["pilot", "north"]);
    assert_eq!(next, None);
}

#[test]
fn v2_devices_offset_uses_prev_and_group_objects() {
    let (devices, next): (Vec<Device>, _) = items(PageStyle::Envelope, "devices_v2_offset.json");
    assert_eq!(
        devices[0].groups[0].path.as_deref(),
        Some("All devices/Stores/North/0001")
    );
    assert_eq!(devices[0].state.as_deref(), Some("ONLINE"));
    assert!(matches!(next, Some(Next::Url(u)) if u.contains("offset=1")));
}

#[test]
fn v2_devices_cursor() {
    let (devices, next): (Vec<Device>, _) = items(PageStyle::Cursor, "devices_v2_cursor.json");
    assert_eq!(devices.len(), 2);
    assert_eq!(devices[1].serial, None, "absent optional fields are fine");
    assert_eq!(
        next,
        Some(Next::Cursor("cD0yMDI2LTExLTI3KzIyJTNBMTA".into()))
    );
}

#[test]
fn applications_and_versions() {
    let (apps, _): (Vec<Application>, _) = items(PageStyle::Drf, "application_page.json");
    assert_eq!(apps[0].package_name, "com.acme.kiosk");
    assert_eq!(apps[0].versions[0].version_code, "410");
    let (versions, _): (Vec<AppVersion>, _) = items(PageStyle::Drf, "app_version_page.json");
    assert_eq!(
        versions[0].version_code, "410",
        "an integer version_code is read as a string"
    );
    assert_eq!(
        versions[0].application.as_deref(),
        Some("5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a")
    );
    let up: UploadResponse = serde_json::from_value(fixture("upload_response.json")).unwrap();
    assert_eq!(up.application.versions[0].version_code, "420");
}

#[test]
fn commands_envelope_stats_and_statuses() {
    let created = fixture("command_created.json");
    let req: CommandRequest = serde_json::from_value(created["content"].clone()).unwrap();
    assert_eq!(req.groups, vec!["3a6f0d5e-1c2b-4e3f-8a9b-0c1d2e3f4a5b"]);
    let (list, next): (Vec<CommandRequest>, _) = items(PageStyle::Envelope, "commands_page.json");
    assert_eq!(
        list[0].groups,
        Vec::<String>::new(),
        "null groups read as empty"
    );
    assert_eq!(next, None);
    let stats: CommandStats =
        serde_json::from_value(fixture("command_stats.json")["content"].clone()).unwrap();
    assert_eq!((stats.total(), stats.pending()), (48, 2));
    let (rows, _): (Vec<CommandStatus>, _) = items(PageStyle::Envelope, "command_status_page.json");
    assert_eq!(rows[0].state, CommandState::Failure);
    assert!(
        rows[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("INSUFFICIENT_STORAGE")
    );
    assert!(!rows[1].state.is_final());
}

#[test]
fn alarm_rule_reads_objects() {
    let rule: AlarmRule = serde_json::from_value(fixture("alarm_rule.json")).unwrap();
    assert_eq!(rule.groups[0].id, "3a6f0d5e-1c2b-4e3f-8a9b-0c1d2e3f4a5b");
    assert_eq!(rule.groups[0].name.as_deref(), Some("0042"));
    assert_eq!(rule.realert_interval, Some(3600));
}

#[test]
fn content_has_integer_id() {
    let c: Content = serde_json::from_value(fixture("content.json")).unwrap();
    assert_eq!(c.id, "9021");
}

#[test]
fn three_error_shapes() {
    let core = ErrorBody::parse(fixture("error_core.json").to_string().as_bytes()).unwrap();
    assert_eq!(core.errors.len(), 2);
    assert!(core.summary().contains("realert_interval"));
    let service = ErrorBody::parse(fixture("error_service.json").to_string().as_bytes()).unwrap();
    assert!(service.summary().contains("device_type"));
    let custom = ErrorBody::parse(fixture("error_custom.json").to_string().as_bytes()).unwrap();
    assert_eq!(custom.code, Some(404));
    assert_eq!(custom.summary(), "Script not found");
}
