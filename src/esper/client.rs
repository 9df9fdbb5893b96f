//! The HTTP client: connection settings, the secret API key, one attempt per call, and the
//! endpoints the engine uses.
//!
//! One `reqwest::Client` (rustls, connection pool) is built per process and shared by clones.
//! Every request goes through [`Throttle`] before it is sent and reports what came back, so
//! rate limiting and adaptation (owned by the executor) see every page, poll and read-back.
//! Retrying is not done here. Every path comes from the table in [`super::routes`]; a
//! request function names its [`Endpoint`] and never writes a path of its own. Sending one
//! request and reading its answer is [`super::transport`]'s; following a list's pages is
//! [`super::paginate`]'s.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::{ApiError, ErrorKind};
use super::model::*;
use super::page::PageStyle;
use super::routes;
use super::transport::Body;
use crate::base::{Endpoint, RequestKind, Throttle};

/// The API key. `Debug` and `Display` never show it; [`ApiKey::expose`] is called in exactly
/// one place, when the `Authorization` header is built, and [`ApiKey::scrub`] masks it in
/// text that came from a server (which may echo the header back).
#[derive(Clone)]
pub struct ApiKey(SecretString);

/// Keys shorter than this are only masked after `Bearer `: replacing every occurrence of a
/// few common characters would garble bodies and hide nothing. Real keys are far longer.
const MIN_SCRUBBED_KEY: usize = 8;

impl ApiKey {
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(SecretString::from(key.into()))
    }
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
    pub fn is_empty(&self) -> bool {
        self.0.expose_secret().trim().is_empty()
    }

    /// `text` with the key (and `Bearer <key>`) replaced by [`crate::base::mask`].
    pub fn scrub(&self, text: &str) -> String {
        String::from_utf8(self.scrub_bytes(text.as_bytes().to_vec()))
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// [`ApiKey::scrub`] over raw bytes (a response body before it is decoded); returns
    /// `bytes` itself when the key is not in it.
    pub fn scrub_bytes(&self, bytes: Vec<u8>) -> Vec<u8> {
        let key = self.0.expose_secret();
        if key.is_empty() {
            return bytes;
        }
        let masked = crate::base::mask(key);
        let bearer = format!("Bearer {key}");
        let bytes = replace_all(
            bytes,
            bearer.as_bytes(),
            format!("Bearer {masked}").as_bytes(),
        );
        if key.len() >= MIN_SCRUBBED_KEY {
            replace_all(bytes, key.as_bytes(), masked.as_bytes())
        } else {
            bytes
        }
    }
}

/// `hay` with every `needle` replaced by `with`, copied only when there is one.
fn replace_all(hay: Vec<u8>, needle: &[u8], with: &[u8]) -> Vec<u8> {
    let find = |from: usize| {
        hay.get(from..).and_then(|rest| {
            rest.windows(needle.len())
                .position(|w| w == needle)
                .map(|i| i + from)
        })
    };
    let Some(mut at) = find(0) else {
        return hay;
    };
    let mut out = Vec::with_capacity(hay.len());
    let mut from = 0;
    loop {
        out.extend_from_slice(&hay[from..at]);
        out.extend_from_slice(with);
        from = at + needle.len();
        match find(from) {
            Some(next) => at = next,
            None => break,
        }
    }
    out.extend_from_slice(&hay[from..]);
    out
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Where and as whom to talk to Esper.
#[derive(Clone, Debug)]
pub struct Connection {
    /// Base URL ending in `/api`, without trailing slash.
    pub base_url: String,
    pub enterprise_id: String,
    pub api_key: ApiKey,
}

impl Connection {
    pub fn new(base_url: &str, enterprise_id: &str, api_key: ApiKey) -> Connection {
        Connection {
            base_url: base_url.trim_end_matches('/').to_string(),
            enterprise_id: enterprise_id.to_string(),
            api_key,
        }
    }
}

/// Transport settings, overridable from the command line.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    /// Total time for one JSON request, from send to the last body byte.
    pub timeout: Duration,
    /// Total time for one upload; APKs can be large.
    pub upload_timeout: Duration,
    /// Extra CA certificates (PEM bundle) trusted on top of the system roots, for
    /// corporate TLS-intercepting proxies. Proxies themselves come from `HTTPS_PROXY`/`NO_PROXY`.
    pub ca_cert: Option<PathBuf>,
    /// The largest response body read, in bytes; a larger one fails the request (so a
    /// server cannot make the process hold more than this per request in flight).
    pub max_body: u64,
}

