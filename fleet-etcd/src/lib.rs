//! etcd adapter for the Yun fleet bus.
//!
//! Thin, typed operations over the key schema of `yun-fleet`: every value is decoded with the
//! key named in its error, every write that guards an invariant is one etcd transaction.
//! Retrying, backoff and fail-static behaviour belong to the callers (agent, controller): this
//! layer reports an unreachable etcd as an error and never hides it.

mod batch;
mod bus;
mod election;
mod error;
mod lease;
mod net;
pub mod roles;
mod scan;
mod tls;
mod volume;
mod watch;

pub use batch::{BatchOutcome, HostCommit, MAX_BATCH, PlacementBatch};
pub use bus::{FleetBus, HostView, PlacementOutcome, Stored};
pub use election::Leadership;
pub use error::BusError;
pub use lease::HostLease;
pub use net::HostNetView;
pub use scan::{ScannedKv, prefix_end};
pub use tls::{BusTls, TlsError};
pub use volume::{AttachmentView, ClaimGrant, ClaimWrite};
pub use watch::{BusEvent, BusWatch, EventKind};
