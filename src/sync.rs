//! Locking that survives a panic elsewhere: [`lock`], [`read`] and [`write`]
//! for `std::sync::Mutex` and `RwLock`, used for every lock in the program.
//!
//! A std lock is *poisoned* when a thread panics while holding it, and
//! `lock()` then returns an error forever after. This program tolerates
//! poisoning on purpose:
//!
//! * Every value behind a lock here is plain data updated in one step (a
//!   map insert or remove, a timestamp, a status): a panic cannot leave it
//!   half-written in a way that matters, so the data is still meaningful.
//! * The release build aborts on panic (`panic = "abort"`), so outside of
//!   tests a poisoned lock is never even observed; in debug builds and
//!   tests, a panicking task must not turn every later lock into a second
//!   panic (a webhook answered 500, the relay stalled, `/health` gone).
//!
//! A lock whose data has an invariant a panic could break must not use
//! these helpers.
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// `m.lock()`, taking the data of a poisoned lock as it is.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `l.read()`, taking the data of a poisoned lock as it is.
pub fn read<T: ?Sized>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

/// `l.write()`, taking the data of a poisoned lock as it is.
pub fn write<T: ?Sized>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_still_hands_out_its_data() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let l = std::sync::Arc::new(RwLock::new(2));
        let (m2, l2) = (m.clone(), l.clone());
        let panicked = std::thread::spawn(move || {
            let _m = m2.lock().unwrap();
            let _l = l2.write().unwrap();
            panic!("poison both locks");
        })
        .join();
        assert!(panicked.is_err());
        assert!(m.is_poisoned() && l.is_poisoned());
        *lock(&m) += 1;
        assert_eq!(*lock(&m), 2);
        *write(&l) += 1;
        assert_eq!(*read(&l), 3);
    }
}
