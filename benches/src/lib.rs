//! Criterion benchmarks for lanes live beside this crate root (`benches/*.rs`).
