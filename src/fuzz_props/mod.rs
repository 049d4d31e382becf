//! The properties the fuzz targets check, in one place: `fuzz/` (cargo fuzz,
//! libFuzzer) runs each over generated inputs, and `tests/fuzz_corpus.rs`
//! runs each over the seed corpus in `fuzz/corpus/` on every `cargo test`,
//! so the targets stay thin and the seeds keep passing without nightly.
//!
//! Each `check` takes the fuzzer's bytes, never panics on what it reads, and
//! panics (with the broken property in the message) only when the code under
//! test misbehaves. Compiled only with the `test-support` feature, never into
//! a release build; it reaches crate-private parsers through `pub(crate)`.
pub mod chunked;
pub mod codec;
pub mod gateway;
pub mod http_request;
pub mod http_response;
pub mod input;
pub mod render;
pub mod routing;
mod runtime;
pub mod signature;
pub mod split_reader;

/// A property: panics, saying what broke, when the code under test misbehaves on the input.
pub type Property = fn(&[u8]);

/// Every target: its name (the `fuzz/fuzz_targets/<name>.rs` file and the
/// `fuzz/corpus/<name>/` directory) and its property.
/// The chunked decoder is fuzzed through `http_response` (inputs starting with `~`).
pub const TARGETS: [(&str, Property); 7] = [
    ("http_request", http_request::check),
    ("signature", signature::check),
    ("drone_render", render::check),
    ("http_response", http_response::check),
    ("gateway", gateway::check),
    ("store_codec", codec::check),
    ("routing_file", routing::check),
];
