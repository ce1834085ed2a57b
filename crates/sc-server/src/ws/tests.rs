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
    // A text fragment that cannot begin valid UTF-8 is refused before the message completes
    // (fail fast, as Autobahn 6.4 asks); a sequence cut between fragments is not.
    let error = refused(&client_frame(0x01, b"ok\x80"), 1024, 1007).await;
    assert!(matches!(error, Error::Protocol(ProtocolError::InvalidUtf8)));
    let mut cut = client_frame(0x01, b"caf\xc3");
    cut.extend(client_frame(0x00, b"\xa9 \xff"));
    refused(&cut, 1024, 1007).await;
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

#[tokio::test]
async fn a_lying_length_reserves_nothing_up_front() {
    // A 14-byte header announcing 50 MiB, then a few bytes: the buffer holds what arrived.
    let (a, mut b) = duplex(1 << 20);
    let mut server = WebSocket::new(a, 100 << 20);
    let mut head = vec![0x82, 0xFF];
    head.extend_from_slice(&(50u64 << 20).to_be_bytes());
    head.extend_from_slice(&[1, 2, 3, 4]);
    head.extend_from_slice(&[0; 100]);
    b.write_all(&head).await.unwrap();
    let polled =
        tokio::time::timeout(std::time::Duration::from_millis(50), next(&mut server)).await;
    assert!(polled.is_err(), "the frame is incomplete");
    assert!(
        server.pending.capacity() < 1 << 20,
        "reserved {} bytes for 114 received",
        server.pending.capacity()
    );
    // Announcing more than maxPayload closes with 1009 at once.
    let mut head = vec![0x82, 0xFF];
    head.extend_from_slice(&(200u64 << 20).to_be_bytes());
    head.extend_from_slice(&[1, 2, 3, 4]);
    refused(&head, 100 << 20, 1009).await;
}

#[tokio::test]
async fn pings_from_a_client_that_never_reads_stop_being_read() {
    // The client writes pings and reads nothing: the pongs wait in a bounded queue, then the
    // server stops reading (the client's writes block) instead of queuing without limit.
    let (a, mut b) = duplex(4096);
    let limit = 64;
    let mut server = WebSocket::new(a, 1024).with_queue_limit(limit);
    let writer = tokio::spawn(async move {
        let ping = client_frame(0x89, &[b'p'; 100]);
        for _ in 0..20_000 {
            if b.write_all(&ping).await.is_err() {
                break;
            }
        }
        b
    });
    let polled =
        tokio::time::timeout(std::time::Duration::from_millis(500), next(&mut server)).await;
    assert!(polled.is_err(), "pings are not messages");
    assert!(
        server.out.len() <= limit,
        "{} pongs queued, limit {limit}",
        server.out.len()
    );
    assert!(!writer.is_finished(), "the client's writes are blocked");
    writer.abort();
}

/// A compressed client frame (RSV1 set): `payload` deflated without context, sync tail removed.
fn compressed_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let deflated = deflate::compress(payload, 15);
    let mut frame = client_frame(first & 0x0F | 0x80, &deflated);
    frame[0] = first | 0x40;
    frame
}

fn deflating(max_payload: usize, threshold: usize) -> (Server, DuplexStream) {
    let (a, b) = duplex(1 << 20);
    let deflate = Deflate {
        threshold,
        window_bits: 15,
    };
    (
        WebSocket::new(a, max_payload).with_deflate(Some(deflate)),
        b,
    )
}

#[tokio::test]
async fn compressed_messages_are_inflated_whole_or_in_fragments() {
    let (mut server, mut b) = deflating(1 << 20, 0);
    let text = "hello hello hello hello ".repeat(100);
    b.write_all(&compressed_frame(0x81, text.as_bytes()))
        .await
        .unwrap();
    assert_eq!(
        next(&mut server).await.unwrap().unwrap(),
        Inbound::Text(Bytes::from(text.clone()))
    );
    // Fragmented: RSV1 on the first frame only, the compressed bytes split across frames.
    let deflated = deflate::compress(text.as_bytes(), 15);
    let (one, two) = deflated.split_at(deflated.len() / 2);
    let mut first = client_frame(0x01, one);
    first[0] |= 0x40;
    b.write_all(&first).await.unwrap();
    b.write_all(&client_frame(0x89, b"mid")).await.unwrap();
    b.write_all(&client_frame(0x80, two)).await.unwrap();
    assert_eq!(
        next(&mut server).await.unwrap().unwrap(),
        Inbound::Text(Bytes::from(text.clone()))
    );
    // Uncompressed messages still pass as they are.
    b.write_all(&client_frame(0x82, b"\x00raw")).await.unwrap();
    assert_eq!(
        next(&mut server).await.unwrap().unwrap(),
        Inbound::Binary(Bytes::from_static(b"\x00raw"))
    );
}

#[tokio::test]
async fn a_zip_bomb_closes_with_1009_before_inflating_it() {
    // 64 MiB of zeros deflate to about 64 KiB; the limit is 1 MiB.
    let (mut server, mut b) = deflating(1 << 20, 0);
    let bomb = compressed_frame(0x82, &vec![0; 64 << 20]);
    assert!(bomb.len() < 1 << 20);
    b.write_all(&bomb).await.unwrap();
    let error = next(&mut server).await.unwrap().unwrap_err();
    assert!(matches!(error, Error::PayloadTooLong { .. }), "{error}");
    flush(&mut server).await;
    let mut head = [0; 4];
    b.read_exact(&mut head).await.unwrap();
    assert_eq!(
        (head[0], u16::from_be_bytes([head[2], head[3]])),
        (0x88, 1009)
    );
    // Invalid compressed data is 1007; RSV1 without deflate negotiated stays 1002.
    let (mut server, mut b) = deflating(1 << 20, 0);
    let mut junk = client_frame(0x81, b"\xff\xff\xff\xff");
    junk[0] |= 0x40;
    b.write_all(&junk).await.unwrap();
    assert!(next(&mut server).await.unwrap().is_err());
    flush(&mut server).await;
    b.read_exact(&mut head).await.unwrap();
    assert_eq!(u16::from_be_bytes([head[2], head[3]]), 1007);
    refused(&compressed_frame(0x81, b"abc"), 1024, 1002).await;
}

#[tokio::test]
async fn server_messages_above_the_threshold_go_out_compressed() {
    let (mut server, mut b) = deflating(1 << 20, 100);
    let big = Bytes::from("x".repeat(1000));
    server.send_text(Bytes::from_static(b"small")).unwrap();
    server.send_text(big.clone()).unwrap();
    flush(&mut server).await;
    let mut small = [0; 7];
    b.read_exact(&mut small).await.unwrap();
    assert_eq!(&small, b"\x81\x05small", "below the threshold: as is");
    let mut head = [0; 2];
    b.read_exact(&mut head).await.unwrap();
    assert_eq!(head[0], 0xC1, "FIN, RSV1, text");
    let mut body = vec![0; usize::from(head[1])];
    b.read_exact(&mut body).await.unwrap();
    assert_eq!(deflate::inflate(&body, 1 << 20).unwrap(), big);
}
