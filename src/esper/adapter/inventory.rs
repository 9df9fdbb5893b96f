//! The planner's [`Inventory`] over the client: groups (with paths below the root group),
//! devices by ids, serials (looked up or scanned, see [`super::serials`]) or filters, app
//! versions and every alarm rule (the live state a plan diffs against). Each listing page is
//! retried alone on transient errors (a [`page_retry`] client), since plans are made of
//! reads and one 502 must neither sink a plan nor make it read every page again.
//!
//! [`PlanReads`] retries as the job's `retry:` settings say (attempts, delays, the longest
//! `Retry-After` honoured), the same settings its tasks get; `Client` itself is an
//! inventory with the default settings. Answers no retry can change (a listing that is not
//! a page, links that circle) fail at once. The run bounds the whole of planning by the
//! job's deadline.
//!
//! A device selector of a group, a serial or `online`/`offline` is counted first (one
//! small read of the legacy list): up to [`V2_ABOVE`] devices it is listed there in pages
//! of 100, above it in `/v2/devices/` cursor pages of 1,000 under the listing's own budget
//! (`limits.device_list_rate`), each page turned into items as it arrives.
//!
//! It reads only. Turning what it returns into targets, and complaining about selections
//! that match nothing, is the planner's; the version lookup itself is shared with the
//! upload read-back in [`super::reconcile`].

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, TryStreamExt};

use super::reconcile::find_app_version;
use super::serials;
use crate::base::Endpoint;
use crate::esper::PageStyle;
use crate::esper::model::{AlarmRule, Content, Device, DeviceGroup};
use crate::esper::{ApiError, Client, DeviceFilter};
use crate::exec::Failure;
use crate::job::{DeviceSelector, RetrySettings};
use crate::plan::{
    GroupInfo, Inventory, InventoryError, Item, ItemKind, LiveContent, LiveRule, PackageVersion,
    SerialMethod,
};

/// Above this many devices a target is listed in `/v2/devices/` cursor pages of 1,000
/// rather than legacy pages of 100: 20 legacy pages cost more than the few paced v2 ones.
pub(super) const V2_ABOVE: u64 = 2000;

/// The root group Esper puts every group under; paths in job files are written below it.
const ROOT_GROUP: &str = "All devices";

fn inv_err(e: ApiError) -> InventoryError {
    if let Some(a) = e.access() {
        return InventoryError::Access(a);
    }
    // The inventory error is one line of text, so the hint goes inline.
    InventoryError::Read(format!(
        "reading targets failed: {}",
        crate::base::one_line(&e)
    ))
}

/// Retries an idempotent single read on 429,
/// 5xx and network errors, with the job's backoff: `retry.attempts` in all, exponential
/// steps from `initial_delay` to `max_delay` with jitter, and at least a server's
/// `Retry-After` up to `max_retry_after`.
pub(super) async fn read_retrying<T, F, Fut>(
    retry: &RetrySettings,
    what: F,
) -> Result<T, InventoryError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    retry_read(retry, what).await.map_err(inv_err)
}

/// The per-page retry of a planning client: the job's `retry:` settings applied to each
/// page alone, so a 502 on page 12 costs one more request, not eleven.
pub(super) fn page_retry(retry: &RetrySettings) -> crate::esper::PageRetry {
    crate::esper::PageRetry {
        backoff: backoff(retry),
        when: std::sync::Arc::new(|e: &ApiError| Failure::from(e).retryable()),
        max_retry_after: retry.max_retry_after,
    }
}

fn backoff(retry: &RetrySettings) -> backon::ExponentialBuilder {
    backon::ExponentialBuilder::default()
        .with_min_delay(retry.initial_delay)
        .with_max_delay(retry.max_delay)
        .with_factor(2.0)
        .with_max_times(retry.attempts.saturating_sub(1) as usize)
        .with_jitter()
}

/// A whole listing through a [`page_retry`] client: its pages retried themselves, so the
/// listing is not started again.
pub(super) async fn listed<T>(
    listing: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, InventoryError> {
    listing.await.map_err(inv_err)
}

/// [`read_retrying`] for callers that keep the client's error.
pub(super) async fn retry_read<T, F, Fut>(retry: &RetrySettings, what: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    use backon::Retryable;
    let backoff = backoff(retry);
    let cap = retry.max_retry_after;
    what.retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|e: &ApiError| Failure::from(e).retryable())
        .adjust(|e: &ApiError, d| d.map(|d| d.max(e.retry_after().unwrap_or_default().min(cap))))
        .notify(|e: &ApiError, d: Duration| tracing::warn!(error = %e, wait_ms = d.as_millis() as u64, "read failed; retrying"))
        .await
}

