//! Integration tests: one test binary, real processes (the `robot-race` binary, `redis-server`,
//! nginx) on loopback ports, real HTTP and WebSocket clients.

mod bad_input;
mod browser;
mod cluster;
mod deploy;
mod docs;
mod environment;
mod faults;
mod flood;
mod hardening;
mod helpers;
mod k8s;
mod monitoring;
mod pages;
mod party;
mod save_scripts;
mod single;
mod spectators;
mod topology;
mod websocket;
