//! `yun-controller bus-auth enable|add-host|remove-host`: provisions the fleet bus's etcd
//! users and roles. Run with the certificate of etcd's root user (`--etcd-cert`/`--etcd-key`);
//! see docs/ops/fleet-bus-security.md.

use anyhow::Context;
use clap::Subcommand;
use yun_fleet_etcd::FleetBus;
use yun_fleet_etcd::roles::{self, CONTROLLER_USER, STORE_CLIENT_USER};

#[derive(Debug, Subcommand)]
pub enum BusAuthCommand {
    /// Create etcd's root user, turn authentication on, and create the controller's user
    /// (read-write on /yun/v1/). Safe to run again.
    Enable {
        /// The CN of the controller's certificate (its etcd user).
        #[arg(long, default_value = CONTROLLER_USER)]
        controller_cn: String,
    },
    /// Create or update the user `host:<NAME>`: reads /yun/v1/hosts/<NAME>/, writes only its
    /// info, images and report/ records. Safe to run again.
    AddHost { name: String },
    /// Delete the user and role `host:<NAME>` (a decommissioned host).
    RemoveHost { name: String },
    /// Create or update a `yunctl` user: reads and writes the object store (/yun/store/v1/)
    /// and nothing of the fleet. Safe to run again.
    AddClient {
        /// The CN of the client's certificate (its etcd user).
        #[arg(long, default_value = STORE_CLIENT_USER)]
        cn: String,
    },
}

pub async fn run(bus: &FleetBus, cmd: BusAuthCommand) -> anyhow::Result<()> {
    match cmd {
        BusAuthCommand::Enable { controller_cn } => {
            roles::ensure_root_and_enable_auth(bus)
                .await
                .context("enabling etcd authentication")?;
            roles::ensure_controller_user(bus, &controller_cn)
                .await
                .with_context(|| format!("provisioning the controller's user {controller_cn}"))?;
            println!("etcd authentication is on; controller user {controller_cn} provisioned");
        }
        BusAuthCommand::AddHost { name } => {
            roles::ensure_host_user(bus, &name)
                .await
                .with_context(|| format!("provisioning host {name}"))?;
            println!("host user {} provisioned", roles::host_user(&name)?);
        }
        BusAuthCommand::RemoveHost { name } => {
            roles::remove_host_user(bus, &name)
                .await
                .with_context(|| format!("removing host {name}"))?;
            println!("host user {} removed", roles::host_user(&name)?);
        }
        BusAuthCommand::AddClient { cn } => {
            roles::ensure_store_client_user(bus, &cn)
                .await
                .with_context(|| format!("provisioning store client {cn}"))?;
            println!("store client user {cn} provisioned (object store only)");
        }
    }
    Ok(())
}
