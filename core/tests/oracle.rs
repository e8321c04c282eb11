//! PD's window behaviours, pinned.

use core::time::Duration;

use leasetso_core::{GetTsError, MAX_LOGICAL, Oracle, OracleConfig, Timestamp};

const WALL: u64 = 1_700_000_000_000;

/// An oracle synced at `WALL` with a fresh window of 3 s.
fn serving(cfg: OracleConfig) -> Oracle {
    let mut o = Oracle::new(cfg);
    o.begin_sync();
    let window = o.loaded(0, WALL).expect("loading");
    assert_eq!(window, WALL + cfg.save_interval_ms);
    assert!(!o.is_serving(), "W1: nothing is served before the first save");
    assert_eq!(o.get_ts(1), Err(GetTsError::NotLeader { leader: None }));
    assert!(o.saved(window));
    assert!(o.is_serving());
    o
}

#[test]
fn logical_zero_is_never_handed_out() {
    let mut o = serving(OracleConfig { max_logical: 8, ..Default::default() });
    let mut prev = Timestamp::ZERO;
    for i in 0..100 {
        let count = 1 + (i % 3);
        let ts = o.get_ts(count).unwrap();
        assert!(ts > prev);
        assert!(ts.logical >= count, "range {ts:?} of {count} would include logical 0");
        prev = ts;
        if i % 7 == 0 {
            o.update(WALL + i as u64);
        }
    }
}

#[test]
fn sync_waits_for_a_slow_wall_clock_then_starts_above_the_loaded_window() {
    let mut o = Oracle::new(OracleConfig::default());
    o.begin_sync();
    // The previous leader saved a window an hour ahead of this node's clock:
    // starting above it would put physical an hour ahead (B3), so the
    // leadership waits for the wall clock instead of saving.
    let last = WALL + 3_600_000;
    assert_eq!(o.loaded(last, WALL), None);
    assert!(o.is_waiting());
    assert_eq!(o.update(WALL + 60_000).save_window_ms, None, "still more than 5 s behind");
    assert_eq!(o.get_ts(1), Err(GetTsError::NotLeader { leader: None }));
    // The start last + 1 needs a window above it and the guard: last + 3,
    // within 5 s of the wall clock only from last + 3 - 5 s on.
    let max_ahead = OracleConfig::default().max_ahead_ms;
    assert_eq!(o.update(last + 2 - max_ahead).save_window_ms, None, "no millisecond to serve yet");
    let window = o.update(last + 3 - max_ahead).save_window_ms.expect("room below the bound: the sync save");
    assert_eq!(window, last + 3, "the save interval cut to the ahead bound");
    assert!(o.saved(window));
    let ts = o.get_ts(1).unwrap();
    assert_eq!(ts.physical_ms, last + 1);
}

#[test]
fn physical_never_runs_more_than_max_ahead_past_the_wall_clock() {
    let cfg = OracleConfig { max_ahead_ms: 3_200, ..Default::default() };
    let mut o = serving(cfg);
    // Takes `count` timestamps `calls` times with the wall clock still at
    // `wall`, extending the window whenever refused; returns the highest
    // physical served and how many calls were refused.
    let take = |o: &mut Oracle, count: u32, calls: usize, wall: u64| {
        let (mut top, mut refused) = (0, 0);
        for _ in 0..calls {
            match o.get_ts(count) {
                Ok(ts) => top = top.max(ts.physical_ms),
                Err(e) => {
                    assert_eq!(e, GetTsError::LogicalExhausted);
                    assert!(e.is_retryable());
                    refused += 1;
                    // The periodic update saves ahead of physical, never past the bound.
                    if let Some(w) = o.update(wall).save_window_ms {
                        assert!(w <= wall + cfg.max_ahead_ms);
                        assert!(o.saved(w));
                    }
                }
            }
        }
        (top, refused)
    };
    // The client: full-size requests in a loop, the wall clock
    // still. Large requests stop at half the bound (the share rule).
    let (top, refused) = take(&mut o, MAX_LOGICAL - 1, 20_000, WALL);
    assert_eq!(top, WALL + cfg.max_ahead_ms / 2, "a flood of large requests stops at half the bound");
    assert!(refused > 10_000, "past it they are refused: {refused}");
    // Small requests are still served, up to the bound and no further.
    let (small, refused) = take(&mut o, 1000, 2_000_000, WALL);
    assert_eq!(o.window_end_ms(), WALL + cfg.max_ahead_ms);
    assert_eq!(small, WALL + cfg.max_ahead_ms - 2, "physical reached the bound, and no further");
    assert!(refused > 0, "past the bound small requests are refused too");
    // The wall clock moves on: so does the bound.
    let w = o.update(WALL + 100).save_window_ms.expect("room again: a save");
    assert_eq!(w, WALL + 100 + cfg.max_ahead_ms);
    assert!(o.saved(w));
    assert_eq!(o.get_ts(MAX_LOGICAL - 1), Err(GetTsError::LogicalExhausted), "large: past half the bound");
    assert_eq!(o.get_ts(1000).unwrap().physical_ms, small + 1, "small: on to the new bound");
}

