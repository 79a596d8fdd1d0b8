//! `yunctl`: kubectl's verbs for Yun's object store in bootstrap mode (no Kubernetes API
//! server yet): get, describe, apply, delete, scale, against the fleet etcd.
//!
//! Every failure ends as `error: ...` lines on stderr and exit code 1, never a panic message:
//! `main` does not return a `Result` (whose `Debug` output and backtrace a user would see).

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

mod apply;
mod cli;
mod config;
mod ctx;
mod delete;
mod describe;
mod error;
mod get;
mod jsonpath;
mod kinds;
mod manifests;
mod output;
mod scale;
mod table;
mod view;
mod watch;

use cli::{Cli, Command};
use ctx::Ctx;
use error::CtlError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(run(cli)),
        Err(e) => Err(CtlError::Usage(format!("cannot start the runtime: {e}"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut stderr = std::io::stderr().lock();
            for line in e.lines() {
                let _ = writeln!(stderr, "{line}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), CtlError> {
    if let Command::ApiResources = cli.command {
        output::print(&kinds::Kinds::builtin().table());
        return Ok(());
    }
    let settings = config::settings(&cli.global)?;
    let ctx = Ctx::connect(settings).await?;
    match &cli.command {
        Command::Get(args) => get::run(&ctx, args).await,
        Command::Describe { kind, names } => describe::run(&ctx, kind, names).await,
        Command::Apply { files } => apply::run(&ctx, files).await,
        Command::Delete(args) => delete::run(&ctx, args).await,
        Command::Scale {
            kind,
            name,
            replicas,
        } => scale::run(&ctx, kind, name, *replicas).await,
        Command::ApiResources => Ok(()),
    }
}
