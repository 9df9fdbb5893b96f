//! What `esper-bulk coordinator status` shows: the shared bucket, the shared pause, who
//! holds run locks and which processes were seen in the last minute, for one tenant and
//! enterprise. It only reads Redis (one script for the bucket, pause and processes, then a
//! `SCAN` of the lock keys); printing it is the CLI's.

use serde::Serialize;

use super::{CoordError, Coordinator, lease, scripts};

/// A run lock's holder.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LockHolder {
    pub job: String,
    pub run_id: String,
    pub host: String,
    pub pid: u32,
    pub started: String,
    /// The lease's fencing token.
    pub token: i64,
    /// Milliseconds before the lease expires without renewal.
    pub expires_in_ms: i64,
}

/// A process seen in the last minute.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Process {
    pub run_id: String,
    pub job: String,
    pub host: String,
    pub pid: u32,
    /// The shared rate it draws from, requests per second.
    pub rate: f64,
}

/// The coordinator's state for one tenant and enterprise.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    pub url: String,
    /// The key prefix (`esper-bulk:{tenant}:{enterprise}`).
    pub scope: String,
    /// How far ahead the shared bucket is booked, in milliseconds (0: permits available).
    pub bucket_booked_ms: u64,
    /// Milliseconds left of a shared pause (0: none).
    pub paused_ms: u64,
    pub locks: Vec<LockHolder>,
    pub processes: Vec<Process>,
}

/// Reads the state of `coord`'s scope.
pub async fn status(coord: &Coordinator) -> Result<Status, CoordError> {
    let unreachable = |reason: String| CoordError::Unreachable {
        url: coord.url().to_string(),
        reason,
    };
    let keys = [coord.key("bucket"), coord.key("pause"), coord.key("procs")];
    let out: Vec<String> = coord
        .invoke(&redis::Script::new(&scripts::status()), &keys, &[])
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let num = |i: usize| {
        out.get(i)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let now = num(0);
    let ahead_ms = |t: f64| ((t - now) / 1000.0).max(0.0) as u64;
    let processes = out
        .iter()
        .skip(3)
        .filter_map(|m| {
            let v: serde_json::Value = serde_json::from_str(m).ok()?;
            Some(Process {
                run_id: v["run_id"].as_str()?.to_string(),
                job: v["job"].as_str()?.to_string(),
                host: v["host"].as_str()?.to_string(),
                pid: v["pid"].as_u64()? as u32,
                rate: v["rate"].as_f64().unwrap_or(0.0),
            })
        })
        .collect();
    let mut conn = coord.conn.clone();
    let pattern = coord.key("lock:*");
    let mut names: Vec<String> = Vec::new();
    let mut cursor: u64 = 0;
    // Bounded: a scope holds a few locks; a thousand rounds would be a broken server.
    for _ in 0..1000 {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(200)
            .query_async(&mut conn)
            .await
            .map_err(|e| unreachable(e.to_string().to_lowercase()))?;
        names.extend(batch);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    names.sort();
    let mut locks = Vec::new();
    for name in names {
        let Some(value) = coord.get(&name).await else {
            continue;
        };
        let Some((token, h)) = lease::parse_value(&value) else {
            continue;
        };
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&name)
            .query_async(&mut conn)
            .await
            .unwrap_or(-2);
        locks.push(LockHolder {
            job: h.job,
            run_id: h.run_id,
            host: h.host,
            pid: h.pid,
            started: h.started,
            token,
            expires_in_ms: ttl,
        });
    }
    Ok(Status {
        url: coord.url().to_string(),
        scope: coord.prefix.clone(),
        bucket_booked_ms: ahead_ms(num(1)),
        paused_ms: ahead_ms(num(2)),
        locks,
        processes,
    })
}
