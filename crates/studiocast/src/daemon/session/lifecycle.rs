//! What the session actor does with each event: the start job's result,
//! commands, the worker's updates, the monitor's readings, and the end.
//! Nothing here blocks: teardown and joins go to the blocking pool and
//! come back as the `closed` event.

use std::time::Duration;

use studiocast_server::{ControlError, SessionState};

use super::monitor::{self, DiskReading};
use super::{launch, now, Phase, Session, SessionCmd, CLOSE_TIMEOUT, STOP_TIMEOUT};
use crate::daemon::worker::Update;

/// How long the end waits for the record to reach the disk.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// What the closing job hands back: the stream's error, if any, and why the
/// sidecar could not be finished, if it could not.
pub type Closed = (Option<String>, Option<String>);

impl Session {
    /// The start job came back.
    pub(super) fn on_launched(
        &mut self,
        r: Result<Result<launch::Launched, launch::LaunchError>, tokio::task::JoinError>,
    ) {
        let r = r.unwrap_or_else(|e| {
            tracing::error!(%e, "the start job panicked");
            Err(launch::LaunchError::Refused(
                "internal error while starting".into(),
            ))
        });
        match r {
            Ok(l) => {
                self.recorded = true;
                for w in &l.warnings {
                    self.monitor.raise("sidecar", w.clone());
                }
                self.phase = Phase::Running(l.running);
                self.worker = Some(l.worker);
                self.recording = Some(l.recording);
                self.queue = Some(l.queue);
                tracing::info!(title = %self.info.title, "session started");
                self.publish();
                if let Some(reply) = self.create_reply.take() {
                    let _ = reply.send(Ok(self.info.clone()));
                }
                if self.stop_asked {
                    self.begin_stop();
                }
            }
            Err(launch::LaunchError::Refused(msg)) => {
                tracing::warn!(reason = %msg, "start refused");
                self.phase = Phase::Done;
                if let Some(reply) = self.create_reply.take() {
                    self.answer_last(reply, Err(ControlError::Unavailable(msg.clone())));
                }
                for w in std::mem::take(&mut self.waiters) {
                    let e = ControlError::Conflict(format!("the session did not start: {msg}"));
                    self.answer_last(w, Err(e));
                }
            }
            Err(launch::LaunchError::Failed { msg }) => {
                tracing::error!(reason = %msg, "start failed");
                self.recorded = true;
                self.info.state = SessionState::Failed;
                self.info.error = Some(msg.clone());
                self.info.ended_at = Some(now());
                self.save();
                self.phase = Phase::Done;
                if let Some(reply) = self.create_reply.take() {
                    self.answer_last(reply, Err(ControlError::Unavailable(msg)));
                }
                for w in std::mem::take(&mut self.waiters) {
                    let info = self.info.clone();
                    self.answer_last(w, Ok(info));
                }
            }
        }
    }

    pub(super) fn on_command(&mut self, cmd: SessionCmd) {
        match cmd {
            SessionCmd::Get(reply) => {
                let mut info = self.info.clone();
                info.alarms = self.monitor.alarms();
                if let Phase::Running(r) = &self.phase {
                    info.inputs = Some(monitor::input_status(
                        r.status(),
                        self.recording.as_ref().map(|(s, _)| s.as_ref()),
                        self.monitor.free_mb,
                    ));
                }
                let _ = reply.send(info);
            }
            SessionCmd::Stop(reply) => match self.info.state {
                SessionState::Starting | SessionState::Live | SessionState::Stopping => {
                    self.waiters.push(reply);
                    self.begin_stop();
                }
                state => {
                    let _ = reply.send(Err(ControlError::Conflict(format!(
                        "session {} is already {state}",
                        self.info.id
                    ))));
                }
            },
            SessionCmd::Meters(reply) => {
                let r = match &self.phase {
                    Phase::Running(r) if self.info.state.is_active() => r
                        .meters()
                        .ok_or_else(|| ControlError::Conflict("this session has no meters".into())),
                    _ => Err(ControlError::Conflict(format!(
                        "session {} is {}: meters exist while it runs",
                        self.info.id, self.info.state
                    ))),
                };
                let _ = reply.send(r);
            }
            SessionCmd::Pipeline(reply) => {
                let p = match &self.phase {
                    Phase::Running(r) => r.pipeline(),
                    _ => None,
                };
                let _ = reply.send(p);
            }
            SessionCmd::Shutdown => {
                if matches!(self.phase, Phase::Launching) {
                    // A start still in progress (a device open can hang for
                    // good) cannot hold the daemon's exit: it is given up,
                    // its job left to end on its own.
                    tracing::warn!("shutting down while the session starts: start abandoned");
                    if let Some(reply) = self.create_reply.take() {
                        let _ = reply.send(Err(ControlError::Unavailable(
                            "the daemon is shutting down".into(),
                        )));
                    }
                    for w in self.waiters.drain(..) {
                        let _ = w.send(Err(ControlError::Unavailable(
                            "the daemon is shutting down".into(),
                        )));
                    }
                    self.phase = Phase::Done;
                } else if self.info.state.is_active() {
                    self.begin_stop();
                }
            }
        }
    }

    /// Drain: EOS to the pipeline, `stopping` saved, a deadline set. Once:
    /// later stops only wait. A session still starting stops as soon as it
    /// has started.
    pub(super) fn begin_stop(&mut self) {
        match &self.phase {
            Phase::Launching => {
                self.stop_asked = true;
            }
            Phase::Running(r) if self.info.state != SessionState::Stopping => {
                r.request_eos();
                self.info.state = SessionState::Stopping;
                self.stop_deadline = Some(tokio::time::Instant::now() + STOP_TIMEOUT);
                tracing::info!("stopping");
                self.save();
            }
            _ => {}
        }
    }

