//! Templates are rendered in every key that validation accepts them in. Driven by the
//! shape table: for each key of an operation marked as taking templates, a job puts
//! `${{ vars.x }}` there, is validated, planned against a fake inventory (no server), and
//! every task is materialized; no `${{` may survive in what a task sends, and the var's
//! value must be there. A key newly marked in `src/job/shape.rs` is covered by this test
//! the day it is marked. `steps.*` outputs are the executor's (`fill_outputs`), not tested
//! here.

use std::sync::Mutex;

use esper_bulk::job::shape::{self, Field, Shape, Tpl, Ty};
use esper_bulk::job::{self, Host, Job, model::DeviceSelector};
use esper_bulk::plan::{self, GroupInfo, Inventory, InventoryError, Item, Server};
use futures::future::BoxFuture;
use serde_json::{Value, json};

/// A fleet of one group. App versions exist for any package and code, with an id that
/// names both, so a rendered package shows up in the task; every lookup is recorded.
#[derive(Default)]
struct Fleet {
    lookups: Mutex<Vec<(String, String)>>,
}

impl Inventory for Fleet {
    fn groups(&self) -> BoxFuture<'_, Result<Vec<GroupInfo>, InventoryError>> {
        let lab = GroupInfo {
            id: "g-lab".into(),
            name: "Lab".into(),
            path: "Lab".into(),
        };
        Box::pin(std::future::ready(Ok(vec![lab])))
    }

    fn devices<'a>(
        &'a self,
        _: &'a DeviceSelector,
    ) -> BoxFuture<'a, Result<Vec<Item>, InventoryError>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }

    fn app_version<'a>(
        &'a self,
        package: &'a str,
        version_code: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, InventoryError>> {
        self.lookups
            .lock()
            .unwrap()
            .push((package.to_string(), version_code.to_string()));
        let id = format!("ver:{package}:{version_code}");
        Box::pin(std::future::ready(Ok(Some(id))))
    }
}

/// Every key below an operation that takes templates, as its path of key names.
fn template_keys(
    s: &'static Shape,
    at: &[&'static str],
    out: &mut Vec<(Vec<&'static str>, &'static Field)>,
) {
    for f in s.fields {
        let mut path = at.to_vec();
        path.push(f.name);
        if f.tpl != Tpl::No {
            out.push((path.clone(), f));
        }
        if let Ty::Obj(inner) = &f.ty {
            template_keys(inner, &path, out);
        }
    }
}

/// A valid operation of each kind that has keys taking templates, every such key set.
fn base(op: &str) -> Value {
    match op {
        "app_install" => json!({"to": "lab", "package": "com.acme.kiosk", "version_code": "410"}),
        "app_uninstall" => json!({"to": "lab", "package": "com.acme.scanner"}),
        "command" => json!({
            "to": "lab", "name": "REBOOT", "args": {"reason": "r"},
            "schedule": {
                "type": "WINDOW", "name": "weekly", "time_type": "device",
                "start_datetime": "2026-01-01T00:00:00Z", "end_datetime": "2026-12-31T00:00:00Z",
                "window_start_time": "01:00", "window_end_time": "05:00", "days": ["Monday"]
            }
        }),
        "alarm_rule" => json!({
            "name": "rule", "description": "d", "metric": "battery_level",
            "conditions": {"comparator": "LessThanThreshold", "value": 15, "unit": "Percent"},
            "realert_interval": 3600, "repeat_times": 1, "action_emails": ["a@x.example"],
            "actions": ["a"], "alert_channels": [1], "groups": ["g-lab"]
        }),
        "request" => {
            json!({"method": "POST", "path": "/x/", "query": {"q": "y"}, "body": {"k": "v"}})
        }
        "export" => {
            json!({"what": "installed", "package": "com.acme.kiosk", "version_code": "410"})
        }
        other => panic!("no base operation for {other}; add one"),
    }
}

/// The var's value for a key of type `ty`, the value to write there, and the text the
/// rendered task must contain.
fn sample(ty: &Ty, written: Option<&Value>) -> (Value, Value, String) {
    let t = json!("${{ vars.x }}");
    match ty {
        Ty::Str => {
            // Appended to the key's own value, so checks on its form (`/` first) still hold.
            let prefix = written.and_then(Value::as_str).unwrap_or("v-");
            (
                json!("tplv42"),
                json!(format!("{prefix}${{{{ vars.x }}}}")),
                "tplv42".into(),
            )
        }
        Ty::Int | Ty::Num => (json!(4242), t, "4242".into()),
        // Esper takes seconds; the plan carries the number.
        Ty::Duration => (json!("4242s"), t, "4242".into()),
        Ty::TimeOfDay => (json!("03:42"), t, "03:42".into()),
        Ty::DateTime => (
            json!("2026-06-15T03:42:00Z"),
            t,
            "2026-06-15T03:42:00Z".into(),
        ),
        Ty::ListOf(Ty::Weekday) => (json!("Tuesday"), json!([t]), "Tuesday".into()),
        Ty::StrList | Ty::ListOf(_) => (json!("tplv42"), json!([t]), "tplv42".into()),
        Ty::MapOf(_) | Ty::Any => (json!("tplv42"), json!({"k": t}), "tplv42".into()),
        other => panic!("no sample for a templated {other:?}; add one"),
    }
}

fn at<'a>(v: &'a mut Value, path: &[&str]) -> &'a mut Value {
    path.iter().fold(v, |v, k| &mut v[*k])
}

