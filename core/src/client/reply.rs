//! The input side: bytes read are reassembled into frames (a partial frame
//! waits in a fixed buffer for the rest), and each reply is matched to its
//! request by id, not by position (C2); a fatal Error closes the
//! connection (C4).

use crate::time::Instant;
use crate::wire::{ErrorCode, FRAME_ROOM, Frame};

use super::call::{Answer, Call, StatusReply};
use super::error::CallError;
use super::session::{ClientSession, Conn};

impl<E: Clone> ClientSession<E> {
    /// Feeds bytes read from the connection, received at `now`. Bytes after
    /// a frame that closes the connection are ignored, as is input while no
    /// connection is open.
    pub fn handle_input(&mut self, mut bytes: &[u8], now: Instant) {
        self.expire(now);
        // A partial frame left over: complete it first.
        while self.rx_len > 0 && !bytes.is_empty() && self.is_open() {
            let take = (FRAME_ROOM - self.rx_len).min(bytes.len());
            self.rx[self.rx_len..self.rx_len + take].copy_from_slice(&bytes[..take]);
            self.rx_len += take;
            bytes = &bytes[take..];
            let mut used = 0;
            while self.is_open() {
                match Frame::decode(&self.rx[used..self.rx_len]) {
                    Ok(Some((frame, n))) => {
                        used += n;
                        self.on_frame(frame, now);
                    }
                    Ok(None) => break,
                    Err(source) => {
                        self.fail_connection(CallError::Protocol { addr: self.addr(), source }, now);
                    }
                }
            }
            if !self.is_open() {
                return;
            }
            // A full buffer always holds a whole frame or an error, so this
            // leaves room for the next round.
            self.rx.copy_within(used..self.rx_len, 0);
            self.rx_len -= used;
        }
        if self.rx_len > 0 {
            return;
        }
        while self.is_open() {
            match Frame::decode(bytes) {
                Ok(Some((frame, n))) => {
                    bytes = &bytes[n..];
                    self.on_frame(frame, now);
                }
                Ok(None) => {
                    // `decode` refuses a declared length over the limit, so
                    // a partial frame fits `rx`.
                    let keep = bytes.len().min(FRAME_ROOM);
                    self.rx[..keep].copy_from_slice(&bytes[..keep]);
                    self.rx_len = keep;
                    return;
                }
                Err(source) => {
                    self.fail_connection(CallError::Protocol { addr: self.addr(), source }, now);
                }
            }
        }
    }

    fn on_frame(&mut self, frame: Frame, now: Instant) {
        let Conn::Open { welcomed, .. } = self.conn else {
            return;
        };
        if welcomed.is_none() {
            return self.on_handshake_answer(frame, now);
        }
        let addr = self.addr();
        let id = match frame {
            // C4: the server closes after a fatal error.
            Frame::Error { id: 0, code, leader } if code.is_fatal() => {
                return self.fail_connection(CallError::Server { addr, code, leader }, now);
            }
            Frame::Error { id, .. }
            | Frame::Ts { id, .. }
            | Frame::Status { id, .. }
            | Frame::Primary { id, .. } => id,
            _ => u64::MAX,
        };
        // C2: matched by id, not by position.
        let Some(r) = self.in_flight.iter().position(|r| r.id == id && id != u64::MAX) else {
            let what = "a reply that does not answer the request";
            return self.fail_connection(CallError::Unexpected { addr, what }, now);
        };
        let request = self.in_flight[r];
        let answer = match (frame, request.call) {
            (Frame::Error { code, leader, .. }, _) => {
                let err = CallError::Server { addr, code, leader };
                if code.is_retryable() {
                    self.retry(Some(r), err, now);
                } else if code == ErrorCode::CountTooLarge && request.callers > 1 {
                    // Merging made the count too large, not any one caller:
                    // smaller batches from now on, these callers first.
                    if let Call::Ts { count } = request.call {
                        self.max_batch = (count / 2).max(1);
                    }
                    self.requeue(r);
                } else {
                    self.fail_request(r, &err);
                    self.last_error = Some(err);
                }
                return;
            }
            // The range must be the whole count inside one millisecond,
            // never reaching logical 0.
            (Frame::Ts { count, last, .. }, Call::Ts { count: total })
                if count == total && last.logical >= total =>
            {
                Answer::Ts(last)
            }
            (Frame::Status { role, node, leader, window_end_ms, current, view, .. }, Call::Status) => {
                Answer::Status(StatusReply { role, node, leader, window_end_ms, current, view })
            }
            (Frame::Primary { registered, .. }, Call::ReadPrimary | Call::ClearPrimary { .. }) => {
                Answer::Primary(registered)
            }
            (Frame::Ts { .. }, Call::Ts { .. }) => {
                let what = "a range that does not match the request";
                return self.fail_connection(CallError::Unexpected { addr, what }, now);
            }
            _ => {
                let what = "a reply that does not answer the request";
                return self.fail_connection(CallError::Unexpected { addr, what }, now);
            }
        };
        self.redirect.reset();
        self.complete(r, answer);
    }
}

#[cfg(test)]
mod tests {
    use crate::client::fixtures::*;

    #[test]
    fn partial_frames_across_inputs_are_reassembled() {
        let mut s = session(config(2), &[A]);
        s.push(2, ms(0));
        s.push(1, ms(0));
        let _ = connect(&mut s, A, ms(0));
        let mut bytes = Vec::new();
        welcome().encode(&mut bytes).unwrap();
        ts_frame(1, 3, 7, 3).encode(&mut bytes).unwrap();
        for chunk in bytes.chunks(3) {
            s.handle_input(chunk, ms(1));
        }
        assert_eq!(done(&mut s), [(0, ts((7 << 18) + 2)), (1, ts((7 << 18) + 3))]);
    }

    #[test]
    fn replies_out_of_step_close_the_connection() {
        let mut s = session(config(2), &[A]);
        s.push(1, ms(0));
        s.push_call(Call::ReadPrimary, ms(0));
        let _ = connect(&mut s, A, ms(0));
        // A range that does not match the request.
        input(&mut s, &[welcome(), ts_frame(1, 2, 1, 2)], ms(1));
        assert_eq!(s.poll_action(), Some(Action::Close));
        let got = done(&mut s);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got.iter().all(|(_, r)| matches!(r, Err(CallError::Unexpected { .. }))));
        // An id nobody sent; then garbage.
        s.push(1, ms(2));
        let _ = connect(&mut s, A, ms(2));
        input(&mut s, &[welcome(), ts_frame(77, 1, 1, 1)], ms(3));
        assert!(matches!(done(&mut s)[..], [(2, Err(CallError::Unexpected { .. }))]));
        let _ = s.poll_action();
        s.push(1, ms(4));
        let _ = connect(&mut s, A, ms(4));
        s.handle_input(&[0, 0, 0, 0], ms(5));
        assert!(matches!(done(&mut s)[..], [(3, Err(CallError::Protocol { .. }))]));
    }
}
