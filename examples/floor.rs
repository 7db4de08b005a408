//! The floor of a spectator frame: the least CPU a tokio program on this machine spends
//! writing one spectator frame (a WebSocket text frame the size of a 10-robot `game_update`)
//! to each of N loopback sockets, `--hz` times a second. The server's CPU per spectator frame
//! (`scripts/bench watch`) is compared with it (`scripts/bench floor`).
//!
//! ```sh
//! cargo run --release --example floor -- --sockets 5000 --hz 20 --seconds 10
//! ```
//!
//! One thread writes: a current-thread runtime with every server-side socket, one task that
//! writes the same frame to each in turn every tick (no task per socket, no channel, no copy of
//! the frame). Its CPU time (the thread's own clock) over the window, per frame written, is the
//! floor. The client ends are drained by other threads at nice 10 (as other machines would
//! read them), whose CPU is not counted. A socket that cannot take the frame at once is
//! written when it can (the writer awaits it), so a slow reader slows the tick, not the count.
//! Prints one `RESULT {json}` line, as the load tool does.

use std::time::{Duration, Instant};

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser, Debug)]
#[command(about = "The least CPU per spectator frame written to N loopback sockets")]
struct Args {
    /// Sockets to write to (each is two descriptors here: both ends live in this process).
    #[arg(long, default_value_t = 5000)]
    sockets: usize,
    /// Frames a second to each socket.
    #[arg(long, default_value_t = 20)]
    hz: u32,
    /// Seconds of writing measured.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// The frame's payload in bytes (a 10-robot `game_update` is about 1.2 KB).
    #[arg(long, default_value_t = 1200)]
    payload: usize,
    /// Threads draining the client ends, at nice 10.
    #[arg(long, default_value_t = 2)]
    reader_threads: usize,
}

/// This thread's CPU time.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a plain system call filling `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A WebSocket text frame from a server (unmasked) carrying `payload` bytes of JSON-ish text.
fn frame(payload: usize) -> Vec<u8> {
    let mut out = vec![0x81];
    match payload {
        0..=125 => out.push(payload as u8),
        126..=65535 => {
            out.push(126);
            out.extend_from_slice(&(payload as u16).to_be_bytes());
        }
        _ => {
            out.push(127);
            out.extend_from_slice(&(payload as u64).to_be_bytes());
        }
    }
    out.extend(std::iter::repeat_n(b'x', payload));
    out
}

/// Connects `n` clients to `addr` and reads everything they are sent, on `threads` threads at
/// nice 10, until the process ends.
fn readers(addr: std::net::SocketAddr, n: usize, threads: usize) {
    for t in 0..threads.max(1) {
        let mine = n / threads.max(1) + usize::from(t < n % threads.max(1));
        std::thread::spawn(move || {
            robot_race::threads::lower_priority(10);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("reader runtime");
            rt.block_on(async move {
                let mut tasks = Vec::with_capacity(mine);
                for _ in 0..mine {
                    let mut s = TcpStream::connect(addr).await.expect("connect");
                    tasks.push(tokio::spawn(async move {
                        let mut buf = vec![0u8; 16 * 1024];
                        while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                    }));
                }
                for t in tasks {
                    let _ = t.await;
                }
            });
        });
    }
}

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        readers(addr, args.sockets, args.reader_threads);
        let mut sockets = Vec::with_capacity(args.sockets);
        while sockets.len() < args.sockets {
            let (s, _) = listener.accept().await.expect("accept");
            s.set_nodelay(true).expect("nodelay");
            sockets.push(s);
        }
        let frame = frame(args.payload);
        let period = Duration::from_secs_f64(1.0 / f64::from(args.hz.max(1)));
        let ticks = (args.seconds * f64::from(args.hz)).ceil().max(1.0) as u64;
        let (cpu0, wall0) = (thread_cpu(), Instant::now());
        let mut next = tokio::time::Instant::now();
        let mut written = 0u64;
        for _ in 0..ticks {
            for s in &mut sockets {
                s.write_all(&frame).await.expect("write");
                written += 1;
            }
            next += period;
            tokio::time::sleep_until(next).await;
        }
        let (cpu, wall) = (thread_cpu() - cpu0, wall0.elapsed());
        let us_per_frame = cpu.as_secs_f64() * 1e6 / written.max(1) as f64;
        println!(
            "floor: {written} frames of {} bytes to {} sockets in {:.1} s: writer CPU {:.3} s, {us_per_frame:.2} µs per frame ({:.0} frames/s written)",
            frame.len(),
            args.sockets,
            wall.as_secs_f64(),
            cpu.as_secs_f64(),
            written as f64 / wall.as_secs_f64()
        );
        let result = serde_json::json!({
            "mode": "floor",
            "sockets": args.sockets,
            "hz": args.hz,
            "frame_bytes": frame.len(),
            "frames": written,
            "wall_s": wall.as_secs_f64(),
            "writer_cpu_s": cpu.as_secs_f64(),
            "us_per_frame": us_per_frame,
        });
        println!("RESULT {result}");
    });
}
