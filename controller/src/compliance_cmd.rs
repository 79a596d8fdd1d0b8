//! `yun-controller compliance report`: reads the fleet bus once and prints the compliance
//! report (see `yun_controller::compliance` and docs/ops/compliance.md). It is a report: it
//! exits 0 whatever it finds, and non-zero only when it cannot produce one (etcd unreachable,
//! a bad flag).

use clap::{Subcommand, ValueEnum};
use std::time::Duration;
use yun_controller::compliance::{self, DEFAULT_ROTATION_PERIOD, Policy};

#[derive(Debug, Subcommand)]
pub enum ComplianceCommand {
    /// Per tenant: VMs without a security group, volumes in clear text over the network,
    /// credentials older than the rotation period, hosts whose agent is behind the controller.
    /// Exits 0 even with findings.
    Report {
        #[command(flatten)]
        bus: crate::BusArgs,
        /// Only this tenant (namespace); the fleet-wide host section is left out.
        #[arg(long)]
        tenant: Option<String>,
        /// Credentials older than this are reported: `30d`, `12h`, `90m`, `1d12h`.
        #[arg(long, default_value = DEFAULT_ROTATION_PERIOD, value_parser = compliance::parse_period)]
        rotation_period: Duration,
        /// `table` for people, `json` (schema `yun.compliance/v1`) for machines.
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

pub async fn run(cmd: ComplianceCommand) -> anyhow::Result<()> {
    match cmd {
        ComplianceCommand::Report {
            bus,
            tenant,
            rotation_period,
            output,
        } => {
            let bus = bus.connect().await?;
            let (hosts, _) = bus.fleet_view().await?;
            let policy = Policy {
                controller_version: env!("CARGO_PKG_VERSION").parse()?,
                rotation_period,
            };
            // Whole seconds: the report's time is for people and file names, not ordering.
            let now = jiff::Timestamp::now();
            let now = jiff::Timestamp::from_second(now.as_second()).unwrap_or(now);
            let mut report = compliance::report(&hosts, &policy, now);
            if let Some(tenant) = tenant {
                report = report.for_tenant(&tenant);
            }
            match output {
                Output::Table => print!("{}", compliance::render_table(&report)),
                Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            }
            Ok(())
        }
    }
}
