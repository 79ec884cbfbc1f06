//! step03-network — the demo of chapter 3, "a network of its own".
//!
//! ```text
//! step03-network [--network none|bridge|host] [-p PORTS] [--add-host NAME:IP] [--dns IP] DIR CMD...
//! ```
//! runs CMD like step02-namespaces, plus the network options. The container's files
//! live under $CARTON_ROOT (default /var/lib/carton) while it runs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use step01::container::base_spec;
use step01::{Explain, Process};
use step02::{Context, Options};
use step03::{HostEntry, NetworkOptions};

#[derive(Parser)]
#[command(about = "Chapter 3 of carton: a network of its own")]
struct Cli {
    /// Print each kernel-level action as it happens.
    #[arg(long)]
    explain: bool,
    /// none (its own network namespace, only lo), bridge or host.
    #[arg(long, default_value = "none")]
    network: String,
    /// Add NAME:IP to /etc/hosts.
    #[arg(long = "add-host")]
    add_hosts: Vec<String>,
    /// A nameserver for /etc/resolv.conf.
    #[arg(long)]
    dns: Vec<String>,
    /// Publish a port: [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|/udp] (with --network bridge).
    #[arg(short, long)]
    publish: Vec<String>,
    dir: PathBuf,
    #[arg(required = true, trailing_var_arg = true)]
    command: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = (|| {
        let network = NetworkOptions {
            mode: cli.network.parse()?,
            add_hosts: cli.add_hosts.iter().map(|h| HostEntry::parse(h)).collect::<step01::Result<_>>()?,
            dns: cli.dns.iter().map(|d| step03::parse_dns(d)).collect::<step01::Result<_>>()?,
            subnet: step03::subnet_from_env()?,
            ports: cli.publish.iter().map(|p| step03::ports::PortMapping::parse(p)).collect::<step01::Result<_>>()?,
        };
        let rootfs = std::path::absolute(&cli.dir).map_err(|e| step01::Error::runtime(format!("{}: {e}", cli.dir.display())))?;
        let context = Context::new(Explain::when(cli.explain))?;
        // The container as an OCI runtime spec: chapters 1 and 2's parts, then this one's.
        let mut spec = base_spec(&Process::new(cli.command.clone()), &rootfs)?;
        step02::oci::write(&Options::new(context.id.clone()), &mut spec)?;
        network.write_oci(&mut spec);
        step03::run(&spec, &context)
    })();
    match result {
        Ok(exit) => ExitCode::from(exit.code() as u8),
        Err(error) => {
            eprintln!("step03-network: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