/// The default [`ClientOptions::max_body`]: 32 MiB, far above any page the engine asks for.
pub const DEFAULT_MAX_BODY: u64 = 32 * 1024 * 1024;

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(60),
            upload_timeout: Duration::from_secs(600),
            ca_cert: None,
            max_body: DEFAULT_MAX_BODY,
        }
    }
}

/// A size that is not one, for `--max-body`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a positive size; write e.g. 32MiB, 512KiB or 1048576")]
pub struct BadSize(pub String);

/// Parses a byte count: digits, then optionally `B`, `KiB`, `MiB` or `GiB` (any case,
/// spaces allowed). Zero is refused: every answer would fail.
pub fn parse_size(s: &str) -> Result<u64, BadSize> {
    let bad = || BadSize(s.to_string());
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..digits].parse().map_err(|_| bad())?;
    let unit = match t[digits..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    match n.checked_mul(unit) {
        Some(v) if v > 0 => Ok(v),
        _ => Err(bad()),
    }
}

/// A successful response of the raw escape hatch.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub body: Value,
}

/// The typed Esper client. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    pub(super) http: reqwest::Client,
    pub(super) conn: Arc<Connection>,
    pub(super) opts: Arc<ClientOptions>,
    pub(super) throttle: Option<Arc<dyn Throttle>>,
    /// How a listing retries one page that failed (none: the page's error ends it).
    pub(super) page_retry: Option<PageRetry>,
}

/// How a listing retries a page that failed transiently: that page again, at the same
/// link, after a backoff — never the listing from its first page, which would re-read
/// every page before it (and, for a fleet listing, minutes of paced pages).
#[derive(Clone)]
pub struct PageRetry {
    /// Delays between attempts of one page (their count bounds the attempts).
    pub backoff: backon::ExponentialBuilder,
    /// Which failures are worth another attempt.
    pub when: Arc<dyn Fn(&ApiError) -> bool + Send + Sync>,
    /// The longest `Retry-After` honoured; a longer one is cut to this.
    pub max_retry_after: Duration,
}

impl fmt::Debug for PageRetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PageRetry")
            .field("backoff", &self.backoff)
            .field("max_retry_after", &self.max_retry_after)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}

/// Filters for the legacy device list.
#[derive(Debug, Clone, Default)]
pub struct DeviceFilter {
    pub group: Option<String>,
    pub name: Option<String>,
    pub serial: Option<String>,
    pub state: Option<String>,
    pub tags: Option<String>,
}

/// Filters for listing command requests.
#[derive(Debug, Clone, Default)]
pub struct CommandFilter {
    pub devices: Vec<String>,
    pub groups: Vec<String>,
    pub command: Option<String>,
}

/// Page size for the lists the engine walks: large pages mean fewer rate permits.
const PAGE_SIZE: u32 = 100;
/// Page size for a command's per-device statuses: one page per 1,000-device chunk.
const STATUS_PAGE_SIZE: u32 = 1000;

