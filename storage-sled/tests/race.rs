//! S2 under a real race on the real sled store: a registration racing a
//! checked save, and a registration racing a checked load.
//!
//! What it proves (for the interleavings it happens to produce): no checked
//! save or load ever succeeds once a `register_primary` has *returned*
//! before it *began*; every checked save or load is either applied in full
//! (window and fence written, or fence raised) or refused with
//! `PrimaryExists` naming the registrant and changing nothing (a refused
//! load raises no fence); and the stored window never decreases, read after
//! every round.
//!
//! What it cannot prove: it samples a race window, it does not enumerate
//! schedules. "Returned before began" is observed through a sequence counter
//! bumped right after `register_primary` returns and read right before and
//! right after the racing call, so the check is one-sided: a registration
//! that had committed but not yet bumped the counter when the racer began
//! counts as a race (either answer allowed), and no test of this kind can
//! show that the check and the write are one transaction in every schedule,
//! only that none of the schedules it ran broke the rule. A random delay on
//! one side or the other (calibrated on the measured duration of a
//! registration) spreads the rounds over "racer clearly first", "tight
//! race" and "racer clearly after"; the test asserts each kind occurred.

use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use leasetso_core::{Ballot, NodeId};
use leasetso_sled::{SledStore, StoreError};
use tempfile::TempDir;

/// Rounds in all, alternating a racing save and a racing load. One store,
/// opened once: every successful operation flushes. On the 2 shared cores
/// this was written on (busy with other builds), 10,000 rounds (about
/// 25,000 flushed operations, a registration about 0.2 ms) took about 15 s.
/// `LEASETSO_RACE_ROUNDS` overrides the count for a longer run.
const ROUNDS: u64 = 10_000;

/// The registrant of round `r`: one of three nodes.
fn registrant(r: u64) -> NodeId {
    NodeId(1 + (r % 3) as u16)
}

/// Its tag: fresh in every round.
fn tag(r: u64) -> Ballot {
    Ballot::new(r, 7, registrant(r))
}

/// The racer's fence in round `r`: above every earlier round's, so S1 never refuses.
fn fence(r: u64) -> Ballot {
    Ballot::new(r + 1, 1, NodeId(0))
}

/// The racer's window in round `r`: above every earlier round's, so S3 never refuses.
fn window(r: u64) -> u64 {
    1_000 + r
}

/// A deterministic pseudo-random number per round (splitmix64).
fn mix(r: u64) -> u64 {
    let mut z = r.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The delays of round `r` before the registrar's and the racer's calls:
/// none in a quarter of the rounds (the tightest race), otherwise a random
/// one of up to three registrations' time on one side.
fn delays(r: u64, unit: Duration) -> (Duration, Duration) {
    let x = mix(r);
    let d = unit.mul_f64((x >> 8) as f64 / (1u64 << 56) as f64 * 3.0);
    match x % 4 {
        0 => (Duration::ZERO, Duration::ZERO),
        1 => (d, Duration::ZERO),
        _ => (Duration::ZERO, d),
    }
}

/// The racing call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Save,
    Load,
}

/// What the racer saw: the sequence counter right before and right after
/// its call, and the call's result (the loaded window for a load).
#[derive(Debug)]
struct Raced {
    before: u64,
    after: u64,
    result: Result<Option<u64>, StoreError>,
}

