//! Failures: which callers go back into the queue (C5) and which fail
//! (C6), where the next attempt goes and after which pause (the
//! [`redirect`](crate::redirect) rules), and the retry epochs that keep a
//! failure of a request sent before the last one was handled from moving
//! anything again.

use core::time::Duration;

use crate::time::Instant;

use super::call::Completion;
use super::error::CallError;
use super::session::{ClientSession, Conn};

impl<E: Clone> ClientSession<E> {
    /// Fails request `r`'s callers with `err`.
    pub(super) fn fail_request(&mut self, r: usize, err: &CallError<E>) {
        let Some(request) = self.in_flight.remove(r) else { return };
        let at = self.offset(r);
        for caller in self.sent.drain(at..at + request.callers) {
            self.done.push_back(Completion { ticket: caller.ticket, result: Err(err.clone()) });
        }
    }

    /// Puts request `r`'s callers back into the queue, in arrival order (C5).
    pub(super) fn requeue(&mut self, r: usize) {
        let Some(request) = self.in_flight.remove(r) else { return };
        let at = self.offset(r);
        // Inserted from the youngest back, each before the first queued
        // caller younger than it: the queue stays in ticket order. Requeued
        // callers are usually older than all queued ones, so each lands at
        // the front.
        for i in (at..at + request.callers).rev() {
            let caller = self.sent[i];
            if self.queue.front().is_none_or(|q| q.ticket > caller.ticket) {
                self.queue.push_front(caller);
            } else {
                let pos = self.queue.partition_point(|q| q.ticket < caller.ticket);
                self.queue.insert(pos, caller);
            }
        }
        self.sent.drain(at..at + request.callers);
    }

    /// Requeues request `r` after the retryable `err`, or fails it if its
    /// deadline has passed or its call is not retried (C6).
    pub(super) fn requeue_or_fail(&mut self, r: usize, err: &CallError<E>, now: Instant) {
        let request = self.in_flight[r];
        if request.call.retried() && now < request.since + self.config.deadline {
            self.requeue(r);
        } else {
            self.fail_request(r, err);
        }
    }

    /// Fails the queued callers that were waiting when the failed connection
    /// was asked for: its failure was their attempt too (C6), even though
    /// none of their requests went out (a refused connect, a refused
    /// handshake). With `retryable`, only those past their deadline and
    /// those whose call is not retried; otherwise all of them.
    pub(super) fn fail_waiting(&mut self, err: &CallError<E>, retryable: bool, now: Instant) {
        let (attempt, deadline, done) = (self.attempt_ticket, self.config.deadline, &mut self.done);
        self.queue.retain(|c| {
            let over = c.ticket.0 < attempt && (!retryable || !c.call.retried() || now >= c.since + deadline);
            if over {
                done.push_back(Completion { ticket: c.ticket, result: Err(err.clone()) });
            }
            !over
        });
    }

    /// Closes the connection after a failure of the connection itself (a
    /// refused handshake, bytes out of step). Such a failure is not worth a
    /// retry (C3, C4): every in-flight caller gets `err`; queued callers stay
    /// queued for a new connection.
    pub(super) fn fail_connection(&mut self, err: CallError<E>, now: Instant) {
        self.conn = Conn::Closed;
        self.close_pending = true;
        self.retry(None, err, now);
    }

    /// Drops the connection by the session's own decision; its in-flight
    /// callers go back into the queue (they failed nothing themselves).
    pub(super) fn drop_connection(&mut self) {
        if matches!(self.conn, Conn::Closed) {
            return;
        }
        self.conn = Conn::Closed;
        self.close_pending = true;
        while let Some(last) = self.in_flight.len().checked_sub(1) {
            self.requeue(last);
        }
    }