#[test]
fn max_ahead_is_checked_against_the_save_interval() {
    use leasetso_core::OracleConfigError;
    let cfg = OracleConfig { max_ahead_ms: 3_002, ..Default::default() };
    assert!(matches!(cfg.validate(), Err(OracleConfigError::MaxAhead { .. })));
    let cfg = OracleConfig { max_ahead_ms: 60_001, ..Default::default() };
    assert!(matches!(cfg.validate(), Err(OracleConfigError::MaxAhead { .. })));
    let cfg = OracleConfig { save_interval_ms: 60_000, max_ahead_ms: 60_000, ..Default::default() };
    assert!(matches!(cfg.validate(), Err(OracleConfigError::MaxAhead { .. })));
    let cfg = OracleConfig { max_ahead_ms: 3_003, ..Default::default() };
    assert_eq!(cfg.validate(), Ok(()), "a save interval, the guard and one millisecond");
    assert_eq!(OracleConfig::default().max_ahead_ms, 5_000);
    assert_eq!(OracleConfig::default().validate(), Ok(()));
}

#[test]
fn exhaustion_advances_physical_at_once_while_the_window_allows() {
    let mut o = serving(OracleConfig::default());
    let first = o.get_ts(1).unwrap();
    // Far more than 2^18 timestamps without a single update tick.
    let mut prev = first;
    for _ in 0..40 {
        let ts = o.get_ts(MAX_LOGICAL / 2).unwrap();
        assert!(ts > prev);
        prev = ts;
    }
    assert!(prev.physical_ms >= first.physical_ms + 19, "physical advanced without waiting for the update");
}

#[test]
fn exhaustion_is_retryable_only_when_the_window_does_not_allow_advancing() {
    let cfg = OracleConfig { max_logical: 4, save_interval_ms: 3, guard_ms: 1, ..Default::default() };
    let mut o = serving(cfg);
    // Window is WALL + 3; physical may advance while physical + 1 + guard < window.
    let mut last = Timestamp::ZERO;
    let mut served = 0;
    loop {
        match o.get_ts(1) {
            Ok(ts) => {
                assert!(ts > last);
                assert!(ts.physical_ms < WALL + 3, "W2: physical stays below the window");
                last = ts;
                served += 1;
            }
            Err(e) => {
                assert_eq!(e, GetTsError::LogicalExhausted);
                assert!(e.is_retryable());
                break;
            }
        }
    }
    // Physical WALL and WALL + 1 were usable: 3 + 3 timestamps.
    assert_eq!(served, 6);
    assert_eq!(last.physical_ms, WALL + 1);
    // The update asks for a save; once it lands, serving continues above.
    let update = o.update(WALL + 1);
    let window = update.save_window_ms.expect("window must be extended");
    assert_eq!(o.get_ts(1), Err(GetTsError::LogicalExhausted), "nothing moves before the save lands");
    assert!(o.saved(window));
    assert!(o.get_ts(1).unwrap() > last);
}

#[test]
fn wall_clock_stepping_back_an_hour_never_moves_timestamps_back() {
    let mut o = serving(OracleConfig::default());
    let mut prev = o.get_ts(1).unwrap();
    let mut wall = WALL;
    for step in 0..2_000u64 {
        // The wall clock jumps back an hour at step 100, then creeps forward.
        wall = if step == 100 { wall - 3_600_000 } else { wall + 1 };
        let update = o.update(wall);
        if let Some(w) = update.save_window_ms {
            assert!(o.saved(w));
        }
        let ts = o.get_ts(1 + (step as u32 % 1000)).unwrap();
        assert!(ts > prev, "step {step}: {ts:?} after {prev:?}");
        assert!(ts.physical_ms < o.window_end_ms());
        prev = ts;
    }
}

