//! `socketcluster new myapp`: a ready Cargo project, like `socketcluster create` in Node.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The boilerplate page and browser client, shipped inside the binary.
const INDEX_HTML: &str = include_str!("../../../public/index.html");
const BROWSER_CLIENT: &str = include_str!("../../../public/socketcluster.js");

const MAIN_RS: &str = r#"//! {name}: a SocketCluster app. The master starts the brokers and workers from this same binary.

mod broker;
mod worker;

use socketcluster::cluster::SocketCluster;
use socketcluster::config::ClusterConfig;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| "info,async_nats=warn".into()))
        .with_writer(std::io::stderr)
        .init();
    // Defaults, then socketcluster.toml, then SOCKETCLUSTER_* environment variables.
    let config = ClusterConfig::load(Some("socketcluster.toml".as_ref()), &serde_json::json!({}))?;
    SocketCluster::builder()
        .config(config)
        .worker_controller(worker::run)
        .broker_controller(broker::run)
        .run()?;
    Ok(())
}
"#;

const WORKER_RS: &str = r#"//! The worker: business logic. A client emits `ping`; we count it and publish the count to `pong`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use socketcluster::cluster::{ControllerResult, Worker};
use socketcluster::sc_protocol::ScError;
use socketcluster::sc_server::{Reply, Request};

pub async fn run(worker: Worker) -> ControllerResult {
    let server = worker.server();
    let exchange = worker.exchange();
    let count = Arc::new(AtomicU64::new(0));
    server.on("ping", move |_req: Request| {
        let (exchange, count) = (exchange.clone(), count.clone());
        async move {
            let n = count.fetch_add(1, Ordering::Relaxed) + 1;
            exchange.publish("pong", &n).await.map_err(ScError::from)
        }
    })?;
    server.on("echo", |req: Request| async move { Ok::<_, ScError>(Reply::from(req.data().cloned())) })?;
    tracing::info!(worker = worker.id(), "worker started");
    Ok(())
}
"#;

const BROKER_RS: &str = r#"//! The broker: channels and session data are handled for you; add custom logic here.

use socketcluster::cluster::{BrokerProcess, ControllerResult};

pub async fn run(broker: BrokerProcess) -> ControllerResult {
    tracing::info!(broker = broker.id(), "broker started");
    Ok(())
}
"#;

const CONFIG_TOML: &str = r#"# SocketCluster options (same names as in Node); environment variables SOCKETCLUSTER_* and
# flags override them.
workers = 1
brokers = 1
port = 8000
socketChannelLimit = 1000
rebootWorkerOnCrash = true
"#;

/// Writes a new app into `dir` (which must not exist yet). The app depends on the socketcluster
/// crates by path: `crates_path`, or the workspace this binary was built from.
pub fn write_app(dir: &Path, crates_path: Option<&Path>) -> io::Result<PathBuf> {
    if dir.exists() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} already exists", dir.display()),
        ));
    }
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the app name must be letters, digits, - or _",
            )
        })?;
    let crates = match crates_path {
        Some(path) => path.to_path_buf(),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/..")),
    };
    let crates = crates.canonicalize().unwrap_or(crates);
    fs::create_dir_all(dir.join("src"))?;
    fs::create_dir_all(dir.join("public"))?;
    let cargo_toml = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[dependencies]
socketcluster = {{ path = "{crates}/socketcluster" }}
anyhow = "1"
serde_json = "1"
tracing = "0.1"
tracing-subscriber = {{ version = "0.3", features = ["env-filter"] }}
"#,
        crates = crates.display()
    );
    fs::write(dir.join("Cargo.toml"), cargo_toml)?;
    fs::write(dir.join("src/main.rs"), MAIN_RS.replace("{name}", name))?;
    fs::write(dir.join("src/worker.rs"), WORKER_RS)?;
    fs::write(dir.join("src/broker.rs"), BROKER_RS)?;
    fs::write(dir.join("socketcluster.toml"), CONFIG_TOML)?;
    fs::write(dir.join("public/index.html"), INDEX_HTML)?;
    fs::write(dir.join("public/socketcluster.js"), BROWSER_CLIENT)?;
    fs::write(dir.join(".gitignore"), "/target\n")?;
    Ok(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_every_file_and_refuses_existing_or_bad_names() {
        let tmp = tempfile::tempdir().unwrap();
        let app = tmp.path().join("myapp");
        write_app(&app, None).unwrap();
        for file in [
            "Cargo.toml",
            "src/main.rs",
            "src/worker.rs",
            "src/broker.rs",
            "public/index.html",
            "public/socketcluster.js",
        ] {
            assert!(app.join(file).exists(), "{file}");
        }
        let cargo = fs::read_to_string(app.join("Cargo.toml")).unwrap();
        assert!(
            cargo.contains("name = \"myapp\"") && cargo.contains("/socketcluster\" }"),
            "{cargo}"
        );
        assert!(write_app(&app, None).is_err());
        assert!(write_app(&tmp.path().join("bad name"), None).is_err());
    }
}
