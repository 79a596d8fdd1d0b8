//! Hooks run after failure detection. Fencing makes sure a silent host is really off (BMC
//! power-off, storage fence) before anything it ran is started elsewhere; evacuation restarts
//! its VMs on other hosts. This version ships the hooks and the rate-capped, partition-guarded
//! decision to call them; the default hooks do nothing, so a dead host's VMs stay where they
//! were (NotReady) until an operator acts.

use futures::future::BoxFuture;

/// Powers off (or storage-fences) a host declared dead.
pub trait FenceHook: Send + Sync + std::fmt::Debug {
    /// `Ok(())` only when the host is known to be off.
    fn fence<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<(), String>>;
}

/// Restarts a fenced host's VMs elsewhere.
pub trait EvacuationHook: Send + Sync + std::fmt::Debug {
    fn evacuate<'a>(&'a self, host: &'a str, vm_uids: Vec<String>) -> BoxFuture<'a, ()>;
}

/// The default: no fencing is configured, so no host is ever declared dead.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoFencing;

impl FenceHook for NoFencing {
    fn fence<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            Err(format!(
                "no fencing configured: host {host} stays NotReady and its VMs are not moved"
            ))
        })
    }
}

impl EvacuationHook for NoFencing {
    fn evacuate<'a>(&'a self, host: &'a str, vm_uids: Vec<String>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            tracing::warn!(
                host,
                vms = vm_uids.len(),
                "evacuation is not available yet; VMs stay on the fenced host"
            );
        })
    }
}
