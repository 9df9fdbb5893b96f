//! The client follows the API exactly (issue #12): the read-backs and lookups ask Esper
//! only what its published API answers. Content is found by name and size over the whole
//! list (`search` matches tags and description, not names); a command read-back after an
//! ambiguous failure keeps its URL short; CSV serials are looked up one by one on the
//! legacy device list when there are few. Each test fails on the engine as it was before.

use esper_bulk::exec::TaskStatus;
use esper_bulk::mock::{MockServer, RequestRecord};
use serde_json::json;

use crate::support::{client, job_header, run_job, small, start};

fn content_job(server: &MockServer, file: &std::path::Path) -> String {
    format!(
        "{}steps:\n  - id: push\n    content_upload: {{ file: \"{}\" }}\n",
        job_header(server, "500/s"),
        file.display()
    )
}

#[tokio::test]
async fn content_is_found_by_name_and_size_over_the_whole_list() {
    let server = start(small(120)).await;
    let c = client(&server);
    let dir = tempfile::tempdir().unwrap();
    // More than a page (the client asks for 100) of other files first, so the earlier
    // upload is on the second page.
    for i in 0..101 {
        let f = dir.path().join(format!("other-{i:03}.txt"));
        std::fs::write(&f, format!("other {i}")).unwrap();
        c.upload_content(&f).await.unwrap();
    }
    std::fs::create_dir(dir.path().join("earlier")).unwrap();
    let earlier = dir.path().join("earlier").join("menu.pdf");
    std::fs::write(&earlier, b"%PDF menu week 47").unwrap();
    let first = c.upload_content(&earlier).await.unwrap();
    // As an operator would describe it; `search` finds that text, never the file name.
    let path = format!("/v0/enterprise/{{enterprise_id}}/content/{}/", first.id);
    c.raw(
        "PATCH",
        &path,
        &[],
        Some(json!({"description": "board, week 47", "tags": ["boards"]})),
    )
    .await
    .unwrap();
    let before = server.snapshot().contents.len();

    // The same name and size (other bytes): found, not uploaded again.
    let same = dir.path().join("menu.pdf");
    std::fs::write(&same, b"%PDF menu week 48").unwrap();
    let (_, report) = run_job(&server, &content_job(&server, &same)).await;
    let task = &report.tasks[0];
    assert_eq!(task.status, TaskStatus::Succeeded, "{}", report.summary_text());
    let result = task.result.as_ref().unwrap();
    assert_eq!(
        (&result["action"], &result["content_id"]),
        (&json!("exists"), &json!(first.id)),
        "{result}"
    );
    assert_eq!(server.snapshot().contents.len(), before, "no second upload");
    let lists: Vec<RequestRecord> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/content/"))
        .collect();
    assert!(lists.len() >= 2, "the list was read page by page: {lists:?}");
    assert!(
        lists.iter().all(|r| !r.query.contains("search=")),
        "the lookup does not rely on `search` matching the name: {lists:?}"
    );

    // The same name with another size is another file: uploaded.
    let bigger = dir.path().join("bigger");
    std::fs::create_dir(&bigger).unwrap();
    let other = bigger.join("menu.pdf");
    std::fs::write(&other, b"%PDF menu week 48, with prices").unwrap();
    let (_, report) = run_job(&server, &content_job(&server, &other)).await;
    let result = report.tasks[0].result.as_ref().unwrap();
    assert_eq!(result["action"], "uploaded", "{}", report.summary_text());
    assert_ne!(result["content_id"], json!(first.id));
    assert_eq!(server.snapshot().contents.len(), before + 1);
}
