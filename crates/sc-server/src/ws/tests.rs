//! The server WebSocket against an independent client implementation (tokio-websockets) and
//! against hand-made frames.

use std::future::poll_fn;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};
use tokio_websockets::{ClientBuilder, Message};

use super::*;

type Server = WebSocket<DuplexStream>;

fn pair(max_payload: usize) -> (Server, tokio_websockets::WebSocketStream<DuplexStream>) {
    let (a, b) = duplex(1 << 20);
    (
        WebSocket::new(a, max_payload),
        ClientBuilder::new().take_over(b),
    )
}

async fn next(server: &mut Server) -> Option<Result<Inbound, Error>> {
    poll_fn(|cx| server.poll_next(cx)).await
}

async fn flush(server: &mut Server) {
    poll_fn(|cx| server.poll_flush(cx)).await.unwrap();
}

/// A masked client frame, by hand.
fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x11, 0x22, 0x33, 0x44];
    let mut frame = vec![first];
    match payload.len() {
        n @ 0..=125 => frame.push(0x80 | n as u8),
        n @ 126..=65535 => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    let mut body = payload.to_vec();
    frame::unmask(&mut body, mask);
    frame.extend_from_slice(&body);
    frame
}

#[tokio::test]
async fn messages_both_ways_small_and_large() {
    let (mut server, mut client) = pair(1 << 20);
    for len in [0, 1, 125, 126, 65535, 65536, 200_000] {
        let text = "é".repeat(len / 2);
        client.send(Message::text(text.clone())).await.unwrap();
        assert_eq!(
            next(&mut server).await.unwrap().unwrap(),
            Inbound::Text(Bytes::from(text.clone()))
        );
        server.send_text(Bytes::from(text.clone())).unwrap();
        flush(&mut server).await;
        let echoed = client.next().await.unwrap().unwrap();
        assert_eq!(echoed.as_text(), Some(text.as_str()));
    }
    client.send(Message::binary(vec![0xFF, 0])).await.unwrap();
    assert_eq!(
        next(&mut server).await.unwrap().unwrap(),
        Inbound::Binary(Bytes::from_static(&[0xFF, 0]))
    );
}

#[tokio::test]
async fn many_frames_in_one_write_and_one_frame_in_many() {
    let (a, mut b) = duplex(1 << 20);
    let mut server = WebSocket::new(a, 1 << 20);
    let mut burst = Vec::new();
    for n in 0..50 {
        burst.extend(client_frame(0x81, format!("message {n}").as_bytes()));
    }
    b.write_all(&burst).await.unwrap();
    for n in 0..50 {
        let expected = Inbound::Text(Bytes::from(format!("message {n}")));
        assert_eq!(next(&mut server).await.unwrap().unwrap(), expected);
    }
    let big = client_frame(0x82, &vec![7; 100_000]);
    for byte in big.chunks(777) {
        b.write_all(byte).await.unwrap();
        tokio::task::yield_now().await;
    }
    assert_eq!(
        next(&mut server).await.unwrap().unwrap(),
        Inbound::Binary(Bytes::from(vec![7; 100_000]))
    );
    assert!(server.pending.is_empty() && server.pending.capacity() == 0);
}

#[tokio::test]
async fn fragments_are_assembled_around_control_frames() {
    let (a, mut b) = duplex(1 << 20);
    let mut server = WebSocket::new(a, 1 << 20);
    let mut frames = client_frame(0x01, "hé".as_bytes()[..2].as_ref());
    frames.extend(client_frame(0x89, b"ping!"));
    frames.extend(client_frame(0x00, &"hé".as_bytes()[2..]));
    frames.extend(client_frame(0x80, b" there"));
    b.write_all(&frames).await.unwrap();
    assert_eq!(
        next(&mut server).await.unwrap().unwrap(),
        Inbound::Text(Bytes::from("hé there"))
    );
    // The ping was answered with a pong carrying its payload.
    let mut pong = [0; 7];
    b.read_exact(&mut pong).await.unwrap();
    assert_eq!(&pong, b"\x8a\x05ping!");
}

#[tokio::test]
async fn client_close_is_echoed_and_ends_the_stream() {
    let (mut server, mut client) = pair(1024);
    client
        .send(Message::close(
            Some(tokio_websockets::CloseCode::NORMAL_CLOSURE),
            "bye",
        ))
        .await
        .unwrap();
    assert_eq!(
        next(&mut server).await.unwrap().unwrap(),
        Inbound::Close(1000, "bye".into())
    );
    assert!(matches!(
        server.send_text(Bytes::from_static(b"late")),
        Err(Error::AlreadyClosed)
    ));
    assert!(next(&mut server).await.is_none());
    // The client got the echo (the code, no reason) and considers the handshake done.
    let echo = client.next().await.unwrap().unwrap();
    assert_eq!(
        echo.as_close()
            .map(|(code, reason)| (u16::from(code), reason)),
        Some((1000, ""))
    );
    assert!(client.next().await.is_none());
}

