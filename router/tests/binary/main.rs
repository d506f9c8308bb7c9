//! Tests of the built `switchyard-router` executable (they need
//! `CARGO_BIN_EXE_switchyard-router`, which only this crate's own tests get, so
//! they cannot join the workspace's one test binary in `tests/tests/it`).
//! One test binary for all of them: one link step.

mod failover;
mod lifecycle;
