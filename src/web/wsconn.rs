//! A WebSocket connection driven on the raw TCP stream (RFC 6455, server side).
//!
//! actix-http hands an upgrade request over with the socket (see [`super::ws::upgrade_service`]);
//! from then on no HTTP machinery holds buffers for it. That is what keeps an idle player's
//! socket small (issue 9: a few KiB, not the 16 KiB of actix-http's per-connection read and
//! write buffers) and a delivery cheap:
//!
//! - **Writes.** A frame is written straight into the socket by whoever sends it (the game's
//!   task, usually): one `writev` of the frame header and the shared frame bytes, no queue, no
//!   task woken. Only when the kernel does not take it all are the rest and any later frames
//!   kept in [`Out::pending`], in order, for the session's task to finish when the socket is
//!   writable again. Beyond [`PENDING_MAX`] bytes a game frame is refused ([`SinkError::Full`]:
//!   the session is behind and gets the newest state later).
//! - **Reads.** Frames are read as they come into a buffer that is freed whenever it is empty,
//!   so an idle socket holds none.

use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex, MutexGuard};

use actix_codec::Decoder;
use actix_http::ws::{CloseCode, CloseReason, Codec, Frame, Item, ProtocolError};
use actix_web::rt::net::TcpStream;
use actix_web::web::{Bytes, BytesMut};
use tokio::sync::Notify;

use crate::node::{CloseWhy, FrameSink, SinkError};

/// Bytes a session may have waiting for the socket before game frames are refused.
pub const PENDING_MAX: usize = 32 * 1024;
/// Bytes the session's own frames (answers, pongs) may add beyond that before the client,
/// which sends but does not read, is closed.
const PENDING_HARD_MAX: usize = 4 * PENDING_MAX;

const OP_TEXT: u8 = 0x1;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// The header of an unmasked, final frame: its bytes and length.
fn header(opcode: u8, len: usize) -> ([u8; 10], usize) {
    let mut h = [0u8; 10];
    h[0] = 0x80 | opcode;
    if len < 126 {
        h[1] = len as u8;
        (h, 2)
    } else if let Ok(len) = u16::try_from(len) {
        h[1] = 126;
        h[2..4].copy_from_slice(&len.to_be_bytes());
        (h, 4)
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (h, 10)
    }
}

/// What waits for the socket.
struct Out {
    /// Bytes written to nobody yet, in order.
    pending: BytesMut,
    /// Set until the handshake answer is queued first; frames only queue meanwhile.
    held: bool,
    closed: bool,
    /// What the game asked of the session's task, not yet taken ([`Conn::signal`]).
    signal: Option<Signal>,
}

/// What the game asks of the session's task, besides writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Close(CloseWhy),
    /// The game dropped its sink: it let go of the session.
    Released,
}

struct Shared {
    stream: TcpStream,
    out: Mutex<Out>,
    /// Wakes the session's task when bytes are pending.
    flush: Notify,
}

/// One WebSocket connection: the session's task holds it; [`Conn::sink`] gives the game its
/// writing end.
#[derive(Clone)]
pub struct Conn(Arc<Shared>);

fn lock(out: &Mutex<Out>) -> MutexGuard<'_, Out> {
    out.lock().unwrap_or_else(|p| p.into_inner())
}

impl Conn {
    /// A connection not yet answered: frames sent before [`Conn::accept`] wait.
    pub fn new(stream: TcpStream) -> Conn {
        Conn(Arc::new(Shared {
            stream,
            out: Mutex::new(Out {
                pending: BytesMut::new(),
                held: true,
                closed: false,
                signal: None,
            }),
            flush: Notify::new(),
        }))
    }

    /// The upgrade is accepted: `handshake` (the `101` answer) goes out first, then any frames
    /// already waiting. The session's task writes them.
    pub fn accept(&self, handshake: &[u8]) {
        let mut out = lock(&self.0.out);
        let mut pending = BytesMut::with_capacity(handshake.len() + out.pending.len());
        pending.extend_from_slice(handshake);
        pending.extend_from_slice(&out.pending);
        out.pending = pending;
        out.held = false;
        drop(out);
        self.0.flush.notify_one();
    }

    /// The upgrade is refused: `response` (an HTTP error) is all that is sent; call
    /// [`Conn::flush`] to send it.
    pub fn refuse(&self, response: &[u8]) {
        let mut out = lock(&self.0.out);
        out.pending = BytesMut::from(response);
        out.held = false;
        out.closed = true;
    }