async fn plan_tasks(job: &Job, fleet: &Fleet) -> Vec<String> {
    let resolved = plan::resolve(job, fleet)
        .await
        .unwrap_or_else(|e| panic!("resolves: {e}"));
    let server = Server {
        base_url: "http://127.0.0.1:1/api".into(),
        enterprise_id: "e-1".into(),
    };
    let p = plan::compile(job, &resolved, server).unwrap_or_else(|e| panic!("compiles: {e}"));
    assert!(p.task_count > 0);
    p.task_ids()
        .map(|id| serde_json::to_string(&p.task(id).unwrap().op).unwrap())
        .collect()
}

#[tokio::test]
async fn every_key_that_takes_templates_is_rendered() {
    let mut cases = Vec::new();
    for op in shape::OPERATIONS {
        let Some(Ty::Obj(s)) = shape::STEP.field(op).map(|f| &f.ty) else {
            panic!("{op} is not a map in the step shape");
        };
        let mut keys = Vec::new();
        template_keys(s, &[], &mut keys);
        cases.extend(keys.into_iter().map(|(path, f)| (*op, path, f)));
    }
    let names: Vec<String> = cases
        .iter()
        .map(|(op, path, _)| format!("{op}.{}", path.join(".")))
        .collect();
    for must in [
        "app_install.version",
        "app_install.package",
        "app_install.version_code",
        "app_uninstall.package",
        "command.args",
        "command.schedule.days",
        "command.schedule.window_start_time",
        "alarm_rule.name",
        "alarm_rule.realert_interval",
        "alarm_rule.conditions.value",
        "request.path",
        "request.query",
        "request.body",
    ] {
        assert!(
            names.iter().any(|n| n == must),
            "{must} should take templates: {names:?}"
        );
    }
    for ((op, path, field), name) in cases.iter().zip(&names) {
        let mut operation = base(op);
        if *op == "app_install" && path == &["version"] {
            operation = json!({"to": "lab", "version": "v-1"});
        }
        if *op == "alarm_rule" && path == &["devices"] {
            operation.as_object_mut().unwrap().remove("groups");
        }
        let (var, written, want) = sample(&field.ty, Some(&*at(&mut operation, path)));
        *at(&mut operation, path) = written;
        let doc = json!({
            "version": 1, "name": "templates", "vars": {"x": var},
            "targets": {"lab": {"groups": {"name": "Lab"}}},
            "steps": [{"id": "s", *op: operation}],
        });
        let text = serde_yaml::to_string(&doc).unwrap();
        let env = |_: &str| None;
        let (job, _) = job::load("t.yaml", &text, &Host::env_only(&env))
            .unwrap_or_else(|d| panic!("{name}: a template there validates:\n{}", d.render(&text)));
        let fleet = Fleet::default();
        for op_json in plan_tasks(&job, &fleet).await {
            assert!(
                !op_json.contains("${{"),
                "{name}: a template survives: {op_json}"
            );
            assert!(
                op_json.contains(&want),
                "{name}: the var's value `{want}` is not sent: {op_json}"
            );
        }
        for (package, code) in fleet.lookups.lock().unwrap().iter() {
            assert!(
                !package.contains("${{") && !code.contains("${{"),
                "{name}: the planner looked up a template: {package} {code}"
            );
        }
    }
}
