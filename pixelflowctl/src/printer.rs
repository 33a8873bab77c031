//! The one owner of stdout, stderr and progress: results go to stdout (so
//! `--output json` stays clean), progress and status lines to stderr.

use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

pub struct Printer {
    pub output: Output,
    pub color: bool,
    quiet: bool,
    /// Spinners of work running side by side share one display.
    bars: MultiProgress,
}

impl Printer {
    pub fn new(output: Output, quiet: bool) -> Self {
        let color = std::env::var_os("NO_COLOR").is_none()
            && std::io::IsTerminal::is_terminal(&std::io::stdout());
        let bars = MultiProgress::with_draw_target(if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        });
        Self {
            output,
            color,
            quiet,
            bars,
        }
    }

    /// A spinner on stderr (hidden when stderr is not a terminal).
    pub fn spinner(&self, message: String) -> ProgressBar {
        let bar = self.bars.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(message);
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }

    /// A bar counting steps (a build's `Step N/M`), with the latest line.
    pub fn steps(&self, message: String) -> ProgressBar {
        let bar = self.bars.add(ProgressBar::new(0));
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{bar:20}] {pos}/{len} {wide_msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(message);
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }

    /// A bar counting bytes (a layer of a pull).
    pub fn bytes(&self, message: String) -> ProgressBar {
        let bar = self.bars.add(ProgressBar::new(0));
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{bar:20}] {bytes}/{total_bytes} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(message);
        bar
    }

    /// Whether progress bars are drawn (stderr is a terminal and not
    /// --quiet); otherwise long work reports through status lines.
    pub fn interactive(&self) -> bool {
        !self.bars.is_hidden()
    }

    /// A status line on stderr, above any spinners.
    pub fn status(&self, line: impl AsRef<str>) {
        if !self.quiet {
            if self.bars.is_hidden() {
                eprintln!("{}", line.as_ref());
            } else {
                let _ = self.bars.println(line.as_ref());
            }
        }
    }

    /// A result on stdout.
    pub fn out(&self, text: impl AsRef<str>) {
        println!("{}", text.as_ref());
    }
}
