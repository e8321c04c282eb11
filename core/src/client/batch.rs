//! The queue of callers: consecutive GetTS callers merged into one request
//! up to the batch cap, and a reply's range split among them exactly, in
//! queue order, the first caller the lowest (C1). Status and primary calls
//! go alone.

use crate::time::Instant;
use crate::timestamp::Timestamp;
use crate::wire::Frame;

use super::call::{Answer, Call, Completion};
use super::session::{ClientSession, Request};

impl<E: Clone> ClientSession<E> {
    /// The request the queue's head makes, and how many callers it takes:
    /// consecutive GetTS callers up to the batch cap (the first always, C1),
    /// any other call alone. Takes nothing off the queue.
    pub(super) fn next_request(&self) -> Option<(Frame, usize)> {
        let first = self.queue.front()?;
        let id = self.next_id;
        Some(match first.call {
            Call::Ts { .. } => {
                let mut total = 0u32;
                let mut callers = 0;
                for caller in &self.queue {
                    let Call::Ts { count } = caller.call else { break };
                    // Both at most MAX_COUNT < 2^18: no overflow.
                    if callers > 0 && total + count > self.max_batch {
                        break;
                    }
                    total += count;
                    callers += 1;
                }
                (Frame::GetTs { id, count: total }, callers)
            }
            Call::Status => (Frame::GetStatus { id }, 1),
            Call::ReadPrimary => (Frame::ReadPrimary { id }, 1),
            Call::ClearPrimary { node, tag } => (Frame::ClearPrimary { id, node, tag }, 1),
        })
    }

    /// Moves the callers of the encoded `frame` from the queue to `sent`.
    pub(super) fn commit_request(&mut self, frame: Frame, callers: usize, now: Instant) {
        let mut since = Instant::NEVER;
        for caller in self.queue.drain(..callers) {
            since = since.min(caller.since);
            self.sent.push_back(caller);
        }
        let call = match frame {
            Frame::GetTs { count, .. } => Call::Ts { count },
            Frame::GetStatus { .. } => Call::Status,
            Frame::ReadPrimary { .. } => Call::ReadPrimary,
            Frame::ClearPrimary { node, tag, .. } => Call::ClearPrimary { node, tag },
            // `next_request` makes only the four kinds above.
            _ => return,
        };
        self.in_flight.push_back(Request {
            id: self.next_id,
            call,
            callers,
            since,
            sent_at: now,
            epoch: self.epoch,
        });
        // Id 0 stays unused: it means "the connection" in errors.
        self.next_id = self.next_id.wrapping_add(1).max(1);
    }

    /// The offset in `sent` of the callers of in-flight request `r`.
    pub(super) fn offset(&self, r: usize) -> usize {
        self.in_flight.iter().take(r).map(|q| q.callers).sum()
    }