    pub(super) fn on_update(&mut self, u: Update) {
        if matches!(self.phase, Phase::Launching)
            && matches!(u, Update::Ended | Update::Failed { .. })
        {
            self.early_end = Some(u);
            return;
        }
        match u {
            Update::Live => {
                if self.info.state == SessionState::Starting {
                    self.info.state = SessionState::Live;
                    self.save();
                }
            }
            Update::WriteFailed { file, error } => {
                self.monitor
                    .raise("hls", format!("cannot write HLS files ({file}: {error})"));
                self.publish();
            }
            Update::WritesRecovered => {
                self.monitor.clear("hls");
                self.publish();
            }
            Update::Ended => {
                self.outcome.get_or_insert(None);
                self.close();
            }
            Update::Failed { error } => {
                tracing::error!(%error, "session failed");
                self.outcome.get_or_insert(Some(error));
                self.close();
            }
        }
    }

    pub(super) fn on_tick(&mut self) {
        let Phase::Running(r) = &self.phase else {
            return;
        };
        let status = r.status();
        self.monitor.tick(
            &status,
            self.queue.as_deref(),
            self.recording.as_ref().map(|(s, _)| s.as_ref()),
        );
        if self.info.alarms != self.monitor.alarms() {
            self.publish();
        }
    }

    pub(super) fn on_disk(&mut self, reading: DiskReading) {
        if !matches!(self.phase, Phase::Running(_)) {
            return;
        }
        let dir = self.ctx.media_root.join(&self.info.id);
        let verdict = self.monitor.on_disk(
            reading,
            &dir,
            &self.ctx.recording,
            self.recording.as_ref().map(|(s, _)| s.as_ref()),
        );
        if verdict.stop {
            self.begin_stop();
        }
        if self.info.alarms != self.monitor.alarms() {
            self.publish();
        }
    }

    /// Stop the pipeline's threads, join the worker and finish the sidecar,
    /// on the blocking pool; `closed` reports when that is done. Once.
    pub(super) fn close(&mut self) {
        let Phase::Running(_) = self.phase else {
            return;
        };
        let Phase::Running(running) = std::mem::replace(&mut self.phase, Phase::Closing) else {
            return;
        };
        let worker = self.worker.take();
        let recording = self.recording.take();
        let job = tokio::task::spawn_blocking(move || {
            running.shutdown();
            let outcome = match worker.map(|w| w.join()) {
                Some(Ok(o)) => o,
                Some(Err(_)) => Some("the packaging worker panicked".into()),
                None => None,
            };
            let sidecar =
                recording.and_then(|(state, mut sidecar)| sidecar.finish(&now(), &state).err());
            (outcome, sidecar)
        });
        self.closing = Some((job, tokio::time::Instant::now() + CLOSE_TIMEOUT));
    }

    /// An answer given once the session is over: sent by the supervisor
    /// after it has freed the slot.
    fn answer_last(
        &mut self,
        reply: super::Reply,
        r: Result<studiocast_server::SessionInfo, ControlError>,
    ) {
        self.last_answers.push((reply, r));
    }

    /// Everything stopped (or did not in time): the record settled, every
    /// waiting stop answered. Exactly once.
    pub(super) async fn on_closed(&mut self, joined: Option<Closed>) {
        self.stop_deadline = None;
        if joined.is_none() {
            // The stream may well have ended cleanly (the worker said so);
            // what hangs is the teardown: threads left behind, said here.
            self.monitor.raise(
                "teardown",
                format!(
                    "the pipeline did not stop within {} s; its threads were left behind",
                    CLOSE_TIMEOUT.as_secs()
                ),
            );
        }
        if let Some((_, Some(e))) = &joined {
            self.monitor.raise("sidecar", e.clone());
        }
        let error = match (self.outcome.take(), joined) {
            (Some(o), _) => o,
            (None, Some((o, _))) => o,
            (None, None) => Some("the stream did not end: the pipeline hung".into()),
        };
        self.info.state = if error.is_some() {
            SessionState::Failed
        } else {
            SessionState::Ended
        };
        self.info.error = error;
        self.info.ended_at = Some(now());
        self.save();
        if let Err(e) = self.record.flush(FLUSH_TIMEOUT).await {
            // The reply carries it even if the record cannot.
            tracing::error!(error = %e, "the final session record is not on disk");
            self.monitor
                .raise("store", format!("session record not saved: {e}"));
            self.publish();
        }
        tracing::info!(state = %self.info.state, "session finished");
        for w in std::mem::take(&mut self.waiters) {
            let info = self.info.clone();
            self.answer_last(w, Ok(info));
        }
        self.phase = Phase::Done;
    }
}

/// The closing job's result, or `None` once its deadline passed (the job
/// is then left to finish on its own).
pub(super) async fn closed(
    closing: &mut Option<(tokio::task::JoinHandle<Closed>, tokio::time::Instant)>,
) -> Option<Closed> {
    let Some((job, deadline)) = closing.as_mut() else {
        return std::future::pending().await;
    };
    let r = match tokio::time::timeout_at(*deadline, job).await {
        Ok(Ok(outcome)) => Some(outcome),
        Ok(Err(e)) => Some((Some(format!("the teardown failed: {e}")), None)),
        Err(_) => None,
    };
    *closing = None;
    r
}
