//! The server inside someone else's axum app: `server.router()` merged with other routes, served
//! by plain `axum::serve`.

mod common;

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use common::{Client, http_request};
use sc_protocol::ScError;
use sc_server::{Reply, Request, Server};

#[tokio::test]
async fn the_socketcluster_route_works_inside_an_existing_axum_app() {
    let realtime = Server::new(common::v2()).expect("server");
    realtime
        .on("echo", |req: Request| async move {
            Ok::<_, ScError>(Reply::from(req.data().cloned()))
        })
        .unwrap();
    let app = Router::new()
        .route("/api/status", get(|| async { "app ok" }))
        .merge(realtime.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });

    let status = http_request(
        addr,
        "GET /api/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        (status.status, status.body.as_str()),
        (200, "app ok"),
        "the app's own route still answers"
    );

    let mut client = Client::connect(addr, "/socketcluster/", &[])
        .await
        .expect("upgrade");
    client.handshake(realtime.options().ping_timeout).await;
    client
        .send_text(r#"{"event":"echo","data":{"embedded":true},"cid":2}"#)
        .await;
    assert_eq!(
        client.recv_text().await,
        r#"{"rid":2,"data":{"embedded":true}}"#
    );
    let socket = realtime.socket(client.id()).expect("registered");
    assert!(
        socket.request().remote_addr.is_some(),
        "connect info reaches the socket"
    );
}
