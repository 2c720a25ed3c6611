//! What of `herald-bench` other crates use: the fuzz targets, run for a time budget by
//! `herald-bench fuzz` and for a few hundred cases each by `tests/tests/fuzz_parsers.rs`.

pub mod fuzz;
