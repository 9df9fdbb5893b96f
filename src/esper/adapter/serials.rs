//! CSV serial targets: whether to look each serial up or scan the fleet, and the lookups.
//!
//! A scan is `/v2/devices/` in cursor pages of 1,000, which Esper throttles much harder
//! than its other lists (its own tool sleeps 25–45 s between pages, API.md §3.3), so on a
//! large fleet even a few pages cost more than a short CSV's lookups. Below
//! [`LOOKUP_BELOW`] distinct serials each one is looked up on the legacy device list
//! (`GET /enterprise/{eid}/device/?serial=…`, API.md §5.1), one request a serial, each
//! taking a rate permit like every request; at or above it the fleet is scanned once.
//! Only exact serial matches count (the filter might match loosely). Turning devices into
//! the target, in the CSV's order, is the planner's.

use std::collections::BTreeSet;

use futures::{StreamExt, TryStreamExt};

use super::inventory::listed;
use crate::esper::model::Device;
use crate::esper::{Client, DeviceFilter};
use crate::plan::{InventoryError, SerialMethod};

/// With fewer distinct serials than this, each is looked up; with more, the fleet is
/// scanned.
pub(super) const LOOKUP_BELOW: usize = 200;
/// The `/v2/devices/` cursor page a scan reads.
pub(super) const SCAN_PAGE: usize = 1000;
/// Lookups sent at once; the governor still bounds the rate and the window.
const IN_FLIGHT: usize = 8;

/// The distinct serials, in first-seen order.
fn distinct(serials: &[String]) -> Vec<&str> {
    let mut seen = BTreeSet::new();
    serials
        .iter()
        .map(String::as_str)
        .filter(|s| seen.insert(*s))
        .collect()
}

/// How the devices of `serials` are found.
pub(super) fn method(serials: &[String]) -> SerialMethod {
    let n = distinct(serials).len();
    if n < LOOKUP_BELOW {
        SerialMethod::Lookup { requests: n }
    } else {
        SerialMethod::Scan { page: SCAN_PAGE }
    }
}

/// The devices whose serial is one of `serials`, one lookup a distinct serial, each
/// retried as the client's page retry says.
pub(super) async fn look_up(
    client: &Client,
    serials: &[String],
) -> Result<Vec<Device>, InventoryError> {
    let wanted: Vec<String> = distinct(serials).into_iter().map(str::to_string).collect();
    let found: Vec<Vec<Device>> = futures::stream::iter(wanted)
        .map(|serial| one(client, serial))
        .buffered(IN_FLIGHT)
        .try_collect()
        .await?;
    Ok(found.into_iter().flatten().collect())
}

/// The devices whose serial is exactly `serial`.
async fn one(client: &Client, serial: String) -> Result<Vec<Device>, InventoryError> {
    let filter = DeviceFilter {
        serial: Some(serial.clone()),
        ..DeviceFilter::default()
    };
    // The client retries the page itself (a [`page_retry`](super::inventory) client).
    let devices: Vec<Device> = listed(client.list_devices(&filter).try_collect()).await?;
    Ok(devices
        .into_iter()
        .filter(|d| d.serial.as_deref() == Some(serial.as_str()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_serials_are_looked_up_and_many_scanned() {
        let serials = |n: usize| (0..n).map(|i| format!("S{i}")).collect::<Vec<_>>();
        assert_eq!(method(&serials(12)), SerialMethod::Lookup { requests: 12 });
        let mut twice = serials(3);
        twice.extend(serials(3));
        assert_eq!(method(&twice), SerialMethod::Lookup { requests: 3 });
        assert_eq!(
            method(&serials(LOOKUP_BELOW - 1)),
            SerialMethod::Lookup {
                requests: LOOKUP_BELOW - 1
            }
        );
        assert_eq!(
            method(&serials(LOOKUP_BELOW)),
            SerialMethod::Scan { page: SCAN_PAGE }
        );
    }
}