#[tokio::test]
async fn server_close_waits_for_the_client_answer() {
    let (mut server, mut client) = pair(1024);
    server.send_text(Bytes::from_static(b"last")).unwrap();
    server.send_close(4321, &"x".repeat(200)).unwrap();
    flush(&mut server).await;
    assert_eq!(
        client.next().await.unwrap().unwrap().as_text(),
        Some("last")
    );
    let close = client.next().await.unwrap().unwrap();
    let (code, reason) = close.as_close().unwrap();
    assert_eq!((u16::from(code), reason.len()), (4321, 123));
    // tokio-websockets answers the close by itself; the answer reaches the server.
    let _ = client.flush().await;
    match next(&mut server).await.unwrap().unwrap() {
        Inbound::Close(4321, _) => {}
        other => panic!("expected the close answer, got {other:?}"),
    }
    assert!(next(&mut server).await.is_none());
}

/// Sends `bytes` and expects the server to fail with `code` on the wire.
async fn refused(bytes: &[u8], max_payload: usize, code: u16) -> Error {
    let (a, mut b) = duplex(1 << 20);
    let mut server = WebSocket::new(a, max_payload);
    b.write_all(bytes).await.unwrap();
    let error = next(&mut server).await.unwrap().unwrap_err();
    flush(&mut server).await;
    assert!(next(&mut server).await.is_none());
    let mut head = [0; 4];
    b.read_exact(&mut head).await.unwrap();
    assert_eq!(head[0], 0x88, "a close frame");
    assert_eq!(u16::from_be_bytes([head[2], head[3]]), code, "{error}");
    error
}

#[tokio::test]
async fn violations_close_with_the_rfc_codes() {
    let error = refused(&client_frame(0x81, &[b'a'; 2000]), 1024, 1009).await;
    assert_eq!(
        error.to_string(),
        "payload length of 2000 exceeds the limit of 1024"
    );
    let mut fragmented = client_frame(0x01, &[b'a'; 800]);
    fragmented.extend(client_frame(0x80, &[b'a'; 800]));
    refused(&fragmented, 1024, 1009).await;
    let error = refused(&client_frame(0x81, b"\xff\xfe"), 1024, 1007).await;
    assert!(matches!(error, Error::Protocol(ProtocolError::InvalidUtf8)));
    refused(&[0x81, 0x01, b'x'], 1024, 1002).await;
    refused(&client_frame(0xC1, b"x"), 1024, 1002).await;
    refused(&client_frame(0x80, b"x"), 1024, 1002).await;
    refused(&client_frame(0x88, b"\x03\xed"), 1024, 1002).await;
}

#[tokio::test]
async fn end_of_stream_mid_frame_is_an_error_and_at_a_boundary_is_not() {
    let (a, mut b) = duplex(1 << 20);
    let mut server = WebSocket::new(a, 1024);
    b.write_all(&client_frame(0x81, b"complete")).await.unwrap();
    drop(b);
    assert!(next(&mut server).await.unwrap().is_ok());
    assert!(next(&mut server).await.is_none());

    let (a, mut b) = duplex(1 << 20);
    let mut server = WebSocket::new(a, 1024);
    b.write_all(&client_frame(0x81, b"cut")[..5]).await.unwrap();
    drop(b);
    assert!(matches!(next(&mut server).await, Some(Err(Error::Io(_)))));
}

#[tokio::test]
async fn a_blocked_writer_resumes_where_it_stopped() {
    let (a, mut b) = duplex(100);
    let mut server = WebSocket::new(a, 1024);
    for n in 0..200u8 {
        server
            .send_text(Bytes::from(vec![b'a' + n % 26; 33]))
            .unwrap();
    }
    let reader = tokio::spawn(async move {
        let mut all = vec![0; 200 * 35];
        b.read_exact(&mut all).await.unwrap();
        all
    });
    flush(&mut server).await;
    let all = reader.await.unwrap();
    for (n, frame) in all.chunks(35).enumerate() {
        assert_eq!(&frame[..2], &[0x81, 33]);
        assert!(frame[2..].iter().all(|b| *b == b'a' + n as u8 % 26));
    }
    assert_eq!(server.out.capacity(), 0, "a grown queue is released");
}
