//! Socket.IO (default namespace `/`, path `/socket.io/`), as in server.js: CONNECT with auth
//! `{game_id, token}` (refused with `unauthorized` unless the token seats a robot in that game);
//! the server answers `welcome` `{robot_id, admin, game}`; the client emits `press` and
//! `start`; the server emits `scores` `{version, scores}` (a press during playing), `game` GAME
//! (every other change) and `error` `{error, message}`. Broadcasts go to the game's room
//! through the Redis adapter: `io.to(room).emit` publishes once, every instance delivers to its
//! own sockets in the room.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use socketioxide::adapter::Emitter;
use socketioxide::extract::{Extension, SocketRef, State, TryData};
use socketioxide::SocketIo;
use socketioxide_redis::RedisAdapter;

use crate::game::{room, Game, Store};

pub type Adapter = RedisAdapter<Emitter>;
pub type Io = SocketIo<Adapter>;
type Sock = SocketRef<Adapter>;

/// Who a socket is, set by [`authorize`] before the socket joins the namespace.
pub struct Seat {
    game: String,
    robot: String,
    room: String,
}

#[derive(Serialize)]
struct Welcome<'a> {
    robot_id: &'a str,
    admin: bool,
    game: &'a Game,
}

#[derive(Serialize)]
struct Scores<'a> {
    version: i64,
    scores: &'a [i64],
}

#[derive(Serialize)]
struct Refusal<'a> {
    error: &'a str,
    message: &'a str,
}

/// The connect middleware: the seat from the auth payload, or a `connect_error`.
pub async fn authorize(
    s: Sock,
    TryData(auth): TryData<Value>,
    State(store): State<Arc<Store>>,
) -> Result<(), &'static str> {
    let auth = auth.unwrap_or(Value::Null);
    let (Some(id), Some(token)) = (auth["game_id"].as_str(), auth["token"].as_str()) else {
        return Err("unauthorized");
    };
    match store.robot_of(id, token).await {
        Ok(Some(robot)) => {
            s.extensions.insert(Arc::new(Seat {
                game: id.to_owned(),
                robot,
                room: room(id),
            }));
            Ok(())
        }
        Ok(None) => Err("unauthorized"),
        Err(_) => Err("unavailable"),
    }
}

/// A socket in the namespace: in the game's room before the game is read, so no change is
/// missed (a change broadcast while the read is under way may reach the socket before its
/// welcome: a client drops whichever of the two is older by version).
pub async fn on_connect(
    s: Sock,
    State(store): State<Arc<Store>>,
    Extension(seat): Extension<Arc<Seat>>,
) {
    s.join(seat.room.clone());
    s.on("press", on_press);
    s.on("start", on_start);
    match store.load(&seat.game).await {
        Ok(Some(game)) => {
            let admin = game.robots.iter().any(|r| r.id == seat.robot && r.admin);
            let welcome = Welcome {
                robot_id: &seat.robot,
                admin,
                game: &game,
            };
            let _ = s.emit("welcome", &welcome);
        }
        Ok(None) => {
            let _ = s.disconnect();
        }
        Err(_) => refuse(&s, "unavailable"),
    }
}

/// One `EVALSHA`; its scores (or, when the press won, the whole game) to the game's room.
async fn on_press(
    s: Sock,
    io: Io,
    State(store): State<Arc<Store>>,
    Extension(seat): Extension<Arc<Seat>>,
) {
    let r = match store.press(&seat.game, &seat.robot).await {
        Ok(Some(r)) => r,
        Ok(None) => return, // not playing: nothing changes
        Err(_) => return refuse(&s, "unavailable"),
    };
    match r.split_first() {
        Some((0, _)) => broadcast_game(&io, &store, &seat).await,
        Some((&version, scores)) => {
            let scores = Scores { version, scores };
            let _ = io.to(seat.room.clone()).emit("scores", &scores).await;
        }
        None => {}
    }
}

/// The admin starts the race (countdown 0: straight to playing).
async fn on_start(
    s: Sock,
    io: Io,
    State(store): State<Arc<Store>>,
    Extension(seat): Extension<Arc<Seat>>,
) {
    match store.start(&seat.game, &seat.robot).await {
        Ok(r) if r == "ok" => broadcast_game(&io, &store, &seat).await,
        Ok(r) => refuse(&s, &r),
        Err(_) => refuse(&s, "unavailable"),
    }
}

async fn broadcast_game(io: &Io, store: &Store, seat: &Seat) {
    if let Ok(Some(game)) = store.load(&seat.game).await {
        let _ = io.to(seat.room.clone()).emit("game", &game).await;
    }
}

fn refuse(s: &Sock, error: &str) {
    let _ = s.emit(
        "error",
        &Refusal {
            error,
            message: error,
        },
    );
}
