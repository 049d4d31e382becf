//! Release builds for the Pi (the static musl targets, linked by rust-lld as
//! `.cargo/config.toml` sets up) get two linker flags that make the binary
//! smaller without changing what it does.
//!
//! `cross/discard-unwind-tables.ld` drops the DWARF unwind tables: about
//! 400 KiB of the aarch64 binary, a sixth of it. The release profile sets
//! `panic = "abort"`, so nothing in that binary ever unwinds; the tables would
//! only feed `RUST_BACKTRACE`, and a stripped binary prints no function names
//! there anyway. A panic still prints its message (and, in builds that keep
//! panic locations, its location) and aborts.
//! rustc's own switch (`-C force-unwind-tables=no`) does not help: the prebuilt
//! std and LLVM's aarch64 backend emit the tables regardless.
//!
//! `--icf=all` folds identical functions (generic code often compiles to the
//! same instructions for different types). Rust does not promise distinct
//! addresses for distinct functions, and lld folds only code, never data.
//!
//! With the tables gone, `cfg(drone_discord_no_unwind_tables)` and two
//! `--wrap` flags swap libunwind's stack walk (which then finds no frames) for
//! src/no_backtrace.rs's (which walks none), so no libunwind code is linked.
//!
//! Only the `drone-discord` binary gets the flags (`rustc-link-arg-bins`), only
//! for `--release`, only for musl targets and only when the linker is lld, so
//! host builds, debug builds, every test binary (which unwind) and the Docker
//! `cross` route (gcc and GNU ld) are linked as before.
use std::env;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=cross/discard-unwind-tables.ld");
    println!("cargo::rustc-check-cfg=cfg(drone_discord_no_unwind_tables)");
    let release = env::var("PROFILE").is_ok_and(|p| p == "release");
    let musl = env::var("CARGO_CFG_TARGET_ENV").is_ok_and(|e| e == "musl");
    let linux = env::var("CARGO_CFG_TARGET_OS").is_ok_and(|o| o == "linux");
    let lld = env::var("RUSTC_LINKER").is_ok_and(|l| {
        Path::new(&l)
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with("lld"))
    });
    if !(release && musl && linux && lld) {
        return;
    }
    let Ok(dir) = env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    let script = Path::new(&dir)
        .join("cross")
        .join("discard-unwind-tables.ld");
    println!("cargo:rustc-link-arg-bins=-T{}", script.display());
    println!("cargo:rustc-link-arg-bins=--icf=all");
    // With no tables, libunwind's stack walk ends at once: src/no_backtrace.rs
    // gives that answer without linking libunwind.
    println!("cargo:rustc-cfg=drone_discord_no_unwind_tables");
    println!("cargo:rustc-link-arg-bins=--wrap=_Unwind_Backtrace");
    println!("cargo:rustc-link-arg-bins=--wrap=_Unwind_GetIP");
}
