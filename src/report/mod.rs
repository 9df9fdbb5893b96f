//! Reports: fold a run's outcomes into a [`Report`] and render it.
//!
//! A report reads outcomes, the plan and the governor's counters only; it never runs
//! anything. Each file does one job: `schema.rs` holds the versioned `report.json` record
//! ([`REPORT_FORMAT`]: [`Report`], [`TaskReport`], [`AttemptReport`], [`FailureReport`],
//! [`ReasonReport`], [`GovernorReport`], …), `build.rs` fills it from the executor's typed
//! outcomes ([`Report::build`]), `outcome.rs` decides how the run ended and its exit
//! code ([`RunOutcome`]), `causes.rs` groups what did not succeed by cause with the next
//! action for each, and `notify.rs` holds the summary a webhook receives
//! ([`NotifySummary`]). Failures stay typed all the way to [`render`], which groups and
//! advises on classes and statuses, never on message text, and makes every sentence: the
//! report files, the one-line text of a task's problem ([`TaskReport::error_text`]) and
//! the summary a person sees at the end of a run ([`Report::summary_text`]).

mod build;
pub mod causes;
mod notify;
mod outcome;
pub mod render;
mod schema;

pub use build::plan_hash;
pub use notify::{NotifyCounts, NotifySummary};
pub use outcome::RunOutcome;
pub use schema::{
    AttemptReport, CauseReport, CoordinatorReport, DeviceCountsReport, DeviceRef,
    DeviceResultReport, FailureReport, FollowedReport, GovernorReport, InstallReport, NeedReport,
    NextAction, NotificationReport, NotifyFailure, REPORT_FORMAT, ReasonReport, Report, RunInfo,
    SampleReport, SegmentReport, StepReport, StopReport, Summary, TaskReport,
};
