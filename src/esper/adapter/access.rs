//! The check a run makes before its first write when it has read nothing yet (a saved
//! plan, a resumed run, a job whose plan needs no reads): one cheap read that tells an
//! unreachable server, a refused key or an unknown enterprise (exit code 5) before any
//! task fails the same way. A run whose planning read the API has had its check already.

use super::inventory::read_retrying;
use crate::base::AccessError;
use crate::esper::Client;
use crate::job::RetrySettings;
use crate::plan::InventoryError;

/// `Err` when the API cannot be used with these settings; any other failure of the check
/// (after `retry`'s attempts) is left for the run's own requests to meet and report.
pub async fn check_access(client: &Client, retry: &RetrySettings) -> Result<(), AccessError> {
    match read_retrying(retry, || client.probe()).await {
        Err(InventoryError::Access(a)) => Err(a),
        Ok(()) | Err(InventoryError::Read(_)) => Ok(()),
    }
}
