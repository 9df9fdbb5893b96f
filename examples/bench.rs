//! Benchmarks, run as `cargo run --release --example bench -- <what>`. They print figures
//! and never assert on time (tests do not time things; this does).
//!
//! - `plan`: validate and plan a job that fans out to 1,000,000 tasks (2,000 groups x 500
//!   devices, an in-memory inventory), materialize every task, and report time and peak
//!   memory.

use std::time::Instant;

use esper_bulk::job::{self, DeviceSelector};
use esper_bulk::plan::{self, GroupInfo, Inventory, InventoryError, Item, ItemKind, Server};
use futures::FutureExt;
use futures::future::BoxFuture;

const GROUPS: usize = 2_000;
const PER_GROUP: usize = 500;

/// A fleet held in memory: 2,000 store groups of 500 devices.
struct Fleet;

impl Inventory for Fleet {
    fn groups(&self) -> BoxFuture<'_, Result<Vec<GroupInfo>, InventoryError>> {
        async move {
            let mut g = vec![GroupInfo {
                id: "root-stores".into(),
                name: "Stores".into(),
                path: "Stores".into(),
            }];
            g.extend((0..GROUPS).map(|i| GroupInfo {
                id: format!("00000000-0000-4000-8000-{i:012}"),
                name: format!("{i:04}"),
                path: format!("Stores/Region{}/{i:04}", i % 8),
            }));
            Ok(g)
        }
        .boxed()
    }
    fn devices<'a>(
        &'a self,
        _f: &'a DeviceSelector,
    ) -> BoxFuture<'a, Result<Vec<Item>, InventoryError>> {
        async move {
            Ok((0..GROUPS * PER_GROUP)
                .map(|i| Item {
                    kind: ItemKind::Device,
                    id: format!("d0000000-0000-4000-8000-{i:012}"),
                    name: format!("ACME-{:04}-{:03}", i / PER_GROUP, i % PER_GROUP),
                    detail: Some(format!("R58M{i:08X}")),
                })
                .collect())
        }
        .boxed()
    }
    fn app_version<'a>(
        &'a self,
        _p: &'a str,
        _c: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, InventoryError>> {
        async move { Ok(Some("e1f2a3b4-c5d6-4e7f-8091-a2b3c4d5e6f7".into())) }.boxed()
    }
}

const JOB: &str = r#"
version: 1
name: million
esper: { api_key: "${ESPER_API_KEY}" }
limits: { rate: 200/s }
targets:
  stores: { groups: { name: "Stores/*/*" } }
  fleet: { devices: { group: Stores } }
steps:
  - id: install
    app_install: { to: stores, package: com.acme.kiosk, version_code: 420 }
  - id: tag-every-device
    needs: [install]
    for_each: fleet
    rollout: { stages: [1, 1%, 10%, 100%], max_failures: 1% }
    request:
      method: PATCH
      path: "/enterprise/{enterprise_id}/device/${{ item.id }}/"
      body: { alias_name: "${{ item.name }}", tags: ["migrated", "${{ item.serial }}"] }
"#;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

async fn bench_plan() {
    let started = Instant::now();
    let env = |n: &str| (n == "ESPER_API_KEY").then(|| "k".to_string());
    let (job, _) =
        job::load("million.yaml", JOB, &job::Host::env_only(&env)).expect("the bench job is valid");
    let loaded = started.elapsed();
    let resolved = plan::resolve(&job, &Fleet).await.expect("targets resolve");
    let resolved_at = started.elapsed();
    let server = Server {
        base_url: "https://acme-api.esper.cloud/api".into(),
        enterprise_id: "6ec3e3a2-0b3a-4c8e-9a7e-6a1d0d5b2f10".into(),
    };
    let p = plan::compile(&job, &resolved, server).expect("plan compiles");
    let compiled = started.elapsed();
    let mut bytes = 0usize;
    let mut writes = 0usize;
    for id in p.task_ids() {
        let t = p.task(id).expect("task exists");
        for w in t.op.writes(&p.server.enterprise_id) {
            writes += 1;
            bytes += w.path.len() + w.body.to_string().len();
        }
    }
    let materialized = started.elapsed();
    let plan_json = serde_json::to_vec(&p).expect("plan serializes");
    let total = started.elapsed();
    println!("plan benchmark: {} groups x {} devices", GROUPS, PER_GROUP);
    println!("  tasks                     {:>12}", p.task_count);
    println!(
        "  validate                  {:>9.3} s",
        loaded.as_secs_f64()
    );
    println!(
        "  resolve targets (fake)    {:>9.3} s",
        (resolved_at - loaded).as_secs_f64()
    );
    println!(
        "  compile plan              {:>9.3} s",
        (compiled - resolved_at).as_secs_f64()
    );
    println!(
        "  materialize every task    {:>9.3} s  ({writes} writes, {:.1} MiB of request text)",
        (materialized - compiled).as_secs_f64(),
        bytes as f64 / 1048576.0
    );
    println!(
        "  plan file                 {:>9.1} MiB",
        plan_json.len() as f64 / 1048576.0
    );
    println!(
        "  total                     {:>9.3} s  (target < 5 s)",
        total.as_secs_f64()
    );
    println!(
        "  peak memory (VmHWM)       {:>9.1} MiB  (target < 1024 MiB)",
        peak_rss_mib()
    );
}

fn main() {
    let what = std::env::args().nth(1).unwrap_or_else(|| "plan".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match what.as_str() {
        "plan" => rt.block_on(bench_plan()),
        other => {
            eprintln!("unknown benchmark `{other}`; try: plan");
            std::process::exit(2);
        }
    }
}
