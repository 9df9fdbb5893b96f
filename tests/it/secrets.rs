//! The API key must never appear in logs, errors, plans or reports.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use esper_bulk::mock::{Faults, RateLimit};
use futures::TryStreamExt;

use crate::support::{client_with_key, job_header, run_job, small, start};

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// A current-thread runtime keeps every task on this thread, under the capturing subscriber.
#[tokio::test]
async fn the_key_never_leaks() {
    let mut cfg = small(31);
    const KEY: &str = "sk-live-NEVER-PRINT-ME-0123456789abcdef";
    cfg.api_key = KEY.to_string();
    cfg.faults = Faults {
        rate_limit: Some(RateLimit {
            rate: 100.0,
            burst: 5,
            retry_after: true,
            penalty: Duration::ZERO,
        }),
        error_rate: 0.05,
        commit_then_fail_rate: 0.05,
        ..Faults::default()
    };
    let server = start(cfg).await;
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .json()
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // Other tests running in parallel may have cached "no interest" for callsites while no
    // subscriber was set; make every callsite ask again, or this capture sees too little.
    tracing::callsite::rebuild_interest_cache();

    let job = format!(
        "{}targets:\n  s: {{ groups: {{ name: \"Stores/*/*\" }} }}\nsteps:\n  - id: a\n    for_each: s\n    alarm_rule: {{ name: \"r ${{{{ item.name }}}}\", metric: m, conditions: {{ comparator: Frequency, value: 1, unit: Count }}, realert_interval: 60 }}\n",
        job_header(&server, "300/s")
    );
    let (plan, report) = run_job(&server, &job).await;
    assert!(report.summary.succeeded > 0);
    let mut texts = vec![
        serde_json::to_string(&plan).unwrap(),
        report.to_json(),
        report.summary_text(),
    ];

    // Error paths: a wrong key, a dead server, and Debug of every value holding the key.
    let wrong = client_with_key(&server, &format!("{KEY}-x"));
    let e = wrong
        .list_groups(None)
        .try_collect::<Vec<_>>()
        .await
        .unwrap_err();
    texts.push(e.to_string());
    texts.push(format!("{e:?}"));
    let right = client_with_key(&server, KEY);
    texts.push(format!("{right:?}"));
    texts.push(format!("{:?}", right.connection()));
    server.shutdown().await;
    let dead = right.get_group("x").await.unwrap_err();
    texts.push(dead.to_string());
    texts.push(format!("{dead:?}"));

    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.len() > 1000,
        "trace logs were captured ({} bytes)",
        logs.len()
    );
    texts.push(logs);
    for t in texts {
        assert!(
            !t.contains(KEY),
            "the API key leaked into: {}",
            &t[..t.len().min(300)]
        );
        assert!(!t.contains("NEVER-PRINT"), "part of the API key leaked");
    }
}
