//! A TCP proxy a test owns, between the servers and Redis, to make the network sick: it
//! forwards, holds (a pulled cable: no byte either way, nothing closed; what it read is
//! delivered in order once it forwards again), or delays every chunk each way. It can also
//! black-hole only the pub/sub connections open now (as a NAT that forgot an idle one does).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// What the proxy does with the bytes it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Forward,
    /// A pulled cable.
    Hold,
    /// Every chunk, each way, this much later.
    Delay(Duration),
}

struct Shared {
    link: Mutex<Link>,
    stopped: AtomicBool,
    streams: Mutex<Vec<TcpStream>>,
    /// Every connection accepted, in order.
    conns: Mutex<Vec<Arc<Conn>>>,
}

/// One client connection through the proxy.
#[derive(Default)]
struct Conn {
    /// The client sent `SUBSCRIBE` or `PSUBSCRIBE` on it: a pub/sub connection.
    subscriber: AtomicBool,
    /// Black-holed for good: no byte either way, whatever the link, nothing closed.
    held: AtomicBool,
}

pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
}

impl Proxy {
    /// A proxy on a free 127.0.0.1 port to `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            link: Mutex::new(Link::Forward),
            stopped: AtomicBool::new(false),
            streams: Mutex::new(Vec::new()),
            conns: Mutex::new(Vec::new()),
        });
        let accepting = shared.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                if accepting.stopped.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let conn = Arc::new(Conn::default());
                accepting.conns.lock().unwrap().push(conn.clone());
                pump(&accepting, &conn, true, &client, &server);
                pump(&accepting, &conn, false, &server, &client);
            }
        });
        Proxy { port, shared }
    }

    /// `127.0.0.1:<port>`: the address to give the servers instead of Redis's.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn set(&self, link: Link) {
        *self.shared.link.lock().unwrap() = link;
    }

    /// Black-holes every connection open now on which the client subscribed (`SUBSCRIBE` or
    /// `PSUBSCRIBE`): from now on no byte goes either way on it, and nothing is closed.
    /// Connections opened later, and the others, go on as the link says. How many it held.
    pub fn hold_subscribers(&self) -> usize {
        let mut held = 0;
        for conn in self.shared.conns.lock().unwrap().iter() {
            if conn.subscriber.load(Ordering::Relaxed) {
                conn.held.store(true, Ordering::Relaxed);
                held += 1;
            }
        }
        held
    }
}

/// Whether a chunk the client sent holds a `SUBSCRIBE` or `PSUBSCRIBE` command (the command
/// name ends a RESP bulk string: `…SUBSCRIBE\r\n`).
fn subscribes(chunk: &[u8]) -> bool {
    const NAME: &[u8] = b"SUBSCRIBE\r\n";
    chunk
        .windows(NAME.len())
        .any(|w| w.eq_ignore_ascii_case(NAME))
}

/// Copies `from` to `to` through the link (and `conn`'s hold): one thread reads and stamps
/// chunks, one writes each when the link lets it. `from_client`: the client's side, read for
/// subscriptions.
fn pump(
    shared: &Arc<Shared>,
    conn: &Arc<Conn>,
    from_client: bool,
    from: &TcpStream,
    to: &TcpStream,
) {
    let (Ok(mut reader), Ok(mut writer)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    if let (Ok(a), Ok(b)) = (from.try_clone(), to.try_clone()) {
        shared.streams.lock().unwrap().extend([a, b]);
    }
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let reading = conn.clone();
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = reader.read(&mut buf) {
            if from_client && subscribes(&buf[..n]) {
                reading.subscriber.store(true, Ordering::Relaxed);
            }
            if n == 0 || tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                break;
            }
        }
    });
    let shared = shared.clone();
    let conn = conn.clone();
    thread::spawn(move || {
        while let Ok((read_at, chunk)) = rx.recv() {
            loop {
                if shared.stopped.load(Ordering::Relaxed) {
                    return;
                }
                let link = if conn.held.load(Ordering::Relaxed) {
                    Link::Hold
                } else {
                    *shared.link.lock().unwrap()
                };
                let due = match link {
                    Link::Hold => None,
                    Link::Forward => Some(read_at),
                    Link::Delay(d) => Some(read_at + d),
                };
                match due {
                    Some(due) if due <= Instant::now() => break,
                    Some(due) => {
                        thread::sleep((due - Instant::now()).min(Duration::from_millis(20)))
                    }
                    None => thread::sleep(Duration::from_millis(5)),
                }
            }
            if writer.write_all(&chunk).is_err() {
                break;
            }
        }
        // A black hole passes no close on either.
        if !conn.held.load(Ordering::Relaxed) {
            let _ = writer.shutdown(Shutdown::Write);
        }
    });
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::Relaxed);
        for stream in self.shared.streams.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
        // Wakes the accepting thread, which then sees `stopped`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}
