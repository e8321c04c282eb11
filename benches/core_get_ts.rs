//! The core's GetTS in-process, next to the floor: one `AtomicU64::fetch_add`.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use leasetso_benches::InProcess;

fn get_ts(c: &mut Criterion) {
    let mut group = c.benchmark_group("core_get_ts");
    for count in [1u32, 10, 100, 1000] {
        group.throughput(Throughput::Elements(u64::from(count)));
        let counter = AtomicU64::new(0);
        group.bench_with_input(BenchmarkId::new("atomic_fetch_add", count), &count, |b, &count| {
            b.iter(|| counter.fetch_add(black_box(u64::from(count)), Ordering::Relaxed))
        });
        let mut node = InProcess::new();
        group.bench_with_input(BenchmarkId::new("node_get_ts", count), &count, |b, &count| {
            b.iter(|| node.get_ts(black_box(count)))
        });
    }
    group.finish();
}

criterion_group!(benches, get_ts);
criterion_main!(benches);
