//! The controller's fleet index: the in-memory, incrementally maintained view of every host,
//! placement and observed VM that placement and status read instead of etcd (`state`), the
//! task that keeps it current (`sync`), and the placement pipeline on top of it (`scheduler`).

pub mod scheduler;
pub mod state;
pub mod sync;

pub use scheduler::{Placed, ScheduleError, Scheduler};
pub use state::{FleetIndex, HOST_NAME_LABEL, HostIntent, IndexError, IndexEvent};
pub use sync::{FailureHooks, FleetIndexHandle, ScanStats};
