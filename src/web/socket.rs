//! The writing end of a WebSocket, as the game task holds it, and the accepted TCP socket
//! under it.
//!
//! actix-ws gives each connection a [`Session`]: a handle on a bounded queue (32 messages)
//! that the connection's HTTP dispatcher drains into the socket. Its `text()` waits for a
//! free slot; a game task must never wait for one player's socket, so [`GameSink`] offers
//! each frame without waiting: it goes into the queue if there is room, else the session is
//! *behind* ([`SinkError::Full`]) and [`crate::node`]'s newest-state slot takes over (frames
//! skipped, the newest full state once there is room again).
//!
//! The game also asks the session's task to close the socket (the game ended, the server is
//! stopping, too many tabs): [`Link`] carries that request, after the frames already queued.
//!
//! A client that stops reading fills the kernel's buffers, then actix-http's write buffer;
//! actix-http then stops draining the queue and has no timer of its own that would ever
//! close such a connection. The session's task notices (its own frames cannot be queued in
//! time) and cuts the connection under actix-http with [`ConnSocket::abort`].

use std::future::{poll_fn, Future as _};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;
use actix_ws::{Message, Session};
use bytestring::ByteString;
use futures_util::Sink as _;
use tokio::sync::Notify;

use crate::node::{CloseWhy, FrameSink, SinkError};

/// Kernel send buffer per connection. Frames are small; a large buffer only hides a client
/// that stopped reading (on loopback Linux lets it grow to 4 MiB: thousands of stale frames
/// before the game notices and skips the client).
const SEND_BUFFER: usize = 64 * 1024;

/// The accepted socket under an HTTP connection, recorded when it is accepted, so that a
/// WebSocket whose client stopped reading can be cut (nothing in actix-http would).
#[derive(Debug, Clone, Copy)]
pub struct ConnSocket {
    fd: RawFd,
    peer: Option<SocketAddr>,
    local: Option<SocketAddr>,
}

impl ConnSocket {
    /// For `HttpServer::on_connect`: caps the send buffer (see [`SEND_BUFFER`]) and
    /// records the socket in the connection's data.
    pub fn on_connect(tcp: &TcpStream, data: &mut Extensions) {
        let _ = socket2::SockRef::from(tcp).set_send_buffer_size(SEND_BUFFER);
        data.insert(ConnSocket {
            fd: tcp.as_raw_fd(),
            peer: tcp.peer_addr().ok(),
            local: tcp.local_addr().ok(),
        });
    }

    /// Resets the connection: no more bytes either way, the unread ones dropped (linger 0),
    /// so actix-http's next write fails and it lets the connection go at once.
    ///
    /// The descriptor is only borrowed: actix-http owns and closes it. It is checked to still
    /// be this connection (same peer and local address) right before, so a number already
    /// closed and reused for another connection is left alone.
    pub fn abort(&self) {
        // SAFETY: the descriptor is used only for the duration of these calls; if it was
        // closed meanwhile the calls fail harmlessly (EBADF), and if its number was reused,
        // the address check below sees a different connection and stops.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let sock = socket2::SockRef::from(&fd);
        let same = |a: std::io::Result<socket2::SockAddr>, b: Option<SocketAddr>| {
            a.ok().and_then(|a| a.as_socket()) == b && b.is_some()
        };
        if !same(sock.peer_addr(), self.peer) || !same(sock.local_addr(), self.local) {
            return;
        }
        let _ = sock.set_linger(Some(std::time::Duration::ZERO));
        let _ = sock.shutdown(std::net::Shutdown::Both);
    }
}

/// Offers `msg` to the session's queue without waiting: `Full` when it has no free slot.
pub fn offer(session: &mut Session, msg: Message) -> Result<(), SinkError> {
    // `unconstrained`: tokio's cooperative budget must not make a free slot look taken when
    // the calling task (a busy game task) has used up its budget.
    let ready = tokio::task::unconstrained(poll_fn(|cx| Pin::new(&mut *session).poll_ready(cx)));
    match pin!(ready).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Ok(())) => Pin::new(session)
            .start_send(msg)
            .map_err(|_| SinkError::Closed),
        Poll::Ready(Err(_)) => Err(SinkError::Closed),
        Poll::Pending => Err(SinkError::Full),
    }
}

/// What the game asks of the session's task, besides writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Close(CloseWhy),
    /// The game dropped its sink: it let go of the session.
    Released,
}

/// From a game task to one session's task: the close it asks for.
#[derive(Default)]
pub struct Link {
    signal: Mutex<Option<Signal>>,
    wake: Notify,
}

impl Link {
    /// Tells the session's task; a close already asked for is not overwritten by a release.
    fn raise(&self, signal: Signal) {
        let mut slot = self.signal.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() || signal != Signal::Released {
            *slot = Some(signal);
        }
        drop(slot);
        self.wake.notify_one();
    }

    /// Waits until the game asks for something, and takes it (cancel safe).
    pub async fn next(&self) -> Signal {
        loop {
            if let Some(signal) = self.take() {
                return signal;
            }
            self.wake.notified().await;
        }
    }

    fn take(&self) -> Option<Signal> {
        self.signal.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// The game task's end of one WebSocket: frames offered without waiting, and the close.
pub struct GameSink {
    session: Session,
    link: Arc<Link>,
}

impl GameSink {
    pub fn new(session: Session, link: Arc<Link>) -> GameSink {
        GameSink { session, link }
    }
}

impl FrameSink for GameSink {
    fn try_frame(&mut self, frame: ByteString) -> Result<(), SinkError> {
        offer(&mut self.session, Message::Text(frame))
    }

    /// The queue's fill is not visible from here: a session that is behind is offered the
    /// newest full state each time, and [`offer`] finds out whether a slot is free.
    fn has_room(&self) -> bool {
        true
    }

    fn close(&mut self, why: CloseWhy) {
        self.link.raise(Signal::Close(why));
    }
}

impl Drop for GameSink {
    fn drop(&mut self) {
        self.link.raise(Signal::Released);
    }
}