#[test]
fn physical_never_reaches_the_saved_window() {
    let cfg = OracleConfig { save_interval_ms: 20, max_logical: 16, ..Default::default() };
    let mut o = serving(cfg);
    let mut wall = WALL;
    let mut pending: Option<u64> = None;
    for step in 0..5_000u64 {
        if step % 5 == 0 {
            wall += 3;
            let u = o.update(wall);
            pending = pending.or(u.save_window_ms);
        }
        // Saves land late, so GetTS runs against the old window meanwhile.
        if step % 11 == 0 {
            if let Some(w) = pending.take() {
                assert!(o.saved(w));
            }
        }
        match o.get_ts(5) {
            Ok(ts) => assert!(ts.physical_ms < o.window_end_ms(), "W2 broken at step {step}"),
            Err(e) => assert_eq!(e, GetTsError::LogicalExhausted),
        }
    }
}

#[test]
fn a_failed_save_resets_the_oracle() {
    let mut o = serving(OracleConfig::default());
    let before = o.get_ts(1).unwrap();
    let window = o.update(WALL + 10_000).save_window_ms.expect("wall ran past the window");
    // The node reports the failure with reset(): nothing is served any more,
    // and the answer of the failed save is not accepted later.
    o.reset();
    assert!(!o.is_serving());
    assert_eq!(o.get_ts(1), Err(GetTsError::NotLeader { leader: None }));
    assert!(!o.saved(window));
    assert_eq!(o.current(), None);
    // A new sync serves above everything before.
    o.begin_sync();
    let w = o.loaded(window, WALL + 10_000).unwrap();
    assert!(o.saved(w));
    assert!(o.get_ts(1).unwrap() > before);
}

#[test]
fn count_zero_and_huge_counts_are_errors() {
    let mut o = serving(OracleConfig::default());
    assert_eq!(o.get_ts(0), Err(GetTsError::ZeroCount));
    assert_eq!(
        o.get_ts(MAX_LOGICAL),
        Err(GetTsError::CountTooLarge { count: MAX_LOGICAL, max: MAX_LOGICAL - 1 })
    );
    assert_eq!(o.get_ts(u32::MAX), Err(GetTsError::CountTooLarge { count: u32::MAX, max: MAX_LOGICAL - 1 }));
    assert!(!GetTsError::ZeroCount.is_retryable());
    // The largest count fits, once per millisecond.
    let ts = o.get_ts(MAX_LOGICAL - 1).unwrap();
    assert_eq!(ts.logical, MAX_LOGICAL - 1);
}

#[test]
fn update_follows_the_wall_clock_and_saves_ahead() {
    let mut o = serving(OracleConfig::default());
    assert_eq!(o.update(WALL).save_window_ms, None, "nothing to do at the same millisecond");
    o.update(WALL + 5);
    assert_eq!(o.get_ts(1).unwrap(), Timestamp::new(WALL + 5, 1).unwrap());
    // Close to the window end, the update saves before moving physical.
    let u = o.update(WALL + 2_999);
    let window = u.save_window_ms.expect("save ahead");
    assert_eq!(window, WALL + 2_999 + 3_000);
    assert_eq!(o.get_ts(1).unwrap().physical_ms, WALL + 5, "physical waits for the save");
    assert!(o.saved(window));
    assert_eq!(o.get_ts(1).unwrap(), Timestamp::new(WALL + 2_999, 1).unwrap());
    // PD's jet-lag warning when the wall clock is far ahead.
    assert!(o.update(WALL + 2_999 + 500).jet_lag_ms.is_some());
    let _ = Duration::ZERO;
}

#[test]
fn a_window_edge_reached_ahead_of_the_wall_clock_is_extended_at_the_next_update() {
    let cfg = OracleConfig { max_logical: 1000, save_interval_ms: 10, ..Default::default() };
    let mut o = serving(cfg);
    // Alternating small and large requests push physical ahead of the
    // (frozen) wall clock, one millisecond per request, up to the window's
    // edge, where the large one no longer fits while logical is below half.
    o.get_ts(100).unwrap();
    loop {
        if o.get_ts(950).is_err() {
            break;
        }
        o.get_ts(100).expect("an even number of advances fits the window");
    }
    let edge = o.current().unwrap();
    assert!(edge.physical_ms > WALL, "physical ran ahead of the wall clock");
    assert!(edge.logical <= cfg.max_logical / 2, "PD's half-logical rule alone would not fire: {edge:?}");
    assert_eq!(o.get_ts(950), Err(GetTsError::LogicalExhausted));
    // The next update extends the window although the wall clock is behind
    // and logical is below half.
    let window = o.update(WALL).save_window_ms.expect("the edge asks for a save");
    assert!(window > o.window_end_ms());
    assert!(o.saved(window));
    let ts = o.get_ts(950).unwrap();
    assert!(ts > edge);
    assert!(ts.physical_ms < o.window_end_ms());
}
