//! The real [`HostLinks`]: observes the kernel over an rtnetlink socket, plans, executes.
//! A netlink socket acts on the network namespace it was created in, so [`NetlinkLinks::in_netns`]
//! creates it (and opens the br_netfilter sysctl, also per namespace) on a short-lived thread
//! switched into that namespace; the caller's threads never change namespace.

use std::fs::File;
use std::io::ErrorKind;
use std::net::Ipv4Addr;
use std::os::unix::fs::FileExt;
use std::path::Path;

use futures::TryStreamExt;
use futures::stream::StreamExt;
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVlan, LinkVxlan};
use tokio::task::JoinHandle;

use super::observe::{self, FLOOD_MAC};
use super::plan::{LinkOp, Observed, plan};
use super::{HostLinks, HostNetworks, LinkChanges, LinksError};

const BRIDGE_NF_SYSCTL: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";
const NETNS_DIR: &str = "/var/run/netns";

/// The netlink socket and the sysctl file of one network namespace.
struct Opened {
    conn: rtnetlink::proto::Connection<RouteNetlinkMessage>,
    handle: Handle,
    bridge_nf: Option<File>,
}

/// Runs in the namespace the socket should act on; `rt` is entered so the socket registers
/// with the caller's reactor.
fn open_here(rt: &tokio::runtime::Handle) -> Result<Opened, LinksError> {
    let _entered = rt.enter();
    let (conn, handle, _unsolicited) = rtnetlink::new_connection().map_err(LinksError::Socket)?;
    Ok(Opened {
        conn,
        handle,
        bridge_nf: open_bridge_nf()?,
    })
}

/// The sysctl file opened read-write: writes through it reach the namespace it was opened
/// in, wherever the writing thread is. `None` without br_netfilter.
fn open_bridge_nf() -> Result<Option<File>, LinksError> {
    match File::options()
        .read(true)
        .write(true)
        .open(BRIDGE_NF_SYSCTL)
    {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LinksError::Sysctl(e)),
    }
}

fn open_in_netns(name: &str, rt: tokio::runtime::Handle) -> Result<Opened, LinksError> {
    let fail = |reason: String| LinksError::Netns {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(fail("not a namespace name".into()));
    }
    let ns = File::open(Path::new(NETNS_DIR).join(name)).map_err(|e| fail(e.to_string()))?;
    // A scoped thread: it enters the namespace, opens, and ends (taking its namespace along).
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| fail(format!("setns: {e}")))?;
            open_here(&rt)
        })
        .join()
        .unwrap_or_else(|_| Err(fail("namespace thread panicked".into())))
    })
}

/// Tenant links over rtnetlink, in the current or a named network namespace.
pub struct NetlinkLinks {
    handle: Handle,
    bridge_nf: Option<File>,
    /// `None` = the namespace this process runs in (the sysctl can be reopened here).
    netns: Option<String>,
    conn_task: JoinHandle<()>,
}

impl std::fmt::Debug for NetlinkLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetlinkLinks")
            .field("netns", &self.netns)
            .field("br_netfilter", &self.bridge_nf.is_some())
            .finish()
    }
}

impl Drop for NetlinkLinks {
    fn drop(&mut self) {
        self.conn_task.abort();
    }
}

fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> LinksError {
    let what = what.into();
    move |source| LinksError::Netlink { what, source }
}

fn flood_message(index: u32, peer: Ipv4Addr) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Bridge;
    m.header.ifindex = index;
    m.header.state = NeighbourState::Permanent;
    m.header.flags = NeighbourFlags::Own;
    m.attributes = vec![
        NeighbourAttribute::LinkLayerAddress(FLOOD_MAC.to_vec()),
        NeighbourAttribute::Destination(NeighbourAddress::Inet(peer)),
    ];
    m
}

