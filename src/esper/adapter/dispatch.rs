//! The executor's [`Dispatch`] over the client: one attempt of a task's write, decided
//! from what the read-back found, and command following (in [`super::follow`]).
//!
//! Every operation's write goes through here: alarm rules (looked up by name first, then
//! created, updated or left alone per `on_exists`), command requests, group moves, APK and
//! content uploads, and the raw `request` escape hatch. The read-backs themselves, and
//! which natural key each resource is found by, live in [`super::reconcile`]; retrying,
//! pacing and deciding what a failure means for the run are the executor's.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{fail, follow, reconcile};
use crate::base::FailureClass;
use crate::esper::Client;
use crate::exec::{AttemptCx, Dispatch, Done, Failure, Followed};
use crate::job::OnExists;
use crate::plan::{Action, Operation, Task};

/// How command tracking polls.
#[derive(Debug, Clone)]
pub struct PollSettings {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for PollSettings {
    fn default() -> Self {
        PollSettings {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(30),
        }
    }
}

/// Runs plan operations against Esper.
pub struct EsperDispatch {
    pub client: Client,
    pub poll: PollSettings,
    /// Where exports go and since when `since: last_run` reads.
    pub exports: super::export::ExportEnv,
    /// App versions by id, for install verification.
    versions: super::verify::VersionIndex,
}

impl EsperDispatch {
    pub fn new(client: Client, poll: PollSettings) -> Arc<EsperDispatch> {
        Self::with_exports(client, poll, Default::default())
    }

    pub fn with_exports(
        client: Client,
        poll: PollSettings,
        exports: super::export::ExportEnv,
    ) -> Arc<EsperDispatch> {
        Arc::new(EsperDispatch {
            client,
            poll,
            exports,
            versions: Default::default(),
        })
    }

    async fn alarm_rule(
        &self,
        name: &str,
        body: &Value,
        on_exists: OnExists,
        action: Option<&Action>,
        cx: &AttemptCx,
    ) -> Result<Done, Failure> {
        // The plan's snapshot decided it: no read first. After an ambiguous failure (or on
        // a resume) the snapshot may be out of date, so the rule is read back by name.
        if !cx.uncertain
            && let Some(a) = action
            && let Some(done) = self.planned_rule(name, body, a).await?
        {
            return Ok(done);
        }
        let found = reconcile::find_rule(&self.client, name)
            .await
            .map_err(fail)?;
        if let Some(rule) = found {
            let same = reconcile::rule_matches(&rule, body);
            if cx.uncertain && same {
                return Ok(done(
                    format!("alarm rule {} was created by an earlier attempt", rule.id),
                    rule_result(&rule.id, "created"),
                    true,
                ));
            }
            return match on_exists {
                OnExists::Skip => Ok(done(
                    format!("alarm rule {} exists; skipped", rule.id),
                    rule_result(&rule.id, "skipped"),
                    true,
                )),
                OnExists::Fail => Err(Failure {
                    hint: Some("set on_exists to `update` or `skip` to keep it".into()),
                    ..Failure::local(
                        FailureClass::Conflict,
                        format!(
                            "alarm rule `{name}` already exists (id {}) and on_exists is `fail`",
                            rule.id
                        ),
                    )
                }),
                OnExists::Update if same => Ok(done(
                    format!("alarm rule {} is up to date", rule.id),
                    rule_result(&rule.id, "unchanged"),
                    true,
                )),
                // PATCH, never PUT: a replace would wipe what the job does not manage
                // (a description, action emails, an operator's deactivation).
                OnExists::Update => {
                    let r = self
                        .client
                        .patch_alarm_rule(&rule.id, body)
                        .await
                        .map_err(fail)?;
                    Ok(done(
                        format!("updated alarm rule {}", r.id),
                        rule_result(&r.id, "updated"),
                        false,
                    ))
                }
            };
        }
        let r = self.client.create_alarm_rule(body).await.map_err(fail)?;
        Ok(done(
            format!("created alarm rule {}", r.id),
            rule_result(&r.id, "created"),
            false,
        ))
    }

    async fn command(&self, body: &Value, cx: &AttemptCx) -> Result<Done, Failure> {
        if cx.uncertain
            && let Some(found) = reconcile::find_command(&self.client, body, cx.task_started)
                .await
                .map_err(fail)?
        {
            return Ok(Done {
                summary: format!(
                    "command request {} was created by an earlier attempt",
                    found.id
                ),
                result: json!({"id": found.id, "command_id": found.id, "action": "created"}),
                follow: Some(found.id),
                reconciled: true,
            });
        }
        let r = self.client.create_command(body).await.map_err(fail)?;
        Ok(Done {
            summary: format!("created command request {}", r.id),
            result: json!({"id": r.id, "command_id": r.id, "action": "created"}),
            follow: Some(r.id),
            reconciled: false,
        })
    }

