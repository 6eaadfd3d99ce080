//! Memory per permessage-deflate state: the resident set size gained by creating 1000
//! `Deflater`s (or `Inflater`s) and passing one 40 KiB message through each (enough to fill a
//! 32 KiB window), for window bits 15
//! and 9 and memLevel 8, 4 and 1. Linux only (reads `/proc/self/statm`).
//!
//! Every instance stays alive to the end, so that memory freed by one row cannot be reused by
//! the next and hide its cost (the whole run holds about 1.6 GB).
//!
//! Run: `cargo bench -p lanes-benches --bench deflate_memory`

// A benchmark reports on stdout; it may panic when /proc is missing.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use lanes_proto::deflate::{DeflateConfig, Deflater, Inflater, SendAs};

const INSTANCES: usize = 1000;

/// Resident pages times the page size (assumed 4 KiB, as on x86-64 Linux).
fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn message() -> Vec<u8> {
    let words = [
        "lanes ", "socket ", "frame ", "window ", "deflate ", "message ",
    ];
    let mut out = Vec::new();
    let mut i = 0usize;
    while out.len() < 40 << 10 {
        out.extend_from_slice(words[(i * 7 + i / 3) % words.len()].as_bytes());
        i += 1;
    }
    out
}

fn main() {
    // criterion passes --bench; there is nothing to parse.
    let message = message();
    let mut keep_deflaters = Vec::new();
    let mut keep_inflaters = Vec::new();
    println!("| state | window bits | memLevel | RSS per instance (KiB) |");
    println!("| --- | --- | --- | --- |");
    for (window_bits, mem_level) in [(15u8, 8u8), (15, 4), (15, 1), (9, 8), (9, 4), (9, 1)] {
        let config = DeflateConfig {
            mem_level,
            min_compress_len: 0,
            ..DeflateConfig::default()
        };
        let before = rss_bytes();
        let mut deflaters: Vec<Deflater> = (0..INSTANCES)
            .map(|_| Deflater::new(window_bits, false, &config))
            .collect();
        let mut compressed = Vec::new();
        for deflater in &mut deflaters {
            compressed.clear();
            assert_eq!(
                deflater.compress(&message, &mut compressed),
                SendAs::Compressed
            );
        }
        let after = rss_bytes();
        println!(
            "| Deflater | {window_bits} | {mem_level} | {:.1} |",
            (after - before) as f64 / INSTANCES as f64 / 1024.0
        );
        keep_deflaters.push(black_box(deflaters));
    }
    let mut deflater = Deflater::new(
        15,
        false,
        &DeflateConfig {
            min_compress_len: 0,
            ..DeflateConfig::default()
        },
    );
    let mut compressed = Vec::new();
    let _ = deflater.compress(&message, &mut compressed);
    for (fed, window_bits) in [(false, 15u8), (true, 15), (true, 9)] {
        let before = rss_bytes();
        let mut inflaters: Vec<Inflater> = (0..INSTANCES)
            .map(|_| Inflater::new(window_bits, false, 1 << 20))
            .collect();
        let mut out = Vec::with_capacity(message.len());
        if fed {
            for inflater in &mut inflaters {
                out.clear();
                inflater.handle_data(&compressed, &mut out).unwrap();
                inflater.handle_message_end(&mut out).unwrap();
            }
        }
        let after = rss_bytes();
        println!(
            "| Inflater{} | {window_bits} | - | {:.1} |",
            if fed { "" } else { " (new, nothing inflated)" },
            (after - before) as f64 / INSTANCES as f64 / 1024.0
        );
        keep_inflaters.push(black_box(inflaters));
    }
}
