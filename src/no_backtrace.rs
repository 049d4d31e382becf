//! The Pi release binary's stack walk: it reports an empty stack, as
//! libunwind's did there, without linking libunwind.
//!
//! build.rs links that binary without DWARF unwind tables
//! (`cross/discard-unwind-tables.ld`; with `panic = "abort"` nothing unwinds).
//! std's panic hook still walks the stack when `RUST_BACKTRACE` is set, through
//! `_Unwind_Backtrace`; libunwind's finds no unwind table for its own frame and
//! ends the walk before the first callback: `stack backtrace:` and no frames.
//! That walk was all that kept libunwind's DWARF interpreter in the binary,
//! and with it the C `printf` of libunwind's diagnostics: ~55 KB of the aarch64
//! binary. build.rs has the linker send std's calls here instead
//! (`--wrap=_Unwind_Backtrace`, `--wrap=_Unwind_GetIP`), and this walk gives
//! the same answer.
//!
//! Compiled only where build.rs drops the tables
//! (`cfg(drone_discord_no_unwind_tables)`); tests, host builds and the `cross`
//! route keep the real unwinder and real backtraces.
use std::ffi::{c_int, c_void};

/// libunwind's `_URC_END_OF_STACK`: there are no (more) frames.
const END_OF_STACK: c_int = 5;

/// `_Unwind_Backtrace`: walks no frames, so `trace` is never called.
#[no_mangle]
#[allow(non_snake_case)]
extern "C" fn __wrap__Unwind_Backtrace(_trace: *mut c_void, _argument: *mut c_void) -> c_int {
    END_OF_STACK
}

/// `_Unwind_GetIP`: only a walk's callback asks a frame for its address, and
/// the walk above has no frames; this keeps libunwind's register access (and its
/// logging) out of the link.
#[no_mangle]
#[allow(non_snake_case)]
extern "C" fn __wrap__Unwind_GetIP(_context: *mut c_void) -> usize {
    0
}