    /// Acts on the action the plan decided from its snapshot; `None` when it decided
    /// nothing (the rule is then read back by name, as without a snapshot).
    async fn planned_rule(
        &self,
        name: &str,
        body: &Value,
        action: &Action,
    ) -> Result<Option<Done>, Failure> {
        Ok(Some(match action {
            Action::Create => {
                let r = self.client.create_alarm_rule(body).await.map_err(fail)?;
                done(
                    format!("created alarm rule {}", r.id),
                    rule_result(&r.id, "created"),
                    false,
                )
            }
            Action::Update { id, .. } => {
                let r = self.client.patch_alarm_rule(id, body).await.map_err(fail)?;
                done(
                    format!("updated alarm rule {}", r.id),
                    rule_result(&r.id, "updated"),
                    false,
                )
            }
            Action::Unchanged { id } => done(
                format!("alarm rule {id} is up to date"),
                rule_result(id, "unchanged"),
                true,
            ),
            Action::Skip { id } => done(
                format!("alarm rule {id} exists; skipped"),
                rule_result(id, "skipped"),
                true,
            ),
            Action::Conflict { id } => {
                return Err(Failure {
                    hint: Some("set on_exists to `update` or `skip` to keep it".into()),
                    ..Failure::local(
                        FailureClass::Conflict,
                        format!(
                            "alarm rule `{name}` already exists (id {id}) and on_exists is `fail`"
                        ),
                    )
                });
            }
            Action::Send => return Ok(None),
        }))
    }

    /// Uploads an APK unless its package version already exists. The read-back comes
    /// first on every attempt, so an upload whose answer was lost is never repeated.
    async fn app_upload(
        &self,
        file: &str,
        package: Option<&str>,
        version_code: Option<&str>,
        action: Option<&Action>,
        cx: &AttemptCx,
    ) -> Result<Done, Failure> {
        let local = |m: String| Failure::local(FailureClass::Build, m);
        let (package, code) = match (package, version_code) {
            (Some(p), Some(c)) => (p.to_string(), c.to_string()),
            _ => {
                let path = std::path::PathBuf::from(file);
                let bytes = tokio::task::spawn_blocking(move || {
                    crate::util::read_input(&path, crate::util::MAX_APK_READ_BYTES)
                })
                .await
                .map_err(|e| local(format!("cannot read {file}: {e}")))?
                .map_err(|e| {
                    local(format!(
                        "cannot read {file}: {e}; give `package` and `version_code` in the step to upload it without reading it"
                    ))
                })?;
                let info = crate::apk::read(&bytes).map_err(|e| {
                    local(format!(
                        "{file}: {e}; give `package` and `version_code` in the step"
                    ))
                })?;
                (
                    package.map(str::to_string).unwrap_or(info.package),
                    version_code
                        .map(str::to_string)
                        .unwrap_or(info.version_code),
                )
            }
        };
        // Known absent at plan time: no read before the upload (a version that appeared
        // since is refused by Esper, not duplicated). After an ambiguous failure, or when
        // the plan did not know, it is read back first.
        let known_absent = !cx.uncertain && matches!(action, Some(Action::Create));
        if !known_absent
            && let Some((app, version)) = reconcile::find_app_version(&self.client, &package, &code)
                .await
                .map_err(fail)?
        {
            return Ok(done(
                format!("{package} {code} already exists (version {version})"),
                upload_result(&app, &version, &package, &code, "exists"),
                true,
            ));
        }
        let app = self
            .client
            .upload_app(std::path::Path::new(file))
            .await
            .map_err(fail)?;
        let version = app
            .versions
            .iter()
            .find(|v| v.version_code == code)
            .or(app.versions.first())
            .map(|v| v.id.clone())
            .ok_or_else(|| Failure {
                maybe_processed: true,
                ..Failure::local(
                    FailureClass::Decode,
                    format!("the upload of {file} answered without a version"),
                )
            })?;
        Ok(done(
            format!("uploaded {package} {code} (version {version})"),
            upload_result(&app.id, &version, &package, &code, "uploaded"),
            false,
        ))
    }

