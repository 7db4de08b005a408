//! The WebSocket layer at the wire: close codes, the dead-peer timeout, the frame budget.
//! A raw TCP client writes the frames by hand, so it can send what no well-behaved library
//! would (oversized, unmasked, invalid UTF-8, a flood) and stay silent when it should answer.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::helpers::{Joined, Server};

pub(crate) const OP_TEXT: u8 = 0x1;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;

/// A WebSocket opened by hand: the upgrade request, then frames as bytes.
pub(crate) struct Raw {
    pub(crate) tcp: TcpStream,
}

impl Raw {
    pub(crate) fn open(server: &Server, joined: &Joined) -> Raw {
        let mut tcp = TcpStream::connect(server.addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            tcp,
            "GET /ws/{}?token={} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n",
            joined.game_id, joined.token, server.addr
        )
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
            tcp.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        Raw { tcp }
    }

    /// A masked frame, as a browser sends (`fin` and `masked` as given).
    pub(crate) fn frame(opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
        let mut f = vec![0x80 | opcode];
        let mask_bit = if masked { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => f.push(mask_bit | n as u8),
            n if n <= 0xFFFF => {
                f.push(mask_bit | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(mask_bit | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if masked {
            let key = [0x12, 0x34, 0x56, 0x78];
            f.extend_from_slice(&key);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        } else {
            f.extend_from_slice(payload);
        }
        f
    }

    fn send(&mut self, opcode: u8, payload: &[u8]) {
        self.tcp
            .write_all(&Raw::frame(opcode, payload, true))
            .unwrap();
    }

    /// The next frame from the server: its opcode and payload; `None` when the connection
    /// ends or nothing comes in time.
    fn read(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut head = [0u8; 2];
        self.tcp.read_exact(&mut head).ok()?;
        let len = match head[1] & 0x7F {
            126 => {
                let mut n = [0u8; 2];
                self.tcp.read_exact(&mut n).ok()?;
                u64::from(u16::from_be_bytes(n))
            }
            127 => {
                let mut n = [0u8; 8];
                self.tcp.read_exact(&mut n).ok()?;
                u64::from_be_bytes(n)
            }
            n => u64::from(n),
        };
        let mut payload = vec![0u8; len as usize];
        self.tcp.read_exact(&mut payload).ok()?;
        Some((head[0] & 0x0F, payload))
    }

    /// Reads until a close frame: its code; `None` if the connection ends without one.
    /// Text frames read on the way are returned too. Bounded by `within`.
    fn until_close(&mut self, within: Duration) -> (Option<u16>, Vec<String>) {
        let deadline = Instant::now() + within;
        let mut texts = Vec::new();
        while Instant::now() < deadline {
            match self.read() {
                Some((OP_CLOSE, p)) if p.len() >= 2 => {
                    return (Some(u16::from_be_bytes([p[0], p[1]])), texts)
                }
                Some((OP_CLOSE, _)) => return (Some(1005), texts),
                Some((OP_TEXT, p)) => texts.push(String::from_utf8_lossy(&p).into_owned()),
                Some(_) => {}
                None => break,
            }
        }
        (None, texts)
    }
}

async fn game_of_two(server: &Server) -> (Joined, Joined) {
    let api = server.api();
    let ann = api.create("ann", 5, 0).await;
    let bob = api.join(&ann.game_id, "bob").await;
    (ann, bob)
}

async fn connections(server: &Server) -> u64 {
    let (_, health) = server.api().get_json("/health").await;
    health["connections"].as_u64().unwrap()
}

/// Waits (bounded) until the server counts `n` open WebSockets.
async fn wait_connections(server: &Server, n: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if connections(server).await == n {
            return true;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A client that reads but never answers a ping, and sends nothing, is closed as gone
/// (1000 "timed out") once the timeout passes; the server then lets the socket go.
#[actix_rt::test]
async fn a_silent_client_is_closed_after_the_timeout() {
    let server = Server::start(&["-ws-timeout-secs", "3"]);
    let (ann, _) = game_of_two(&server).await;
    let mut raw = Raw::open(&server, &ann);
    let started = Instant::now();
    let mut pings = 0;
    let code = loop {
        match raw.read() {
            Some((OP_PING, _)) => pings += 1,
            Some((OP_CLOSE, p)) => break Some(u16::from_be_bytes([p[0], p[1]])),
            Some(_) => {}
            None => break None,
        }
        assert!(started.elapsed() < Duration::from_secs(15), "never closed");
    };
    assert_eq!(code, Some(1000));
    assert!(pings >= 2, "pinged {pings} times before giving up");
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(3), "closed after {took:?}");
    assert!(
        wait_connections(&server, 0).await,
        "the socket is still counted"
    );
}

/// What the wire refuses closes the connection with the code RFC 6455 gives it; a message
/// of 1 KiB to 64 KiB is only answered `bad_message` (see bad_input.rs).
#[actix_rt::test]
async fn wire_errors_close_with_their_codes() {
    let server = Server::start(&[]);
    let (ann, _) = game_of_two(&server).await;
    let big = format!(r#"{{"type":"score_point","pad":"{}"}}"#, "x".repeat(70_000));
    let press = br#"{"type":"score_point"}"#;
    let unmasked = Raw::frame(OP_TEXT, press, false);
    let mut reserved_bits = Raw::frame(OP_TEXT, press, true);
    reserved_bits[0] |= 0x40;
    // Opcode 3 is reserved for future data frames.
    let mut reserved_opcode = Raw::frame(OP_TEXT, press, true);
    reserved_opcode[0] = (reserved_opcode[0] & 0xf0) | 0x3;
    // A control frame may carry at most 125 bytes.
    let long_ping = Raw::frame(OP_PING, &[b'x'; 126], true);
    // A continuation with no message to continue.
    let mut stray_continuation = Raw::frame(OP_TEXT, press, true);
    stray_continuation[0] &= 0xf0;
    let cases: [(&str, Vec<u8>, u16); 7] = [
        (
            "over 64 KiB",
            Raw::frame(OP_TEXT, big.as_bytes(), true),
            1009,
        ),
        (
            "not UTF-8",
            Raw::frame(OP_TEXT, &[0xff, 0xfe, 0x22], true),
            1007,
        ),
        ("unmasked", unmasked, 1002),
        ("reserved bits set", reserved_bits, 1002),
        ("a reserved opcode", reserved_opcode, 1002),
        ("a ping over 125 bytes", long_ping, 1002),
        ("a continuation out of place", stray_continuation, 1002),
    ];
    for (what, bytes, expected) in cases {
        let mut raw = Raw::open(&server, &ann);
        raw.tcp.write_all(&bytes).unwrap();
        let (code, _) = raw.until_close(Duration::from_secs(10));
        assert_eq!(code, Some(expected), "{what}");
    }
    assert!(wait_connections(&server, 0).await);
    // A close from the client is answered with its own code.
    let mut raw = Raw::open(&server, &ann);
    raw.send(OP_CLOSE, &4000u16.to_be_bytes());
    let (code, _) = raw.until_close(Duration::from_secs(10));
    assert_eq!(code, Some(4000));
    assert!(wait_connections(&server, 0).await);
}

/// A socket that sends frames as fast as it can is held to its budget: the frames over it
/// are dropped with at most one `rate_limited` a second, and after 5 s over it the socket
/// is closed with 1008. The other player's socket is not touched.
#[actix_rt::test]
async fn a_flooding_socket_is_limited_then_closed_with_1008() {
    let server = Server::start(&[]);
    let (ann, bob) = game_of_two(&server).await;
    let cat = server.api().join(&ann.game_id, "cat").await;
    let mut flooder = Raw::open(&server, &cat);
    let mut bystander = crate::helpers::connect(&server, &ann).await;
    let _other = crate::helpers::connect(&server, &bob).await;
    // Not the admin: each frame that is read gets `permission_denied`.
    let frame = Raw::frame(OP_TEXT, br#"{"type":"start_countdown"}"#, true);
    let batch: Vec<u8> = frame
        .iter()
        .copied()
        .cycle()
        .take(frame.len() * 200)
        .collect();
    let mut writer = flooder.tcp.try_clone().unwrap();
    let flood = std::thread::spawn(move || {
        let started = Instant::now();
        let mut sent = 0u64;
        while started.elapsed() < Duration::from_secs(15) {
            if writer.write_all(&batch).is_err() {
                break;
            }
            sent += 200;
        }
        sent
    });
    let (code, texts) = flooder.until_close(Duration::from_secs(15));
    let sent = flood.join().unwrap();
    assert_eq!(code, Some(1008), "after {sent} frames");
    let denied = texts
        .iter()
        .filter(|t| t.contains("permission_denied"))
        .count();
    let limited = texts.iter().filter(|t| t.contains("rate_limited")).count();
    // ~80 in the first burst and ~40 a second for 5 s; told about once a second.
    assert!(sent > 1_000, "the flood sent only {sent} frames");
    assert!(
        (80..=400).contains(&denied),
        "{denied} frames answered of {sent}"
    );
    assert!(
        (1..=7).contains(&limited),
        "told rate_limited {limited} times"
    );
    // The other players' sockets still work.
    bystander
        .send(serde_json::json!({"type": "start_countdown"}))
        .await;
    bystander
        .wait_game(Duration::from_secs(5), |g| g["state"] != "setup")
        .await;
}
