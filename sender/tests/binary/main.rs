//! Tests of the built `switchyard-sender` executable (they need
//! `CARGO_BIN_EXE_switchyard-sender`, which only this crate's own tests get, so
//! they cannot join the workspace's one test binary in `tests/tests/it`).
//! One test binary for all of them: one link step.

mod lifecycle;
mod restart;