impl Client {
    pub fn new(conn: Connection, opts: ClientOptions) -> Result<Client, ApiError> {
        let build_err = |msg: String| ApiError {
            method: "-".into(),
            path: "-".into(),
            kind: ErrorKind::Build(msg),
        };
        if !(conn.base_url.starts_with("http://") || conn.base_url.starts_with("https://")) {
            return Err(build_err(format!(
                "base URL `{}` must start with https:// (or http:// for a local mock)",
                conn.base_url
            )));
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("esper-bulk/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(opts.connect_timeout)
            // Esper does not redirect API calls; following one would send the key (and a
            // POST's body) wherever `Location` points. A 3xx is a failure instead.
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_keepalive(Duration::from_secs(30));
        if let Some(path) = &opts.ca_cert {
            let pem = std::fs::read(path)
                .map_err(|e| build_err(format!("cannot read CA bundle {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| build_err(format!("CA bundle {} is not PEM: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(build_err(format!(
                    "CA bundle {} holds no certificate",
                    path.display()
                )));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|e| build_err(e.without_url().to_string()))?;
        Ok(Client {
            http,
            conn: Arc::new(conn),
            opts: Arc::new(opts),
            throttle: None,
            page_retry: None,
        })
    }

    /// The same client with each listing page retried as `retry` says.
    pub fn with_page_retry(mut self, retry: PageRetry) -> Client {
        self.page_retry = Some(retry);
        self
    }

    /// The same client with every request passing through `throttle`.
    pub fn with_throttle(mut self, throttle: Arc<dyn Throttle>) -> Client {
        self.throttle = Some(throttle);
        self
    }

    /// Stops the throttle's gate: requests not yet sent fail with `ErrorKind::Stopped`.
    pub fn close(&self) {
        if let Some(t) = &self.throttle {
            t.close();
        }
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    fn eid(&self) -> &str {
        &self.conn.enterprise_id
    }

    pub(super) fn url(&self, path: &str) -> String {
        format!("{}{}", self.conn.base_url, path)
    }

    /// The method and path (below the base URL) of `endpoint` for this enterprise.
    pub(super) fn at(
        &self,
        endpoint: &Endpoint,
        id: Option<&str>,
    ) -> Result<(Method, String), ApiError> {
        let (method, _) = routes::route(endpoint);
        let path = routes::path(endpoint, self.eid(), id);
        // Only a raw request's method can be wrong: the table's are all valid.
        let m =
            Method::from_bytes(method.to_ascii_uppercase().as_bytes()).map_err(|_| ApiError {
                method: method.to_string(),
                path: path.clone(),
                kind: ErrorKind::Build(format!("`{method}` is not an HTTP method")),
            })?;
        Ok((m, path))
    }

    /// [`Client::json`] at an endpoint.
    async fn call<T: DeserializeOwned>(
        &self,
        kind: RequestKind,
        endpoint: Endpoint,
        id: Option<&str>,
        query: &[(String, String)],
        body: Body,
    ) -> Result<T, ApiError> {
        let (method, path) = self.at(&endpoint, id)?;
        self.json(kind, method, &path, query, body).await
    }

    /// `{code, message, content}` responses: returns `content`.
    async fn enveloped<T: DeserializeOwned>(
        &self,
        kind: RequestKind,
        endpoint: Endpoint,
        id: Option<&str>,
        body: Body,
    ) -> Result<T, ApiError> {
        let (method, path) = self.at(&endpoint, id)?;
        let v: Value = self.json(kind, method.clone(), &path, &[], body).await?;
        let content = match v {
            Value::Object(mut m) if m.contains_key("content") => {
                m.remove("content").unwrap_or(Value::Null)
            }
            other => other,
        };
        serde_json::from_value(content).map_err(|e| ApiError {
            method: method.to_string(),
            path,
            kind: ErrorKind::Decode(e.to_string()),
        })
    }

    pub(super) fn page_query(mut q: Vec<(String, String)>) -> Vec<(String, String)> {
        q.push(("limit".into(), PAGE_SIZE.to_string()));
        q.push(("offset".into(), "0".into()));
        q
    }

    // ---- device groups ----

    /// Device groups (optionally `?name=`).
    pub fn list_groups(
        &self,
        name: Option<&str>,
    ) -> impl Stream<Item = Result<DeviceGroup, ApiError>> + Send + 'static {
        let q = optional("name", name);
        self.paginate(
            Endpoint::ListGroups,
            None,
            Self::page_query(q),
            PageStyle::Drf,
        )
    }

    /// One group (`GET …/devicegroup/?limit=1`): whether the key and the enterprise work
    /// at all, for a run that has read nothing else before its first write.
    pub async fn probe(&self) -> Result<(), ApiError> {
        let q = [("limit".to_string(), "1".to_string())];
        let _: Value = self
            .call(
                RequestKind::Read,
                Endpoint::ListGroups,
                None,
                &q,
                Body::None,
            )
            .await?;
        Ok(())
    }

    pub async fn get_group(&self, id: &str) -> Result<DeviceGroup, ApiError> {
        self.call(
            RequestKind::Read,
            Endpoint::GetGroup,
            Some(id),
            &[],
            Body::None,
        )
        .await
    }

    /// `?action=add|move` with `device_ids`: moves devices into the group (a device
    /// belongs to one group).
    pub async fn move_devices(
        &self,
        group_id: &str,
        device_ids: &[String],
        action: &str,
    ) -> Result<DeviceGroup, ApiError> {
        let q = [("action".to_string(), action.to_string())];
        let body = serde_json::json!({ "device_ids": device_ids });
        self.call(
            RequestKind::Write,
            Endpoint::MoveDevices,
            Some(group_id),
            &q,
            Body::Json(body),
        )
        .await
    }

    // ---- devices ----

    /// The legacy device list with filters; `group` includes subgroups.
    pub fn list_devices(
        &self,
        f: &DeviceFilter,
    ) -> impl Stream<Item = Result<Device, ApiError>> + Send + 'static {
        let q = device_query(f);
        self.paginate(
            Endpoint::ListDevices,
            None,
            Self::page_query(q),
            PageStyle::Drf,
        )
    }

    pub async fn get_device(&self, id: &str) -> Result<Device, ApiError> {
        self.call(
            RequestKind::Read,
            Endpoint::GetDevice,
            Some(id),
            &[],
            Body::None,
        )
        .await
    }

    /// The v2 device list in cursor mode (offset math breaks when the fleet changes
    /// mid-scan; the cursor does not). `query` carries filters such as `group_multi`.
    pub fn list_devices_v2(
        &self,
        query: Vec<(String, String)>,
    ) -> impl Stream<Item = Result<Device, ApiError>> + Send + 'static {
        let mut q = query;
        q.push(("limit".into(), "1000".into()));
        q.push(("cursor".into(), "start".into()));
        self.paginate(Endpoint::ListDevicesV2, None, q, PageStyle::Cursor)
    }

    /// The v2 device list in offset mode (envelope with `prev`).
    pub fn list_devices_v2_offset(
        &self,
        query: Vec<(String, String)>,
    ) -> impl Stream<Item = Result<Device, ApiError>> + Send + 'static {
        let mut q = query;
        q.push(("limit".into(), PAGE_SIZE.to_string()));
        q.push(("offset".into(), "0".into()));
        self.paginate(Endpoint::ListDevicesV2, None, q, PageStyle::Envelope)
    }

    // ---- applications ----

    /// Applications, optionally `?package_name=`.
    pub fn list_apps(
        &self,
        package_name: Option<&str>,
    ) -> impl Stream<Item = Result<Application, ApiError>> + Send + 'static {
        let q = optional("package_name", package_name);
        self.paginate(
            Endpoint::ListApps,
            None,
            Self::page_query(q),
            PageStyle::Drf,
        )
    }

    /// An application's versions, optionally `?version_code=`.
    pub fn list_app_versions(
        &self,
        app_id: &str,
        version_code: Option<&str>,
    ) -> impl Stream<Item = Result<AppVersion, ApiError>> + Send + 'static {
        let q = optional("version_code", version_code);
        self.paginate(
            Endpoint::ListAppVersions,
            Some(app_id),
            Self::page_query(q),
            PageStyle::Drf,
        )
    }

