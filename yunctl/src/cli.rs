//! The command line: kubectl's verbs and flags, for the object store in bootstrap mode.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "yunctl",
    version,
    about = "Drive Yun's objects (hosts, images, VMs, volumes, ...) in bootstrap mode, like kubectl"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Connection and namespace flags; they override the config file and go before or after the verb.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// Config file [default: $HOME/.yun/yunctl.yaml].
    #[arg(long, global = true, env = "YUNCTL_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// etcd endpoints, comma-separated (e.g. https://10.0.0.1:2379,https://10.0.0.2:2379).
    #[arg(long, global = true, value_delimiter = ',', value_name = "URLS")]
    pub etcd_endpoints: Vec<String>,
    /// CA certificate etcd's serving certificate chains to (PEM).
    #[arg(long, global = true, value_name = "PATH")]
    pub etcd_ca: Option<PathBuf>,
    /// Client certificate (PEM); its CN is the etcd user.
    #[arg(long, global = true, value_name = "PATH")]
    pub etcd_cert: Option<PathBuf>,
    /// Client key (PEM); must not be readable by group or others.
    #[arg(long, global = true, value_name = "PATH")]
    pub etcd_key: Option<PathBuf>,
    /// Namespace [default: the config file's, else "default"].
    #[arg(short = 'n', long, global = true, value_name = "NS")]
    pub namespace: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List objects of a kind, or show named ones.
    Get(GetArgs),
    /// Show an object in detail, with its conditions and events.
    Describe {
        /// Kind: name, plural, singular or short name (vm, vmi, ...).
        kind: String,
        /// Objects to describe [default: every one in the namespace].
        names: Vec<String>,
    },
    /// Create or update the objects of manifest files (every document is validated first).
    Apply {
        /// A manifest file, or a directory of *.yaml/*.yml files; repeatable.
        #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
        files: Vec<PathBuf>,
    },
    /// Delete objects by name or by manifest, and wait until they are gone.
    Delete(DeleteArgs),
    /// Set the replica count of an object whose kind has a scale subresource.
    Scale {
        kind: String,
        name: String,
        #[arg(long, value_name = "N")]
        replicas: u32,
    },
    /// List the kinds this yunctl knows, with their short names.
    ApiResources,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// Kind: name, plural, singular or short name (vm, vmi, ...).
    pub kind: String,
    /// Objects to show [default: every one in the namespace].
    pub names: Vec<String>,
    #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
    pub output: Option<Output>,
    /// After listing, print a row for every change until interrupted.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// List across all namespaces (adds a NAMESPACE column).
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Kind, then one or more names.
    #[arg(required_unless_present = "files", conflicts_with = "files")]
    pub kind: Option<String>,
    pub names: Vec<String>,
    /// Delete the objects a manifest file (or directory) names; repeatable.
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// Wait until the objects are really gone (their finalizers processed).
    #[arg(long, action = ArgAction::Set, default_value_t = true, num_args = 0..=1,
          default_missing_value = "true", require_equals = true, value_name = "BOOL")]
    pub wait: bool,
    /// How long to wait, e.g. 30s, 2m, 1m30s.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// A missing object is not an error.
    #[arg(long)]
    pub ignore_not_found: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// The table with every printer column.
    Wide,
    Yaml,
    Json,
    /// kind.group/name, one per line.
    Name,
}

/// kubectl's durations: a sequence of number+unit (`ms`, `s`, `m`, `h`); a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {text:?} (e.g. 30s, 2m, 1m30s)");
    if text.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        let tail = &rest[digits..];
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let unit = match &tail[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        total += unit * u32::try_from(n).map_err(|_| bad())?;
        rest = &tail[unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubectls() {
        assert_eq!(parse_duration("120s"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        for bad in ["", "s", "1x", "1.5s", "m1"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn wait_defaults_to_true_and_takes_equals_false() {
        let cli = Cli::try_parse_from(["yunctl", "delete", "vm", "a"]).unwrap();
        let Command::Delete(d) = cli.command else {
            panic!("not delete")
        };
        assert!(d.wait);
        assert_eq!(d.timeout, Duration::from_secs(120));
        let cli = Cli::try_parse_from(["yunctl", "delete", "vm", "a", "--wait=false"]).unwrap();
        let Command::Delete(d) = cli.command else {
            panic!("not delete")
        };
        assert!(!d.wait);
    }

    #[test]
    fn global_flags_go_after_the_verb_and_endpoints_split_on_commas() {
        let cli = Cli::try_parse_from([
            "yunctl",
            "get",
            "vm",
            "-n",
            "team-a",
            "--etcd-endpoints",
            "http://a:2379,http://b:2379",
        ])
        .unwrap();
        assert_eq!(cli.global.namespace.as_deref(), Some("team-a"));
        assert_eq!(
            cli.global.etcd_endpoints,
            ["http://a:2379", "http://b:2379"]
        );
    }

    #[test]
    fn delete_needs_a_kind_or_a_file_not_both() {
        assert!(Cli::try_parse_from(["yunctl", "delete"]).is_err());
        assert!(Cli::try_parse_from(["yunctl", "delete", "vm", "a", "-f", "x.yaml"]).is_err());
        assert!(Cli::try_parse_from(["yunctl", "delete", "-f", "x.yaml"]).is_ok());
    }
}
