//! Sockets besides the players: spectators of the racing games (`--spectators`) and idle
//! sockets (`--idle-sockets`: spectators of games nobody plays, so nothing but pings reaches
//! them). A small WebSocket client of its own (a task and a read buffer per socket, no HTTP
//! client state), so thousands fit on a thread. Each socket binds one of `--source-addrs`
//! loopback addresses (127.0.0.1, 127.0.0.2, …) with `IP_BIND_ADDRESS_NO_PORT`, so one client
//! holds more sockets to one server than one address's ephemeral ports allow.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;

use crate::measure::micros;

/// One socket to open: the server, and the game it watches.
#[derive(Clone)]
pub struct Target {
    pub server: SocketAddr,
    pub game_id: String,
    /// Keep every frame's version and arrival (for the press-to-screen latency).
    pub record: bool,
}

/// What one socket saw.
#[derive(Default)]
pub struct Watched {
    pub frames: u64,
    /// `(version, arrival)` of every game frame, when recorded.
    pub log: Vec<(u64, Instant)>,
    pub opened: bool,
    /// Refused with 503 (`-max-spectators`).
    pub refused: bool,
    pub closed_early: bool,
}

/// Counters the sockets bump and the coordinator reads.
#[derive(Default)]
pub struct Counts {
    pub opened: AtomicUsize,
    pub failed: AtomicUsize,
    /// Game frames received, every socket.
    pub frames: AtomicU64,
    /// When the last socket opened or failed.
    pub done_at: Mutex<Option<Instant>>,
}

pub struct Crowd {
    pub counts: Arc<Counts>,
    pub total: usize,
    pub started: Instant,
    stop: watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<Vec<Watched>>>,
}

/// `http://127.0.0.1:8080` → its socket address.
pub fn server_addr(url: &str) -> SocketAddr {
    let host = url.trim_start_matches("http://").trim_end_matches('/');
    host.parse()
        .unwrap_or_else(|_| panic!("{url}: expected http://IP:PORT"))
}

impl Crowd {
    /// Opens every target over `threads` threads at niceness `nice`, `rate` a second in all,
    /// socket `i` from 127.0.0.(1 + i % `sources`).
    pub fn open(
        targets: Vec<Target>,
        (threads, nice): (usize, i32),
        rate: f64,
        sources: usize,
    ) -> Crowd {
        let counts = Arc::new(Counts::default());
        let total = targets.len();
        let (stop, stop_rx) = watch::channel(false);
        let threads = threads.max(1);
        let mut parts: Vec<Vec<(usize, Target)>> = vec![Vec::new(); threads];
        for (i, t) in targets.into_iter().enumerate() {
            parts[i % threads].push((i, t));
        }
        let per_thread = rate.max(1.0) / threads as f64;
        let started = Instant::now();
        let threads = parts
            .into_iter()
            .enumerate()
            .map(|(n, part)| {
                let (counts, stop_rx) = (counts.clone(), stop_rx.clone());
                std::thread::Builder::new()
                    .name(format!("load-crowd-{n}"))
                    .spawn(move || {
                        robot_race::threads::lower_priority(nice);
                        run_thread(part, per_thread, sources, counts, stop_rx)
                    })
                    .expect("spawn crowd thread")
            })
            .collect();
        Crowd {
            counts,
            total,
            started,
            stop,
            threads,
        }
    }

    /// Waits until every socket opened or failed (or `timeout`); returns how many opened.
    pub fn wait_open(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        while self.settled() < self.total && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.counts.opened.load(Ordering::Relaxed)
    }

    fn settled(&self) -> usize {
        self.counts.opened.load(Ordering::Relaxed) + self.counts.failed.load(Ordering::Relaxed)
    }

    pub fn frames(&self) -> u64 {
        self.counts.frames.load(Ordering::Relaxed)
    }

    /// Closes every socket; what each saw.
    pub fn close(self) -> Vec<Watched> {
        let _ = self.stop.send(true);
        self.threads
            .into_iter()
            .flat_map(|t| t.join().expect("crowd thread"))
            .collect()
    }
}

fn run_thread(
    part: Vec<(usize, Target)>,
    rate: f64,
    sources: usize,
    counts: Arc<Counts>,
    stop: watch::Receiver<bool>,
) -> Vec<Watched> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("crowd runtime");
    rt.block_on(async move {
        let start = tokio::time::Instant::now();
        let mut handles = Vec::with_capacity(part.len());
        for (k, (i, target)) in part.into_iter().enumerate() {
            tokio::time::sleep_until(start + Duration::from_secs_f64(k as f64 / rate)).await;
            let source = Ipv4Addr::new(127, 0, 0, 1 + (i % sources.clamp(1, 250)) as u8);
            let (counts, stop) = (counts.clone(), stop.clone());
            handles.push(tokio::spawn(async move {
                watch_one(&target, source.into(), &counts, stop).await
            }));
        }
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            out.push(h.await.unwrap_or_default());
        }
        out
    })
}

fn settle(counts: &Counts, ok: bool) {
    let counter = if ok { &counts.opened } else { &counts.failed };
    counter.fetch_add(1, Ordering::Relaxed);
    *counts.done_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
}

