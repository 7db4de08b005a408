//! Redis Sentinel: follow failovers.
