//! The mock tenant's data: groups, devices, apps and versions, alarm rules, command
//! requests with their per-device progress, and content. It owns the deterministic
//! generation from a seed, the group-tree queries, the lazy command clock and the public
//! read-only [`Snapshot`]. Rendering to Esper's JSON and validating input are left to `api`;
//! faults and counters to `server` and `stats`.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;
use uuid::Uuid;

use super::http::inventory_time;
use super::stats::{Created, Duplicates};
use super::{CommandBehaviour, MockConfig};

/// Regions under "Stores"; leaf store groups are spread over them round-robin.
const REGIONS: [&str; 4] = ["North", "South", "East", "West"];

pub(crate) struct Group {
    pub id: Uuid,
    pub name: String,
    pub parent: Option<usize>,
    pub created_on: String,
}

pub(crate) struct Device {
    pub id: Uuid,
    pub device_name: String,
    pub alias_name: String,
    pub serial: String,
    pub imei: String,
    /// Legacy `DeviceStateEnum`: 1 online, 60 offline.
    pub state: i64,
    pub group: usize,
    pub tags: Vec<String>,
    pub suid: String,
    pub created_on: String,
    /// App versions the device had before any command (the fleet's current kiosk).
    pub installed: Vec<usize>,
}

pub(crate) struct App {
    pub id: Uuid,
    pub application_name: String,
    pub package_name: String,
    pub created_on: String,
    pub updated_on: String,
    pub versions: Vec<usize>,
}

pub(crate) struct AppVersion {
    pub id: Uuid,
    pub app: usize,
    pub version_code: String,
    pub version_name: String,
    pub size_bytes: u64,
    pub hash: String,
    pub created_on: String,
}

#[derive(Clone)]
pub(crate) struct Conditions {
    pub value: serde_json::Number,
    pub unit: String,
    pub comparator: String,
    pub toggle_state: Option<bool>,
}

#[derive(Clone)]
pub(crate) struct AlarmRule {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub metric: String,
    pub conditions: Conditions,
    pub devices: Vec<usize>,
    pub groups: Vec<usize>,
    pub action_emails: Vec<String>,
    pub actions: Vec<String>,
    pub alert_channels: Vec<Value>,
    pub is_active: bool,
    pub realert_interval: i64,
    pub repeat_times: i64,
    pub created_on: String,
    pub updated_on: String,
}

/// How one device's command plays out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// The device is offline: the command waits in the queue forever.
    Stuck,
    Finish {
        after: Duration,
        outcome: Outcome,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    Failure,
    TimeOut,
}

