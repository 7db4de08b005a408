//! One racing player: starts the race (the admin), presses at its pace inside the window, and
//! counts what it is shown.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use awc::ws::{Frame, Message};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;

use crate::clients::{Phase, PlayerStats, Shared, Socket};
use crate::frames::View;
use crate::measure::micros;
use crate::protocol::{Control, Protocol};

/// Errors that answer a press that was dropped: such a press is not lost.
const PRESS_ERRORS: [&str; 3] = ["overloaded", "rate_limited", "unavailable"];
/// After pressing stops, a player waits this long without progress for its last presses.
const DRAIN_QUIET: Duration = Duration::from_secs(5);

#[derive(Clone, Copy)]
pub struct PlayCfg {
    pub every: Duration,
    pub protocol: Protocol,
}

/// One racing player: the admin starts its race once every socket is open; the player presses
/// every `every` (at its own random phase) inside the window, then reads until each press is
/// shown or errored (or `DRAIN_QUIET` passes without progress).
pub async fn play(
    mut framed: Socket,
    admin: bool,
    hello: Option<String>,
    cfg: PlayCfg,
    mut phase: watch::Receiver<Phase>,
    shared: Arc<Shared>,
) -> PlayerStats {
    let every = cfg.every;
    let mut st = PlayerStats::default();
    let mut view = View::default();
    let mut me = String::new();
    let mut pending: VecDeque<Instant> = VecDeque::new();
    let mut window: Option<(Instant, Instant)> = None;
    let mut next_press: Option<Instant> = None;
    let offset = every.mul_f64(rand::random::<f64>());
    let mut start_sent = false;
    let mut start_attempts = 0;
    let mut start_retry_at: Option<Instant> = None;
    let mut last_progress = Instant::now();
    let mut phase_open = true;
    let press = cfg.protocol.press();
    loop {
        let cur = *phase.borrow();
        if cur == Phase::Stop {
            break;
        }
        if let (None, Phase::Window { start, end }) = (window, cur) {
            window = Some((start, end));
            next_press = Some(start + offset);
        }
        let now = Instant::now();
        if admin
            && st.welcomed
            && !start_sent
            && !view.playing
            && cur != Phase::Connecting
            && start_retry_at.is_none_or(|t| now >= t)
        {
            let _ = framed
                .send(Message::Text(cfg.protocol.start().into()))
                .await;
            start_sent = true;
            start_attempts += 1;
        }
        if let (Some((_, end)), Some(at)) = (window, next_press) {
            if at >= end {
                next_press = None;
            } else if now >= at {
                if framed.send(Message::Text(press.into())).await.is_err() {
                    st.closed_early = true;
                    break;
                }
                pending.push_back(now);
                st.sent += 1;
                st.send_lag_us.push(micros(now - at));
                next_press = Some(at + every);
                continue;
            }
        }
        if let Some((_, end)) = window {
            if now >= end
                && next_press.is_none()
                && (pending.is_empty() || now.duration_since(last_progress.max(end)) > DRAIN_QUIET)
            {
                break;
            }
        }
        let mut wake = now + Duration::from_millis(200);
        if let Some(at) = next_press {
            wake = wake.min(at);
        }
        if let (Some(at), false) = (start_retry_at, start_sent) {
            wake = wake.min(at);
        }
        let frame = tokio::select! {
            biased;
            frame = framed.next() => frame,
            _ = actix_rt::time::sleep_until(wake.into()) => continue,
            changed = phase.changed(), if phase_open => {
                phase_open = changed.is_ok();
                continue;
            }
        };
        let bytes = match frame {
            Some(Ok(Frame::Text(bytes))) => bytes,
            Some(Ok(Frame::Ping(p))) => {
                let _ = framed.send(Message::Pong(p)).await;
                continue;
            }
            Some(Ok(Frame::Close(_))) | Some(Err(_)) | None => {
                st.closed_early = true;
                break;
            }
            Some(Ok(_)) => continue,
        };
        let arrived = Instant::now();
        let in_window = window.is_some_and(|(s, e)| arrived >= s && arrived <= e);
        let msg = match cfg.protocol.decode(&bytes) {
            Ok(msg) => msg,
            Err(Control::Hello) => {
                if let Some(hello) = &hello {
                    let _ = framed.send(Message::Text(hello.as_str().into())).await;
                }
                continue;
            }
            Err(Control::Reply(text)) => {
                let _ = framed.send(Message::Text(text.into())).await;
                continue;
            }
            Err(Control::Closed(why)) => {
                *st.errors.entry(why).or_default() += 1;
                st.closed_early = true;
                break;
            }
            Err(Control::Skip) => continue,
        };
        let rose = match msg.kind.as_ref() {
            "welcome" => {
                me = msg.robot_id.unwrap_or_default();
                st.welcomed = true;
                if let Some(game) = &msg.game {
                    if view.apply_full(game, &me).is_none() {
                        // An update arrived before the welcome (the Socket.IO peer can do
                        // that; Robot Race always welcomes first): find my lane in it.
                        view.me = view.ids.iter().position(|id| *id == me);
                    }
                }
                None
            }
            "game_update" | "scores" => {
                st.deliveries += 1;
                if in_window {
                    st.window_deliveries += 1;
                }
                let applied = if msg.kind == "scores" {
                    st.scores_frames += 1;
                    view.apply_scores(msg.version, &msg.scores)
                        .map(|(rose, fits)| {
                            if !fits {
                                st.scores_mismatch += 1;
                            }
                            rose
                        })
                } else {
                    st.game_updates += 1;
                    msg.game.as_ref().and_then(|g| view.apply_full(g, &me))
                };
                if applied.is_none() {
                    st.stale += 1;
                }
                applied
            }
            "error" => {
                let code = msg.error.unwrap_or_default();
                if PRESS_ERRORS.contains(&code.as_str()) && !pending.is_empty() {
                    // The server dropped a press: the oldest one waiting (presses are applied
                    // in order, and a dropped one is the one that waited too long).
                    pending.pop_front();
                    st.press_errors += 1;
                    last_progress = arrived;
                }
                if admin && code == "not_enough_players" && !view.playing && start_attempts < 50 {
                    start_sent = false;
                    start_retry_at = Some(arrived + Duration::from_millis(200));
                }
                *st.errors.entry(code).or_default() += 1;
                None
            }
            "terminated" => {
                st.closed_early = true;
                break;
            }
            _ => None,
        };
        if let Some(rose) = rose {
            st.press_deliveries += rose;
            if in_window {
                st.window_press_deliveries += rose;
            }
        }
        if view.playing && !st.saw_playing {
            st.saw_playing = true;
            shared.playing.fetch_add(1, Ordering::Relaxed);
        }
        let score = view.my_score();
        while st.counted < score {
            st.counted += 1;
            last_progress = arrived;
            if let Some(sent_at) = pending.pop_front() {
                st.latencies_us.push(micros(arrived - sent_at));
                st.timed
                    .push((sent_at, micros(arrived - sent_at), view.version));
            }
        }
    }
    let _ = framed.send(Message::Close(None)).await;
    st
}
