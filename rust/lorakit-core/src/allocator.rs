//! glibc's malloc hands freed blocks above its mmap threshold back to the OS, so every forward pass page-faults
//! its activation buffers afresh (megabytes per layer; about a tenth of the time of a 32 x 128 batch). Raising the
//! thresholds once, at the first model load, keeps those blocks for the next batch. The host process keeps its own
//! settings when it chose any (`MALLOC_MMAP_THRESHOLD_` / `MALLOC_TRIM_THRESHOLD_`), and
//! `LORAKIT_MALLOC_TUNING=0` turns this off.

/// Allocations below this come from the heap (and are reused) rather than fresh zero pages.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 64 << 20;
/// Freed memory kept at the top of the heap before it is returned to the OS.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 256 << 20;

pub const TUNING_ENV: &str = "LORAKIT_MALLOC_TUNING";

/// Applies the thresholds once per process (later calls do nothing).
pub(crate) fn tune_once() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let host_chose = ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"]
            .iter()
            .any(|name| std::env::var_os(name).is_some());
        let off = std::env::var(TUNING_ENV).is_ok_and(|v| v.trim() == "0");
        if !host_chose && !off {
            apply();
        }
    });
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply() {
    // SAFETY: mallopt only changes allocator parameters; it is safe to call at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() {}
