//! Rendering: a human table by default, JSON with `--json`, always to a
//! writer the caller owns (stdout in the binary, a buffer in tests), so no
//! command prints on its own. Progress bars go to stderr and only when it is a
//! terminal and the output is for a human.

use std::io::{IsTerminal as _, Write};

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// Where a command's result goes, and in which shape.
pub struct Output {
    json: bool,
    /// Whether `out` is a terminal (only stdout can be; a test's buffer never is).
    terminal: bool,
    out: Box<dyn Write + Send>,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("json", &self.json)
            .field("terminal", &self.terminal)
            .finish()
    }
}

impl Output {
    pub fn new(json: bool, out: Box<dyn Write + Send>) -> Self {
        Self {
            json,
            terminal: false,
            out,
        }
    }

    /// The process's stdout.
    pub fn stdout(json: bool) -> Self {
        Self {
            terminal: std::io::stdout().is_terminal(),
            ..Self::new(json, Box::new(std::io::stdout()))
        }
    }

    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Whether the output goes to a terminal (someone is looking at it).
    pub fn is_terminal(&self) -> bool {
        self.terminal
    }

    /// Prints `value` as JSON (with `--json`) or calls `human` to render it.
    pub fn emit<T: Serialize>(
        &mut self,
        value: &T,
        human: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> anyhow::Result<()> {
        if self.json {
            serde_json::to_writer_pretty(&mut self.out, value)?;
            writeln!(self.out)?;
        } else {
            human(&mut self.out)?;
        }
        self.out.flush()?;
        Ok(())
    }

    /// A line for humans only (suppressed with `--json`).
    pub fn note(&mut self, line: &str) -> anyhow::Result<()> {
        if !self.json {
            writeln!(self.out, "{line}")?;
            self.out.flush()?;
        }
        Ok(())
    }
}

/// A table with a header row, borders only, no terminal styling.
pub fn table<R: Into<comfy_table::Row>>(header: R) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_BORDERS_ONLY).set_header(header);
    t
}

/// Writes a table followed by a newline.
pub fn write_table(w: &mut dyn Write, table: &Table) -> std::io::Result<()> {
    writeln!(w, "{table}")
}

/// A progress bar over `len` items on stderr, hidden unless stderr is a
/// terminal and the output is for a human.
pub fn progress(len: u64, what: &str, json: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if json || !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) =
        ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} {elapsed_precise}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

/// Writes a warning to stderr (never a secret; best-effort).
pub fn warn(message: &str) {
    let _ = writeln!(std::io::stderr(), "switchyard: warning: {message}");
}

/// Writes a command's error to stderr.
pub fn warn_error(error: &crate::exit::CliError) {
    let _ = writeln!(std::io::stderr(), "switchyard: {error}");
}