/// The planner's reads, retried as a job's `retry:` settings say.
#[derive(Debug, Clone)]
pub struct PlanReads {
    /// Retries each failed listing page alone (see [`page_retry`]).
    client: Client,
    retry: RetrySettings,
    /// The groups of every device listed so far (device id → group ids): the live state
    /// a `group_move` is decided against, kept from the listings targets needed anyway.
    members: std::sync::Arc<std::sync::Mutex<BTreeMap<String, Vec<String>>>>,
    /// Told before a paced `/v2/devices/` listing starts what it will cost, with the
    /// listing's budget (pages a second): minutes at the default, said before waiting them.
    before_listing: Option<(f64, ListingNote)>,
}

/// Where [`PlanReads`] says what a paced listing will cost before it starts.
#[derive(Clone)]
pub struct ListingNote(pub std::sync::Arc<dyn Fn(String) + Send + Sync>);

impl std::fmt::Debug for ListingNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ListingNote")
    }
}

impl PlanReads {
    pub fn new(client: &Client, retry: &RetrySettings) -> PlanReads {
        PlanReads {
            client: client.clone().with_page_retry(page_retry(retry)),
            retry: retry.clone(),
            members: Default::default(),
            before_listing: None,
        }
    }

    /// The same reads, telling `note` what each paced `/v2/devices/` listing will cost
    /// under `list_rate` (pages a second) before it starts.
    pub fn with_listing_note(mut self, list_rate: f64, note: ListingNote) -> PlanReads {
        self.before_listing = Some((list_rate, note));
        self
    }

    fn remember(&self, d: &Device) {
        let mut m = self.members.lock().unwrap_or_else(|e| e.into_inner());
        m.insert(
            d.id.clone(),
            d.groups.iter().map(|g| g.id.clone()).collect(),
        );
    }

    async fn groups(&self) -> Result<Vec<GroupInfo>, InventoryError> {
        let c = &self.client;
        let groups: Vec<DeviceGroup> = listed(c.list_groups(None).try_collect()).await?;
        Ok(groups
            .into_iter()
            .map(|g| {
                let path = g.path.clone().unwrap_or_else(|| g.name.clone());
                let path = path
                    .strip_prefix(&format!("{ROOT_GROUP}/"))
                    .map(str::to_string)
                    .unwrap_or(path);
                GroupInfo {
                    id: g.id,
                    name: g.name,
                    path,
                }
            })
            .collect())
    }

    async fn devices(&self, sel: &DeviceSelector) -> Result<Vec<Item>, InventoryError> {
        let (c, retry) = (&self.client, &self.retry);
        let to_item = |d: Device| {
            self.remember(&d);
            Item {
                kind: ItemKind::Device,
                id: d.id,
                name: d.name,
                detail: d.serial,
            }
        };
        if !sel.ids.is_empty() {
            let mut out = Vec::new();
            for id in &sel.ids {
                out.push(to_item(read_retrying(retry, || c.get_device(id)).await?));
            }
            return Ok(out);
        }
        if !sel.serials.is_empty()
            && let SerialMethod::Lookup { .. } = serials::method(&sel.serials)
        {
            let found = serials::look_up(c, &sel.serials).await?;
            return Ok(found.into_iter().map(to_item).collect());
        }
        if !sel.serials.is_empty() {
            // Many serials: one cursor scan of the fleet (1,000 a page) beats a request each.
            // Each page is reduced to the wanted devices' items as it arrives.
            let wanted: std::collections::BTreeSet<&str> =
                sel.serials.iter().map(String::as_str).collect();
            return listed(
                c.list_devices_v2(Vec::new())
                    .try_filter(|d| {
                        let keep = d.serial.as_deref().is_some_and(|s| wanted.contains(s));
                        async move { keep }
                    })
                    .map_ok(to_item)
                    .try_collect(),
            )
            .await;
        }
        let filter = device_filter(sel);
        if let Some(q) = v2_query(sel) {
            // A large fleet: cursor pages of 1,000 (the fewest requests under the listing's
            // own budget), each turned into items as it arrives, so pages of devices are
            // never kept. A small one stays on the legacy list, which has no budget of its
            // own: one count first tells them apart.
            let count = read_retrying(retry, || c.count_devices(&filter)).await?;
            if count > V2_ABOVE {
                if let Some((rate, note)) = &self.before_listing {
                    let (pages, took) =
                        crate::plan::listing_cost(count as usize, serials::SCAN_PAGE, *rate);
                    (note.0)(format!(
                        "listing {count} devices in {pages} pages of `/v2/devices/` ({} a \
                         page), paced at {} by limits.device_list_rate: about {took}",
                        serials::SCAN_PAGE,
                        crate::base::per_second(*rate)
                    ));
                }
                return listed(c.list_devices_v2(q).map_ok(to_item).try_collect()).await;
            }
        }
        listed(c.list_devices(&filter).map_ok(to_item).try_collect()).await
    }