    /// Tells the session's task; a close already asked for is not overwritten by a release.
    fn raise(&self, signal: Signal) {
        let mut out = lock(&self.0.out);
        if out.signal.is_none() || signal != Signal::Released {
            out.signal = Some(signal);
        }
        drop(out);
        self.0.flush.notify_one();
    }

    pub fn sink(&self) -> Box<dyn FrameSink> {
        Box::new(Sink(self.clone()))
    }

    /// Writes a frame now if the socket takes it, else queues it behind what is pending.
    fn send(&self, opcode: u8, payload: &[u8], limit: usize) -> Result<(), SinkError> {
        let shared = &self.0;
        let mut out = lock(&shared.out);
        if out.closed {
            return Err(SinkError::Closed);
        }
        let (head, n) = header(opcode, payload.len());
        let head = &head[..n];
        let mut written = 0;
        if out.pending.is_empty() && !out.held {
            let bufs = [IoSlice::new(head), IoSlice::new(payload)];
            match shared.stream.try_write_vectored(&bufs) {
                Ok(w) => written = w,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    out.closed = true;
                    drop(out);
                    shared.flush.notify_one();
                    return Err(SinkError::Closed);
                }
            }
            if written == head.len() + payload.len() {
                return Ok(());
            }
        } else if out.pending.len() >= limit {
            return Err(SinkError::Full);
        }
        let was_empty = out.pending.is_empty();
        if written < head.len() {
            out.pending.extend_from_slice(&head[written..]);
            out.pending.extend_from_slice(payload);
        } else {
            out.pending
                .extend_from_slice(&payload[written - head.len()..]);
        }
        drop(out);
        if was_empty {
            shared.flush.notify_one();
        }
        Ok(())
    }

    /// A text frame of the session's own (an answer, an error): refused only when the client
    /// has not read for so long that it is to be closed.
    pub fn text(&self, text: &[u8]) -> Result<(), SinkError> {
        self.send(OP_TEXT, text, PENDING_HARD_MAX)
    }

    pub fn ping(&self) -> Result<(), SinkError> {
        self.send(OP_PING, b"", PENDING_HARD_MAX)
    }

    pub fn pong(&self, payload: &[u8]) -> Result<(), SinkError> {
        self.send(OP_PONG, payload, PENDING_HARD_MAX)
    }

    /// Queues a close frame behind what is pending (game frames or not, nothing goes after
    /// it); [`Conn::flush`] sends it.
    pub fn close(&self, reason: Option<CloseReason>) {
        let mut payload = Vec::new();
        if let Some(r) = reason {
            payload.extend_from_slice(&u16::from(r.code).to_be_bytes());
            if let Some(text) = &r.description {
                // A control frame carries at most 125 bytes.
                let mut end = text.len().min(123);
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                payload.extend_from_slice(&text.as_bytes()[..end]);
            }
        }
        let (head, n) = header(OP_CLOSE, payload.len());
        let mut out = lock(&self.0.out);
        out.closed = true;
        out.pending.extend_from_slice(&head[..n]);
        out.pending.extend_from_slice(&payload);
    }

    /// Marks the connection gone: the game's frames are refused from now on.
    pub fn shut(&self) {
        lock(&self.0.out).closed = true;
    }

    /// What the game asked for since last time, if anything (a close comes before a
    /// release: the game closes, then drops the sink).
    pub fn signal(&self) -> Option<Signal> {
        lock(&self.0.out).signal.take()
    }

    /// Waits until something is pending or signalled (cancel safe).
    pub async fn wants_flush(&self) {
        self.0.flush.notified().await;
    }

    /// Writes what is pending until none is left; frees the buffer then.
    pub async fn flush(&self) -> io::Result<()> {
        loop {
            {
                let mut out = lock(&self.0.out);
                if out.held {
                    return Ok(());
                }
                while !out.pending.is_empty() {
                    match self.0.stream.try_write(&out.pending) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => {
                            let _ = out.pending.split_to(n);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            out.closed = true;
                            return Err(e);
                        }
                    }
                }
                if out.pending.is_empty() {
                    // An idle socket keeps no buffer.
                    out.pending = BytesMut::new();
                    return Ok(());
                }
            }
            self.0.stream.writable().await?;
        }
    }

    /// Waits until the socket has something to read (cancel safe).
    pub async fn readable(&self) -> io::Result<()> {
        self.0.stream.readable().await
    }

    /// Reads what the socket has into `reader` (one chunk, bounded by its largest message).
    pub fn read_into(&self, reader: &mut Reader) -> Read {
        let mut chunk = [0u8; 4096];
        let room = (reader.max + 16)
            .saturating_sub(reader.buf.len())
            .clamp(1, chunk.len());
        match self.0.stream.try_read(&mut chunk[..room]) {
            Ok(0) => Read::Closed,
            Ok(n) => {
                reader.buf.extend_from_slice(&chunk[..n]);
                Read::Some
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Read::Nothing,
            Err(_) => Read::Closed,
        }
    }
}