async fn connect(server: SocketAddr, source: IpAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    // The port is picked at connect time, per destination: a source address is not limited to
    // its ephemeral range over every destination at once.
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads an int from the pointer for the given length.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

async fn watch_one(
    target: &Target,
    source: IpAddr,
    counts: &Counts,
    mut stop: watch::Receiver<bool>,
) -> Watched {
    let mut w = Watched::default();
    let mut tcp = match connect(target.server, source).await {
        Ok(tcp) => tcp,
        Err(e) => {
            if counts.failed.load(Ordering::Relaxed) < 3 {
                eprintln!("spectator connect from {source}: {e}");
            }
            settle(counts, false);
            return w;
        }
    };
    let request = format!(
        "GET /ws/{}?watch=1 HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        target.game_id, target.server
    );
    let mut buf: Vec<u8> = Vec::with_capacity(2048);
    let head_end = async {
        tcp.write_all(request.as_bytes()).await?;
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Ok::<usize, std::io::Error>(end + 4);
            }
            if tcp.read_buf(&mut buf).await? == 0 || buf.len() > 16_384 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    };
    let head_end = match tokio::time::timeout(Duration::from_secs(30), head_end).await {
        Ok(Ok(end)) => end,
        _ => {
            settle(counts, false);
            return w;
        }
    };
    if !buf.starts_with(b"HTTP/1.1 101") {
        w.refused = buf.starts_with(b"HTTP/1.1 503");
        settle(counts, false);
        return w;
    }
    w.opened = true;
    settle(counts, true);
    buf.drain(..head_end);
    loop {
        while let Some((opcode, payload, len)) = frame(&buf) {
            match opcode {
                0x1 => {
                    if let Some(version) = version_of(&buf[payload.clone()]) {
                        w.frames += 1;
                        counts.frames.fetch_add(1, Ordering::Relaxed);
                        if target.record {
                            w.log.push((version, Instant::now()));
                        }
                    }
                }
                0x9 => {
                    // A masked pong (mask 0: the payload as is).
                    let p = &buf[payload.clone()];
                    let mut pong = vec![0x8A, 0x80 | p.len() as u8, 0, 0, 0, 0];
                    pong.extend_from_slice(p);
                    if tcp.write_all(&pong).await.is_err() {
                        w.closed_early = true;
                        return w;
                    }
                }
                0x8 => {
                    w.closed_early = !*stop.borrow();
                    return w;
                }
                _ => {}
            }
            buf.drain(..len);
        }
        tokio::select! {
            read = tcp.read_buf(&mut buf) => {
                if !matches!(read, Ok(n) if n > 0) {
                    w.closed_early = !*stop.borrow();
                    return w;
                }
            }
            _ = stop.changed() => return w,
        }
    }
}

/// A whole server frame at the start of `buf`: opcode, payload range, length in all.
fn frame(buf: &[u8]) -> Option<(u8, std::ops::Range<usize>, usize)> {
    let (b0, b1) = (*buf.first()?, *buf.get(1)?);
    let (mut len, mut pos) = (usize::from(b1 & 0x7F), 2);
    if len == 126 {
        len = usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]));
        pos = 4;
    } else if len == 127 {
        let bytes: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
        len = usize::try_from(u64::from_be_bytes(bytes)).ok()?;
        pos = 10;
    }
    (buf.len() >= pos + len).then_some((b0 & 0x0F, pos..pos + len, pos + len))
}

/// The first `"version":N` of a frame (the game's: it comes before the robots).
fn version_of(text: &[u8]) -> Option<u64> {
    let key = b"\"version\":";
    let at = text.windows(key.len()).position(|w| w == key)? + key.len();
    let digits = text[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&text[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// Press-to-screen for spectators: for each recorded spectator and each press (sent at, the
/// version that first showed it) sent while it watched, the time until it saw that version or
/// a later one. In microseconds, sorted.
pub fn press_to_screen(watched: &[Watched], presses: &mut [(Instant, u64)]) -> Vec<u32> {
    presses.sort_unstable_by_key(|(_, v)| *v);
    let mut out = Vec::new();
    for w in watched.iter().filter(|w| !w.log.is_empty()) {
        let since = w.log[0].1;
        let mut i = 0;
        for (sent, version) in presses.iter() {
            if *sent < since {
                continue;
            }
            while i < w.log.len() && w.log[i].0 < *version {
                i += 1;
            }
            let Some((_, seen)) = w.log.get(i) else {
                break;
            };
            out.push(micros(seen.saturating_duration_since(*sent)));
        }
    }
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_cut_whole_and_versions_read() {
        let text = br#"{"type":"game_update","game":{"version":57,"robots":[]}}"#;
        let mut buf = vec![0x81, text.len() as u8];
        buf.extend_from_slice(text);
        buf.extend_from_slice(&[0x89, 0x00, 0x81]);
        let (op, payload, len) = frame(&buf).unwrap();
        assert_eq!((op, len), (1, 2 + text.len()));
        assert_eq!(version_of(&buf[payload]), Some(57));
        let (op, payload, len) = frame(&buf[len..]).unwrap();
        assert_eq!((op, payload.len(), len), (9, 0, 2));
        assert!(frame(&buf[2 + text.len() + 2..]).is_none(), "half a frame");
        let long = vec![b'x'; 300];
        let mut buf = vec![0x81, 126, 1, 44];
        buf.extend_from_slice(&long);
        assert_eq!(frame(&buf).map(|f| f.2), Some(304));
        assert_eq!(version_of(br#"{"type":"error"}"#), None);
    }

    #[test]
    fn press_to_screen_takes_the_first_frame_at_or_past_the_press() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let w = Watched {
            log: vec![(5, ms(10)), (8, ms(60)), (12, ms(110))],
            ..Watched::default()
        };
        // Sent at 20 ms, shown at version 7: seen at version 8 (60 ms); sent at 70, version
        // 12: 110 ms; sent before the spectator came: not counted; past its last: not counted.
        let mut presses = vec![(ms(20), 7), (ms(70), 12), (t0, 3), (ms(120), 13)];
        let lat = press_to_screen(&[w], &mut presses);
        assert_eq!(lat, vec![40_000, 40_000]);
    }
}
