//! Black-box tests of the embedded Esper mock over real HTTP on 127.0.0.1:0, with plain
//! reqwest (not the crate's client), so they pin the mock to API.md on their own. The
//! engine's behaviour against the mock is tested elsewhere.

use std::collections::BTreeSet;
use std::time::Duration;

use esper_bulk::mock::{CommandBehaviour, Faults, MockConfig, MockServer, RateLimit};
use serde_json::{Value, json};

/// Bounds every polling loop in this file.
const MAX_PAGES: usize = 100;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client builds")
}

struct Env {
    server: MockServer,
    http: reqwest::Client,
}

impl Env {
    async fn start(cfg: MockConfig) -> Env {
        let server = MockServer::start(cfg).await.expect("mock starts");
        Env {
            server,
            http: client(),
        }
    }

    /// `path` is relative to `/api`; `{eid}` is replaced by the enterprise id.
    fn url(&self, path: &str) -> String {
        let path = path.replace("{eid}", self.server.enterprise_id());
        format!("{}{path}", self.server.base_url())
    }

    fn auth(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        rb.bearer_auth(self.server.api_key())
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = self.auth(rb).send().await.expect("request is answered");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body is readable");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(self.url(path))).await
    }

    async fn get_abs(&self, url: &str) -> (u16, Value) {
        self.send(self.http.get(url)).await
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    fn device_ids(&self) -> Vec<String> {
        self.server
            .snapshot()
            .devices
            .into_iter()
            .map(|d| d.id)
            .collect()
    }

    fn group_id(&self, name: &str) -> String {
        let snap = self.server.snapshot();
        snap.groups
            .into_iter()
            .find(|g| g.name == name)
            .map(|g| g.id)
            .expect("group exists")
    }

    fn alarm_body(&self, name: &str) -> Value {
        json!({
            "enterprise": self.server.enterprise_id(),
            "name": name,
            "metric": "battery_level",
            "conditions": {"value": 15, "unit": "Percent", "comparator": "LessThanThreshold"},
            "groups": [self.group_id("Stores")],
            "realert_interval": 30,
        })
    }
}

fn ids(results: &Value) -> Vec<String> {
    results
        .as_array()
        .expect("results is a list")
        .iter()
        .map(|r| r["id"].as_str().expect("id is a string").to_string())
        .collect()
}

#[tokio::test]
async fn pagination_follows_next_in_all_three_styles() {
    let env = Env::start(MockConfig::new(11)).await;
    let total = env.device_ids().len();
    assert_eq!(total, 8 * 5 + 4);

    // Classic DRF page: absolute `next` / `previous`, limit carried along.
    let (status, mut page) = env.get("/enterprise/{eid}/device/?limit=7").await;
    assert_eq!(status, 200);
    assert_eq!(page["count"], total);
    assert!(page["previous"].is_null());
    let mut seen = ids(&page["results"]);
    for _ in 0..MAX_PAGES {
        let Some(next) = page["next"].as_str().map(str::to_string) else {
            break;
        };
        assert!(
            next.starts_with("http://127.0.0.1:") && next.contains("limit=7"),
            "{next}"
        );
        let (status, p) = env.get_abs(&next).await;
        assert_eq!(status, 200);
        assert!(p["previous"].is_string());
        seen.extend(ids(&p["results"]));
        page = p;
    }
    assert!(page["next"].is_null(), "pagination ended");
    assert_eq!(seen.len(), total);
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), total);

    // Service envelope with `previous`: command requests.
    let devices = env.device_ids();
    for d in devices.iter().take(5) {
        let body = json!({"command_type": "DEVICE", "devices": [d], "device_type": "all", "command": "UPDATE_HEARTBEAT"});
        assert_eq!(env.post("/commands/v0/commands/", &body).await.0, 201);
    }
    let (_, mut page) = env.get("/commands/v0/commands/?limit=2").await;
    assert_eq!(page["code"], 200);
    assert_eq!(page["content"]["count"], 5);
    assert!(page["content"].get("previous").is_some());
    let mut commands = ids(&page["content"]["results"]);
    for _ in 0..MAX_PAGES {
        let Some(next) = page["content"]["next"].as_str().map(str::to_string) else {
            break;
        };
        page = env.get_abs(&next).await.1;
        commands.extend(ids(&page["content"]["results"]));
    }
    assert_eq!(commands.len(), 5);

    // /v2/devices/ offset mode uses `prev`.
    let (_, mut page) = env.get("/v2/devices/?limit=9").await;
    assert_eq!(page["content"]["count"], total);
    assert!(page["content"].get("prev").is_some() && page["content"].get("previous").is_none());
    let mut v2 = ids(&page["content"]["results"]);
    for _ in 0..MAX_PAGES {
        let Some(next) = page["content"]["next"].as_str().map(str::to_string) else {
            break;
        };
        page = env.get_abs(&next).await.1;
        v2.extend(ids(&page["content"]["results"]));
    }
    assert_eq!(v2, seen, "both device lists use inventory order");

    // /v2/devices/ cursor mode.
    let (_, mut page) = env.get("/v2/devices/?limit=9&cursor=start").await;
    assert!(page["content"]["prev_cursor"].is_null());
    let mut cursor_ids = ids(&page["content"]["results"]);
    for _ in 0..MAX_PAGES {
        let Some(cursor) = page["content"]["next_cursor"].as_str().map(str::to_string) else {
            break;
        };
        page = env
            .get(&format!("/v2/devices/?limit=9&cursor={cursor}"))
            .await
            .1;
        assert!(page["content"]["prev_cursor"].is_string());
        cursor_ids.extend(ids(&page["content"]["results"]));
    }
    assert_eq!(cursor_ids, seen);
    env.server.shutdown().await;
}