#[test]
fn a_checked_save_or_load_never_succeeds_after_a_registration_returned() {
    let rounds = std::env::var("LEASETSO_RACE_ROUNDS").map_or(ROUNDS, |v| v.parse().unwrap());
    let dir = TempDir::new().unwrap();
    let store = SledStore::open(dir.path(), 0xC1).unwrap();

    // Calibrate the delays on what a registration (and its clear) costs here.
    let mut samples: Vec<Duration> = (0..20)
        .map(|i| {
            let t = Instant::now();
            store.register_primary(NodeId(9), Ballot::new(i, 0, NodeId(9))).unwrap();
            let d = t.elapsed();
            assert_eq!(store.clear_primary(NodeId(9), Ballot::new(i, 0, NodeId(9))).unwrap(), None);
            d
        })
        .collect();
    samples.sort();
    let unit = samples[samples.len() / 2];

    // One increment per round, right after that round's registration returned.
    let seq = AtomicU64::new(0);
    let started = Instant::now();
    let (mut stored_window, mut stored_fence) = (0, Ballot::ZERO);
    // The window as read after the previous round.
    let mut last_read = 0;
    let (mut ok, mut refused_in_race, mut refused_after) = ([0u64; 2], [0u64; 2], [0u64; 2]);
    for r in 0..rounds {
        let kind = if r % 2 == 0 { Kind::Save } else { Kind::Load };
        // A fresh registration state: clear the previous round's, exactly.
        if r > 0 {
            assert_eq!(store.clear_primary(registrant(r - 1), tag(r - 1)).unwrap(), None, "round {r}");
        }
        assert_eq!(store.primary().unwrap(), None, "round {r}");
        let (reg_delay, racer_delay) = delays(r, unit);

        let barrier = Barrier::new(2);
        let (registered, raced) = std::thread::scope(|s| {
            let registrar = s.spawn(|| {
                barrier.wait();
                std::thread::sleep(reg_delay);
                let registered = store.register_primary(registrant(r), tag(r));
                seq.fetch_add(1, SeqCst);
                registered
            });
            let racer = s.spawn(|| {
                barrier.wait();
                std::thread::sleep(racer_delay);
                let before = seq.load(SeqCst);
                let result = match kind {
                    Kind::Save => store.save(window(r), fence(r), true).map(|()| None),
                    Kind::Load => store.load(fence(r), true).map(Some),
                };
                let after = seq.load(SeqCst);
                Raced { before, after, result }
            });
            (registrar.join().unwrap(), racer.join().unwrap())
        });

        let what = format!("round {r} ({kind:?}, delays {reg_delay:?}/{racer_delay:?}): {raced:?}");
        assert_eq!(registered.unwrap(), Some((registrant(r), tag(r))), "{what}");
        assert_eq!(store.primary().unwrap(), Some((registrant(r), tag(r))), "{what}");
        assert!(raced.before <= raced.after && raced.after <= r + 1, "{what}");
        let registration_done_first = raced.before == r + 1;
        let k = kind as usize;
        match raced.result {
            Ok(loaded) => {
                assert!(
                    !registration_done_first,
                    "a checked call began after a registration returned and succeeded: {what}"
                );
                ok[k] += 1;
                match kind {
                    Kind::Save => stored_window = window(r),
                    Kind::Load => assert_eq!(loaded, Some(stored_window), "{what}"),
                }
                stored_fence = fence(r);
            }
            Err(StoreError::PrimaryExists { id }) if id == registrant(r) => {
                if registration_done_first {
                    refused_after[k] += 1;
                } else {
                    refused_in_race[k] += 1;
                }
            }
            Err(_) => panic!("neither applied nor refused for the registration: {what}"),
        }
        let window_now = store.window_end_ms().unwrap();
        assert!(window_now >= last_read, "the window went down from {last_read}: {what}");
        last_read = window_now;
        assert_eq!(window_now, stored_window, "{what}");
        assert_eq!(store.fence().unwrap(), stored_fence, "a refused call changed the fence: {what}");
    }
    let elapsed = started.elapsed();
    eprintln!(
        "{rounds} rounds in {elapsed:?} (registration {unit:?}); [save, load]: applied {ok:?}, \
         refused in a race {refused_in_race:?}, refused after the registration returned {refused_after:?}"
    );
    // Every kind of interleaving happened, for saves and for loads.
    if rounds >= 1_000 {
        for k in [Kind::Save as usize, Kind::Load as usize] {
            assert!(ok[k] > 0 && refused_in_race[k] > 0 && refused_after[k] > 0, "too few kinds of rounds");
        }
    }

    // The run's result is durable.
    drop(store);
    let store = SledStore::open(dir.path(), 0xC1).unwrap();
    assert_eq!(store.window_end_ms().unwrap(), stored_window);
    assert_eq!(store.fence().unwrap(), stored_fence);
}