    /// Multipart upload, field `app_file`.
    pub async fn upload_app(&self, file: &Path) -> Result<Application, ApiError> {
        let body = Body::Upload {
            field: "app_file",
            path: file.to_path_buf(),
            mime: "application/vnd.android.package-archive",
        };
        let r: UploadResponse = self
            .call(RequestKind::Write, Endpoint::UploadApp, None, &[], body)
            .await?;
        Ok(r.application)
    }

    // ---- commands (commands/v0) ----

    /// A `CommandRequest_POST` body.
    pub async fn create_command(&self, body: &Value) -> Result<CommandRequest, ApiError> {
        self.enveloped(
            RequestKind::Write,
            Endpoint::CreateCommand,
            None,
            Body::Json(body.clone()),
        )
        .await
    }

    /// Command requests filtered by devices, groups and command.
    pub fn list_commands(
        &self,
        f: &CommandFilter,
    ) -> impl Stream<Item = Result<CommandRequest, ApiError>> + Send + 'static {
        let mut q = Vec::new();
        if !f.devices.is_empty() {
            q.push(("devices".to_string(), f.devices.join(",")));
        }
        if !f.groups.is_empty() {
            q.push(("groups".to_string(), f.groups.join(",")));
        }
        if let Some(c) = &f.command {
            q.push(("command".to_string(), c.clone()));
        }
        self.paginate(
            Endpoint::ListCommands,
            None,
            Self::page_query(q),
            PageStyle::Envelope,
        )
    }

    pub async fn get_command(&self, id: &str) -> Result<CommandRequest, ApiError> {
        self.enveloped(
            RequestKind::Read,
            Endpoint::GetCommand,
            Some(id),
            Body::None,
        )
        .await
    }

    /// Devices per state.
    pub async fn command_stats(&self, id: &str) -> Result<CommandStats, ApiError> {
        self.enveloped(
            RequestKind::Poll,
            Endpoint::CommandStats,
            Some(id),
            Body::None,
        )
        .await
    }

    /// `?request=<id>`: one row per device.
    pub fn command_statuses(
        &self,
        request_id: &str,
        state: Option<&str>,
    ) -> impl Stream<Item = Result<CommandStatus, ApiError>> + Send + 'static {
        let mut q = vec![("request".to_string(), request_id.to_string())];
        q.extend(optional("state", state));
        // A chunk's 1,000 devices in one page: the status list documents no maximum, and
        // 1,000 is what the API's largest documented page (`/v2/devices/`) allows.
        q.push(("limit".into(), STATUS_PAGE_SIZE.to_string()));
        q.push(("offset".into(), "0".into()));
        self.paginate(Endpoint::CommandStatuses, None, q, PageStyle::Envelope)
    }

    // ---- alarm rules (v1) ----

    /// Alarm rules, optionally `?name=` (which may match loosely).
    pub fn list_alarm_rules(
        &self,
        name: Option<&str>,
    ) -> impl Stream<Item = Result<AlarmRule, ApiError>> + Send + 'static {
        let q = optional("name", name);
        self.paginate(
            Endpoint::ListAlarmRules,
            None,
            Self::page_query(q),
            PageStyle::Drf,
        )
    }

    pub async fn create_alarm_rule(&self, body: &Value) -> Result<AlarmRule, ApiError> {
        let body = Body::Json(body.clone());
        self.call(
            RequestKind::Write,
            Endpoint::CreateAlarmRule,
            None,
            &[],
            body,
        )
        .await
    }

    pub async fn get_alarm_rule(&self, id: &str) -> Result<AlarmRule, ApiError> {
        self.call(
            RequestKind::Read,
            Endpoint::GetAlarmRule,
            Some(id),
            &[],
            Body::None,
        )
        .await
    }

    pub async fn replace_alarm_rule(&self, id: &str, body: &Value) -> Result<AlarmRule, ApiError> {
        let body = Body::Json(body.clone());
        self.call(
            RequestKind::Write,
            Endpoint::UpdateAlarmRule,
            Some(id),
            &[],
            body,
        )
        .await
    }

    pub async fn patch_alarm_rule(&self, id: &str, body: &Value) -> Result<AlarmRule, ApiError> {
        let body = Body::Json(body.clone());
        self.call(
            RequestKind::Write,
            Endpoint::PatchAlarmRule,
            Some(id),
            &[],
            body,
        )
        .await
    }

    pub async fn delete_alarm_rule(&self, id: &str) -> Result<(), ApiError> {
        let (method, path) = self.at(&Endpoint::DeleteAlarmRule, Some(id))?;
        self.send(RequestKind::Write, method, &path, &[], Body::None)
            .await
            .map(|_| ())
    }

    // ---- content ----

    /// Multipart upload, field `key` (answers 200).
    pub async fn upload_content(&self, file: &Path) -> Result<Content, ApiError> {
        let body = Body::Upload {
            field: "key",
            path: file.to_path_buf(),
            mime: "application/octet-stream",
        };
        self.call(RequestKind::Write, Endpoint::UploadContent, None, &[], body)
            .await
    }

    /// Content files, optionally `?search=`, which matches tags and description (never
    /// the file name).
    pub fn list_content(
        &self,
        search: Option<&str>,
    ) -> impl Stream<Item = Result<Content, ApiError>> + Send + 'static {
        let q = optional("search", search);
        self.paginate(
            Endpoint::ListContent,
            None,
            Self::page_query(q),
            PageStyle::Drf,
        )
    }

    // ---- exports: listings as Esper sends them ----

    /// The legacy device list as raw objects (every field an export may name).
    pub fn list_device_values(
        &self,
        f: &DeviceFilter,
    ) -> impl Stream<Item = Result<Value, ApiError>> + Send + 'static {
        self.paginate(
            Endpoint::ListDevices,
            None,
            Self::page_query(device_query(f)),
            PageStyle::Drf,
        )
    }

    /// How many devices match, from a one-device page's `count`.
    pub async fn count_devices(&self, f: &DeviceFilter) -> Result<u64, ApiError> {
        let mut q = device_query(f);
        q.push(("limit".into(), "1".into()));
        let v: Value = self
            .call(
                RequestKind::Read,
                Endpoint::ListDevices,
                None,
                &q,
                Body::None,
            )
            .await?;
        Ok(v.get("count").and_then(Value::as_u64).unwrap_or(0))
    }

    /// Any listing of [`Endpoint`]s that take no filter, as raw objects.
    pub fn list_values(
        &self,
        endpoint: Endpoint,
        id: Option<&str>,
        query: Vec<(String, String)>,
        style: PageStyle,
    ) -> impl Stream<Item = Result<Value, ApiError>> + Send + 'static {
        self.paginate(endpoint, id, Self::page_query(query), style)
    }

    /// `…/version/{id}/installdevices`: the devices that have the version, as
    /// `{id, device_name, alias_name, group_name}`.
    pub fn install_devices(
        &self,
        application_id: &str,
        version_id: &str,
    ) -> impl Stream<Item = Result<Value, ApiError>> + Send + 'static {
        let path = routes::install_devices_path(self.eid(), application_id, version_id);
        let first = Ok((Method::GET, path));
        self.paginate_from(first, Self::page_query(Vec::new()), PageStyle::Drf)
    }

    /// One device's apps (`DeviceApp`), optionally of one package.
    pub fn device_apps(
        &self,
        device_id: &str,
        package_name: Option<&str>,
    ) -> impl Stream<Item = Result<Value, ApiError>> + Send + 'static {
        let q = optional("package_name", package_name);
        self.paginate(
            Endpoint::ListDeviceApps,
            Some(device_id),
            Self::page_query(q),
            PageStyle::Drf,
        )
    }

    // ---- escape hatch ----

    /// Any request: `path` is below the base URL and may contain `{enterprise_id}`.
    /// Non-2xx answers are errors like everywhere else.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        body: Option<Value>,
    ) -> Result<RawResponse, ApiError> {
        let endpoint = Endpoint::Raw {
            method: method.to_string(),
            path: path.to_string(),
        };
        let (m, path) = self.at(&endpoint, None)?;
        let kind = if m == Method::GET || m == Method::HEAD {
            RequestKind::Read
        } else {
            RequestKind::Write
        };
        let body = body.map(Body::Json).unwrap_or(Body::None);
        let (status, bytes) = self.send(kind, m, &path, query, body).await?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok(RawResponse { status, body })
    }
}