    /// Uploads a content file unless one with the same name and size exists.
    async fn content_upload(
        &self,
        file: &str,
        action: Option<&Action>,
        cx: &AttemptCx,
    ) -> Result<Done, Failure> {
        let path = std::path::Path::new(file);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| file.to_string());
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|e| Failure::local(FailureClass::Build, format!("cannot read {file}: {e}")))?
            .len();
        // Decided at plan time: no listing first, unless an ambiguous failure (or a resume)
        // means the plan's view may be out of date.
        let planned = if cx.uncertain { None } else { action };
        if let Some(Action::Unchanged { id }) = planned {
            return Ok(done(
                format!("{name} already exists (content {id})"),
                json!({"content_id": id, "action": "exists"}),
                true,
            ));
        }
        if !matches!(planned, Some(Action::Create))
            && let Some(c) = reconcile::find_content(&self.client, &name, size)
                .await
                .map_err(fail)?
        {
            return Ok(done(
                format!("{name} already exists (content {})", c.id),
                json!({"content_id": c.id, "action": "exists"}),
                true,
            ));
        }
        let c = self.client.upload_content(path).await.map_err(fail)?;
        Ok(done(
            format!("uploaded {name} (content {})", c.id),
            json!({"content_id": c.id, "action": "uploaded"}),
            false,
        ))
    }
}

fn rule_result(id: &str, action: &str) -> Value {
    json!({"id": id, "rule_id": id, "action": action})
}

fn done(summary: String, result: Value, reconciled: bool) -> Done {
    Done {
        summary,
        result,
        follow: None,
        reconciled,
    }
}

fn upload_result(app: &str, version: &str, package: &str, code: &str, action: &str) -> Value {
    json!({"version_id": version, "application_id": app, "package": package, "version_code": code, "action": action})
}

impl Dispatch for EsperDispatch {
    fn stop(&self) {
        self.client.close();
    }

    fn attempt<'a>(
        &'a self,
        task: &'a Task,
        cx: &'a AttemptCx,
    ) -> BoxFuture<'a, Result<Done, Failure>> {
        async move {
            match &task.op {
                Operation::Command { body, .. } => self.command(body, cx).await,
                Operation::AlarmRule { name, body, on_exists } => self.alarm_rule(name, body, *on_exists, task.action.as_ref(), cx).await,
                Operation::GroupMove { group_id, device_ids } => {
                    if !cx.uncertain && matches!(task.action, Some(Action::Unchanged { .. })) {
                        return Ok(done(format!("{} devices are in the group already", device_ids.len()), json!({"moved": 0, "group": group_id, "action": "unchanged"}), true));
                    }
                    // Adding a device to the group it is already in changes nothing, so a
                    // retry after an unknown outcome is safe.
                    self.client.move_devices(group_id, device_ids, "add").await.map_err(fail)?;
                    Ok(done(format!("moved {} devices", device_ids.len()), json!({"moved": device_ids.len(), "group": group_id}), false))
                }
                Operation::AppUpload { file, package, version_code } => self.app_upload(file, package.as_deref(), version_code.as_deref(), task.action.as_ref(), cx).await,
                Operation::ContentUpload { file } => self.content_upload(file, task.action.as_ref(), cx).await,
                Operation::Export { step, plan } => super::export::export(&self.client, &self.exports, step, plan, cx.task_started).await,
                Operation::Request { method, path, query, body } => {
                    if cx.uncertain && method.eq_ignore_ascii_case("POST") {
                        return Err(Failure {
                            maybe_processed: true,
                            ..Failure::local(FailureClass::Conflict, format!("the outcome of POST {path} is unknown and a raw request cannot be read back; not sending it again"))
                        });
                    }
                    let q: Vec<(String, String)> = query.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                    let r = self.client.raw(method, path, &q, body.clone()).await.map_err(fail)?;
                    Ok(done(format!("{method} {path} answered {}", r.status), json!({"status": r.status, "body": r.body}), false))
                }
            }
        }
        .boxed()
    }

    fn follow<'a>(
        &'a self,
        _task: &'a Task,
        id: &'a str,
        timeout: Duration,
        stop: &'a CancellationToken,
    ) -> BoxFuture<'a, Followed> {
        follow::follow(&self.client, &self.poll, id, timeout, stop).boxed()
    }

    fn verify_install<'a>(
        &'a self,
        task: &'a Task,
        followed: &'a Followed,
    ) -> BoxFuture<'a, Option<crate::exec::InstallCheck>> {
        super::verify::verify_install(&self.client, &self.versions, task, followed).boxed()
    }
}