#[tokio::test]
async fn unauthorized_answers_use_both_error_shapes() {
    let env = Env::start(MockConfig::new(1)).await;
    let resp = env
        .http
        .get(env.url("/enterprise/{eid}/devicegroup/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body,
        json!({"errors": ["Authentication credentials were not provided."], "message": "Authentication credentials were not provided.", "status": 401})
    );
    let resp = env
        .http
        .get(env.url("/commands/v0/commands/"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body,
        json!({"code": 401, "message": "Invalid token.", "content": {}})
    );
    let resp = env.http.get(env.url("/v2/devices/")).send().await.unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], 401);
}

#[tokio::test]
async fn unknown_paths_and_ids_are_404_with_error_bodies() {
    let env = Env::start(MockConfig::new(1)).await;
    let unknown = "00000000-0000-4000-8000-000000000000";
    for path in [
        "/nope/".to_string(),
        "/enterprise/{eid}/devicegroup".to_string(),
        format!("/enterprise/{{eid}}/devicegroup/{unknown}/"),
        "/enterprise/{eid}/device/not-a-uuid/".to_string(),
        "/enterprise/not-a-uuid/device/".to_string(),
    ] {
        let (status, body) = env.get(&path).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(body["status"], 404, "{path}: {body}");
        assert!(body["errors"].is_array());
    }
    let (status, body) = env.get(&format!("/commands/v0/commands/{unknown}/")).await;
    assert_eq!((status, body["code"].clone()), (404, json!(404)));
    let (status, body) = env.get(&format!("/enterprise/{unknown}/device/")).await;
    assert_eq!(
        (status, body["status"].clone()),
        (404, json!(404)),
        "another enterprise is not found, as the API reference documents: {body}"
    );
    let (status, body) = env
        .get(&format!("/v1/enterprise/{unknown}/alarmrules/"))
        .await;
    assert_eq!((status, body["errors"].is_array()), (404, true), "{body}");
    let resp = env
        .auth(env.http.put(env.url("/enterprise/{eid}/devicegroup/")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
}

#[tokio::test]
async fn malformed_input_gets_error_bodies() {
    let env = Env::start(MockConfig::new(2)).await;
    let raw = |body: &'static str| {
        env.auth(env.http.post(env.url("/v1/enterprise/{eid}/alarmrules/")))
            .header("content-type", "application/json")
            .body(body)
    };
    let (status, body) = env.send(raw("{not json")).await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("JSON parse error")
    );
    let (status, body) = env.send(raw("[1,2]")).await;
    assert_eq!(status, 400);
    assert_eq!(body["status"], 400);
    let (status, body) = env.post("/commands/v0/commands/", &json!("x")).await;
    assert_eq!((status, body["code"].clone()), (400, json!(400)));
    for path in [
        "/enterprise/{eid}/device/?limit=99999999999999999999999&offset=-4",
        "/enterprise/{eid}/devicegroup/?limit=abc&offset=zz",
        "/v2/devices/?limit=0",
    ] {
        assert_eq!(env.get(path).await.0, 200, "{path}");
    }
    for path in [
        "/v2/devices/?cursor=garbage",
        "/v2/devices/?state=SLEEPING",
        "/v2/devices/?group_multi=nope",
        "/enterprise/{eid}/device/?group=nope",
        "/enterprise/{eid}/device/?state=x",
        "/commands/v0/status/?request=nope",
        "/commands/v0/status/?state=Done",
    ] {
        assert_eq!(env.get(path).await.0, 400, "{path}");
    }
    let (_, page) = env.get("/v2/devices/?limit=5000").await;
    assert_eq!(page["content"]["results"].as_array().unwrap().len(), 44);
}

