//! `socketcluster new myapp` writes a project that builds against these crates and serves the
//! boilerplate: generate one, build it, run it, ping it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use sc_client::{Client, ClientOptions};
use sc_test_support::http::get_blocking;
use sc_test_support::process::spawn_listening;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_app_builds_runs_and_answers_ping_with_pong() {
    let root = workspace_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    let app = tmp.path().join("myapp");
    let status = Command::new(env!("CARGO_BIN_EXE_socketcluster"))
        .args(["new", app.to_str().expect("utf-8 path"), "--crates-path"])
        .arg(root.join("crates"))
        .status()
        .expect("run socketcluster new");
    assert!(status.success());
    // Same dependency versions as the workspace, so the build reuses its compiled crates.
    std::fs::copy(root.join("Cargo.lock"), app.join("Cargo.lock")).expect("copy Cargo.lock");
    let target = root.join("target");
    let build = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--manifest-path"])
        .arg(app.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .expect("cargo build");
    assert!(build.success(), "the generated app must build");

    let mut command = Command::new(target.join("debug").join("myapp"));
    command
        .current_dir(&app)
        .env("SOCKETCLUSTER_PORT", "0")
        .stderr(Stdio::null());
    let (mut server, port) = spawn_listening(&mut command, String::new);
    let url = format!("ws://127.0.0.1:{port}/socketcluster/");
    let client = Client::connect(&url, ClientOptions::default())
        .await
        .expect("connect");
    let mut pong = client.subscribe("pong").await.expect("subscribe");
    tokio::time::timeout(Duration::from_secs(10), pong.subscribed())
        .await
        .expect("in time")
        .expect("subscribed");
    client.invoke("ping", ()).await.expect("ping acknowledged");
    let first = tokio::time::timeout(Duration::from_secs(10), pong.next())
        .await
        .expect("pong in time");
    assert_eq!(first.expect("open").get(), "1");
    let page = get_blocking(port, "/");
    assert!(
        page.contains("<title>SocketCluster</title>"),
        "the app serves public/index.html"
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = server.wait();
}
