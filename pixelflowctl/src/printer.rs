//! The one owner of stdout, stderr and progress: results go to stdout (so
//! `--output json` stays clean), progress and status lines to stderr.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

pub struct Printer {
    pub output: Output,
    pub color: bool,
    quiet: bool,
}

impl Printer {
    pub fn new(output: Output, quiet: bool) -> Self {
        let color = std::env::var_os("NO_COLOR").is_none()
            && std::io::IsTerminal::is_terminal(&std::io::stdout());
        Self {
            output,
            color,
            quiet,
        }
    }

    /// A spinner on stderr (hidden when stderr is not a terminal).
    pub fn spinner(&self, message: String) -> ProgressBar {
        let bar = if self.quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        };
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(message);
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }

    /// A status line on stderr.
    pub fn status(&self, line: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", line.as_ref());
        }
    }

    /// A result on stdout.
    pub fn out(&self, text: impl AsRef<str>) {
        println!("{}", text.as_ref());
    }
}
