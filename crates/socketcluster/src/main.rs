//! `socketcluster`: runs the boilerplate app as a cluster, or writes a new app.

use clap::Parser;
use socketcluster::cli::{Cli, Command};
use socketcluster::cluster::{SocketCluster, Worker};
use socketcluster::config::ClusterConfig;
use socketcluster::{boilerplate, ops, scaffold};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::New { name, crates_path }) = cli.command {
        ops::logging::init(ops::LogFormat::Pretty);
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
    ops::logging::init(config.ops.log_format);
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
