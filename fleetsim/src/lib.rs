//! Fleet simulator: thousands of simulated hosts in one process, each running the agent's real
//! fleet-bus session ([`yun_agent::bus_session`]) and reporter ([`yun_agent::reporter`]) against
//! a real etcd, over a fake hypervisor that "starts" a VM after a configurable delay.
//!
//! The simulator can kill hosts (their leases expire), partition a fraction of them from etcd
//! until healed, and restart their agents, so the controller can be exercised at fleet scale.
//! See docs/ops/fleetsim.md.

pub mod config;
pub mod fleet;
mod host;
mod hypervisor;
pub mod protocol;
pub mod stats;

pub use config::{ConfigError, SIM_LABEL, SimConfig, TopologyConfig};
pub use fleet::{HostEvent, ShutdownReport, SimError, SimFleet, evenly_spaced};
pub use protocol::{CommandError, SimCommand};
pub use stats::SimStats;
