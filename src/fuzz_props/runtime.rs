//! One current-thread tokio runtime per thread for the properties whose code
//! under test is async (the request and response readers). Building one per
//! input would cost more than the input itself.
use std::future::Future;

thread_local! {
    static RUNTIME: Option<tokio::runtime::Runtime> = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .ok();
}

/// Runs `future` to completion on this thread's runtime.
///
/// # Panics
/// When no runtime could be built (the environment, not the input, is broken).
pub fn block_on<F: Future>(future: F) -> F::Output {
    RUNTIME.with(|rt| match rt {
        Some(rt) => rt.block_on(future),
        None => panic!("no tokio runtime could be built for the fuzz properties"),
    })
}