#[tokio::test]
async fn alarm_rules_validate_and_round_trip() {
    let env = Env::start(MockConfig::new(3)).await;
    let mut body = env.alarm_body("low battery");
    body.as_object_mut().unwrap().remove("realert_interval");
    let (status, err) = env.post("/v1/enterprise/{eid}/alarmrules/", &body).await;
    assert_eq!(status, 400);
    assert_eq!(err["status"], 400);
    assert!(
        err["errors"]
            .as_array()
            .unwrap()
            .contains(&json!("realert_interval: This field is required.")),
        "{err}"
    );
    let (status, err) = env
        .post(
            "/v1/enterprise/{eid}/alarmrules/",
            &json!({"conditions": {"value": 1, "unit": "Percentage", "comparator": "LessThanThreshold"}}),
        )
        .await;
    assert_eq!(status, 400);
    let errors: Vec<&str> = err["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for field in [
        "enterprise",
        "name",
        "metric",
        "realert_interval",
        "conditions.unit",
    ] {
        assert!(
            errors.iter().any(|e| e.starts_with(&format!("{field}: "))),
            "{field}: {errors:?}"
        );
    }

    let (status, rule) = env
        .post(
            "/v1/enterprise/{eid}/alarmrules/",
            &env.alarm_body("low battery"),
        )
        .await;
    assert_eq!(status, 201, "{rule}");
    assert_eq!(rule["groups"][0]["name"], "Stores");
    assert_eq!(rule["groups"][0]["path"], "All devices/Stores");
    let id = rule["id"].as_str().unwrap().to_string();
    let path = format!("/v1/enterprise/{{eid}}/alarmrules/{id}/");
    let patch = env
        .http
        .patch(env.url(&path))
        .json(&json!({"realert_interval": 60}));
    let (status, patched) = env.send(patch).await;
    assert_eq!(
        (status, patched["realert_interval"].clone()),
        (200, json!(60))
    );
    let (_, page) = env
        .get("/v1/enterprise/{eid}/alarmrules/?name=low+battery")
        .await;
    assert_eq!(page["count"], 1);
    let resp = env
        .auth(env.http.delete(env.url(&path)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(env.get(&path).await.0, 404);
}

#[tokio::test]
async fn rate_limit_answers_429_with_optional_retry_after_and_penalty() {
    let limited = |retry_after| Faults {
        rate_limit: Some(RateLimit {
            rate: 50.0,
            burst: 1,
            retry_after,
            penalty: Duration::from_millis(800),
        }),
        ..Faults::default()
    };
    let mut cfg = MockConfig::new(4);
    cfg.faults = limited(true);
    let env = Env::start(cfg).await;
    let groups = env.url("/enterprise/{eid}/devicegroup/");
    let get = |url: &str| env.auth(env.http.get(url)).send();

    assert_eq!(get(&groups).await.unwrap().status(), 200);
    let refused = get(&groups).await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["status"], 429);
    // The bucket refills within 20 ms, but the penalty holds for 800 ms.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let service = get(&env.url("/commands/v0/commands/")).await.unwrap();
    assert_eq!(service.status(), 429);
    let body: Value = service.json().await.unwrap();
    assert_eq!(body["code"], 429);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(get(&groups).await.unwrap().status(), 200);

    env.server.set_faults(limited(false));
    assert_eq!(get(&groups).await.unwrap().status(), 200);
    let refused = get(&groups).await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().get("retry-after").is_none());
    let stats = env.server.stats();
    assert_eq!(stats.rate_limited, 3);
    assert_eq!(stats.by_status["429"], 3);
}