pub(crate) struct CommandStatus {
    pub id: Uuid,
    pub device: usize,
    pub plan: Plan,
    /// A state set with `PUT /commands/v0/status/{id}/` (a cancel), with its reason: it
    /// wins over the plan from then on.
    pub set: Option<(&'static str, String)>,
    /// An INSTALL that reports success on this device without installing anything
    /// (`CommandBehaviour::install_noop_rate`).
    pub noop: bool,
}

impl CommandStatus {
    /// Where this device's command is `elapsed` after it was created.
    pub fn progress(&self, command: &str, elapsed: Duration) -> Progress {
        match &self.set {
            Some((state, reason)) => Progress {
                state,
                reason: reason.clone(),
                since: elapsed,
            },
            None => progress(self.plan, command, elapsed),
        }
    }
}

pub(crate) struct CommandRequest {
    pub id: Uuid,
    pub command_type: String,
    pub devices: Vec<Uuid>,
    pub groups: Vec<Uuid>,
    pub command: String,
    pub command_args: Value,
    pub schedule: String,
    pub schedule_args: Value,
    pub alias: Value,
    pub created_at: SystemTime,
    pub created: Instant,
    pub statuses: Vec<CommandStatus>,
}

pub(crate) struct Content {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub size: u64,
    pub hash: String,
    pub created: String,
    /// What `PATCH …/content/{id}/` sets; the list's `search` matches these two only.
    pub tags: Vec<String>,
    pub description: Option<String>,
    pub modified: String,
}

/// A device's command state at some instant.
pub(crate) struct Progress {
    pub state: &'static str,
    pub reason: String,
    /// When the device entered this state, relative to the request's creation.
    pub since: Duration,
}

pub(crate) struct Inventory {
    pub groups: Vec<Group>,
    pub group_index: HashMap<Uuid, usize>,
    pub devices: Vec<Device>,
    pub device_index: HashMap<Uuid, usize>,
    pub apps: Vec<App>,
    pub app_index: HashMap<Uuid, usize>,
    pub versions: Vec<AppVersion>,
    pub version_index: HashMap<Uuid, usize>,
    pub alarm_rules: Vec<AlarmRule>,
    pub commands: Vec<CommandRequest>,
    pub command_index: HashMap<Uuid, usize>,
    /// Occurrences of each command request's identity key, for duplicate counting.
    pub command_keys: HashMap<String, u64>,
    pub contents: Vec<Content>,
    pub next_content_id: i64,
    pub created: Created,
}

/// SplitMix64: turns (seed, stream) into independent, well-mixed seeds.
pub(crate) fn mix(seed: u64, stream: u64) -> u64 {
    let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Seed streams, so adding draws to one never shifts another.
pub(crate) const STREAM_CREDENTIALS: u64 = 1;
pub(crate) const STREAM_RUNTIME: u64 = 2;
const STREAM_INVENTORY: u64 = 3;
const STREAM_COMMANDS: u64 = 4;
const STREAM_INSTALLS: u64 = 5;

pub(crate) fn random_uuid(rng: &mut fastrand::Rng) -> Uuid {
    let mut bytes = [0u8; 16];
    rng.fill(&mut bytes);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// The API key and enterprise id `MockConfig::new(seed)` uses.
pub(crate) fn derived_credentials(seed: u64) -> (String, String) {
    let mut rng = fastrand::Rng::with_seed(mix(seed, STREAM_CREDENTIALS));
    let key = format!("mock-{:016x}{:016x}", rng.u64(..), rng.u64(..));
    (key, random_uuid(&mut rng).to_string())
}

/// FNV-1a, enough for a stable fake content hash without another dependency.
pub(crate) fn fnv_hex(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

impl Inventory {
    /// The seeded tenant described in `MockConfig`'s docs.
    pub fn generate(cfg: &MockConfig) -> Inventory {
        let mut rng = fastrand::Rng::with_seed(mix(cfg.seed, STREAM_INVENTORY));
        let offline = clamp_fraction(cfg.offline_fraction);
        let mut inv = Inventory {
            groups: Vec::new(),
            group_index: HashMap::new(),
            devices: Vec::new(),
            device_index: HashMap::new(),
            apps: Vec::new(),
            app_index: HashMap::new(),
            versions: Vec::new(),
            version_index: HashMap::new(),
            alarm_rules: Vec::new(),
            commands: Vec::new(),
            command_index: HashMap::new(),
            command_keys: HashMap::new(),
            contents: Vec::new(),
            next_content_id: 1001,
            created: Created::default(),
        };
        let root = inv.add_group(&mut rng, "All devices", None);
        let stores = inv.add_group(&mut rng, "Stores", Some(root));
        let lab = inv.add_group(&mut rng, "Lab", Some(root));
        let warehouse = inv.add_group(&mut rng, "Warehouse", Some(root));
        let regions: Vec<usize> = REGIONS
            .iter()
            .map(|r| inv.add_group(&mut rng, r, Some(stores)))
            .collect();
        for i in 0..cfg.groups {
            let name = format!("{:04}", i + 1);
            let region_idx = i % REGIONS.len();
            let leaf = inv.add_group(&mut rng, &name, Some(regions[region_idx]));
            let tags = vec!["store".to_string(), REGIONS[region_idx].to_lowercase()];
            for j in 0..cfg.devices_per_group {
                let device_name = format!("ACME-{name}-{:02}", j + 1);
                let alias = format!("Store {name} till {}", j + 1);
                inv.add_device(&mut rng, device_name, alias, leaf, tags.clone(), offline);
            }
        }
        for (group, code, label) in [(lab, "LAB", "Lab bench"), (warehouse, "WH", "Warehouse")] {
            for j in 1..=2 {
                let tags = vec![label.split(' ').next().unwrap_or(label).to_lowercase()];
                inv.add_device(
                    &mut rng,
                    format!("ACME-{code}-{j:02}"),
                    format!("{label} {j}"),
                    group,
                    tags,
                    offline,
                );
            }
        }
        let kiosk = inv.add_app(&mut rng, "Kiosk", "com.acme.kiosk", inventory_time(3600));
        let current = inv.add_version(&mut rng, kiosk, "400", "4.0.0", inventory_time(3600));
        for d in &mut inv.devices {
            d.installed.push(current);
        }
        inv.add_version(&mut rng, kiosk, "410", "4.1.0", inventory_time(7200));
        let scanner = inv.add_app(
            &mut rng,
            "Scanner",
            "com.acme.scanner",
            inventory_time(5400),
        );
        inv.add_version(&mut rng, scanner, "120", "1.2.0", inventory_time(5400));
        inv
    }

    fn add_group(&mut self, rng: &mut fastrand::Rng, name: &str, parent: Option<usize>) -> usize {
        let idx = self.groups.len();
        let id = random_uuid(rng);
        self.groups.push(Group {
            id,
            name: name.to_string(),
            parent,
            created_on: inventory_time(idx as u64),
        });
        self.group_index.insert(id, idx);
        idx
    }

    fn add_device(
        &mut self,
        rng: &mut fastrand::Rng,
        device_name: String,
        alias_name: String,
        group: usize,
        tags: Vec<String>,
        offline_fraction: f64,
    ) {
        let idx = self.devices.len();
        let id = random_uuid(rng);
        let serial = format!("R58M{:08X}", rng.u32(..));
        let imei = format!("35{:013}", rng.u64(..10_000_000_000_000));
        let suid = format!("{:016x}", rng.u64(..));
        let state = if rng.f64() < offline_fraction { 60 } else { 1 };
        self.devices.push(Device {
            id,
            device_name,
            alias_name,
            serial,
            imei,
            state,
            group,
            tags,
            suid,
            created_on: inventory_time(86_400 + idx as u64),
            installed: Vec::new(),
        });
        self.device_index.insert(id, idx);
    }

    pub fn add_app(
        &mut self,
        rng: &mut fastrand::Rng,
        name: &str,
        package: &str,
        when: String,
    ) -> usize {
        let idx = self.apps.len();
        let id = random_uuid(rng);
        self.apps.push(App {
            id,
            application_name: name.to_string(),
            package_name: package.to_string(),
            created_on: when.clone(),
            updated_on: when,
            versions: Vec::new(),
        });
        self.app_index.insert(id, idx);
        idx
    }

    pub fn add_version(
        &mut self,
        rng: &mut fastrand::Rng,
        app: usize,
        code: &str,
        name: &str,
        when: String,
    ) -> usize {
        let idx = self.versions.len();
        let id = random_uuid(rng);
        let size_bytes = 4_000_000 + rng.u64(..20_000_000);
        self.versions.push(AppVersion {
            id,
            app,
            version_code: code.to_string(),
            version_name: name.to_string(),
            size_bytes,
            hash: fnv_hex(format!("{id}{code}").as_bytes()),
            created_on: when.clone(),
        });
        self.version_index.insert(id, idx);
        if let Some(a) = self.apps.get_mut(app) {
            a.versions.push(idx);
            a.updated_on = when;
        }
        idx
    }

    /// "All devices/Stores/North/0001". The walk is bounded by the group count, so a
    /// corrupted parent chain cannot loop.
    pub fn group_path(&self, g: usize) -> String {
        let mut names = Vec::new();
        let mut cur = Some(g);
        for _ in 0..=self.groups.len() {
            let Some(i) = cur else { break };
            let Some(group) = self.groups.get(i) else {
                break;
            };
            names.push(group.name.as_str());
            cur = group.parent;
        }
        names.reverse();
        names.join("/")
    }

    /// Marks `g` and every group below it.
    pub fn subtree(&self, g: usize) -> Vec<bool> {
        let mut marks = vec![false; self.groups.len()];
        for (i, mark) in marks.iter_mut().enumerate() {
            *mark = self.is_within(i, g);
        }
        marks
    }

    /// Whether `g` is `ancestor` or below it.
    pub fn is_within(&self, g: usize, ancestor: usize) -> bool {
        let mut cur = Some(g);
        for _ in 0..=self.groups.len() {
            match cur {
                Some(i) if i == ancestor => return true,
                Some(i) => cur = self.groups.get(i).and_then(|x| x.parent),
                None => return false,
            }
        }
        false
    }

    /// Devices per group, subgroups included.
    pub fn device_counts(&self) -> Vec<usize> {
        let mut counts = vec![0usize; self.groups.len()];
        for d in &self.devices {
            let mut cur = Some(d.group);
            for _ in 0..=self.groups.len() {
                let Some(i) = cur else { break };
                if let Some(c) = counts.get_mut(i) {
                    *c += 1;
                }
                cur = self.groups.get(i).and_then(|x| x.parent);
            }
        }
        counts
    }

    pub fn children_counts(&self) -> Vec<usize> {
        let mut counts = vec![0usize; self.groups.len()];
        for g in &self.groups {
            if let Some(c) = g.parent.and_then(|p| counts.get_mut(p)) {
                *c += 1;
            }
        }
        counts
    }

    /// Devices in the given groups or below them, each once, in inventory order.
    pub fn devices_in_groups(&self, groups: &[usize]) -> Vec<usize> {
        let mut marks = vec![false; self.groups.len()];
        for &g in groups {
            for (m, inside) in marks.iter_mut().zip(self.subtree(g)) {
                *m |= inside;
            }
        }
        (0..self.devices.len())
            .filter(|&d| marks.get(self.devices[d].group).copied().unwrap_or(false))
            .collect()
    }

    /// Which version of `app` each device has installed at `now` (by device index): what
    /// it started with, then every INSTALL of a version of `app` (or UNINSTALL of its
    /// package) that succeeded on the device, in the order they were created. An INSTALL
    /// that "succeeded" as a no-op installs nothing.
    pub fn installed(&self, app: usize, now: Instant) -> Vec<Option<usize>> {
        let mut out: Vec<Option<usize>> = self
            .devices
            .iter()
            .map(|d| {
                d.installed
                    .iter()
                    .copied()
                    .find(|&v| self.versions.get(v).is_some_and(|x| x.app == app))
            })
            .collect();
        let package = self.apps.get(app).map(|a| a.package_name.as_str());
        for c in &self.commands {
            let arg = |k: &str| c.command_args.get(k).and_then(Value::as_str);
            let to = match c.command.as_str() {
                "INSTALL" => match arg("app_version")
                    .and_then(|v| Uuid::parse_str(v).ok())
                    .and_then(|u| self.version_index.get(&u).copied())
                {
                    Some(v) if self.versions[v].app == app => Some(v),
                    _ => continue,
                },
                "UNINSTALL" if arg("package_name").is_some() && arg("package_name") == package => {
                    None
                }
                _ => continue,
            };
            let elapsed = now.saturating_duration_since(c.created);
            for s in &c.statuses {
                let done = s.progress(&c.command, elapsed).state == "Command Success";
                if done
                    && !s.noop
                    && let Some(slot) = out.get_mut(s.device)
                {
                    *slot = to;
                }
            }
        }
        out
    }

    /// Whether an INSTALL reports success on a device without installing (a pure function
    /// of seed, request and device, like [`Inventory::plan_for`]).
    pub fn install_noop(seed: u64, rate: f64, request: Uuid, device: &Device) -> bool {
        let rate = clamp_fraction(rate);
        if rate <= 0.0 {
            return false;
        }
        let fold = |u: Uuid| {
            let v = u.as_u128();
            (v >> 64) as u64 ^ v as u64
        };
        let mut rng = fastrand::Rng::with_seed(mix(
            mix(seed, STREAM_INSTALLS) ^ fold(request),
            fold(device.id),
        ));
        rng.f64() < rate
    }

    /// Plays one device's command: a pure function of (seed, request, device).
    pub fn plan_for(
        seed: u64,
        behaviour: &CommandBehaviour,
        request: Uuid,
        device: &Device,
    ) -> Plan {
        if device.state != 1 {
            return Plan::Stuck;
        }
        let fold = |u: Uuid| {
            let v = u.as_u128();
            (v >> 64) as u64 ^ v as u64
        };
        let mut rng = fastrand::Rng::with_seed(mix(
            mix(seed, STREAM_COMMANDS) ^ fold(request),
            fold(device.id),
        ));
        let failure = clamp_fraction(behaviour.failure_rate);
        let timeout = clamp_fraction(behaviour.timeout_rate);
        let draw = rng.f64();
        let outcome = if draw < failure {
            Outcome::Failure
        } else if draw < failure + timeout {
            Outcome::TimeOut
        } else {
            Outcome::Success
        };
        let lo = behaviour.min_duration.min(behaviour.max_duration);
        let hi = behaviour.min_duration.max(behaviour.max_duration);
        let span = u64::try_from((hi - lo).as_nanos()).unwrap_or(u64::MAX);
        let after = lo.saturating_add(Duration::from_nanos(rng.u64(..=span)));
        Plan::Finish { after, outcome }
    }

    /// Identity of a command request for duplicate counting.
    pub fn command_key(
        command_type: &str,
        command: &str,
        args: &Value,
        devices: &[Uuid],
        groups: &[Uuid],
    ) -> String {
        let mut d: Vec<String> = devices.iter().map(Uuid::to_string).collect();
        let mut g: Vec<String> = groups.iter().map(Uuid::to_string).collect();
        d.sort();
        g.sort();
        // serde_json's default map is ordered, so equal args serialise equally.
        format!(
            "{command_type}|{command}|{args}|{}|{}",
            d.join(","),
            g.join(",")
        )
    }

    pub fn duplicates(&self) -> Duplicates {
        let mut names: HashMap<&str, u64> = HashMap::new();
        for r in &self.alarm_rules {
            *names.entry(r.name.as_str()).or_default() += 1;
        }
        Duplicates {
            alarm_rules: names.values().map(|n| n - 1).sum(),
            command_requests: self.command_keys.values().map(|n| n - 1).sum(),
        }
    }

    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let gid = |g: usize| {
            self.groups
                .get(g)
                .map(|x| x.id.to_string())
                .unwrap_or_default()
        };
        let did = |d: usize| {
            self.devices
                .get(d)
                .map(|x| x.id.to_string())
                .unwrap_or_default()
        };
        let mut installed: Vec<std::collections::BTreeMap<String, String>> =
            vec![Default::default(); self.devices.len()];
        for (a, app) in self.apps.iter().enumerate() {
            for (d, v) in self.installed(a, now).into_iter().enumerate() {
                if let Some(v) = v.and_then(|v| self.versions.get(v)) {
                    installed[d].insert(app.package_name.clone(), v.version_code.clone());
                }
            }
        }
        Snapshot {
            groups: (0..self.groups.len())
                .map(|i| {
                    let g = &self.groups[i];
                    SnapshotGroup {
                        id: g.id.to_string(),
                        name: g.name.clone(),
                        path: self.group_path(i),
                        parent_id: g.parent.map(gid),
                    }
                })
                .collect(),
            devices: self
                .devices
                .iter()
                .zip(installed)
                .map(|(d, installed)| SnapshotDevice {
                    id: d.id.to_string(),
                    device_name: d.device_name.clone(),
                    alias_name: d.alias_name.clone(),
                    serial: d.serial.clone(),
                    imei: d.imei.clone(),
                    state: d.state,
                    group_id: gid(d.group),
                    tags: d.tags.clone(),
                    installed,
                })
                .collect(),
            apps: self
                .apps
                .iter()
                .map(|a| SnapshotApp {
                    id: a.id.to_string(),
                    application_name: a.application_name.clone(),
                    package_name: a.package_name.clone(),
                    versions: a
                        .versions
                        .iter()
                        .filter_map(|&v| self.versions.get(v))
                        .map(|v| SnapshotAppVersion {
                            id: v.id.to_string(),
                            version_code: v.version_code.clone(),
                            version_name: v.version_name.clone(),
                        })
                        .collect(),
                })
                .collect(),
            alarm_rules: self
                .alarm_rules
                .iter()
                .map(|r| SnapshotAlarmRule {
                    id: r.id.to_string(),
                    name: r.name.clone(),
                    metric: r.metric.clone(),
                    unit: r.conditions.unit.clone(),
                    comparator: r.conditions.comparator.clone(),
                    value: r.conditions.value.as_f64().unwrap_or(0.0),
                    realert_interval: r.realert_interval,
                    is_active: r.is_active,
                    group_ids: r.groups.iter().map(|&g| gid(g)).collect(),
                    device_ids: r.devices.iter().map(|&d| did(d)).collect(),
                })
                .collect(),
            commands: self
                .commands
                .iter()
                .map(|c| {
                    let elapsed = now.saturating_duration_since(c.created);
                    SnapshotCommand {
                        id: c.id.to_string(),
                        command_type: c.command_type.clone(),
                        command: c.command.clone(),
                        command_args: c.command_args.clone(),
                        schedule: c.schedule.clone(),
                        schedule_args: c.schedule_args.clone(),
                        device_ids: c.devices.iter().map(Uuid::to_string).collect(),
                        group_ids: c.groups.iter().map(Uuid::to_string).collect(),
                        statuses: c
                            .statuses
                            .iter()
                            .map(|s| {
                                let p = s.progress(&c.command, elapsed);
                                SnapshotCommandStatus {
                                    id: s.id.to_string(),
                                    device_id: did(s.device),
                                    state: p.state.to_string(),
                                    reason: p.reason,
                                }
                            })
                            .collect(),
                    }
                })
                .collect(),
            contents: self
                .contents
                .iter()
                .map(|c| SnapshotContent {
                    id: c.id,
                    name: c.name.clone(),
                    size: c.size,
                    hash: c.hash.clone(),
                    tags: c.tags.clone(),
                    description: c.description.clone(),
                })
                .collect(),
        }
    }
}

/// Where a device's command stands `elapsed` after the request was created.
pub(crate) fn progress(plan: Plan, command: &str, elapsed: Duration) -> Progress {
    let Plan::Finish { after, outcome } = plan else {
        return Progress {
            state: "Command Queued",
            reason: "Device is offline; the command will run when it checks in.".into(),
            since: Duration::ZERO,
        };
    };
    let quarter = after / 4;
    let (state, since) = if elapsed >= after {
        let state = match outcome {
            Outcome::Success => "Command Success",
            Outcome::Failure => "Command Failure",
            Outcome::TimeOut => "Command TimeOut",
        };
        (state, after)
    } else if elapsed >= quarter * 2 {
        ("Command In Progress", quarter * 2)
    } else if elapsed >= quarter {
        ("Command Initiated", quarter)
    } else {
        ("Command Queued", Duration::ZERO)
    };
    let reason = match state {
        "Command Failure" => format!("Device reported an error while executing {command}."),
        "Command TimeOut" => "Device did not report a result in time.".to_string(),
        _ => String::new(),
    };
    Progress {
        state,
        reason,
        since,
    }
}

pub(crate) fn clamp_fraction(x: f64) -> f64 {
    if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) }
}

/// A read-only copy of the mock's data for assertions.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Snapshot {
    pub groups: Vec<SnapshotGroup>,
    pub devices: Vec<SnapshotDevice>,
    pub apps: Vec<SnapshotApp>,
    pub alarm_rules: Vec<SnapshotAlarmRule>,
    pub commands: Vec<SnapshotCommand>,
    pub contents: Vec<SnapshotContent>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SnapshotGroup {
    pub id: String,
    pub name: String,
    pub path: String,
    pub parent_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SnapshotDevice {
    pub id: String,
    pub device_name: String,
    pub alias_name: String,
    pub serial: String,
    pub imei: String,
    /// 1 online, 60 offline.
    pub state: i64,
    pub group_id: String,
    pub tags: Vec<String>,
    /// Package → version code installed now.
    pub installed: std::collections::BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SnapshotApp {
    pub id: String,
    pub application_name: String,
    pub package_name: String,
    pub versions: Vec<SnapshotAppVersion>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SnapshotAppVersion {
    pub id: String,
    pub version_code: String,
    pub version_name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SnapshotAlarmRule {
    pub id: String,
    pub name: String,
    pub metric: String,
    pub unit: String,
    pub comparator: String,
    pub value: f64,
    pub realert_interval: i64,
    pub is_active: bool,
    pub group_ids: Vec<String>,
    pub device_ids: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SnapshotCommand {
    pub id: String,
    pub command_type: String,
    pub command: String,
    pub command_args: Value,
    pub schedule: String,
    pub schedule_args: Value,
    /// The ids sent in the request's `devices` / `groups`.
    pub device_ids: Vec<String>,
    pub group_ids: Vec<String>,
    /// One per targeted device (groups expanded at create time).
    pub statuses: Vec<SnapshotCommandStatus>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SnapshotCommandStatus {
    pub id: String,
    pub device_id: String,
    pub state: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SnapshotContent {
    pub id: i64,
    pub name: String,
    pub size: u64,
    pub hash: String,
    pub tags: Vec<String>,
    pub description: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_layout_matches_the_docs() {
        let mut cfg = MockConfig::new(7);
        cfg.groups = 6;
        cfg.devices_per_group = 3;
        let inv = Inventory::generate(&cfg);
        assert_eq!(inv.groups.len(), 1 + 3 + 4 + 6);
        assert_eq!(inv.devices.len(), 6 * 3 + 4);
        assert_eq!(inv.group_path(8), "All devices/Stores/North/0001");
        assert_eq!(inv.group_path(9), "All devices/Stores/South/0002");
        assert_eq!(inv.group_path(12), "All devices/Stores/North/0005");
        assert_eq!(inv.devices[0].device_name, "ACME-0001-01");
        assert_eq!(inv.device_counts()[0], inv.devices.len());
        assert_eq!(inv.device_counts()[4], 2 * 3, "North holds 0001 and 0005");
        assert_eq!(inv.children_counts()[0], 3);
        assert_eq!(inv.devices_in_groups(&[1]).len(), 18);
        assert_eq!(Inventory::generate(&cfg).devices[5].id, inv.devices[5].id);
    }

    #[test]
    fn progress_walks_through_states() {
        let plan = Plan::Finish {
            after: Duration::from_millis(400),
            outcome: Outcome::Failure,
        };
        let at = |ms| progress(plan, "REBOOT", Duration::from_millis(ms)).state;
        assert_eq!(at(0), "Command Queued");
        assert_eq!(at(100), "Command Initiated");
        assert_eq!(at(250), "Command In Progress");
        assert_eq!(at(400), "Command Failure");
        assert_eq!(
            progress(Plan::Stuck, "X", Duration::MAX).state,
            "Command Queued"
        );
    }

    #[test]
    fn plans_are_deterministic_and_respect_rates() {
        let cfg = MockConfig::new(1);
        let inv = Inventory::generate(&cfg);
        let b = CommandBehaviour {
            failure_rate: 1.0,
            ..CommandBehaviour::default()
        };
        let req = Uuid::from_u128(42);
        let p1 = Inventory::plan_for(1, &b, req, &inv.devices[0]);
        assert_eq!(p1, Inventory::plan_for(1, &b, req, &inv.devices[0]));
        let Plan::Finish { after, outcome } = p1 else {
            panic!("online device must finish")
        };
        assert_eq!(outcome, Outcome::Failure);
        assert!(after >= b.min_duration && after <= b.max_duration);
    }
}
