//! permessage-deflate: compressing and inflating typical messages (a 20-byte JSON event, a
//! 1 KiB JSON object, 16 KiB of text, 64 KiB of binary records), with lanes-proto's
//! `Deflater`/`Inflater` (zlib-rs), and, with a `backend-*` feature, the same work through
//! flate2 on that backend, to compare backends on equal terms.
//!
//! Run: `cargo bench -p lanes-benches --bench deflate` (lanes-proto only), or
//! `cargo bench -p lanes-benches --bench deflate --features backend-zlib-rs -- flate2`
//! (and `backend-miniz`, `backend-zlib`, `backend-zlib-ng`), one at a time.
//! Compressed sizes are printed to stderr before the timings.

// A benchmark reports on stderr.
#![allow(clippy::print_stderr, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lanes_proto::deflate::{DeflateConfig, Deflater, Inflater, SendAs};

/// A xorshift stream, so every run compresses the same bytes.
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
}

/// `count` distinct messages of each kind: compressing the same bytes over and over would let
/// context takeover turn every message after the first into one back-reference.
fn messages(kind: &str, count: u32) -> Vec<Vec<u8>> {
    (0..count)
        .map(|seed| {
            let mut rng = Rng(0x9e37_79b9 ^ seed.wrapping_mul(0x85eb_ca6b) | 1);
            match kind {
                "json-20B" => {
                    format!("{{\"t\":\"px\",\"v\":{}}}", 10 + rng.next() % 90).into_bytes()
                }
                "json-1KiB" => json(&mut rng, 1024),
                "text-16KiB" => text(&mut rng, 16 << 10),
                _ => records(&mut rng, 64 << 10),
            }
        })
        .collect()
}

fn json(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = String::from("{\"type\":\"update\",\"items\":[");
    while out.len() < len - 80 {
        out += &format!(
            "{{\"id\":{},\"symbol\":\"{}\",\"price\":{}.{:02},\"qty\":{}}},",
            rng.next() % 100_000,
            ["ABC", "XYZ", "QRS", "LMN"][(rng.next() % 4) as usize],
            rng.next() % 1000,
            rng.next() % 100,
            rng.next() % 500
        );
    }
    out.pop();
    out += "]}";
    out.into_bytes()
}

fn text(rng: &mut Rng, len: usize) -> Vec<u8> {
    const WORDS: [&str; 24] = [
        "the", "of", "and", "a", "to", "in", "is", "you", "that", "it", "he", "was", "for", "on",
        "are", "as", "with", "his", "they", "socket", "message", "server", "frame", "window",
    ];
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        out.extend_from_slice(WORDS[(rng.next() % 24) as usize].as_bytes());
        out.push(if rng.next().is_multiple_of(12) {
            b'\n'
        } else {
            b' '
        });
    }
    out.truncate(len);
    out
}

/// Binary records (timestamp, id, two readings) with small deltas: half compressible.
fn records(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut time = 1_700_000_000_000u64;
    while out.len() < len {
        time += u64::from(rng.next() % 50);
        out.extend_from_slice(&time.to_le_bytes());
        out.extend_from_slice(&(rng.next() % 4096).to_le_bytes());
        out.extend_from_slice(&(20.0f32 + (rng.next() % 1000) as f32 / 100.0).to_le_bytes());
        out.extend_from_slice(&(rng.next() as f32).to_le_bytes());
    }
    out.truncate(len);
    out
}

const KINDS: [&str; 4] = ["json-20B", "json-1KiB", "text-16KiB", "binary-64KiB"];
/// Distinct messages per kind, sent in turn.
const VARIANTS: u32 = 32;