#[tokio::test]
async fn commit_then_fail_commits_and_duplicates_are_counted() {
    let mut cfg = MockConfig::new(5);
    cfg.faults.commit_then_fail_rate = 1.0;
    let env = Env::start(cfg).await;
    let body = env.alarm_body("offline too long");
    let (status, _) = env.post("/v1/enterprise/{eid}/alarmrules/", &body).await;
    assert_eq!(status, 500);
    assert_eq!(
        env.server.snapshot().alarm_rules.len(),
        1,
        "committed despite the 500"
    );

    env.server.set_faults(Faults::default());
    let (status, _) = env.post("/v1/enterprise/{eid}/alarmrules/", &body).await;
    assert_eq!(status, 201);
    let device = env.device_ids()[0].clone();
    let cmd = json!({"command_type": "DEVICE", "devices": [device], "command": "REBOOT"});
    assert_eq!(env.post("/commands/v0/commands/", &cmd).await.0, 201);
    assert_eq!(env.post("/commands/v0/commands/", &cmd).await.0, 201);

    let stats = env.server.stats();
    assert_eq!(stats.duplicates.alarm_rules, 1);
    assert_eq!(stats.duplicates.command_requests, 1);
    assert_eq!(stats.injected.commit_then_fail, 1);
    assert_eq!(stats.created.alarm_rules, 2);
    assert_eq!(stats.created.command_requests, 2);
}

#[tokio::test]
async fn dropped_connections_are_transport_errors_after_commit() {
    let mut cfg = MockConfig::new(6);
    cfg.faults.drop_rate = 1.0;
    let env = Env::start(cfg).await;
    let err = env
        .auth(env.http.get(env.url("/enterprise/{eid}/devicegroup/")))
        .send()
        .await
        .expect_err("a dropped request has no HTTP status");
    assert!(err.status().is_none());
    let body = env.alarm_body("dropped");
    let post = env.auth(
        env.http
            .post(env.url("/v1/enterprise/{eid}/alarmrules/"))
            .json(&body),
    );
    assert!(post.send().await.is_err());
    assert_eq!(
        env.server.snapshot().alarm_rules.len(),
        1,
        "the write was committed"
    );

    env.server.set_faults(Faults::default());
    assert_eq!(env.get("/enterprise/{eid}/devicegroup/").await.0, 200);
    let stats = env.server.stats();
    assert_eq!(stats.injected.drops, 2);
    assert_eq!(stats.by_status["dropped"], 2);
    let records = env.server.requests();
    assert_eq!(records.iter().filter(|r| r.dropped).count(), 2);
    assert_eq!(
        records[1].status, 201,
        "the status that would have been sent"
    );
}

#[tokio::test]
async fn errors_and_latency_are_injected_before_processing() {
    let mut cfg = MockConfig::new(7);
    cfg.faults.error_rate = 1.0;
    cfg.faults.latency = Duration::from_millis(60);
    let env = Env::start(cfg).await;
    let started = std::time::Instant::now();
    let (status, _) = env
        .post("/v1/enterprise/{eid}/alarmrules/", &env.alarm_body("x"))
        .await;
    assert!(started.elapsed() >= Duration::from_millis(60));
    assert!([500, 502, 503].contains(&status));
    assert!(env.server.snapshot().alarm_rules.is_empty());
    assert_eq!(env.server.stats().injected.errors, 1);
}