/// What [`Conn::read_into`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    Some,
    /// Nothing more for now.
    Nothing,
    /// The peer closed, or the socket failed.
    Closed,
}

struct Sink(Conn);

impl FrameSink for Sink {
    fn try_frame(&mut self, frame: bytestring::ByteString) -> Result<(), SinkError> {
        self.0.send(OP_TEXT, frame.as_bytes(), PENDING_MAX)
    }

    fn has_room(&self) -> bool {
        lock(&self.0 .0.out).pending.len() * 2 <= PENDING_MAX
    }

    fn close(&mut self, why: CloseWhy) {
        self.0.raise(Signal::Close(why));
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.0.raise(Signal::Released);
    }
}

/// A whole message from the client (continuation frames joined).
#[derive(Debug)]
pub enum Incoming {
    Text(Bytes),
    Binary(Bytes),
    Ping(Bytes),
    Pong,
    Close(Option<CloseReason>),
}

/// Frames from the client: parsed (masking, sizes, opcodes checked by actix-http's codec) and
/// joined when split into continuations.
pub struct Reader {
    codec: Codec,
    /// Bytes read but not yet a whole frame; freed when empty.
    pub buf: BytesMut,
    /// A message being joined: whether text, and its bytes so far.
    partial: Option<(bool, BytesMut)>,
    max: usize,
}

impl Reader {
    /// `leftover`: what was read past the request (its buffer is HTTP's, sized for
    /// requests: only the bytes are kept).
    pub fn new(max: usize, leftover: &[u8]) -> Reader {
        Reader {
            codec: Codec::new().max_size(max),
            buf: BytesMut::from(leftover),
            partial: None,
            max,
        }
    }

    /// The next whole message in what was read, if there is one.
    pub fn next(&mut self) -> Result<Option<Incoming>, ProtocolError> {
        loop {
            let Some(frame) = self.codec.decode(&mut self.buf)? else {
                if self.buf.is_empty() {
                    self.buf = BytesMut::new();
                }
                return Ok(None);
            };
            let message = match frame {
                Frame::Text(b) => Incoming::Text(b),
                Frame::Binary(b) => Incoming::Binary(b),
                Frame::Ping(b) => Incoming::Ping(b),
                Frame::Pong(_) => Incoming::Pong,
                Frame::Close(reason) => Incoming::Close(reason),
                Frame::Continuation(item) => match self.join(item)? {
                    Some(message) => message,
                    None => continue,
                },
            };
            return Ok(Some(message));
        }
    }

    fn join(&mut self, item: Item) -> Result<Option<Incoming>, ProtocolError> {
        let (bytes, last) = match item {
            Item::FirstText(_) | Item::FirstBinary(_) if self.partial.is_some() => {
                return Err(ProtocolError::ContinuationStarted);
            }
            Item::FirstText(b) => {
                self.partial = Some((true, BytesMut::from(&b[..])));
                return Ok(None);
            }
            Item::FirstBinary(b) => {
                self.partial = Some((false, BytesMut::from(&b[..])));
                return Ok(None);
            }
            Item::Continue(b) => (b, false),
            Item::Last(b) => (b, true),
        };
        let Some((text, joined)) = self.partial.as_mut() else {
            return Err(ProtocolError::ContinuationNotStarted);
        };
        if joined.len() + bytes.len() > self.max {
            return Err(ProtocolError::Overflow);
        }
        joined.extend_from_slice(&bytes);
        if !last {
            return Ok(None);
        }
        let text = *text;
        let (_, joined) = self.partial.take().expect("matched above");
        let joined = joined.freeze();
        Ok(Some(if text {
            Incoming::Text(joined)
        } else {
            Incoming::Binary(joined)
        }))
    }
}

