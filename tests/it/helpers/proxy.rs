//! A TCP proxy a test owns, between the servers and Redis, to make the network sick: it
//! forwards, holds (a pulled cable: no byte either way, nothing closed; what it read is
//! delivered in order once it forwards again), or delays every chunk each way.

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
                pump(&accepting, &client, &server);
                pump(&accepting, &server, &client);
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
}

/// Copies `from` to `to` through the link: one thread reads and stamps chunks, one writes
/// each when the link lets it.
fn pump(shared: &Arc<Shared>, from: &TcpStream, to: &TcpStream) {
    let (Ok(mut reader), Ok(mut writer)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    if let (Ok(a), Ok(b)) = (from.try_clone(), to.try_clone()) {
        shared.streams.lock().unwrap().extend([a, b]);
    }
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                break;
            }
        }
    });
    let shared = shared.clone();
    thread::spawn(move || {
        while let Ok((read_at, chunk)) = rx.recv() {
            loop {
                if shared.stopped.load(Ordering::Relaxed) {
                    return;
                }
                let link = *shared.link.lock().unwrap();
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
        let _ = writer.shutdown(Shutdown::Write);
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