#[tokio::test]
async fn commands_progress_to_final_states() {
    let mut cfg = MockConfig::new(8);
    cfg.offline_fraction = 0.25;
    cfg.commands = CommandBehaviour {
        failure_rate: 0.3,
        timeout_rate: 0.2,
        min_duration: Duration::from_millis(20),
        max_duration: Duration::from_millis(150),
        install_noop_rate: 0.0,
    };
    let env = Env::start(cfg).await;
    let snap = env.server.snapshot();
    let offline = snap.devices.iter().filter(|d| d.state == 60).count();
    assert!(
        offline > 0 && offline < snap.devices.len(),
        "seed gives a mix"
    );

    let bad = json!({"command_type": "GROUP", "groups": [env.group_id("Stores")], "device_type": "active", "command": "INSTALL"});
    let (status, err) = env.post("/commands/v0/commands/", &bad).await;
    assert_eq!(status, 400);
    assert_eq!(
        err["content"]["device_type"][0],
        "Filtering by device_type is currently not supported. Please specify 'all'."
    );
    assert!(
        err["content"]["command_args.app_version"].is_array(),
        "{err}"
    );

    let version = snap.apps[0].versions[0].id.clone();
    let body = json!({"command_type": "GROUP", "groups": [env.group_id("Stores")], "device_type": "all",
        "command": "INSTALL", "command_args": {"app_version": version}, "schedule": "IMMEDIATE"});
    let (status, created) = env.post("/commands/v0/commands/", &body).await;
    assert_eq!((status, created["code"].clone()), (201, json!(201)));
    let id = created["content"]["id"].as_str().unwrap().to_string();
    let store_offline = snap
        .devices
        .iter()
        .filter(|d| d.state == 60 && d.device_name.starts_with("ACME-0"))
        .count();

    let terminal = ["Command Success", "Command Failure", "Command TimeOut"];
    let mut done = false;
    for _ in 0..40 {
        let (_, stats) = env.get(&format!("/commands/v0/commands/{id}/stats/")).await;
        let rows = stats["content"]["status"].as_array().unwrap().clone();
        let total: u64 = rows.iter().map(|r| r["total"].as_u64().unwrap()).sum();
        assert_eq!(total, 40, "the group expanded to its 40 store devices");
        let queued = rows
            .iter()
            .filter(|r| r["state"] == "Command Queued")
            .map(|r| r["total"].as_u64().unwrap())
            .sum::<u64>();
        let finished: u64 = rows
            .iter()
            .filter(|r| terminal.contains(&r["state"].as_str().unwrap()))
            .map(|r| r["total"].as_u64().unwrap())
            .sum();
        if queued == store_offline as u64 && finished == 40 - queued {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(done, "all online devices reached a final state");
    let (_, page) = env
        .get(&format!("/commands/v0/status/?request={id}&limit=100"))
        .await;
    let rows = page["content"]["results"].as_array().unwrap();
    assert_eq!(rows.len(), 40);
    let failures = rows
        .iter()
        .filter(|r| r["state"] == "Command Failure")
        .count();
    assert!(failures > 0, "30% failure rate shows up over 40 devices");
    assert!(
        rows.iter()
            .all(|r| r["request"] == id.as_str() && r["device"].is_string())
    );

    // One row by id, and the console's cancel: a PUT of its state.
    let queued = rows
        .iter()
        .find(|r| r["state"] == "Command Queued")
        .expect("an offline store device is queued");
    let row = queued["id"].as_str().unwrap();
    let (status, one) = env.get(&format!("/commands/v0/status/{row}/")).await;
    assert_eq!((status, &one["content"]), (200, queued), "{one}");
    let put = |body: Value| {
        env.http
            .put(env.url(&format!("/commands/v0/status/{row}/")))
            .json(&body)
    };
    let (status, bad) = env.send(put(json!({"state": "Gone"}))).await;
    assert_eq!((status, bad["code"].clone()), (400, json!(400)), "{bad}");
    let (status, cancelled) = env
        .send(put(
            json!({"state": "Command Cancelled", "reason": "cancelled by ops"}),
        ))
        .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["content"]["state"], "Command Cancelled");
    let (_, again) = env.get(&format!("/commands/v0/status/{row}/")).await;
    assert_eq!(again["content"]["reason"], "cancelled by ops");
    let (_, stats) = env.get(&format!("/commands/v0/commands/{id}/stats/")).await;
    assert!(
        stats["content"]["status"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["state"] == "Command Cancelled" && r["total"] == 1),
        "{stats}"
    );
    let (status, _) = env
        .get("/commands/v0/status/00000000-0000-4000-8000-000000000000/")
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn same_seed_gives_the_same_tenant() {
    let a = MockServer::start(MockConfig::new(42)).await.unwrap();
    let b = MockServer::start(MockConfig::new(42)).await.unwrap();
    let c = MockServer::start(MockConfig::new(43)).await.unwrap();
    assert_eq!(a.snapshot(), b.snapshot());
    assert_eq!(
        (a.api_key(), a.enterprise_id()),
        (b.api_key(), b.enterprise_id())
    );
    assert_ne!(a.snapshot().devices[0].id, c.snapshot().devices[0].id);
    assert_ne!(a.enterprise_id(), c.enterprise_id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn peak_1s_counts_a_burst_and_stats_are_served() {
    let env = Env::start(MockConfig::new(9)).await;
    let started = std::time::Instant::now();
    let burst: Vec<_> = (0..25)
        .map(|_| {
            let rb = env.auth(env.http.get(env.url("/enterprise/{eid}/devicegroup/")));
            tokio::spawn(rb.send())
        })
        .collect();
    for handle in burst {
        assert_eq!(handle.await.unwrap().unwrap().status(), 200);
    }
    let took = started.elapsed();
    let stats = env.server.stats();
    assert_eq!(stats.requests_total, 25);
    if took < Duration::from_millis(900) {
        assert_eq!(stats.peak_1s, 25);
    }
    assert!(stats.max_in_flight >= 1 && stats.max_in_flight <= 25);
    assert_eq!(
        stats.by_route["GET /enterprise/{enterprise_id}/devicegroup/"],
        25
    );

    let served: Value = env
        .http
        .get(format!("http://{}/__stats", env.server.addr()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(served["requests_total"], 25, "/__stats is not counted");
    assert_eq!(served["peak_1s"], stats.peak_1s);
}

#[tokio::test]
async fn uploads_apps_and_content() {
    let env = Env::start(MockConfig::new(10)).await;
    let apk = "package=com.acme.kiosk\nversion_code=420\nversion_name=4.2.0\n";
    let upload = |field: &'static str, path: &str, data: &'static str| {
        let part = reqwest::multipart::Part::text(data).file_name("file.apk");
        let form = reqwest::multipart::Form::new().part(field, part);
        env.http.post(env.url(path)).multipart(form)
    };
    let (status, body) = env
        .send(upload(
            "app_file",
            "/enterprise/{eid}/application/upload/",
            apk,
        ))
        .await;
    assert_eq!(status, 201, "{body}");
    let app = &body["application"];
    assert_eq!(app["package_name"], "com.acme.kiosk");
    assert_eq!(app["versions"][0]["version_code"], "420");
    let (status, body) = env
        .send(upload(
            "app_file",
            "/enterprise/{eid}/application/upload/",
            apk,
        ))
        .await;
    assert_eq!(status, 400, "same version_code again: {body}");
    let (status, _) = env
        .send(upload(
            "wrong",
            "/enterprise/{eid}/application/upload/",
            apk,
        ))
        .await;
    assert_eq!(status, 400);
    let (status, _) = env
        .send(upload(
            "app_file",
            "/enterprise/{eid}/application/upload/",
            "PK\u{3}\u{4}",
        ))
        .await;
    assert_eq!(status, 400);
    // A real APK (binary manifest in a ZIP) is read as Esper reads it; random bytes are not
    // an APK.
    let real = esper_bulk::apk::write::minimal_apk("com.acme.scanner", 31, "3.1");
    let binary = |data: Vec<u8>| {
        let part = reqwest::multipart::Part::bytes(data).file_name("scanner.apk");
        let form = reqwest::multipart::Form::new().part("app_file", part);
        env.http
            .post(env.url("/enterprise/{eid}/application/upload/"))
            .multipart(form)
    };
    let (status, body) = env.send(binary(real)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["application"]["package_name"], "com.acme.scanner");
    assert_eq!(body["application"]["versions"][0]["version_code"], "31");
    assert_eq!(body["application"]["versions"][0]["version_name"], "3.1");
    let mut rng = fastrand::Rng::with_seed(3);
    let noise: Vec<u8> = (0..4096).map(|_| rng.u8(..)).collect();
    let (status, body) = env.send(binary(noise)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["errors"][0]
            .as_str()
            .is_some_and(|e| e.contains("not a valid APK")),
        "{body}"
    );
    let json_body = env
        .http
        .post(env.url("/enterprise/{eid}/application/upload/"))
        .json(&json!({}));
    assert_eq!(env.send(json_body).await.0, 415);
    let app_id = app["id"].as_str().unwrap();
    let (_, versions) = env
        .get(&format!(
            "/enterprise/{{eid}}/application/{app_id}/version/?version_code=420"
        ))
        .await;
    assert_eq!(versions["count"], 1);
    assert_eq!(versions["results"][0]["version_name"], "4.2.0");

    let (status, content) = env
        .send(upload(
            "key",
            "/v0/enterprise/{eid}/content/upload/",
            "hello",
        ))
        .await;
    assert_eq!(status, 200);
    assert!(content["id"].is_i64());
    assert_eq!(content["size"], "5");
    // `search` matches tags and description, never the file name (API.md §9.1).
    let (_, page) = env.get("/v0/enterprise/{eid}/content/?search=FILE").await;
    assert_eq!(page["count"], 0, "{page}");
    let id = content["id"].as_i64().unwrap();
    let one = format!("/v0/enterprise/{{eid}}/content/{id}/");
    let patch = env.http.patch(env.url(&one)).json(
        &json!({"description": "Weekly menu board", "tags": ["Menus", "north"], "name": "x"}),
    );
    let (status, patched) = env.send(patch).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(
        (&patched["name"], &patched["tags"][0]),
        (&json!("file.apk"), &json!("Menus")),
        "name is read-only"
    );
    for (q, n) in [
        ("weekly", 1),
        ("MENUS", 1),
        ("nort", 1),
        ("file", 0),
        ("apk", 0),
    ] {
        let (_, page) = env
            .get(&format!("/v0/enterprise/{{eid}}/content/?search={q}"))
            .await;
        assert_eq!(page["count"], n, "search={q}: {page}");
    }
    let bad = env
        .http
        .patch(env.url(&one))
        .json(&json!({"tags": "menus"}));
    assert_eq!(env.send(bad).await.0, 400);
    assert_eq!(env.get(&one).await.1["description"], "Weekly menu board");
    assert_eq!(env.send(env.http.delete(env.url(&one))).await.0, 204);
    assert_eq!(env.get(&one).await.0, 404);
    assert_eq!(env.server.stats().created.contents, 1);
}

#[tokio::test]
async fn group_patch_moves_devices() {
    let env = Env::start(MockConfig::new(12)).await;
    let lab = env.group_id("Lab");
    let device = env.device_ids()[0].clone();
    let path = format!("/enterprise/{{eid}}/devicegroup/{lab}/?action=add");
    let patch = env
        .http
        .patch(env.url(&path))
        .json(&json!({"device_ids": [device]}));
    let (status, group) = env.send(patch).await;
    assert_eq!(status, 200, "{group}");
    assert_eq!(group["device_count"], 3);
    assert!(group["parent"].as_str().unwrap().ends_with('/'));
    let (_, moved) = env
        .get(&format!("/enterprise/{{eid}}/device/?group={lab}"))
        .await;
    assert_eq!(moved["count"], 3);
    let (_, dev) = env
        .get(&format!("/enterprise/{{eid}}/device/{device}/"))
        .await;
    assert!(dev["groups"][0].as_str().unwrap().contains(&lab));

    let unknown = "00000000-0000-4000-8000-000000000000";
    let patch = env
        .http
        .patch(env.url(&path))
        .json(&json!({"device_ids": [unknown]}));
    let (status, err) = env.send(patch).await;
    assert_eq!(status, 400);
    assert!(
        err["errors"][0]
            .as_str()
            .unwrap()
            .starts_with("device_ids: ")
    );
}
