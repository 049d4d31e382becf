//! Release builds for the Pi (the static musl targets) link with
//! `cross/discard-unwind-tables.ld`, which drops the DWARF unwind tables:
//! about 400 KiB of the aarch64 binary, a sixth of it.
//!
//! The release profile sets `panic = "abort"`, so nothing in that binary ever
//! unwinds; the tables would only feed `RUST_BACKTRACE`, and a stripped binary
//! prints no function names there anyway. A panic still prints its message and
//! location and aborts. rustc's own switch (`-C force-unwind-tables=no`) does not
//! help: the prebuilt std and LLVM's aarch64 backend emit the tables regardless.
//!
//! Only the `drone-discord` binary gets the script (`rustc-link-arg-bins`), only
//! for `--release` and only for musl targets, so host builds, debug builds and
//! every test binary (which unwind) are linked as before.
use std::env;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=cross/discard-unwind-tables.ld");
    let release = env::var("PROFILE").is_ok_and(|p| p == "release");
    let musl = env::var("CARGO_CFG_TARGET_ENV").is_ok_and(|e| e == "musl");
    let linux = env::var("CARGO_CFG_TARGET_OS").is_ok_and(|o| o == "linux");
    if !(release && musl && linux) {
        return;
    }
    let Ok(dir) = env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    let script = Path::new(&dir)
        .join("cross")
        .join("discard-unwind-tables.ld");
    println!("cargo:rustc-link-arg-bins=-T{}", script.display());
}
