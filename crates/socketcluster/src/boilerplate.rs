//! The seed's boilerplate worker logic, plus the sign-in tour.
//!
//! SocketCluster's boilerplate `worker.js` reads:
//!
//! ```js
//! scServer.on('connection', function (socket) {
//!   socket.on('ping', function (data) {
//!     count++;
//!     scServer.exchange.publish('pong', count);
//!   });
//! });
//! ```
//!
//! Here the same in Rust, plus:
//!
//! - `echo`: answers with its data;
//! - `login` `{"username": "…"}`: signs the socket in (auth token with `username`); `loginShort`
//!   does the same with a token that expires after 2 seconds; `whoami` answers the username;
//! - `private/<username>`: only that user may subscribe; anyone may publish (one-to-one chat);
//! - `readonly/…`: clients may subscribe but not publish; `announce` publishes its data to
//!   `readonly/news` from the server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sc_protocol::ScError;
use sc_protocol::error::names;
use sc_server::middleware::{Block, PublishAction, SubscribeAction};
use sc_server::{Reply, Request, SendError, Server, SignOptions};
use serde::Deserialize;

/// Lifetime of the `loginShort` token, in seconds.
pub const SHORT_TOKEN_SECONDS: u64 = 2;

/// The boilerplate app's configuration before the file, environment and flags: SocketCluster's
/// defaults plus history (`room/*`: last 1000 publications, 600 s) and presence (`room/*`), so
/// that positions, recovery, history and presence can be tried on the default binary
/// (EXTENSIONS.md E1).
///
/// ```
/// let config = socketcluster::boilerplate::defaults();
/// assert_eq!(config.server.history[0].pattern, "room/*");
/// assert_eq!(config.server.presence, ["room/*"]);
/// ```
pub fn defaults() -> crate::config::ClusterConfig {
    let mut config = crate::config::ClusterConfig::default();
    config.server.history = vec![sc_server::HistoryOption {
        pattern: "room/*".to_owned(),
        size: 1000,
        ttl: 600,
    }];
    config.server.presence = vec!["room/*".to_owned()];
    config
}

/// Registers the boilerplate handlers and middleware on `server`.
///
/// ```
/// let server = sc_server::Server::new(Default::default()).unwrap();
/// socketcluster::boilerplate::register(&server);
/// ```
pub fn register(server: &Server) {
    handlers(server).expect("the boilerplate's event names are not reserved");
}

/// [`register`]'s handlers and middleware.
fn handlers(server: &Server) -> Result<(), SendError> {
    let exchange = server.exchange();
    let count = Arc::new(AtomicU64::new(0));
    server.on("ping", move |_req: Request| {
        let (exchange, count) = (exchange.clone(), count.clone());
        async move {
            let n = count.fetch_add(1, Ordering::Relaxed) + 1;
            exchange.publish("pong", &n).await.map_err(ScError::from)
        }
    })?;
    server.on("echo", |req: Request| async move {
        Ok::<_, ScError>(Reply::from(req.data().cloned()))
    })?;
    server.on("login", |req: Request| async move { login(&req, None) })?;
    server.on("loginShort", |req: Request| async move {
        login(&req, Some(SHORT_TOKEN_SECONDS))
    })?;
    server.on("whoami", |req: Request| async move {
        match req.socket().auth_token() {
            Some(token) => Reply::json(&token.claim_str("username")),
            None => Err(ScError::new(
                "NotSignedInError",
                "This socket is not signed in",
            )),
        }
    })?;
    let exchange = server.exchange();
    server.on("announce", move |req: Request| {
        let exchange = exchange.clone();
        async move {
            exchange.publish_json("readonly/news", req.data()).await?;
            Ok::<_, ScError>(())
        }
    })?;
    server
        .middleware()
        .subscribe(|action: SubscribeAction| async move {
            if let Some(owner) = action.channel.strip_prefix("private/") {
                let token = action.socket.auth_token();
                if token.as_ref().and_then(|t| t.claim_str("username")) != Some(owner) {
                    return Err(Block::Error(ScError::new(
                        "ForbiddenChannelError",
                        format!("Only {owner} may subscribe to {}", action.channel),
                    )));
                }
            }
            Ok(action)
        });
    server
        .middleware()
        .publish_in(|action: PublishAction| async move {
            if action.channel.starts_with("readonly/") {
                return Err(Block::Error(ScError::new(
                    "ReadOnlyChannelError",
                    format!("Clients may not publish to {}", action.channel),
                )));
            }
            Ok(action)
        });
    Ok(())
}

fn login(req: &Request, expires_in: Option<u64>) -> Result<(), ScError> {
    #[derive(Deserialize)]
    struct Credentials {
        username: Option<String>,
    }
    let username = req
        .parse::<Credentials>()
        .ok()
        .and_then(|c| c.username)
        .filter(|name| !name.trim().is_empty())
        .ok_or_else(|| {
            ScError::new(names::INVALID_ARGUMENTS, "A non-empty username is required")
        })?;
    req.socket().set_auth_token(
        &serde_json::json!({ "username": username }),
        &SignOptions { expires_in },
    )?;
    Ok(())
}
