//! The core's GetTS next to an `AtomicU64::fetch_add`, counted in
//! instructions instead of timed: run under `valgrind --tool=callgrind`, the
//! count of instructions executed is the same from one run to the next
//! whatever else the machine does, where the criterion time ratio
//! (`core_get_ts`) moved from 0.36x to 1.8x between two runs.
//!
//! `callgrind_get_ts MODE N [COUNT]` runs `N` calls of one operation and
//! prints a checksum of the results (so no call can be optimised away):
//! * `node`: `Node::get_ts(COUNT)` on a serving single node with an
//!   in-memory store and a frozen clock, as `core_get_ts` sets it up
//!   (`InProcess`, `benches/lib.rs`);
//! * `fetch_add`: `AtomicU64::fetch_add(COUNT, Relaxed)`, the floor;
//! * `empty`: the same loop with no operation in it, so the loop's own
//!   instructions can be told apart from the operation's.
//!
//! The setup (process start, the node's sync) costs the same at any `N`, so
//! `benches/callgrind.sh` runs each mode at `N` and `2N` and takes
//! `(I(2N) - I(N)) / N` as the instructions per call. Every mode runs the one
//! loop in `run`, kept out of line so the three differ only in the body.
//!
//! Without arguments (`cargo bench`, `cargo test --benches`) it runs each
//! mode for a few calls, checks that they produce what they should, and says
//! how to count.

use std::hint::black_box;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

use leasetso_benches::InProcess;

/// The loop every mode runs: `n` calls of `op`, their results folded into a
/// checksum. Out of line and generic, so each mode gets one copy of exactly
/// this loop with its `op` inlined into it.
#[inline(never)]
fn run<F: FnMut() -> u64>(n: u64, mut op: F) -> u64 {
    let mut sum = 0u64;
    for _ in 0..n {
        sum = sum.wrapping_add(black_box(op()));
    }
    sum
}

/// One of the measured operations.
#[derive(Clone, Copy, Debug)]
enum Mode {
    Node,
    FetchAdd,
    Empty,
}

impl Mode {
    fn parse(s: &str) -> Option<Mode> {
        match s {
            "node" => Some(Mode::Node),
            "fetch_add" => Some(Mode::FetchAdd),
            "empty" => Some(Mode::Empty),
            _ => None,
        }
    }

    /// Runs `n` calls of this operation for `count` timestamps each; returns
    /// the checksum and the value the last call handed out.
    fn measure(self, n: u64, count: u32) -> (u64, u64) {
        match self {
            Mode::Node => {
                // Setup, the same at every `n`: a node synced and serving.
                let mut node = InProcess::new();
                let mut last = 0;
                let sum = run(n, || {
                    let ts = node.get_ts(black_box(count));
                    last = ts.to_u64();
                    last
                });
                (sum, last)
            }
            Mode::FetchAdd => {
                let counter = AtomicU64::new(0);
                let counter = black_box(&counter);
                let sum = run(n, || counter.fetch_add(black_box(u64::from(count)), Ordering::Relaxed));
                (sum, counter.load(Ordering::Relaxed))
            }
            Mode::Empty => {
                let mut i = 0u64;
                let sum = run(n, || {
                    i += 1;
                    black_box(i)
                });
                (sum, i)
            }
        }
    }
}

/// Without arguments: each mode for a few calls, with what must hold of
/// their results.
fn smoke() -> ExitCode {
    let n = 1_000;
    let (_, node_last) = Mode::Node.measure(n, 3);
    let (_, added) = Mode::FetchAdd.measure(n, 3);
    let (_, loops) = Mode::Empty.measure(n, 3);
    // The node hands out increasing timestamps: the last of 1,000 calls of 3
    // is well past the first.
    let (_, node_first) = Mode::Node.measure(1, 3);
    let ok = node_last > node_first && added == 3 * n && loops == n;
    println!(
        "callgrind_get_ts smoke run: node last {node_last:#x} (first {node_first:#x}), \
         fetch_add total {added}, empty loops {loops}: {}",
        if ok { "ok" } else { "WRONG" }
    );
    println!("count instructions with: benches/callgrind.sh");
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench` and `cargo test --benches` nothing.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    if args.is_empty() {
        return smoke();
    }
    let usage = "usage: callgrind_get_ts node|fetch_add|empty N [COUNT]";
    let Some(mode) = Mode::parse(&args[0]) else {
        eprintln!("{usage}");
        return ExitCode::FAILURE;
    };
    let Some(n) = args.get(1).and_then(|s| s.parse::<u64>().ok()) else {
        eprintln!("{usage}");
        return ExitCode::FAILURE;
    };
    let count = match args.get(2).map(|s| s.parse::<u32>()) {
        None => 1,
        Some(Ok(c)) if c > 0 => c,
        Some(_) => {
            eprintln!("{usage} (COUNT is 1 or more)");
            return ExitCode::FAILURE;
        }
    };
    let (sum, last) = mode.measure(n, count);
    println!("{mode:?} n={n} count={count} checksum={sum:#x} last={last:#x}");
    ExitCode::SUCCESS
}