fn lanes(c: &mut Criterion) {
    let mut group = c.benchmark_group("lanes");
    group.warm_up_time(Duration::from_millis(300));
    group.measurement_time(Duration::from_secs(1));
    let settings: [(&str, u8, u8, u8); 5] = [
        ("w15-l1-m8", 15, 1, 8),
        ("w15-l2-m8", 15, 2, 8),
        ("w15-l6-m8", 15, 6, 8),
        ("w15-l2-m1", 15, 2, 1),
        ("w9-l2-m1", 9, 2, 1),
    ];
    for kind in KINDS {
        let messages = messages(kind, VARIANTS);
        let len = messages[0].len();
        group.throughput(Throughput::Bytes(len as u64));
        for (name, window_bits, level, mem_level) in settings {
            let config = DeflateConfig {
                level,
                mem_level,
                min_compress_len: 0,
                ..DeflateConfig::default()
            };
            for no_context_takeover in [false, true] {
                let mode = if no_context_takeover {
                    "reset"
                } else {
                    "takeover"
                };
                let mut deflater = Deflater::new(window_bits, no_context_takeover, &config);
                // Sizes and the inflate input, from one pass over the variants.
                let mut compressed = Vec::new();
                let mut total = 0;
                for message in &messages {
                    let mut out = Vec::new();
                    if deflater.compress(message, &mut out) == SendAs::Uncompressed {
                        out = message.clone();
                    }
                    total += out.len();
                    compressed.push(out);
                }
                eprintln!(
                    "size {kind} {name} {mode}: {len} -> {} bytes ({:.1}%)",
                    total / messages.len(),
                    100.0 * total as f64 / (len * messages.len()) as f64
                );
                let mut out = Vec::with_capacity(2 * len);
                let mut at = 0;
                group.bench_function(
                    BenchmarkId::new(format!("compress/{name}/{mode}"), kind),
                    |b| {
                        b.iter(|| {
                            out.clear();
                            at = (at + 1) % messages.len();
                            black_box(deflater.compress(black_box(&messages[at]), &mut out))
                        })
                    },
                );
                if !no_context_takeover {
                    // Inflate the context-takeover stream in order, starting over (with a
                    // fresh window, as the stream did) after the last message.
                    let mut inflater = Inflater::new(window_bits, false, 1 << 24);
                    let mut at = 0;
                    group.bench_function(BenchmarkId::new(format!("inflate/{name}"), kind), |b| {
                        b.iter(|| {
                            if at == compressed.len() {
                                at = 0;
                                inflater.reset();
                            }
                            out.clear();
                            inflater.handle_data(&compressed[at], &mut out).unwrap();
                            inflater.handle_message_end(&mut out).unwrap();
                            at += 1;
                            black_box(out.len())
                        })
                    });
                }
            }
        }
    }
    group.finish();
}

#[cfg(any(
    feature = "backend-zlib-rs",
    feature = "backend-miniz",
    feature = "backend-zlib",
    feature = "backend-zlib-ng"
))]
fn flate2_backend(c: &mut Criterion) {
    use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

    let backend = if cfg!(feature = "backend-zlib-ng") {
        "zlib-ng"
    } else if cfg!(feature = "backend-zlib") {
        "zlib"
    } else if cfg!(feature = "backend-zlib-rs") {
        "zlib-rs"
    } else {
        "miniz_oxide"
    };
    let mut group = c.benchmark_group(format!("flate2/{backend}"));
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));

    fn compress(stream: &mut Compress, input: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.reserve(input.len() + input.len() / 64 + 64);
        stream
            .compress_vec(input, out, FlushCompress::Sync)
            .unwrap();
        out.truncate(out.len() - 4);
    }
    fn decompress(stream: &mut Decompress, input: &[u8], out: &mut Vec<u8>, cap: usize) {
        out.clear();
        out.reserve(cap);
        stream
            .decompress_vec(input, out, FlushDecompress::Sync)
            .unwrap();
        stream
            .decompress_vec(&[0, 0, 0xff, 0xff], out, FlushDecompress::Sync)
            .unwrap();
    }

    for kind in KINDS {
        let messages = messages(kind, VARIANTS);
        let len = messages[0].len();
        group.throughput(Throughput::Bytes(len as u64));
        for level in [1u32, 6] {
            let mut out = Vec::new();
            // Context takeover: one stream over all messages.
            let mut stream = Compress::new(Compression::new(level), false);
            let mut at = 0;
            group.bench_function(
                BenchmarkId::new(format!("compress/w15-l{level}/takeover"), kind),
                |b| {
                    b.iter(|| {
                        at = (at + 1) % messages.len();
                        compress(&mut stream, black_box(&messages[at]), &mut out);
                        black_box(out.len())
                    })
                },
            );
            // No context takeover: reset before each message.
            let mut compressed = Vec::new();
            for message in &messages {
                stream.reset();
                compress(&mut stream, message, &mut out);
                compressed.push(out.clone());
            }
            let total: usize = compressed.iter().map(Vec::len).sum();
            eprintln!(
                "size {backend} {kind} l{level} reset: {len} -> {} bytes",
                total / messages.len()
            );
            group.bench_function(
                BenchmarkId::new(format!("compress/w15-l{level}/reset"), kind),
                |b| {
                    b.iter(|| {
                        at = (at + 1) % messages.len();
                        stream.reset();
                        compress(&mut stream, black_box(&messages[at]), &mut out);
                        black_box(out.len())
                    })
                },
            );
            if level == 1 {
                let mut inflate = Decompress::new(false);
                group.bench_function(BenchmarkId::new("inflate/w15", kind), |b| {
                    b.iter(|| {
                        at = (at + 1) % compressed.len();
                        inflate.reset(false);
                        decompress(&mut inflate, &compressed[at], &mut out, len + 64);
                        black_box(out.len())
                    })
                });
            }
        }
    }
    group.finish();
}

#[cfg(not(any(
    feature = "backend-zlib-rs",
    feature = "backend-miniz",
    feature = "backend-zlib",
    feature = "backend-zlib-ng"
)))]
fn flate2_backend(_: &mut Criterion) {}

criterion_group!(benches, lanes, flate2_backend);
criterion_main!(benches);
