//! The NATS engine against secured private servers: a credentials file (operator mode, JWTs
//! made by the test), an NKey seed file, user and password in the URL, and `tls://` with a CA
//! of our own (made with the `openssl` command). Passwords and seeds never appear in errors or
//! health reports.
#![cfg(feature = "nats")]

use std::time::Duration;

use data_encoding::BASE64URL_NOPAD;
use nkeys::KeyPair;
use sc_broker::nats::{self, NatsOptions};
use sc_broker::{Broker, EngineError, KvCommand, KvStore, connect_engine};
use sc_protocol::Json;
use sc_test_support::certs::make_certificates;
use sc_test_support::engine::{EngineKind, EngineServer, unique};
use sc_test_support::logs::capture_logs;
use sc_test_support::net::{free_port, listening};

/// A JWT of `claims` (the `nats` part) for `subject`, signed by `issuer`.
fn jwt(issuer: &KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    let header = serde_json::json!({"typ": "JWT", "alg": "ed25519-nkey"});
    let claims = serde_json::json!({
        "jti": unique("jti").replace(['-', '.'], ""),
        "iat": 1_700_000_000u64,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let signing_input = format!(
        "{}.{}",
        BASE64URL_NOPAD.encode(header.to_string().as_bytes()),
        BASE64URL_NOPAD.encode(claims.to_string().as_bytes())
    );
    let signature = issuer.sign(signing_input.as_bytes()).expect("sign");
    format!("{signing_input}.{}", BASE64URL_NOPAD.encode(&signature))
}

/// A private nats-server started from `config` (a config file body; `@PORT@` and `@DIR@` are
/// replaced), killed when dropped. The markers hold `@`, which base32 keys and base64url JWTs
/// never do: with bare `PORT` and `DIR`, a key or JWT that happened to contain "DIR" was
/// mangled (a flaky "Not a valid public nkey for a user": about 1 run in 600 of the NKey test,
/// 1 in 200 of the credentials test).
struct ConfigServer {
    port: u16,
    dir: std::path::PathBuf,
    child: std::process::Child,
}

impl ConfigServer {
    fn start(config: &str) -> ConfigServer {
        let port = free_port();
        let dir = std::env::temp_dir().join(unique("sc-nats-secure"));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("server.conf");
        let body = config
            .replace("@PORT@", &port.to_string())
            .replace("@DIR@", &dir.display().to_string());
        std::fs::write(&file, body).unwrap();
        let child = std::process::Command::new("nats-server")
            .arg("-c")
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("server.log")).unwrap())
            .spawn()
            .expect("nats-server");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !listening(port) {
            assert!(
                std::time::Instant::now() < deadline,
                "no server on {port}: {}",
                std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        ConfigServer { port, dir, child }
    }
}

impl Drop for ConfigServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn options() -> NatsOptions {
    NatsOptions {
        subject_prefix: format!("{}.", unique("scsec")),
        ..NatsOptions::default()
    }
}

/// Sets a key through `kv` and reads it back.
async fn round_trip(kv: &impl KvStore) {
    let key = vec![unique("k")];
    kv.execute(KvCommand::Set {
        key: key.clone(),
        value: Json::from_text("7").unwrap(),
    })
    .await
    .expect("set");
    let value = kv.execute(KvCommand::Get { key }).await.expect("get");
    assert_eq!(value.get(), "7");
}

#[tokio::test]
async fn a_credentials_file_logs_in_and_a_wrong_one_is_refused() {
    let operator = KeyPair::new_operator();
    let account = KeyPair::new_account();
    let user = KeyPair::new_user();
    let operator_jwt = jwt(
        &operator,
        &operator.public_key(),
        "op",
        serde_json::json!({"type": "operator", "version": 2}),
    );
    let unlimited = serde_json::json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
        "wildcards": true, "conn": -1, "leaf": -1,
        "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
    });
    let account_jwt = jwt(
        &operator,
        &account.public_key(),
        "acc",
        serde_json::json!({"limits": unlimited, "type": "account", "version": 2}),
    );
    let user_jwt = jwt(
        &account,
        &user.public_key(),
        "u",
        serde_json::json!({"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1, "type": "user", "version": 2}),
    );
    // JetStream in operator mode needs a system account.
    let system = KeyPair::new_account();
    let system_jwt = jwt(
        &operator,
        &system.public_key(),
        "SYS",
        serde_json::json!({"type": "account", "version": 2}),
    );
    let server = ConfigServer::start(&format!(
        "host: 127.0.0.1\nport: @PORT@\njetstream {{ store_dir: \"@DIR@/js\" }}\noperator: {operator_jwt}\nsystem_account: {sys}\nresolver: MEMORY\nresolver_preload: {{ {acc}: {account_jwt}, {sys}: {system_jwt} }}\n",
        acc = account.public_key(),
        sys = system.public_key(),
    ));
    let seed = user.seed().unwrap();
    let creds = server.dir.join("user.creds");
    std::fs::write(
        &creds,
        format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n************************* IMPORTANT *************************\n\n-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
        ),
    )
    .unwrap();

    let url = format!("nats://127.0.0.1:{}?creds={}", server.port, creds.display());
    let (broker, kv) = nats::connect(&url, options()).await.expect("creds login");
    assert!(broker.is_connected());
    round_trip(&kv).await;

    // Without credentials, or with a user of an unknown account: refused, typed, no seed shown.
    let bare = format!("nats://127.0.0.1:{}", server.port);
    let err = nats::connect(&bare, options()).await.expect_err("refused");
    assert!(matches!(err, EngineError::Auth { .. }), "{err:?}");
    let stranger = KeyPair::new_account();
    let wrong = server.dir.join("wrong.creds");
    let wrong_jwt = jwt(
        &stranger,
        &user.public_key(),
        "u",
        serde_json::json!({"type": "user", "version": 2}),
    );
    std::fs::write(
        &wrong,
        format!(
            "-----BEGIN NATS USER JWT-----\n{wrong_jwt}\n------END NATS USER JWT------\n-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
        ),
    )
    .unwrap();
    let err = nats::connect(
        &format!("nats://127.0.0.1:{}?creds={}", server.port, wrong.display()),
        options(),
    )
    .await
    .expect_err("refused");
    assert!(matches!(err, EngineError::Auth { .. }), "{err:?}");
    assert!(!err.to_string().contains(&seed));

    // A missing file is a clear URL error.
    let err = connect_engine(&format!(
        "nats://127.0.0.1:{}?creds=/no/such.creds",
        server.port
    ))
    .await
    .err()
    .expect("missing file");
    assert!(
        matches!(&err, EngineError::InvalidUrl { reason, .. } if reason.contains("/no/such.creds")),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_nkey_seed_file_logs_in() {
    let user = KeyPair::new_user();
    let server = ConfigServer::start(&format!(
        "host: 127.0.0.1\nport: @PORT@\njetstream {{ store_dir: \"@DIR@/js\" }}\nauthorization {{ users: [ {{ nkey: {} }} ] }}\n",
        user.public_key()
    ));
    let file = server.dir.join("user.nk");
    std::fs::write(&file, format!("{}\n", user.seed().unwrap())).unwrap();
    let url = format!("nats://127.0.0.1:{}?nkey={}", server.port, file.display());
    let (_broker, kv) = nats::connect(&url, options()).await.expect("nkey login");
    round_trip(&kv).await;
    let other = server.dir.join("other.nk");
    std::fs::write(&other, KeyPair::new_user().seed().unwrap()).unwrap();
    let err = nats::connect(
        &format!("nats://127.0.0.1:{}?nkey={}", server.port, other.display()),
        options(),
    )
    .await
    .expect_err("refused");
    assert!(matches!(err, EngineError::Auth { .. }), "{err:?}");
}

#[tokio::test]
async fn user_and_password_never_show_in_errors_logs_or_health() {
    let (_guard, logs) = capture_logs();
    let server = EngineServer::start(EngineKind::Nats, &["--user", "sc", "--pass", "t0p-s3cret"]);
    let good = format!("nats://sc:t0p-s3cret@127.0.0.1:{}", server.port);
    let (broker, kv) = nats::connect(&good, options()).await.expect("login");
    round_trip(&kv).await;
    let health = serde_json::to_string(&broker.health()).unwrap();
    assert!(
        health.contains(&format!("127.0.0.1:{}", server.port)),
        "{health}"
    );
    assert!(
        !health.contains("t0p-s3cret") && !health.contains("sc:"),
        "{health}"
    );
    assert!(!broker.describe().contains("t0p-s3cret"));

    let bad = format!(
        "nats://sc:wr0ng-s3cret@127.0.0.1:{},127.0.0.1:1",
        server.port
    );
    let err = connect_engine(&bad).await.err().expect("refused");
    assert!(
        matches!(
            err,
            EngineError::Auth { .. } | EngineError::Unreachable { .. }
        ),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("wr0ng-s3cret"), "{err}");
    assert!(!logs.text().contains("t0p-s3cret"));
    assert!(!logs.text().contains("wr0ng-s3cret"));
}

#[tokio::test]
async fn tls_scheme_with_our_own_ca() {
    let dir = std::env::temp_dir().join(unique("sc-nats-tls"));
    std::fs::create_dir_all(&dir).unwrap();
    make_certificates(&dir);
    let d = dir.display();
    let server = ConfigServer::start(&format!(
        "host: 127.0.0.1\nport: @PORT@\njetstream {{ store_dir: \"@DIR@/js\" }}\ntls {{ cert_file: \"{d}/server.pem\", key_file: \"{d}/server.key\" }}\n"
    ));
    let url = format!("tls://127.0.0.1:{}?tls_ca={d}/ca.pem", server.port);
    let (broker, kv) = connect_engine(&url).await.expect("tls with our CA");
    assert!(broker.is_connected());
    kv.execute(KvCommand::Set {
        key: vec![unique("k")],
        value: Json::from_text("1").unwrap(),
    })
    .await
    .expect("set over TLS");
    // Without our CA the server's certificate is not trusted.
    let err = connect_engine(&format!("tls://127.0.0.1:{}", server.port))
        .await
        .err()
        .expect("untrusted");
    assert!(matches!(err, EngineError::Unreachable { .. }), "{err:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