impl NetlinkLinks {
    /// Links of the namespace this process runs in. Must be called inside a Tokio runtime.
    pub fn new() -> Result<Self, LinksError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| LinksError::NoRuntime)?;
        let opened = open_here(&rt)?;
        Ok(Self::start(&rt, opened, None))
    }

    /// Links of the named namespace (`/var/run/netns/<name>`, as `ip netns add` makes).
    /// Must be called inside a Tokio runtime.
    pub fn in_netns(name: &str) -> Result<Self, LinksError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| LinksError::NoRuntime)?;
        let opened = open_in_netns(name, rt.clone())?;
        Ok(Self::start(&rt, opened, Some(name.to_owned())))
    }

    fn start(rt: &tokio::runtime::Handle, o: Opened, netns: Option<String>) -> Self {
        NetlinkLinks {
            handle: o.handle,
            bridge_nf: o.bridge_nf,
            netns,
            conn_task: rt.spawn(o.conn),
        }
    }

    /// What the kernel has now.
    pub async fn observe(&mut self) -> Result<Observed, LinksError> {
        if self.bridge_nf.is_none() && self.netns.is_none() {
            // br_netfilter may have been loaded since (the firewall loads it).
            self.bridge_nf = open_bridge_nf()?;
        }
        let bridge_nf_call_iptables = match &self.bridge_nf {
            Some(f) => {
                let mut buf = [0u8; 8];
                let n = f.read_at(&mut buf, 0).map_err(LinksError::Sysctl)?;
                Some(buf[..n].trim_ascii() == b"1")
            }
            None => None,
        };
        let links: Vec<_> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(nl("link dump"))?;
        let vxlans = observe::vxlan_indices(&links);
        let fdb: Vec<_> = if vxlans.is_empty() {
            Vec::new()
        } else {
            self.handle
                .neighbours()
                .get()
                .set_address_family(AddressFamily::Bridge)
                .execute()
                .try_collect()
                .await
                .map_err(nl("fdb dump"))?
        };
        Ok(Observed {
            links: observe::links(&links),
            flood: observe::flood(&fdb, &vxlans),
            bridge_nf_call_iptables,
        })
    }

    async fn index(&self, name: &str) -> Result<u32, LinksError> {
        let found = self
            .handle
            .link()
            .get()
            .match_name(name)
            .execute()
            .try_next()
            .await;
        match found {
            Ok(Some(msg)) => Ok(msg.header.index),
            Ok(None) => Err(LinksError::Vanished(name.to_owned())),
            Err(rtnetlink::Error::NetlinkError(e))
                if -e.raw_code() == nix::errno::Errno::ENODEV as i32 =>
            {
                Err(LinksError::Vanished(name.to_owned()))
            }
            Err(e) => Err(nl(format!("get {name}"))(e)),
        }
    }

    /// Sends a request whose only answer is an ACK or an error.
    async fn request(
        &self,
        msg: RouteNetlinkMessage,
        flags: u16,
        what: String,
    ) -> Result<(), LinksError> {
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = flags;
        let mut handle = self.handle.clone();
        let mut answers = handle.request(req).map_err(nl(what.clone()))?;
        while let Some(a) = answers.next().await {
            if let NetlinkPayload::Error(e) = a.payload
                && e.code.is_some()
            {
                return Err(nl(what)(rtnetlink::Error::NetlinkError(e)));
            }
        }
        Ok(())
    }

    async fn change<T>(&self, b: LinkMessageBuilder<T>, what: String) -> Result<(), LinksError> {
        self.handle
            .link()
            .change(b.build())
            .execute()
            .await
            .map_err(nl(what))
    }

    async fn execute(&mut self, op: &LinkOp) -> Result<(), LinksError> {
        let what = op.to_string();
        let link = self.handle.link();
        match op {
            LinkOp::EnableBridgeNetfilter => match &self.bridge_nf {
                Some(f) => f.write_at(b"1\n", 0).map(drop).map_err(LinksError::Sysctl),
                None => Err(LinksError::NoBridgeNetfilter),
            },
            LinkOp::Delete { name } => match self.index(name).await {
                Ok(i) => link.del(i).execute().await.map_err(nl(what)),
                // Gone since the observation (someone else deleted it): that is what was wanted.
                Err(LinksError::Vanished(_)) => Ok(()),
                Err(e) => Err(e),
            },
            LinkOp::CreateBridge { name, mtu } => {
                let msg = LinkBridge::new(name).mtu(*mtu).up().build();
                link.add(msg).execute().await.map_err(nl(what))
            }
            LinkOp::CreateVxlan {
                name,
                vni,
                local,
                dev,
                port,
                mtu,
                bridge,
            } => {
                let mut b = LinkVxlan::new(name, *vni)
                    .local(*local)
                    .port(*port)
                    .learning(false);
                if let Some(d) = dev {
                    b = b.dev(self.index(d).await?);
                }
                let master = self.index(bridge).await?;
                let msg = b.mtu(*mtu).controller(master).up().build();
                link.add(msg).execute().await.map_err(nl(what))
            }
            LinkOp::CreateVlan {
                name,
                uplink,
                id,
                mtu,
                bridge,
            } => {
                let lower = self.index(uplink).await?;
                let master = self.index(bridge).await?;
                let msg = LinkVlan::new(name, lower, *id)
                    .mtu(*mtu)
                    .controller(master)
                    .up()
                    .build();
                link.add(msg).execute().await.map_err(nl(what))
            }
            LinkOp::SetMtu { name, mtu } => {
                let i = self.index(name).await?;
                self.change(LinkUnspec::new_with_index(i).mtu(*mtu), what)
                    .await
            }
            LinkOp::SetMaster { name, bridge } => {
                let i = self.index(name).await?;
                let master = self.index(bridge).await?;
                self.change(LinkUnspec::new_with_index(i).controller(master), what)
                    .await
            }
            LinkOp::SetUp { name } => {
                let i = self.index(name).await?;
                self.change(LinkUnspec::new_with_index(i).up(), what).await
            }
            LinkOp::AddFlood { name, peer } => {
                // Append: one all-zero entry holds every peer as a separate remote.
                let msg = flood_message(self.index(name).await?, *peer);
                let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND;
                self.request(RouteNetlinkMessage::NewNeighbour(msg), flags, what)
                    .await
            }
            LinkOp::DelFlood { name, peer } => {
                // With a destination, only that remote of the entry goes.
                let msg = flood_message(self.index(name).await?, *peer);
                let flags = NLM_F_REQUEST | NLM_F_ACK;
                self.request(RouteNetlinkMessage::DelNeighbour(msg), flags, what)
                    .await
            }
        }
    }
}

impl HostLinks for NetlinkLinks {
    async fn apply(&mut self, want: &HostNetworks) -> Result<LinkChanges, LinksError> {
        let seen = self.observe().await?;
        let planned = plan(want, &seen)?;
        for op in &planned.ops {
            tracing::debug!(%op, "links");
            self.execute(op).await?;
        }
        Ok(LinkChanges {
            applied: planned.ops,
            missing_ports: planned.missing_ports,
        })
    }
}