    /// Answers request `r`'s callers: each its own sub-range of a GetTS
    /// reply, in order, the first the lowest (C1).
    pub(super) fn complete(&mut self, r: usize, answer: Answer) {
        let Some(request) = self.in_flight.remove(r) else { return };
        let at = self.offset(r);
        // `on_frame` checked `last.logical >= total`: the range stays in one
        // millisecond, so packed arithmetic is logical arithmetic.
        let mut end = match (answer, request.call) {
            (Answer::Ts(last), Call::Ts { count }) => last.to_u64() - u64::from(count),
            _ => 0,
        };
        for caller in self.sent.drain(at..at + request.callers) {
            let result = match (answer, caller.call) {
                (Answer::Ts(_), Call::Ts { count }) => {
                    end += u64::from(count);
                    Ok(Answer::Ts(Timestamp::from_u64(end)))
                }
                _ => Ok(answer),
            };
            self.done.push_back(Completion { ticket: caller.ticket, result });
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::client::fixtures::*;

    #[test]
    fn merges_pipelines_behind_the_hello_and_splits_in_order() {
        let mut s = session(ClientConfig { max_batch: 10, ..config(2) }, &[A]);
        for count in [3, 4, 5, 2, 1] {
            s.push(count, ms(0));
        }
        // 3 + 4 fit 10, 5 does not: requests of 7, 8 (5 + 2 + 1), both
        // behind the Hello.
        let out = connect(&mut s, A, ms(1));
        assert_eq!(
            out,
            [
                Frame::Hello { version: VERSION, cluster_id: 0 },
                Frame::GetTs { id: 1, count: 7 },
                Frame::GetTs { id: 2, count: 8 },
            ]
        );
        assert!(s.awaiting_reply());
        assert_eq!(s.in_flight(), 2);
        // The second is answered first: matched by id, not by position.
        input(&mut s, &[welcome(), ts_frame(2, 8, 5, 30)], ms(2));
        assert_eq!(done(&mut s), [(2, ts((5 << 18) + 27)), (3, ts((5 << 18) + 29)), (4, ts((5 << 18) + 30))]);
        input(&mut s, &[ts_frame(1, 7, 5, 7)], ms(3));
        assert_eq!(done(&mut s), [(0, ts((5 << 18) + 3)), (1, ts((5 << 18) + 7))]);
        assert!(!s.awaiting_reply());
        assert_eq!(s.pending(), None);
    }

    #[test]
    fn one_in_flight_waits_for_the_reply_and_a_big_caller_goes_alone() {
        let mut s = session(ClientConfig { max_batch: 10, ..config(1) }, &[A]);
        s.push(20, ms(0));
        s.push(1, ms(0));
        assert_eq!(connect(&mut s, A, ms(0))[1..], [Frame::GetTs { id: 1, count: 20 }]);
        assert_eq!(sent(&mut s, ms(0)), []);
        input(&mut s, &[welcome(), ts_frame(1, 20, 1, 20)], ms(1));
        assert_eq!(sent(&mut s, ms(1)), [Frame::GetTs { id: 2, count: 1 }]);
        assert_eq!(done(&mut s).len(), 1);
    }

    #[test]
    fn a_merged_batch_too_large_is_split_and_sent_again() {
        let mut s = session(ClientConfig { max_batch: 100, ..config(1) }, &[A]);
        for _ in 0..4 {
            s.push(25, ms(0));
        }
        let _ = connect(&mut s, A, ms(0));
        let refused = Frame::Error { id: 1, code: ErrorCode::CountTooLarge, leader: LeaderHint::default() };
        input(&mut s, &[welcome(), refused], ms(1));
        assert_eq!(s.max_batch(), 50);
        assert_eq!(sent(&mut s, ms(1)), [Frame::GetTs { id: 2, count: 50 }]);
        assert!(done(&mut s).is_empty());
        // Alone, a caller gets the refusal.
        let mut s = session(config(1), &[A]);
        s.push(5000, ms(0));
        let _ = connect(&mut s, A, ms(0));
        let refused = Frame::Error { id: 1, code: ErrorCode::CountTooLarge, leader: LeaderHint::default() };
        input(&mut s, &[welcome(), refused], ms(1));
        assert!(matches!(
            done(&mut s)[..],
            [(0, Err(CallError::Server { code: ErrorCode::CountTooLarge, .. }))]
        ));
    }

    #[test]
    fn invalid_counts_and_primary_calls_are_not_retried() {
        let mut s = session(config(1), &[A]);
        s.push(0, ms(0));
        s.push(MAX_COUNT + 1, ms(0));
        assert_eq!(done(&mut s).len(), 2);
        assert_eq!(s.poll_action(), None);
        s.push_call(Call::ReadPrimary, ms(0));
        let _ = connect(&mut s, A, ms(0));
        s.connection_failed(Broken::Lost, "closed", ms(1));
        assert!(matches!(done(&mut s)[..], [(2, Err(CallError::Transport { .. }))]));
        s.push_call(Call::ReadPrimary, ms(2));
        let _ = connect(&mut s, A, ms(2));
        input(&mut s, &[welcome(), Frame::Primary { id: 2, registered: None }], ms(3));
        assert_eq!(done(&mut s), [(3, Ok(Answer::Primary(None)))]);
    }
}
