//! libFuzzer target: the routing file's parser (`--config`, TOML). The property is
//! `drone_discord::fuzz_props::routing::check`, which `tests/fuzz_corpus.rs` also
//! runs over this target's seed corpus in every `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| drone_discord::fuzz_props::routing::check(data));
