//! Shared test helpers: the real `robot-race` binary and real `redis-server` processes on free
//! loopback ports (owned by the test, so it can kill and restart them), and real HTTP and
//! WebSocket clients. Every process is killed when its guard drops; every wait is bounded.
//!
//! Tests import everything at once (`use crate::helpers::*`); the submodules split it by
//! concern. `tests/under_load.rs` compiles this directory too (through `#[path]`), so nothing
//! here may name a module of the `it` binary.

#![allow(dead_code)]

mod api;
mod player;
mod process;
mod proxy;
mod racing;
mod redis_server;
mod server;
mod view;

// Each test binary uses its own part of these (`tests/under_load.rs` only a few).
#[allow(unused_imports)]
pub use self::{
    api::*, player::*, process::*, proxy::*, racing::*, redis_server::*, server::*, view::*,
};
