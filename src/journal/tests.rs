//! Unit tests of the journal: writing and reading lines, torn tails, damaged and forged
//! lines left out with their line numbers, checksums, format 1 conversion and refusal of
//! formats from the future.

use std::path::{Path, PathBuf};

use super::*;
use crate::base::FailureClass;
use crate::exec::{
    Attempt, DeviceCounts, DeviceResult, DeviceState, Failure, Followed, GaveUp, Outcome, Reason,
    RolloutStop, Shortfall, StopReason, TaskStatus,
};
use crate::plan::TaskId;

fn outcome(t: u32, status: TaskStatus) -> OutcomeRecord {
    OutcomeRecord {
        task: t,
        status,
        attempts: vec![],
        reason: None,
        result: None,
        followed: None,
        started_ms: 0,
        finished_ms: 1,
    }
}

#[test]
fn round_trip_last_outcome_wins_and_torn_lines_are_tolerated() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("journal.jsonl");
    let mut j = Journal::open(&p).unwrap();
    j.append(&Entry::Start {
        format: JOURNAL_FORMAT,
        run_id: "r".into(),
        job: "j".into(),
        tasks: 3,
        at: "t".into(),
        resumed: false,
    })
    .unwrap();
    j.append(&Entry::Intent { task: 0 }).unwrap();
    j.append(&Entry::Intent { task: 2 }).unwrap();
    j.append(&Entry::Outcome(outcome(0, TaskStatus::Failed)))
        .unwrap();
    j.append(&Entry::Outcome(outcome(1, TaskStatus::Succeeded)))
        .unwrap();
    j.append(&Entry::Outcome(outcome(0, TaskStatus::Succeeded)))
        .unwrap();
    j.sync().unwrap();
    drop(j);
    // A crash mid-write leaves half a line.
    let mut f = OpenOptions::new().append(true).open(&p).unwrap();
    f.write_all(br#"{"entry":"outcome","task":2,"sta"#).unwrap();
    let r = read(&p).unwrap();
    assert!(r.torn);
    assert_eq!(r.starts, 1);
    assert_eq!(
        r.in_flight.iter().copied().collect::<Vec<_>>(),
        vec![2],
        "task 2 was in flight at the crash"
    );
    assert_eq!(
        r.succeeded().keys().copied().collect::<Vec<_>>(),
        vec![0, 1]
    );
    assert!(r.warnings.is_empty(), "a torn tail is not a warning");
}

/// Writes a run's start, three outcomes and a finish; returns the path and the lines.
fn sealed_journal(dir: &Path) -> (PathBuf, Vec<String>) {
    let p = dir.join("journal.jsonl");
    let mut j = Journal::open(&p).unwrap();
    j.append(&Entry::Start {
        format: JOURNAL_FORMAT,
        run_id: "r".into(),
        job: "j".into(),
        tasks: 3,
        at: "t".into(),
        resumed: false,
    })
    .unwrap();
    for t in 0..3 {
        j.append(&Entry::Outcome(outcome(t, TaskStatus::Succeeded)))
            .unwrap();
    }
    j.sync().unwrap();
    let text = std::fs::read_to_string(&p).unwrap();
    (p, text.lines().map(str::to_string).collect())
}

#[test]
fn lines_written_now_carry_a_checksum_of_the_rest_of_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let (p, lines) = sealed_journal(dir.path());
    for line in &lines {
        let (json, crc) = unseal(line).unwrap_or_else(|| panic!("sealed: {line}"));
        assert_eq!(crc, format!("{:08x}", crc32fast::hash(json.as_bytes())));
        assert!(serde_json::from_str::<Entry>(&json).is_ok(), "{json}");
        // Readers that know nothing of the checksum read the line as it is.
        assert!(serde_json::from_str::<Entry>(line).is_ok(), "{line}");
    }
    let r = read(&p).unwrap();
    assert_eq!((r.outcomes.len(), r.warnings.len()), (3, 0));
}