/// The legacy device list's query for a filter.
fn device_query(f: &DeviceFilter) -> Vec<(String, String)> {
    let mut q = Vec::new();
    for (k, v) in [
        ("group", &f.group),
        ("name", &f.name),
        ("serial", &f.serial),
        ("state", &f.state),
        ("tags", &f.tags),
    ] {
        if let Some(v) = v {
            q.push((k.to_string(), v.clone()));
        }
    }
    q
}

/// A query with one optional filter.
fn optional(key: &str, value: Option<&str>) -> Vec<(String, String)> {
    value
        .map(|v| vec![(key.to_string(), v.to_string())])
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_debug_is_redacted() {
        let k = ApiKey::new("sekrit-123");
        assert!(!format!("{k:?}").contains("sekrit"));
        let c = Connection::new("http://x/api/", "e", k);
        assert!(!format!("{c:?}").contains("sekrit"));
        assert_eq!(c.base_url, "http://x/api");
    }

    #[test]
    fn echoed_keys_are_masked() {
        let k = ApiKey::new("sk-live-NEVER-PRINT-ME-0123456789abcdef");
        let echo = "auth: Bearer sk-live-NEVER-PRINT-ME-0123456789abcdef, again sk-live-NEVER-PRINT-ME-0123456789abcdef!";
        let s = k.scrub(echo);
        assert!(!s.contains("NEVER-PRINT"), "{s}");
        assert_eq!(s, "auth: Bearer sk-l…ef, again sk-l…ef!");
        assert_eq!(k.scrub("nothing here"), "nothing here");
        // A short key is masked after `Bearer ` only, not wherever its letters occur.
        let short = ApiKey::new("abc");
        assert_eq!(short.scrub("abc: Bearer abc"), "abc: Bearer ****");
        assert_eq!(replace_all(b"aaa".to_vec(), b"aa", b"b"), b"ba");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("32MiB"), Ok(32 << 20));
        assert_eq!(parse_size("64 kib"), Ok(64 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        for bad in ["", "0", "MiB", "12MB", "-1", "1.5MiB"] {
            assert_eq!(parse_size(bad), Err(BadSize(bad.to_string())), "{bad}");
        }
    }
}
