//! `socketcluster`: runs the boilerplate app as a cluster, or writes a new app.

use clap::Parser;
use socketcluster::cli::{Cli, Command};
use socketcluster::cluster::{SocketCluster, Worker};
use socketcluster::config::ClusterConfig;
use socketcluster::{boilerplate, scaffold};

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,async_nats=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Some(Command::New { name, crates_path }) = cli.command {
        let dir = scaffold::write_app(std::path::Path::new(&name), crates_path.as_deref())?;
        println!(
            "Created {}. Run it with: cd {} && cargo run",
            dir.display(),
            dir.display()
        );
        return Ok(());
    }
    let config = ClusterConfig::load_over(
        boilerplate::defaults(),
        cli.run.config_file().as_deref(),
        &cli.run.overrides(),
    )?;
    SocketCluster::builder()
        .config(config)
        .worker_controller(|worker: Worker| async move {
            boilerplate::register(worker.server());
            Ok(())
        })
        .run()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(())
}