// See: #11 — one bad byte no longer drops the whole journal.
#[test]
fn damaged_lines_are_left_out_by_line_number_and_the_rest_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let (p, lines) = sealed_journal(dir.path());
    let mut bytes = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        match i {
            // Line 2: one byte that is not UTF-8.
            1 => bytes.extend_from_slice(&l.as_bytes()[..10]),
            _ => bytes.extend_from_slice(l.as_bytes()),
        }
        if i == 1 {
            bytes.push(0xff);
            bytes.extend_from_slice(&l.as_bytes()[10..]);
        }
        bytes.push(b'\n');
        if i == 2 {
            // Line 4: not JSON.
            bytes.extend_from_slice(b"not json\n");
        }
    }
    std::fs::write(&p, &bytes).unwrap();
    let r = read(&p).unwrap();
    assert_eq!(
        r.warnings,
        [
            LineWarning {
                line: 2,
                problem: LineProblem::NotUtf8
            },
            LineWarning {
                line: 4,
                problem: LineProblem::NotAnEntry("expected ident at line 1 column 2".into())
            }
        ]
    );
    assert_eq!(r.succeeded().keys().copied().collect::<Vec<_>>(), [1, 2]);
    assert!(!r.torn);
    assert_eq!(r.warnings[0].to_string(), "line 2: not valid UTF-8");
}

#[test]
fn forged_lines_fail_their_checksum_and_are_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let (p, mut lines) = sealed_journal(dir.path());
    // Task 0 said to have failed, its checksum left as it was.
    lines[1] = lines[1].replace("\"succeeded\"", "\"failed\"");
    // Task 1's checksum removed: its run writes checksums, so a line without one is forged.
    let (json, _) = unseal(&lines[2]).unwrap();
    lines[2] = json;
    // An extra line at the end, well-formed but for one digit of its checksum.
    let mut extra = seal(
        r#"{"entry":"outcome","task":2,"status":"failed","attempts":[],"started_ms":0,"finished_ms":1}"#,
    );
    let digit = extra.len() - 3;
    let flipped = if &extra[digit..digit + 1] == "0" {
        "1"
    } else {
        "0"
    };
    extra.replace_range(digit..digit + 1, flipped);
    lines.push(extra);
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    let r = read(&p).unwrap();
    let problems: Vec<(usize, LineProblem)> = r
        .warnings
        .iter()
        .map(|w| (w.line, w.problem.clone()))
        .collect();
    assert_eq!(
        problems,
        [
            (2, LineProblem::BadChecksum),
            (3, LineProblem::NoChecksum),
            (5, LineProblem::BadChecksum)
        ]
    );
    assert!(
        !r.torn,
        "a wrong checksum on the last line is not a torn write"
    );
    // Only task 2's own line is trusted.
    assert_eq!(r.outcomes.keys().copied().collect::<Vec<_>>(), [2]);
    assert_eq!(r.outcomes[&2].status, TaskStatus::Succeeded);
}

#[test]
fn lines_without_checksums_from_older_journals_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("journal.jsonl");
    std::fs::write(
        &p,
        concat!(
            r#"{"entry":"start","format":2,"run_id":"r","job":"j","tasks":2,"at":"t","resumed":false}"#,
            "\n",
            r#"{"entry":"outcome","task":0,"status":"succeeded","attempts":[],"started_ms":0,"finished_ms":1}"#,
            "\r\n\n",
            r#"{"entry":"outcome","task":1,"sta"#
        ),
    )
    .unwrap();
    let r = read(&p).unwrap();
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert!(r.torn);
    assert_eq!(r.succeeded().keys().copied().collect::<Vec<_>>(), [0]);
}

