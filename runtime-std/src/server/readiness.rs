//! Which of the Redis door's sockets are ready: the event loop's one wait.
//!
//! On Linux this is epoll itself (through `rustix`), level-triggered, with
//! an eventfd to wake the loop for a stop: one `epoll_wait` per wake-up and
//! nothing else. The portable `polling` crate, used elsewhere, pays four more
//! system calls per wait for features the loop does not use (a `timerfd`
//! armed and re-registered for a precise timeout, its own notifier read and
//! re-registered); with 50 pipelining clients that was a fifth of the loop's
//! CPU (BENCHMARKS.md section 21). Other systems keep `polling`.
//!
//! Keys are the loop's (`usize`); a socket is added watching for input, and
//! switched to watching for room to write while answers wait for the client
//! to take them.

/// A ready socket: its key, and whether it can be read (or has hung up or
/// failed, which a read then reports).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ready {
    pub key: usize,
    pub readable: bool,
}

#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) use self::epoll::{Events, Readiness};
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) use self::portable::{Events, Readiness};

#[cfg(any(target_os = "linux", target_os = "android"))]
mod epoll {
    use std::io;
    use std::os::fd::{AsFd, OwnedFd};
    use std::time::Duration;

    use rustix::buffer::spare_capacity;
    use rustix::event::epoll::{self, CreateFlags, Event, EventData, EventFlags};
    use rustix::event::{EventfdFlags, Timespec, eventfd};
    use rustix::io::Errno;

    use super::Ready;

    /// The eventfd's key: above every socket's.
    const WAKE: u64 = u64::MAX;
    /// Events taken per wait; more ready sockets wait for the next one.
    const EVENTS: usize = 1024;

    /// What one wait reported; allocated once per loop.
    pub(crate) struct Events(Vec<Event>);

    impl Events {
        pub(crate) fn new() -> Events {
            Events(Vec::with_capacity(EVENTS))
        }

