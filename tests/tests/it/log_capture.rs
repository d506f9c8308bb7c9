//! Capturing a test's own log lines: a `tracing` writer whose bytes the test
//! reads back. Installed with `tracing::subscriber::set_default`, it sees what
//! runs on the test's thread, so the services under test are started on the
//! `#[sqlx::test]` (current-thread) runtime. Used to scan logs for secrets
//! (`bot_contract`) and to count refusal lines (`ingest_front_door`).

use std::sync::{Arc, Mutex};

/// The captured bytes; clones share them.
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl LogBuffer {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Captures every line at `INFO` and above written on this thread until
    /// the guard is dropped.
    pub fn capture(&self) -> tracing::subscriber::DefaultGuard {
        tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .with_writer(self.clone())
                .with_ansi(false)
                .with_max_level(tracing::Level::INFO)
                .finish(),
        )
    }
}