    /// Handles `err` of in-flight request `only`, or of the whole connection
    /// (then already marked closed). A retryable one requeues or fails the
    /// callers (C5, C6), applies the redirect rules and arms the pause; the
    /// pause is cut to the earliest deadline of the callers still waiting,
    /// and with none waiting the retry state starts afresh, as for a new call.
    pub(super) fn retry(&mut self, only: Option<usize>, err: CallError<E>, now: Instant) {
        self.eager = false;
        let Some(failure) = err.failure() else {
            // Not retryable: fail what it concerns.
            match only {
                Some(r) => self.fail_request(r, &err),
                None => {
                    while !self.in_flight.is_empty() {
                        self.fail_request(0, &err);
                    }
                    self.fail_waiting(&err, false, now);
                }
            }
            self.last_error = Some(err);
            return;
        };
        let stale = match only {
            Some(r) => {
                let stale = self.in_flight[r].epoch < self.epoch;
                self.requeue_or_fail(r, &err, now);
                stale
            }
            None => {
                self.rx_len = 0;
                while let Some(last) = self.in_flight.len().checked_sub(1) {
                    self.requeue_or_fail(last, &err, now);
                }
                self.fail_waiting(&err, true, now);
                false
            }
        };
        self.last_error = Some(err);
        if stale {
            // Sent before the last failure was handled: that one decided.
            return;
        }
        self.epoch += 1;
        let deadline = self.config.deadline;
        let left = self
            .queue
            .iter()
            .chain(self.sent.iter())
            .filter(|c| c.call.retried())
            .map(|c| (c.since + deadline).saturating_since(now))
            .min();
        let decision = self.redirect.after_failure(failure, left.unwrap_or(Duration::ZERO));
        if decision.moved_to.is_some() {
            // Whatever else is in flight on the old connection goes again.
            self.drop_connection();
        }
        match left {
            Some(_) if !decision.pause.is_zero() => {
                let until = now + decision.pause;
                self.paused_until = Some(self.paused_until.map_or(until, |p| p.max(until)));
            }
            Some(_) => {}
            // Nobody waits for a retry: the next caller starts afresh.
            None => self.redirect.reset(),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::client::fixtures::*;

    #[test]
    fn a_hint_is_followed_at_once_and_the_callers_go_again_in_order() {
        let mut s = session(config(2), &[A, B]);
        let leader = "10.0.0.1:7";
        for _ in 0..3 {
            s.push(1, ms(0));
        }
        s.push_call(Call::Status, ms(0));
        let out = connect(&mut s, A, ms(0));
        assert_eq!(out[1..], [Frame::GetTs { id: 1, count: 3 }, Frame::GetStatus { id: 2 }]);
        input(&mut s, &[welcome(), not_leader(1, Some(leader))], ms(1));
        // The connection goes; both requests are requeued, in order.
        assert_eq!(s.poll_action(), Some(Action::Close));
        assert_eq!(s.queued(), 4);
        assert!(done(&mut s).is_empty());
        let out = connect(&mut s, leader, ms(1));
        assert_eq!(out[1..], [Frame::GetTs { id: 3, count: 3 }, Frame::GetStatus { id: 4 }]);
        input(&mut s, &[welcome(), ts_frame(3, 3, 9, 3)], ms(2));
        assert_eq!(done(&mut s), [(0, ts((9 << 18) + 1)), (1, ts((9 << 18) + 2)), (2, ts((9 << 18) + 3))]);
    }

    #[test]
    fn a_stale_hint_falls_back_to_the_seeds_and_a_third_move_pauses() {
        let mut s = session(config(1), &[A, B]);
        let leader = "10.0.0.1:7";
        s.push(1, ms(0));
        let _ = connect(&mut s, A, ms(0));
        input(&mut s, &[welcome(), not_leader(1, Some(leader))], ms(1));
        assert_eq!(s.poll_action(), Some(Action::Close));
        assert_eq!(s.poll_action(), Some(Action::Connect(addr(leader))));
        s.connection_failed(Broken::Unreachable, "refused", ms(2));
        // Two moves at once; B names the dead leader again: the third waits.
        let _ = connect(&mut s, B, ms(2));
        input(&mut s, &[welcome(), not_leader(2, Some(leader))], ms(3));
        assert_eq!(s.poll_action(), Some(Action::Close));
        assert_eq!(s.poll_action(), None, "a third move in a row went at once");
        let until = s.poll_timeout().unwrap();
        assert!(until > ms(3) && until <= ms(13), "{until:?}");
        s.handle_timeout(until);
        assert_eq!(s.poll_action(), Some(Action::Connect(addr(leader))));
        assert!(done(&mut s).is_empty());
    }

    #[test]
    fn a_lost_connection_is_reopened_at_once_then_moves_on() {
        let mut s = session(config(1), &[A, B]);
        s.push(1, ms(0));
        let _ = connect(&mut s, A, ms(0));
        s.connection_failed(Broken::Lost, "closed", ms(1));
        let _ = connect(&mut s, A, ms(1));
        s.connection_failed(Broken::Lost, "closed", ms(2));
        assert_eq!(s.poll_action(), None, "the second loss waits");
        s.handle_timeout(s.poll_timeout().unwrap());
        assert_eq!(s.poll_action(), Some(Action::Connect(addr(B))));
    }

    #[test]
    fn logical_exhaustion_pauses_on_the_same_connection() {
        let mut s = session(config(2), &[A]);
        s.push(1, ms(0));
        let _ = connect(&mut s, A, ms(0));
        let busy = Frame::Error { id: 1, code: ErrorCode::LogicalExhausted, leader: LeaderHint::default() };
        input(&mut s, &[welcome(), busy], ms(1));
        assert_eq!(s.poll_action(), None, "the connection stays");
        assert_eq!(sent(&mut s, ms(1)), [], "sent during the pause");
        let until = s.poll_timeout().unwrap();
        s.handle_timeout(until);
        assert_eq!(sent(&mut s, until), [Frame::GetTs { id: 2, count: 1 }]);
    }

    #[test]
    fn a_failure_requeues_callers_in_arrival_order() {
        let mut s = session(ClientConfig { max_batch: 2, ..config(3) }, &[A]);
        for _ in 0..6 {
            s.push(1, ms(0));
        }
        let _ = connect(&mut s, A, ms(0));
        assert_eq!(s.in_flight(), 3);
        input(&mut s, &[welcome()], ms(1));
        s.connection_failed(Broken::Lost, "reset", ms(1));
        assert_eq!(s.pending(), Some(Ticket(0)));
        let out = connect(&mut s, A, ms(1));
        assert_eq!(
            out[1..],
            [
                Frame::GetTs { id: 4, count: 2 },
                Frame::GetTs { id: 5, count: 2 },
                Frame::GetTs { id: 6, count: 2 }
            ]
        );
        input(&mut s, &[welcome(), ts_frame(4, 2, 1, 2), ts_frame(5, 2, 1, 4), ts_frame(6, 2, 1, 6)], ms(2));
        let got: Vec<u64> = done(&mut s).into_iter().map(|(t, _)| t).collect();
        assert_eq!(got, [0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn deadlines_fail_the_callers_with_the_last_error() {
        let cfg = ClientConfig { deadline: Duration::from_millis(100), ..config(1) };
        let mut s = session(cfg, &[A]);
        s.push(1, ms(0));
        let _ = connect(&mut s, A, ms(0));
        // Within the deadline: retried.
        s.connection_failed(Broken::Unreachable, "refused", ms(50));
        assert!(done(&mut s).is_empty());
        let until = s.poll_timeout().unwrap();
        assert!(until <= ms(100), "the pause outlives the deadline: {until:?}");
        s.handle_timeout(until);
        let _ = connect(&mut s, A, until);
        s.push(1, ms(90));
        s.connection_failed(Broken::Unreachable, "refused again", ms(120));
        // The old caller's request is past its deadline; the young caller
        // (queued, never sent) waits for its own attempt.
        let got = done(&mut s);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, 0);
        assert!(matches!(got[0].1, Err(CallError::Transport { error: "refused again", .. })));
        assert_eq!(s.last_error().map(|e| e.to_string()), Some("refused again".to_string()));
        assert_eq!(s.queued(), 1);
    }

    #[test]
    fn refused_connects_count_as_attempts_until_the_deadline() {
        let cfg = ClientConfig { deadline: Duration::from_millis(100), ..config(1) };
        let mut s = session(cfg, &[A, B]);
        s.push(1, ms(0));
        let mut now = ms(0);
        let mut connects = 0;
        while done(&mut s).is_empty() {
            assert!(connects < 1_000, "retried past the deadline");
            match s.poll_action() {
                Some(Action::Connect(_)) => {
                    connects += 1;
                    s.connection_failed(Broken::Unreachable, "refused", now);
                }
                Some(Action::Close) => {}
                None => {
                    now = s.poll_timeout().expect("a caller waits without a timer");
                    s.handle_timeout(now);
                }
            }
        }
        assert!(now >= ms(100) && now < ms(101), "gave up at {now:?}");
        assert!(connects >= 3, "{connects} attempts");
        // A caller that arrives after the connect was asked for waits for an
        // attempt of its own.
        s.push(1, ms(200));
        assert_eq!(s.poll_action(), Some(Action::Connect(s.addr())));
        s.push(1, ms(200));
        s.connection_failed(Broken::Unreachable, "refused", ms(300));
        assert!(matches!(done(&mut s)[..], [(1, Err(_))]));
        assert_eq!(s.pending(), Some(Ticket(2)));
    }

    #[test]
    fn a_zero_deadline_makes_exactly_one_attempt() {
        let mut s = session(ClientConfig { deadline: Duration::ZERO, ..config(1) }, &[A]);
        s.push(1, ms(0));
        let _ = connect(&mut s, A, ms(0));
        s.connection_failed(Broken::Lost, "closed", ms(0));
        assert_eq!(done(&mut s).len(), 1);
        assert_eq!(s.poll_action(), None, "nobody is waiting");
    }

    #[test]
    fn a_request_timeout_closes_and_retries() {
        let cfg = ClientConfig { request_timeout: Duration::from_millis(30), ..config(1) };
        let mut s = session(cfg, &[A, B]);
        s.push(1, ms(0));
        let _ = connect(&mut s, A, ms(0));
        assert_eq!(s.poll_timeout(), Some(ms(30)), "the Welcome is waited for too");
        input(&mut s, &[welcome()], ms(5));
        assert_eq!(s.poll_timeout(), Some(ms(30)));
        s.handle_timeout(ms(29));
        assert_eq!(s.poll_action(), None);
        s.handle_timeout(ms(30));
        assert_eq!(s.poll_action(), Some(Action::Close));
        assert!(matches!(s.last_error(), Some(CallError::Timeout { .. })));
        // Timed out at a seed: the next seed, after a pause.
        s.handle_timeout(s.poll_timeout().unwrap());
        assert_eq!(s.poll_action(), Some(Action::Connect(addr(B))));
    }
}
