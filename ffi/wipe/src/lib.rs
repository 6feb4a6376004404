//! [`WipeBox`]: a heap box that, when it dies, drops its value and then
//! overwrites every octet of the allocation with zeros before freeing it.
//!
//! It exists for key schedules held by libraries that do not wipe their
//! own memory: `ring` (its AES and ChaCha key types have no `Drop`), and
//! RustCrypto's `aes-gcm`, whose GHASH key sits in a `polyval` union that is
//! never dropped on x86-64. Their types are opaque, so the safe crates (the
//! ESP engine forbids `unsafe`) cannot zero them; this crate can, because
//! it owns the allocation. The guarantee: once a `WipeBox<T>` is dropped,
//! none of the `size_of::<T>()` octets it owned holds what `T` held. The
//! writes are volatile and fenced (the `zeroize` crate), so the compiler
//! cannot drop them as dead stores before the free.
//!
//! What it cannot do: copies a value made before it was boxed (a key
//! schedule built on the stack and moved in) are stack residue, as with
//! any Rust value; heap memory the value points to is the value's own
//! business (it is dropped normally).
#![no_std]

extern crate alloc;

use alloc::boxed::Box;
use core::fmt;
use core::mem::{ManuallyDrop, MaybeUninit};
use core::ops::{Deref, DerefMut};

use zeroize::Zeroize;

/// A `Box<T>` whose memory is zeroed after `T` is dropped.
pub struct WipeBox<T>(ManuallyDrop<Box<T>>);

impl<T> WipeBox<T> {
    pub fn new(value: T) -> Self {
        WipeBox(ManuallyDrop::new(Box::new(value)))
    }
}

impl<T> Deref for WipeBox<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for WipeBox<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: fmt::Debug> fmt::Debug for WipeBox<T> {
    /// `T`'s own `Debug`: a key type redacts itself.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self.0, f)
    }
}

impl<T> Drop for WipeBox<T> {
    fn drop(&mut self) {
        // SAFETY: the box is taken once, here, and never used again.
        let b = unsafe { ManuallyDrop::take(&mut self.0) };
        let raw: *mut T = Box::into_raw(b);
        // SAFETY: `raw` is the unique pointer to a live, initialised `T` that
        // a `Box` allocated; it is dropped once and not read as a `T` after.
        unsafe { core::ptr::drop_in_place(raw) };
        // SAFETY: `MaybeUninit<T>` has `T`'s size and alignment, so the same
        // allocation is a valid `Box<MaybeUninit<T>>`; it holds no live `T`
        // any more (dropped above), and `MaybeUninit` needs no initialisation.
        let mut mem: Box<MaybeUninit<T>> = unsafe { Box::from_raw(raw.cast::<MaybeUninit<T>>()) };
        // Volatile zero writes and a fence, then the allocation is freed.
        mem.zeroize();
    }
}
