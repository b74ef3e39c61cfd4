//! A progress line on stderr for steps that may take more than a second (a slow
//! registry, a long audit check, many pages), shown only when stderr is a terminal:
//! pipes, files and tests never see it, and it is erased once the step ends.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Quiet for this long: most steps end before, and a flash of text is noise.
const DELAY: Duration = Duration::from_millis(800);
const TICK: Duration = Duration::from_millis(120);
const FRAMES: [char; 4] = ['|', '/', '-', '\\'];

/// Runs `step`, drawing `message` with a spinner and the time spent while it lasts
/// longer than [`DELAY`], on a terminal only.
pub async fn during<F: Future>(message: &str, step: F) -> F::Output {
    if !std::io::stderr().is_terminal() {
        return step.await;
    }
    let started = Instant::now();
    let mut tick = tokio::time::interval_at((started + DELAY).into(), TICK);
    let mut frame = 0usize;
    let mut shown = false;
    tokio::pin!(step);
    loop {
        tokio::select! {
            output = &mut step => {
                if shown {
                    // Carriage return and erase line: the next output starts clean.
                    let _ = write!(std::io::stderr(), "\r\x1b[2K");
                }
                return output;
            }
            _ = tick.tick() => {
                let spinner = FRAMES.get(frame % FRAMES.len()).copied().unwrap_or('.');
                frame = frame.wrapping_add(1);
                let _ = write!(
                    std::io::stderr(),
                    "\r\x1b[2K{spinner} {message} ({}s)",
                    started.elapsed().as_secs()
                );
                let _ = std::io::stderr().flush();
                shown = true;
            }
        }
    }
}
