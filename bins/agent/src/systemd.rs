//! The agent's side of systemd's `Type=notify` protocol: readiness, stopping, and watchdog
//! pings. Outside systemd (`NOTIFY_SOCKET` unset) every call is a no-op; a failed notification
//! is logged, never fatal.

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "systemd notification failed");
    }
}

/// Start-up is done (configuration, journal, trust store, recovery, local API).
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Shutdown began.
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: waiting for actions in flight"),
    ]);
}

/// With `WatchdogSec=` set, pings at half the interval from the runtime: a wedged runtime
/// (every worker stuck) stops the pings and systemd restarts the agent, whose next start
/// recovers.
pub fn watchdog() -> Option<tokio::task::JoinHandle<()>> {
    let every = sd_notify::watchdog_enabled()? / 2;
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            send(&[NotifyState::Watchdog]);
        }
    }))
}