        /// The ready sockets (a wake-up is none of them).
        pub(crate) fn iter(&self) -> impl Iterator<Item = Ready> + '_ {
            let readable = EventFlags::IN | EventFlags::PRI | EventFlags::HUP | EventFlags::ERR;
            self.0.iter().filter(|e| e.data.u64() != WAKE).map(move |e| {
                // The event is packed: its flags are copied out, not borrowed.
                let flags = e.flags;
                // Keys are the loop's `usize`s, widened on the way in.
                Ready { key: e.data.u64() as usize, readable: flags.intersects(readable) }
            })
        }
    }

    /// An epoll instance and the eventfd that wakes its waiter.
    #[derive(Debug)]
    pub(crate) struct Readiness {
        epoll: OwnedFd,
        wake: OwnedFd,
    }

    impl Readiness {
        pub(crate) fn new() -> io::Result<Readiness> {
            let epoll = epoll::create(CreateFlags::CLOEXEC)?;
            let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
            epoll::add(&epoll, &wake, EventData::new_u64(WAKE), EventFlags::IN)?;
            Ok(Readiness { epoll, wake })
        }

        fn flags(write: bool) -> EventFlags {
            if write { EventFlags::OUT } else { EventFlags::IN }
        }

        /// Watches `source` for input under `key`.
        pub(crate) fn add(&self, source: &impl AsFd, key: usize) -> io::Result<()> {
            Ok(epoll::add(&self.epoll, source, EventData::new_u64(key as u64), Self::flags(false))?)
        }

        /// Watches `source` for input or room to write instead.
        pub(crate) fn modify(&self, source: &impl AsFd, key: usize, write: bool) -> io::Result<()> {
            Ok(epoll::modify(&self.epoll, source, EventData::new_u64(key as u64), Self::flags(write))?)
        }

        /// Stops watching `source` (before it is closed).
        pub(crate) fn delete(&self, source: &impl AsFd) -> io::Result<()> {
            Ok(epoll::delete(&self.epoll, source)?)
        }

        /// Waits up to `timeout` for ready sockets or a [`Readiness::notify`];
        /// `events` then holds what was ready (an interrupted wait: nothing).
        pub(crate) fn wait(&self, events: &mut Events, timeout: Duration) -> io::Result<()> {
            events.0.clear();
            let timeout = Timespec {
                tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(timeout.subsec_nanos()),
            };
            match epoll::wait(&self.epoll, spare_capacity(&mut events.0), Some(&timeout)) {
                Ok(_) | Err(Errno::INTR) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }

        /// Wakes the waiter (its count stays set: the loop is stopping).
        pub(crate) fn notify(&self) -> io::Result<()> {
            match rustix::io::write(&self.wake, &1u64.to_ne_bytes()) {
                Ok(_) | Err(Errno::AGAIN) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod portable {
    use std::io;
    use std::time::Duration;

    use polling::{Event, PollMode, Poller};

    use super::Ready;

    /// What one wait reported.
    pub(crate) struct Events(polling::Events);

    impl Events {
        pub(crate) fn new() -> Events {
            Events(polling::Events::new())
        }

        pub(crate) fn iter(&self) -> impl Iterator<Item = Ready> + '_ {
            self.0.iter().map(|e| Ready { key: e.key, readable: e.readable })
        }
    }

    /// `polling`'s poller, level-triggered.
    #[derive(Debug)]
    pub(crate) struct Readiness {
        poller: Poller,
    }

    impl Readiness {
        pub(crate) fn new() -> io::Result<Readiness> {
            Ok(Readiness { poller: Poller::new()? })
        }

        fn event(key: usize, write: bool) -> Event {
            if write { Event::writable(key) } else { Event::readable(key) }
        }

        pub(crate) fn add(&self, source: impl polling::AsRawSource, key: usize) -> io::Result<()> {
            // SAFETY (polling's contract): the loop deletes every source
            // before it drops it (`Loop::remove`, `Loop::close_all`).
            unsafe { self.poller.add_with_mode(source, Self::event(key, false), PollMode::Level) }
        }

        pub(crate) fn modify(
            &self,
            source: impl polling::AsSource,
            key: usize,
            write: bool,
        ) -> io::Result<()> {
            self.poller.modify_with_mode(source, Self::event(key, write), PollMode::Level)
        }

        pub(crate) fn delete(&self, source: impl polling::AsSource) -> io::Result<()> {
            self.poller.delete(source)
        }

        pub(crate) fn wait(&self, events: &mut Events, timeout: Duration) -> io::Result<()> {
            events.0.clear();
            self.poller.wait(&mut events.0, Some(timeout)).map(drop)
        }

        pub(crate) fn notify(&self) -> io::Result<()> {
            self.poller.notify()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{self, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    use super::*;

    #[test]
    fn reports_input_level_triggered_and_wakes_on_notify() -> io::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let mut client = TcpStream::connect(listener.local_addr()?)?;
        let (server, _) = listener.accept()?;
        let r = Readiness::new()?;
        r.add(&server, 7)?;
        let mut events = Events::new();
        let ready = |events: &Events| events.iter().map(|e| (e.key, e.readable)).collect::<Vec<_>>();
        r.wait(&mut events, Duration::from_millis(10))?;
        assert_eq!(ready(&events), [], "nothing sent yet");
        client.write_all(b"PING\r\n")?;
        r.wait(&mut events, Duration::from_secs(5))?;
        assert_eq!(ready(&events), [(7, true)]);
        // Level-triggered: input left unread is reported again.
        r.wait(&mut events, Duration::from_secs(5))?;
        assert_eq!(ready(&events), [(7, true)]);
        // Watching for room to write instead: an empty send buffer has room,
        // and the unread input is not reported.
        r.modify(&server, 7, true)?;
        r.wait(&mut events, Duration::from_secs(5))?;
        assert_eq!(ready(&events), [(7, false)]);
        r.delete(&server)?;
        r.notify()?;
        let began = std::time::Instant::now();
        r.wait(&mut events, Duration::from_secs(5))?;
        assert_eq!(ready(&events), [], "a wake-up reports no socket");
        assert!(began.elapsed() < Duration::from_secs(4), "notify did not wake the wait");
        Ok(())
    }
}
