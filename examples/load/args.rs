//! The command line.

use clap::{Parser, ValueEnum};

use crate::protocol::Protocol;

#[derive(Parser, Debug)]
#[command(about = "Robot Race load tool", args_override_self = true)]
pub struct Args {
    /// Server base URLs, comma separated; every game's players are spread over all of them.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:8080")]
    pub url: Vec<String>,
    /// Concurrent games.
    #[arg(long, default_value_t = 20)]
    pub games: usize,
    /// Players per game (2-10).
    #[arg(long, default_value_t = 5)]
    pub players: usize,
    /// Presses per second per player (the server allows 30).
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// How long to press (the measuring window).
    #[arg(long, default_value_t = 15)]
    pub seconds: u64,
    /// Server process ids, comma separated, in the order of --url (Linux /proc): CPU and memory.
    #[arg(long, value_delimiter = ',')]
    pub pid: Vec<u32>,
    /// Threads running the players (one actix System each; players split evenly).
    #[arg(long, default_value_t = 2)]
    pub client_threads: usize,
    /// At most this many API requests, and this many WebSocket handshakes, at a time.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Where each game is created: `first` (every creator on the first server) or `spread`
    /// (game g's creator on server g % servers).
    #[arg(long, value_enum, default_value_t = Creators::First)]
    pub creators: Creators,
    /// Where each game's players sit: `spread` (player p of game g on server (g + p) % servers,
    /// see --creators and --spread) or `by-game` (every player of game g, its creator's socket
    /// included, on server (g + 1) % servers, the game created through server g % servers, as
    /// a balancer hashing the game id places them when the creation landed elsewhere; joins go
    /// to the players' server; --creators and --spread are then unused).
    #[arg(long, value_enum, default_value_t = Placement::Spread)]
    pub placement: Placement,
    /// Instead of racing: open this many idle WebSockets (games of 10, spread over the servers)
    /// and report server memory per idle connection.
    #[arg(long)]
    pub idle: Option<usize>,
    /// Idle mode: seconds to let the servers settle before reading their memory.
    #[arg(long, default_value_t = 2.0)]
    pub settle: f64,
    /// A Redis on 127.0.0.1 to read `INFO stats` / `INFO commandstats` from, before and after
    /// the window: commands and bytes per press.
    #[arg(long)]
    pub redis_port: Option<u16>,
    /// Each game's players on this many servers (its creator's and the next ones), instead of
    /// all of them; with `--creators spread` the games spread over every server.
    #[arg(long)]
    pub spread: Option<usize>,
    /// Spectators of the racing games (`/ws/<id>?watch=1`), spread over the games and the
    /// servers, open before the races start: their press-to-screen latency, frames, memory.
    #[arg(long, default_value_t = 0)]
    pub spectators: usize,
    /// Where spectators connect, comma separated (the servers' `-spectator-addr` listeners);
    /// default: the `--url`s. Spectator `i` goes to the same server index as over `--url`.
    #[arg(long, value_delimiter = ',')]
    pub spectator_url: Vec<String>,
    /// Niceness of the threads running spectators and idle sockets (0 to 19): in production
    /// they are other machines, so here they take only the CPU the servers and the measured
    /// players leave, and the tool's own work for a crowd does not show in the players' figures.
    #[arg(long, default_value_t = 10)]
    pub audience_nice: i32,
    /// Idle sockets (spectators of games nobody plays) opened while the races play, from
    /// `--open-after` seconds into the window, `--open-rate` a second: the players' latency
    /// while they open, and memory per idle socket.
    #[arg(long, default_value_t = 0)]
    pub idle_sockets: usize,
    /// Spectators and idle sockets opened per second (in all).
    #[arg(long, default_value_t = 5000.0)]
    pub open_rate: f64,
    /// Seconds into the window before the idle sockets start opening.
    #[arg(long, default_value_t = 2.0)]
    pub open_after: f64,
    /// Loopback source addresses the spectators and idle sockets bind (127.0.0.1 to
    /// 127.0.0.N): each address has its own ephemeral ports towards a server.
    #[arg(long, default_value_t = 4)]
    pub source_addrs: usize,
    /// Spectators whose every frame is logged for the press-to-screen latency (spread evenly).
    #[arg(long, default_value_t = 300)]
    pub spectator_sample: usize,
    /// What the servers speak: `robot-race` (this project's WebSocket frames) or `socketio`
    /// (Socket.IO v4, for the benchmark peer in bench/socketio/).
    #[arg(long, value_enum, default_value_t = Protocol::RobotRace)]
    pub protocol: Protocol,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Creators {
    First,
    Spread,
}

impl Creators {
    pub fn name(self) -> &'static str {
        match self {
            Creators::First => "first",
            Creators::Spread => "spread",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Placement {
    Spread,
    ByGame,
}

impl Placement {
    pub fn name(self) -> &'static str {
        match self {
            Placement::Spread => "spread",
            Placement::ByGame => "by-game",
        }
    }
}
