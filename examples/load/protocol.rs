//! What the servers speak: this project's WebSocket frames or Socket.IO v4 ([`socketio`]), and
//! a player's seat (its server, game and token).

use clap::ValueEnum;

use crate::frames::Incoming;
use crate::socketio;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    RobotRace,
    #[value(name = "socketio")]
    SocketIo,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::RobotRace => "robot-race",
            Protocol::SocketIo => "socketio",
        }
    }

    pub fn ws_url(self, seat: &Seat) -> String {
        let ws = seat.url.replacen("http", "ws", 1);
        match self {
            Protocol::RobotRace => format!("{ws}/ws/{}?token={}", seat.game_id, seat.token),
            Protocol::SocketIo => format!("{ws}{}", socketio::WS_PATH),
        }
    }

    pub fn press(self) -> &'static str {
        match self {
            Protocol::RobotRace => r#"{"type":"score_point"}"#,
            Protocol::SocketIo => socketio::PRESS,
        }
    }

    pub fn start(self) -> &'static str {
        match self {
            Protocol::RobotRace => r#"{"type":"start_countdown"}"#,
            Protocol::SocketIo => socketio::START,
        }
    }

    /// Decodes a text frame: `Ok(message)`, or `Err(what to do)` for protocol traffic.
    pub fn decode<'a>(self, bytes: &'a [u8]) -> Result<Incoming<'a>, Control> {
        match self {
            Protocol::RobotRace => serde_json::from_slice(bytes).map_err(|_| Control::Skip),
            Protocol::SocketIo => match socketio::decode(bytes) {
                socketio::In::Msg(m) => Ok(m),
                socketio::In::Open => Err(Control::Hello),
                socketio::In::Ping => Err(Control::Reply(socketio::PONG)),
                socketio::In::Closed(why) => Err(Control::Closed(why)),
                socketio::In::Skip => Err(Control::Skip),
            },
        }
    }
}

/// Protocol traffic that is not a game message.
pub enum Control {
    /// Send the seat's hello (Socket.IO: the namespace CONNECT with the seat as auth).
    Hello,
    /// Send this text frame.
    Reply(&'static str),
    /// The server refused or closed the session.
    Closed(String),
    /// Nothing to do.
    Skip,
}

#[derive(Clone, Debug)]
pub struct Seat {
    pub server: usize,
    pub url: String,
    pub game_id: String,
    pub token: String,
    pub admin: bool,
}

/// What a player sends first once the server opens the session: nothing for Robot Race (the
/// token is in the URL), the namespace CONNECT with the seat for Socket.IO.
pub fn hello(protocol: Protocol, seat: &Seat) -> Option<String> {
    match protocol {
        Protocol::RobotRace => None,
        Protocol::SocketIo => Some(socketio::connect_packet(&seat.game_id, &seat.token)),
    }
}