    /// Every alarm rule, in one paged listing: the live state the plan diffs against.
    async fn alarm_rules(&self) -> Result<Option<Vec<LiveRule>>, InventoryError> {
        let c = &self.client;
        let rules: Vec<AlarmRule> = listed(c.list_alarm_rules(None).try_collect()).await?;
        Ok(Some(rules.into_iter().map(live_rule).collect()))
    }

    /// Every content file, in one paged listing.
    async fn contents(&self) -> Result<Option<Vec<LiveContent>>, InventoryError> {
        let c = &self.client;
        let all: Vec<Content> = listed(c.list_content(None).try_collect()).await?;
        Ok(Some(
            all.into_iter()
                .map(|x| LiveContent {
                    size: super::reconcile::content_size(&x),
                    id: x.id,
                    name: x.name.unwrap_or_default(),
                })
                .collect(),
        ))
    }

    async fn app_version(
        &self,
        package: &str,
        version_code: &str,
    ) -> Result<Option<String>, InventoryError> {
        Ok(
            listed(find_app_version(&self.client, package, version_code))
                .await?
                .map(|(_, v)| v),
        )
    }
}

/// A rule as read, as the planner compares it: every field, expanded objects included
/// (the comparison reduces them to ids).
pub(super) fn live_rule(r: AlarmRule) -> LiveRule {
    let fields = match serde_json::to_value(&r) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    LiveRule {
        id: r.id,
        name: r.name,
        fields,
    }
}

impl Inventory for PlanReads {
    fn groups(&self) -> BoxFuture<'_, Result<Vec<GroupInfo>, InventoryError>> {
        PlanReads::groups(self).boxed()
    }

    fn devices<'a>(
        &'a self,
        sel: &'a DeviceSelector,
    ) -> BoxFuture<'a, Result<Vec<Item>, InventoryError>> {
        PlanReads::devices(self, sel).boxed()
    }

    fn app_version<'a>(
        &'a self,
        package: &'a str,
        version_code: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, InventoryError>> {
        PlanReads::app_version(self, package, version_code).boxed()
    }

    fn alarm_rules(&self) -> BoxFuture<'_, Result<Option<Vec<LiveRule>>, InventoryError>> {
        PlanReads::alarm_rules(self).boxed()
    }

    fn contents(&self) -> BoxFuture<'_, Result<Option<Vec<LiveContent>>, InventoryError>> {
        PlanReads::contents(self).boxed()
    }

    fn memberships(&self) -> Option<BTreeMap<String, Vec<String>>> {
        Some(
            self.members
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }

    fn serial_method(&self, serials: &[String]) -> Option<SerialMethod> {
        Some(serials::method(serials))
    }

    fn listing_page(&self, sel: &DeviceSelector, found: usize) -> Option<usize> {
        v2_query(sel)
            .filter(|_| found as u64 > V2_ABOVE)
            .map(|_| serials::SCAN_PAGE)
    }

    fn device_count<'a>(
        &'a self,
        sel: &'a DeviceSelector,
    ) -> BoxFuture<'a, Result<Option<u64>, InventoryError>> {
        async move {
            if !sel.ids.is_empty() || !sel.serials.is_empty() {
                // A scan of the whole fleet for the listed devices.
                let all = DeviceSelector::default();
                let f = device_filter(&all);
                return read_retrying(&self.retry, || self.client.count_devices(&f))
                    .await
                    .map(Some);
            }
            let f = device_filter(sel);
            read_retrying(&self.retry, || self.client.count_devices(&f))
                .await
                .map(Some)
        }
        .boxed()
    }

    fn package_versions<'a>(
        &'a self,
        package: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<PackageVersion>>, InventoryError>> {
        async move {
            let c = &self.client;
            let apps: Vec<serde_json::Value> = listed(
                c.list_values(
                    Endpoint::ListApps,
                    None,
                    vec![("package_name".into(), package.into())],
                    PageStyle::Drf,
                )
                .try_collect(),
            )
            .await?;
            let mut out = Vec::new();
            // `package_name` matches loosely: only the exact package counts.
            for app in apps
                .iter()
                .filter(|a| a.get("package_name").and_then(|p| p.as_str()) == Some(package))
            {
                let app_id = app.get("id").and_then(|v| v.as_str()).unwrap_or_default();
                let versions: Vec<serde_json::Value> = listed(
                    c.list_values(
                        Endpoint::ListAppVersions,
                        Some(app_id),
                        Vec::new(),
                        PageStyle::Drf,
                    )
                    .try_collect(),
                )
                .await?;
                let s = |v: &serde_json::Value, k: &str| {
                    v.get(k).and_then(|x| x.as_str()).map(str::to_string)
                };
                out.extend(versions.iter().map(|v| {
                    PackageVersion {
                        id: s(v, "id").unwrap_or_default(),
                        app_id: app_id.to_string(),
                        version_code: s(v, "version_code").unwrap_or_default(),
                        version_name: s(v, "version_name"),
                        installed: v
                            .get("installed_count")
                            .and_then(|n| n.as_u64())
                            .unwrap_or(0),
                    }
                }));
            }
            Ok(Some(out))
        }
        .boxed()
    }
}

