//! libFuzzer target: the Drone payload reader together with the renderer (Discord's limits). The property is
//! `drone_discord::fuzz_props::render::check`, which `tests/fuzz_corpus.rs` also
//! runs over this target's seed corpus in every `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| drone_discord::fuzz_props::render::check(data));