/// Every typed reason, failure and followed command survives the trip to disk and
/// back (except `Retry-After`, which is never recorded).
#[test]
fn records_round_trip_the_executor_types() {
    let failure = Failure {
        class: FailureClass::Auth,
        http_status: Some(401),
        esper_message: Some("invalid token".into()),
        hint: Some("check ESPER_API_KEY".into()),
        description: "GET /x/ answered 401".into(),
        retry_after: None,
        maybe_processed: false,
    };
    let counts = DeviceCounts {
        succeeded: 1,
        failed: 1,
        timed_out: 0,
        cancelled: 0,
        pending: 1,
    };
    let reasons = [
        Reason::Failed {
            failure: failure.clone(),
            gave_up: Some(GaveUp::Budget),
        },
        Reason::NeedsFailed(vec![
            Shortfall {
                step: "a".into(),
                not_succeeded: 2,
                item: None,
            },
            Shortfall {
                step: "b".into(),
                not_succeeded: 1,
                item: Some("Stores/North/0002".into()),
            },
        ]),
        Reason::RolloutStopped(RolloutStop {
            step: "r".into(),
            stage: 1,
            stages: 3,
            failed: 2,
            allowed: 1,
            total: 3,
        }),
        Reason::NotStarted(Some(StopReason::Deadline)),
        Reason::NotStarted(None),
        Reason::NotRecorded,
        Reason::Abandoned,
        Reason::DeviceFailures(counts),
        Reason::Interrupted {
            command: "c-1".into(),
            stopped: Some(StopReason::Interrupted),
        },
    ];
    for reason in reasons {
        let o = Outcome {
            task: TaskId(7),
            status: TaskStatus::Failed,
            attempts: vec![
                Attempt {
                    n: 1,
                    at_ms: 3,
                    took_ms: 4,
                    result: Err(failure.clone()),
                    wait_ms: Some(5),
                    note: None,
                },
                Attempt {
                    n: 2,
                    at_ms: 12,
                    took_ms: 4,
                    result: Ok(()),
                    wait_ms: None,
                    note: Some("found it".into()),
                },
            ],
            reason: Some(reason),
            result: Some(serde_json::json!({"id": "c1"})),
            followed: Some(Followed {
                command: "c1".into(),
                finished: false,
                counts: Some(counts),
                devices: vec![DeviceResult {
                    id: "d1".into(),
                    state: DeviceState::Failed,
                    reason: Some("disk full".into()),
                }],
                install: None,
            }),
            started_ms: 3,
            finished_ms: 20,
        };
        let line = serde_json::to_string(&Entry::Outcome((&o).into())).unwrap();
        let Entry::Outcome(back) = serde_json::from_str::<Entry>(&line).unwrap() else {
            panic!("not an outcome: {line}");
        };
        assert_eq!(Outcome::from(back), o, "{line}");
    }
}

