//! The allocator setting that gives large buffers back to the system: glibc's mmap threshold,
//! fixed once at start ([`MemoryConfig::malloc_mmap_threshold`](crate::config::MemoryConfig::malloc_mmap_threshold)).
//! The only `unsafe` of the runtime (a call into libc).

/// Sets glibc's `M_MMAP_THRESHOLD` to `bytes` (which also stops glibc from raising it after
/// large frees). Returns whether glibc took it; off glibc, does nothing and returns false.
pub(crate) fn set_mmap_threshold(bytes: usize) -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let Ok(value) = libc::c_int::try_from(bytes) else {
            return false;
        };
        // SAFETY: mallopt takes two integers and changes glibc's own allocator parameters; it
        // touches no memory of ours and is safe to call from any thread at any time.
        #[allow(unsafe_code)]
        let set = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, value) };
        set == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = bytes;
        false
    }
}
