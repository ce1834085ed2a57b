//! JWT authentication on the wire (docs/protocol.md §8, TV-13..TV-15, TV-22, TV-23): tokens at the
//! handshake and in `#authenticate`, bad tokens of every kind, expiry while connected.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Client, TestServer, handshake_id, start_server, v1, v2};
use sc_protocol::ScError;
use sc_server::{Request, ServerOptions, SignOptions};
use serde_json::{Value, json};

const KEY: &str = "test-secret-key";

fn with_key(options: ServerOptions) -> ServerOptions {
    ServerOptions {
        auth_key: Some(KEY.into()),
        ..options
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn sign(ts: &TestServer, claims: Value) -> String {
    ts.server
        .auth()
        .sign(&claims, &SignOptions::default())
        .expect("sign")
        .signed
}

/// Sends `#handshake` with `token` (JSON text) and returns the parsed response data.
async fn handshake_with(client: &mut Client, token: &str) -> Value {
    client
        .send_text(&format!(
            r##"{{"event":"#handshake","data":{{"authToken":{token}}},"cid":1}}"##
        ))
        .await;
    let response: Value = serde_json::from_str(&client.recv_text().await).expect("json");
    assert_eq!(response["rid"], 1);
    response["data"].clone()
}

async fn server_with_whoami(options: ServerOptions) -> TestServer {
    start_server(options, |server| {
        server
            .on("whoami", |req: Request| async move {
                let token = req
                    .socket()
                    .auth_token()
                    .ok_or_else(|| ScError::new("NotSignedInError", "no"))?;
                sc_server::Reply::json(&token.claim_str("username"))
            })
            .unwrap();
        server
            .on("login", |req: Request| async move {
                let claims: Value = req.parse()?;
                req.socket().set_auth_token(
                    &claims,
                    &SignOptions {
                        expires_in: Some(1),
                    },
                )?;
                Ok::<_, ScError>(())
            })
            .unwrap();
        server
            .on("logout", |req: Request| async move {
                req.socket().deauthenticate();
                Ok::<_, ScError>(())
            })
            .unwrap();
    })
    .await
}

#[tokio::test]
async fn a_valid_token_authenticates_the_handshake() {
    let ts = server_with_whoami(with_key(v2())).await;
    let token = sign(&ts, json!({ "username": "alice" }));
    let mut client = ts.connect().await;
    let data = handshake_with(&mut client, &format!("\"{token}\"")).await;
    assert_eq!(data["isAuthenticated"], true);
    assert!(data.get("authError").is_none());
    client.send_text(r#"{"event":"whoami","cid":2}"#).await;
    assert_eq!(client.recv_text().await, r#"{"rid":2,"data":"alice"}"#);
}

#[tokio::test]
async fn bad_tokens_get_the_reference_errors_and_are_removed() {
    let ts = server_with_whoami(with_key(v2())).await;
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(r#"{"username":"mallory"}"#);
    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let rs_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#);
    let other_key = sc_server::AuthEngine::from_options(&ServerOptions {
        auth_key: Some("other".into()),
        ..v2()
    })
    .expect("engine")
    .sign(&json!({ "username": "bob" }), &SignOptions::default())
    .expect("sign")
    .signed;
    let expired = sign(&ts, json!({ "username": "old", "exp": now() - 10 }));
    let cases: Vec<(String, &str, &str)> = vec![
        (
            "\"not-a-jwt\"".into(),
            "AuthTokenInvalidError",
            "jwt malformed",
        ),
        (
            format!("\"{other_key}\""),
            "AuthTokenInvalidError",
            "invalid signature",
        ),
        (
            format!("\"{header}.{payload}.AAAA\""),
            "AuthTokenInvalidError",
            "invalid signature",
        ),
        (
            format!("\"{none_header}.{payload}.\""),
            "AuthTokenInvalidError",
            "jwt signature is required",
        ),
        (
            format!("\"{rs_header}.{payload}.AAAA\""),
            "AuthTokenInvalidError",
            "invalid algorithm",
        ),
        (
            format!("\"a.{}.b\"", "x".repeat(100_000)),
            "AuthTokenInvalidError",
            "jwt malformed",
        ),
        (
            "12345".into(),
            "AuthTokenError",
            "Invalid token format - Token must be a string",
        ),
        (
            format!("\"{expired}\""),
            "AuthTokenExpiredError",
            "jwt expired",
        ),
    ];
    for (token, name, message) in cases {
        let mut client = ts.connect().await;
        let data = handshake_with(&mut client, &token).await;
        assert_eq!(data["isAuthenticated"], false, "{token:.60}");
        assert_eq!(data["authError"]["name"], name, "{token:.60}");
        assert_eq!(data["authError"]["message"], message, "{token:.60}");
        assert_eq!(data["authError"]["isBadToken"], true);
        if name == "AuthTokenExpiredError" {
            assert!(
                data["authError"]["expiry"]
                    .as_str()
                    .is_some_and(|d| d.ends_with(".000Z"))
            );
        }
        // v15+ order: the response, then #removeAuthToken.
        assert_eq!(
            client.recv_text().await,
            r##"{"event":"#removeAuthToken"}"##
        );
        client.send_text(r#"{"event":"whoami","cid":2}"#).await;
        assert!(client.recv_text().await.contains("NotSignedInError"));
    }
}

#[tokio::test]
async fn v1_connections_get_remove_auth_token_first_and_without_is_bad_token() {
    let ts = server_with_whoami(with_key(v1())).await;
    let mut client = ts.connect().await;
    client
        .send_text(r##"{"event":"#handshake","data":{"authToken":"not-a-jwt"},"cid":1}"##)
        .await;
    assert_eq!(
        client.recv_text().await,
        r##"{"event":"#removeAuthToken","data":null}"##
    );
    let response = client.recv_text().await;
    let id = handshake_id(&response);
    assert_eq!(
        response,
        format!(
            r#"{{"rid":1,"data":{{"id":"{id}","pingTimeout":20000,"authError":{{"message":"jwt malformed","name":"AuthTokenInvalidError"}},"isAuthenticated":false}}}}"#
        )
    );
}

#[tokio::test]
async fn a_token_not_yet_valid_is_kept() {
    let ts = server_with_whoami(with_key(v2())).await;
    let token = sign(&ts, json!({ "username": "later", "nbf": now() + 3600 }));
    let mut client = ts.connect().await;
    let data = handshake_with(&mut client, &format!("\"{token}\"")).await;
    assert_eq!(data["authError"]["name"], "AuthTokenNotBeforeError");
    assert_eq!(data["authError"]["isBadToken"], false);
    client.expect_nothing_before_echo(2).await;
}

#[tokio::test]
async fn authenticate_outcomes() {
    let ts = server_with_whoami(with_key(v2())).await;
    let mut client = ts.client().await;
    let good = sign(&ts, json!({ "username": "carol" }));
    client
        .send_text(&format!(
            r##"{{"event":"#authenticate","data":"{good}","cid":2}}"##
        ))
        .await;
    assert_eq!(
        client.recv_text().await,
        r#"{"rid":2,"data":{"isAuthenticated":true,"authError":null}}"#
    );
    assert!(ts.socket(&client).is_authenticated());

    client
        .send_text(r##"{"event":"#authenticate","data":"garbage","cid":3}"##)
        .await;
    assert_eq!(
        client.recv_text().await,
        r#"{"rid":3,"error":{"message":"jwt malformed","name":"AuthTokenInvalidError","isBadToken":true}}"#
    );
    assert_eq!(
        client.recv_text().await,
        r##"{"event":"#removeAuthToken"}"##
    );
    assert!(!ts.socket(&client).is_authenticated());

    client
        .send_text(r##"{"event":"#authenticate","data":null,"cid":4}"##)
        .await;
    assert_eq!(
        client.recv_text().await,
        r#"{"rid":4,"error":{"message":"jwt must be provided","name":"AuthTokenInvalidError","isBadToken":true}}"#
    );
    assert_eq!(
        client.recv_text().await,
        r##"{"event":"#removeAuthToken"}"##
    );

    let later = sign(&ts, json!({ "nbf": now() + 3600 }));
    client
        .send_text(&format!(
            r##"{{"event":"#authenticate","data":"{later}","cid":5}}"##
        ))
        .await;
    let answer: Value = serde_json::from_str(&client.recv_text().await).expect("json");
    assert_eq!(answer["data"]["isAuthenticated"], false);
    assert_eq!(
        answer["data"]["authError"]["name"],
        "AuthTokenNotBeforeError"
    );

    client
        .send_text(r##"{"event":"#authenticate","data":"x"}"##)
        .await;
    assert_eq!(
        client.expect_close().await.0,
        4008,
        "#authenticate without a cid"
    );
}

#[tokio::test]
async fn server_issued_tokens_expire_while_connected() {
    let ts = server_with_whoami(with_key(v2())).await;
    let mut client = ts.client().await;
    client
        .send_text(r#"{"event":"login","data":{"username":"dave"},"cid":2}"#)
        .await;
    let token_frame = client.recv_text().await;
    assert!(
        token_frame.starts_with(r##"{"event":"#setAuthToken","data":{"token":"eyJ"##),
        "{token_frame}"
    );
    assert_eq!(client.recv_text().await, r#"{"rid":2}"#);
    client.send_text(r#"{"event":"whoami","cid":3}"#).await;
    assert_eq!(client.recv_text().await, r#"{"rid":3,"data":"dave"}"#);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    client
        .send_text(r#"{"event":"echo","data":"after expiry","cid":4}"#)
        .await;
    assert_eq!(
        client.recv_text().await,
        r##"{"event":"#removeAuthToken"}"##
    );
    assert_eq!(
        client.recv_text().await,
        r#"{"rid":4,"data":"after expiry"}"#
    );
    assert!(!ts.socket(&client).is_authenticated());
}

#[tokio::test]
async fn logout_from_either_side() {
    let ts = server_with_whoami(with_key(v2())).await;
    let mut client = ts.client().await;
    client
        .send_text(r#"{"event":"login","data":{"username":"erin"},"cid":2}"#)
        .await;
    let _token = client.recv_text().await;
    assert_eq!(client.recv_text().await, r#"{"rid":2}"#);
    client.send_text(r#"{"event":"logout","cid":3}"#).await;
    // A token operation inside a handler goes out before the handler's answer (v14's order).
    assert_eq!(
        client.recv_text().await,
        r##"{"event":"#removeAuthToken"}"##
    );
    assert_eq!(client.recv_text().await, r#"{"rid":3}"#);
    assert!(!ts.socket(&client).is_authenticated());

    let good = sign(&ts, json!({ "username": "erin" }));
    client
        .send_text(&format!(
            r##"{{"event":"#authenticate","data":"{good}","cid":4}}"##
        ))
        .await;
    let _ = client.recv_text().await;
    assert!(ts.socket(&client).is_authenticated());
    // The client logs out: the server forgets the token and sends nothing back.
    client.send_text(r##"{"event":"#removeAuthToken"}"##).await;
    client.expect_nothing_before_echo(5).await;
    assert!(!ts.socket(&client).is_authenticated());
}

fn key_pair_options(algorithm: &str, private: &str, public: &str) -> ServerOptions {
    ServerOptions {
        auth_algorithm: Some(algorithm.into()),
        auth_private_key: Some(private.into()),
        auth_public_key: Some(public.into()),
        ..v2()
    }
}

#[tokio::test]
async fn key_pairs_sign_and_verify_rs256_and_es256() {
    let cases = [
        (
            "RS256",
            include_str!("keys/test-rsa-private.pem"),
            include_str!("keys/test-rsa-public.pem"),
        ),
        (
            "ES256",
            include_str!("keys/test-ec-private.pem"),
            include_str!("keys/test-ec-public.pem"),
        ),
    ];
    for (algorithm, private, public) in cases {
        let ts = server_with_whoami(key_pair_options(algorithm, private, public)).await;
        let token = sign(&ts, json!({ "username": "kim" }));
        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').next().expect("header"))
                .expect("base64"),
        )
        .expect("json");
        assert_eq!(header["alg"], algorithm);
        let mut client = ts.connect().await;
        let data = handshake_with(&mut client, &format!("\"{token}\"")).await;
        assert_eq!(data["isAuthenticated"], true, "{algorithm}");
        client.send_text(r#"{"event":"whoami","cid":2}"#).await;
        assert_eq!(client.recv_text().await, r#"{"rid":2,"data":"kim"}"#);

        // An HMAC token (wrong key type for this server) is refused.
        let hmac = sc_server::AuthEngine::from_options(&with_key(v2()))
            .expect("engine")
            .sign(&json!({ "username": "kim" }), &SignOptions::default())
            .expect("sign")
            .signed;
        let mut client = ts.connect().await;
        let data = handshake_with(&mut client, &format!("\"{hmac}\"")).await;
        assert_eq!(data["isAuthenticated"], false);
        assert_eq!(data["authError"]["name"], "AuthTokenInvalidError");
    }
}

#[test]
fn a_key_pair_needs_both_halves_and_an_algorithm() {
    let public = include_str!("keys/test-ec-public.pem");
    let half = ServerOptions {
        auth_public_key: Some(public.into()),
        ..v2()
    };
    assert!(sc_server::Server::new(half).is_err());
    let no_algorithm = ServerOptions {
        auth_algorithm: None,
        ..key_pair_options("ES256", include_str!("keys/test-ec-private.pem"), public)
    };
    assert!(sc_server::Server::new(no_algorithm).is_err());
    let wrong = key_pair_options("ES256", "not a pem", public);
    assert!(sc_server::Server::new(wrong).is_err());
}
