//! Child processes that may start children of their own (a shell script starting servers, node
//! starting Chromium), bounded in time: each runs in a process group of its own, so a test that
//! gives up on one ends everything it started, and nothing it started keeps the test's pipes open.

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// Starts `command` as the leader of a new process group.
pub(crate) fn spawn_in_own_group(command: &mut Command) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    command.process_group(0).spawn()
}

/// Kills (SIGKILL) every process still in the group `child` leads, `child` included.
pub(crate) fn kill_group(child: &Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status();
}

/// `child`'s exit status once it ends within `patience`; otherwise `None`, after its whole
/// group was killed and it was reaped.
pub(crate) fn wait_within(child: &mut Child, patience: Duration) -> Option<ExitStatus> {
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if started.elapsed() > patience {
            kill_group(child);
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