/// `1000 Normal` and friends, with a reason.
pub fn reason(code: CloseCode, description: &str) -> CloseReason {
    CloseReason {
        code,
        description: Some(description.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use actix_codec::Encoder;
    use actix_http::ws::Message;

    use super::*;

    /// What a browser sends: masked frames.
    fn client_frames(messages: Vec<Message>) -> BytesMut {
        let mut codec = Codec::new().client_mode();
        let mut wire = BytesMut::new();
        for m in messages {
            codec.encode(m, &mut wire).unwrap();
        }
        wire
    }

    #[test]
    fn continuations_are_joined_into_one_message_and_the_buffer_is_freed() {
        let wire = client_frames(vec![
            Message::Continuation(Item::FirstText(Bytes::from_static(b"{\"type\":"))),
            Message::Continuation(Item::Continue(Bytes::from_static(b"\"score_"))),
            Message::Ping(Bytes::from_static(b"p")),
            Message::Continuation(Item::Last(Bytes::from_static(b"point\"}"))),
        ]);
        let mut reader = Reader::new(1024, &wire);
        // A control frame may come between the pieces of a message.
        assert!(matches!(reader.next(), Ok(Some(Incoming::Ping(p))) if &p[..] == b"p"));
        let Ok(Some(Incoming::Text(text))) = reader.next() else {
            panic!("expected the joined text");
        };
        assert_eq!(&text[..], br#"{"type":"score_point"}"#);
        assert!(matches!(reader.next(), Ok(None)));
        assert_eq!(reader.buf.capacity(), 0, "an idle reader keeps no buffer");
    }

    #[test]
    fn a_message_arriving_in_pieces_waits_for_the_rest() {
        let wire = client_frames(vec![Message::Text("{\"type\":\"leave\"}".into())]);
        let mut reader = Reader::new(1024, &wire[..5]);
        assert!(matches!(reader.next(), Ok(None)));
        reader.buf.extend_from_slice(&wire[5..]);
        assert!(matches!(reader.next(), Ok(Some(Incoming::Text(_)))));
    }

    /// A masked frame (mask key 0, so the payload reads as is), for sequences the codec's own
    /// encoder refuses to make.
    fn raw(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![
            if fin { 0x80 } else { 0 } | opcode,
            0x80 | payload.len() as u8,
        ];
        f.extend_from_slice(&[0, 0, 0, 0]);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn bad_sequences_and_oversized_messages_are_protocol_errors() {
        let stray = raw(true, 0x0, b"");
        assert!(Reader::new(1024, &stray).next().is_err());
        let twice = [raw(false, OP_TEXT, b"a"), raw(false, OP_TEXT, b"b")].concat();
        assert!(Reader::new(1024, &twice).next().is_err());
        let big = vec![b'x'; 600];
        let pieces = client_frames(vec![
            Message::Continuation(Item::FirstText(Bytes::from(big.clone()))),
            Message::Continuation(Item::Last(Bytes::from(big))),
        ]);
        assert!(Reader::new(1024, &pieces).next().is_err());
        let one = client_frames(vec![Message::Text("x".repeat(2000).into())]);
        assert!(Reader::new(1024, &one).next().is_err());
        // Unmasked (server-style) frames from a client are refused.
        let mut unmasked = BytesMut::new();
        Codec::new()
            .encode(Message::Text("hi".into()), &mut unmasked)
            .unwrap();
        assert!(Reader::new(1024, &unmasked).next().is_err());
    }

    #[tokio::test]
    async fn the_game_closes_through_its_sink_and_dropping_it_lets_the_session_go() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let (_client, (server, _)) = (client.unwrap(), accepted.unwrap());
        let conn = Conn::new(server);
        conn.accept(b"HTTP/1.1 101 Switching Protocols\r\n\r\n");
        conn.wants_flush().await;
        assert_eq!(conn.signal(), None);
        // A close, then the game drops the sink (it forgets the session): the close is what
        // the session's task hears, once, and it is woken for it.
        let mut sink = conn.sink();
        sink.try_frame("{}".into()).unwrap();
        sink.close(CloseWhy::Replaced);
        drop(sink);
        conn.wants_flush().await;
        assert_eq!(conn.signal(), Some(Signal::Close(CloseWhy::Replaced)));
        assert_eq!(conn.signal(), None);
        // A sink dropped without a close: the game let go.
        drop(conn.sink());
        conn.wants_flush().await;
        assert_eq!(conn.signal(), Some(Signal::Released));
    }

    #[test]
    fn headers_use_the_shortest_length_encoding() {
        assert_eq!(&header(OP_TEXT, 5).0[..2], &[0x81, 5]);
        let (h, n) = header(OP_TEXT, 300);
        assert_eq!(&h[..n], &[0x81, 126, 1, 44]);
        let (h, n) = header(OP_PING, 70_000);
        assert_eq!(n, 10);
        assert_eq!(&h[..2], &[0x89, 127]);
        assert_eq!(u64::from_be_bytes(h[2..10].try_into().unwrap()), 70_000);
    }
}
