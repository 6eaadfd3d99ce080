//! Unmasking throughput: the byte-at-a-time reference, the kernel, and `copy_from_slice` of the
//! same size (memcpy, the practical ceiling), side by side in one run. `kernel` is the public
//! entry point (AVX2 where the CPU has it); `kernel-baseline` is the same code without run-time
//! dispatch (SSE2), to show what the one `unsafe` block buys.
//!
//! Run: `cargo bench -p lanes-benches --bench unmask`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lanes_proto::mask::{apply_mask, apply_mask_baseline, apply_mask_bytewise};

const SIZES: [usize; 7] = [16, 64, 125, 1024, 4096, 64 * 1024, 1024 * 1024];
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn label(size: usize) -> String {
    match size {
        s if s >= 1 << 20 => format!("{} MiB", s >> 20),
        s if s >= 1 << 10 => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
}

fn unmask(c: &mut Criterion) {
    let mut group = c.benchmark_group("unmask");
    for size in SIZES {
        let mut buf = vec![0x5au8; size];
        let source = vec![0xa5u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("bytewise", label(size)), &size, |b, _| {
            b.iter(|| apply_mask_bytewise(black_box(&mut buf), black_box(KEY), 0));
        });
        group.bench_with_input(BenchmarkId::new("kernel", label(size)), &size, |b, _| {
            b.iter(|| apply_mask(black_box(&mut buf), black_box(KEY), 0));
        });
        group.bench_with_input(
            BenchmarkId::new("kernel-baseline", label(size)),
            &size,
            |b, _| {
                b.iter(|| apply_mask_baseline(black_box(&mut buf), black_box(KEY), 0));
            },
        );
        group.bench_with_input(BenchmarkId::new("memcpy", label(size)), &size, |b, _| {
            b.iter(|| black_box(&mut buf).copy_from_slice(black_box(&source)));
        });
    }
    group.finish();
}

criterion_group!(benches, unmask);
criterion_main!(benches);