/// The `/v2/devices/` query for a selector the cursor listing can answer exactly: a group
/// (`group_multi`, subgroups included, as the legacy `group`), a serial and `online` or
/// `offline`. Names and tags (v2 matches tag ids, not text) and numeric states stay on
/// the legacy list (`None`).
pub(super) fn v2_query(sel: &DeviceSelector) -> Option<Vec<(String, String)>> {
    if sel.name.is_some() || sel.tags.is_some() || !sel.ids.is_empty() {
        return None;
    }
    let mut q = Vec::new();
    if let Some(g) = &sel.group {
        q.push(("group_multi".to_string(), g.clone()));
    }
    if let Some(s) = &sel.serial {
        q.push(("serial".to_string(), s.clone()));
    }
    if let Some(state) = &sel.state {
        match state.to_ascii_lowercase().as_str() {
            "online" => q.push(("state".into(), "ONLINE".into())),
            "offline" => q.push(("state".into(), "OFFLINE".into())),
            _ => return None,
        }
    }
    Some(q)
}

/// The legacy device list's filter for a selector (`group` an id; states by name).
pub(super) fn device_filter(sel: &DeviceSelector) -> DeviceFilter {
    DeviceFilter {
        group: sel.group.clone(),
        name: sel.name.clone(),
        serial: sel.serial.clone(),
        state: sel
            .state
            .as_deref()
            .map(|s| match s.to_ascii_lowercase().as_str() {
                "online" => "1".to_string(),
                "offline" => "60".to_string(),
                other => other.to_string(),
            }),
        tags: sel.tags.clone(),
    }
}

/// The client as an inventory, retrying with the default `retry:` settings.
impl Inventory for Client {
    fn device_count<'a>(
        &'a self,
        sel: &'a DeviceSelector,
    ) -> BoxFuture<'a, Result<Option<u64>, InventoryError>> {
        async move {
            PlanReads::new(self, &RetrySettings::default())
                .device_count(sel)
                .await
        }
        .boxed()
    }

    fn package_versions<'a>(
        &'a self,
        package: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<PackageVersion>>, InventoryError>> {
        async move {
            PlanReads::new(self, &RetrySettings::default())
                .package_versions(package)
                .await
        }
        .boxed()
    }

    fn groups(&self) -> BoxFuture<'_, Result<Vec<GroupInfo>, InventoryError>> {
        async move {
            PlanReads::new(self, &RetrySettings::default())
                .groups()
                .await
        }
        .boxed()
    }

    fn devices<'a>(
        &'a self,
        sel: &'a DeviceSelector,
    ) -> BoxFuture<'a, Result<Vec<Item>, InventoryError>> {
        async move {
            PlanReads::new(self, &RetrySettings::default())
                .devices(sel)
                .await
        }
        .boxed()
    }

    fn app_version<'a>(
        &'a self,
        package: &'a str,
        version_code: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, InventoryError>> {
        async move {
            PlanReads::new(self, &RetrySettings::default())
                .app_version(package, version_code)
                .await
        }
        .boxed()
    }

    fn alarm_rules(&self) -> BoxFuture<'_, Result<Option<Vec<LiveRule>>, InventoryError>> {
        async move {
            PlanReads::new(self, &RetrySettings::default())
                .alarm_rules()
                .await
        }
        .boxed()
    }

    fn listing_page(&self, sel: &DeviceSelector, found: usize) -> Option<usize> {
        v2_query(sel)
            .filter(|_| found as u64 > V2_ABOVE)
            .map(|_| serials::SCAN_PAGE)
    }

    fn serial_method(&self, serials: &[String]) -> Option<SerialMethod> {
        Some(serials::method(serials))
    }
}