/// Format 1 lines (string errors and attempt results) read as typed records, and a
/// run resumed by format 2 reads back whole.
#[test]
fn format_1_journals_still_read() {
    let v1 = [
        r#"{"entry":"start","format":1,"run_id":"r","job":"j","tasks":9,"at":"t","resumed":false}"#,
        r#"{"entry":"outcome","task":0,"status":"failed","attempts":[{"n":1,"at_ms":0,"took_ms":23,"result":"400","note":"POST /x/ answered 400: bad"}],"error":"POST /x/ answered 400: bad","started_ms":0,"finished_ms":23}"#,
        r#"{"entry":"outcome","task":1,"status":"skipped","attempts":[],"error":"skipped: needed step `a` (4 not succeeded), `b` (1 not succeeded) did not succeed","started_ms":25,"finished_ms":25}"#,
        r#"{"entry":"outcome","task":2,"status":"skipped","attempts":[],"error":"skipped: rollout of step `reboot` stopped after stage 1 of 3: 2 failures exceed max_failures 10% (1 of 12)","started_ms":25,"finished_ms":25}"#,
        r#"{"entry":"outcome","task":3,"status":"unknown","attempts":[{"n":1,"at_ms":0,"took_ms":5,"result":"timeout","wait_ms":9,"note":"POST /y/: timed out"},{"n":2,"at_ms":14,"took_ms":5,"result":"503","note":"POST /y/ answered 503: down"}],"error":"POST /y/ answered 503: down (gave up after 2 attempts); an earlier attempt may have been applied and no read-back confirmed it","started_ms":0,"finished_ms":19}"#,
        r#"{"entry":"outcome","task":4,"status":"failed","attempts":[{"n":1,"at_ms":0,"took_ms":5,"result":"ok"}],"error":"1 of 2 devices failed, 1 still pending","result":{"id":"c1","devices":{"command":"c1","finished":false,"counts":{"Command Failure":1,"Command Queued":1},"failed":[{"device":"d1","state":"Command Failure","reason":"disk full"}],"pending":["d2"]}},"started_ms":0,"finished_ms":9}"#,
        r#"{"entry":"outcome","task":5,"status":"not_started","attempts":[],"error":"not started: the deadline was reached; resume it to continue","started_ms":30,"finished_ms":30}"#,
        r#"{"entry":"outcome","task":6,"status":"unknown","attempts":[],"error":"abandoned while in flight: check the tenant before resuming","started_ms":30,"finished_ms":30}"#,
        r#"{"entry":"finish","started_at":"a","finished_at":"b","elapsed_ms":84,"stopped":"deadline","thresholds":["rollout of step `reboot` stopped after stage 1 of 3: 2 failures exceed max_failures 10% (1 of 12)"],"governor":{"requests":10,"by_status":{"200":1},"rate_limited":0,"window":20,"window_max":20,"window_min":20,"window_changes":0,"paused_ms":0,"timeline":[{"t":0,"requests":10,"rate_limited":0,"window":20}]}}"#,
    ];
    let v2 = Entry::Outcome(OutcomeRecord {
        task: 7,
        ..outcome(7, TaskStatus::Succeeded)
    });
    let start2 = Entry::Start {
        format: JOURNAL_FORMAT,
        run_id: "r".into(),
        job: "j".into(),
        tasks: 9,
        at: "t2".into(),
        resumed: true,
    };
    let mut text = v1.join("\n");
    for e in [start2, v2] {
        text.push('\n');
        text.push_str(&serde_json::to_string(&e).unwrap());
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("journal.jsonl");
    std::fs::write(&p, text).unwrap();
    let r = read(&p).unwrap();
    assert_eq!(r.starts, 2);
    let reason = |t: u32| r.outcomes[&t].reason.clone().unwrap();

    let Reason::Failed { failure, gave_up } = reason(0) else {
        panic!("{:?}", reason(0))
    };
    assert_eq!(failure.class, FailureClass::Unclassified);
    assert_eq!(failure.description, "POST /x/ answered 400: bad");
    assert_eq!(failure.http_status, Some(400), "from the last attempt");
    assert_eq!(gave_up, None);
    let attempt = &r.outcomes[&0].attempts[0];
    let f = attempt.result.as_ref().unwrap_err();
    assert_eq!(
        (f.http_status, f.description.as_str()),
        (Some(400), "POST /x/ answered 400: bad")
    );
    assert_eq!(attempt.note, None, "the note was the failure's message");

    assert_eq!(
        reason(1),
        Reason::NeedsFailed(vec![
            Shortfall {
                step: "a".into(),
                not_succeeded: 4,
                item: None,
            },
            Shortfall {
                step: "b".into(),
                not_succeeded: 1,
                item: None,
            },
        ])
    );
    let stop = RolloutStop {
        step: "reboot".into(),
        stage: 1,
        stages: 3,
        failed: 2,
        allowed: 1,
        total: 12,
    };
    assert_eq!(reason(2), Reason::RolloutStopped(stop.clone()));

    let Reason::Failed { failure, .. } = reason(3) else {
        panic!("{:?}", reason(3))
    };
    assert_eq!(
        failure.description, "POST /y/ answered 503: down (gave up after 2 attempts)",
        "the unknown suffix comes back from the status, not twice"
    );
    let first = r.outcomes[&3].attempts[0].result.as_ref().unwrap_err();
    assert_eq!(
        (first.class, first.http_status),
        (FailureClass::Timeout, None)
    );

    let o4 = &r.outcomes[&4];
    let counts = DeviceCounts {
        failed: 1,
        pending: 1,
        ..DeviceCounts::default()
    };
    assert_eq!(o4.reason, Some(Reason::DeviceFailures(counts)));
    assert_eq!(
        o4.result,
        Some(serde_json::json!({"id": "c1"})),
        "devices moved out"
    );
    let followed = o4.followed.as_ref().unwrap();
    assert_eq!(followed.counts, Some(counts));
    assert_eq!(
        followed.devices,
        vec![
            DeviceResult {
                id: "d1".into(),
                state: DeviceState::Failed,
                reason: Some("disk full".into())
            },
            DeviceResult {
                id: "d2".into(),
                state: DeviceState::Pending,
                reason: None
            },
        ]
    );

    assert_eq!(reason(5), Reason::NotStarted(Some(StopReason::Deadline)));
    assert_eq!(reason(6), Reason::Abandoned);
    assert_eq!(
        r.outcomes[&7].status,
        TaskStatus::Succeeded,
        "the format 2 part"
    );

    let finish = r.finish.unwrap();
    assert_eq!(finish.stopped, Some(StopReason::Deadline));
    assert_eq!(finish.rollout_stops, vec![StopRecord::from(&stop)]);
    assert_eq!(finish.governor.timeline.len(), 1);
}

#[test]
fn formats_from_the_future_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("journal.jsonl");
    std::fs::write(
        &p,
        r#"{"entry":"start","format":3,"run_id":"r","job":"j","tasks":1,"at":"t","resumed":false}"#,
    )
    .unwrap();
    let e = read(&p).unwrap_err();
    assert!(matches!(e, JournalError::Format { found: 3, .. }), "{e}");
    assert!(e.to_string().contains("reads formats 1 to 2"), "{e}");
    assert!(e.hint().is_some());
}
