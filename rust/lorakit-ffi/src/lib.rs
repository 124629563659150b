//! C ABI over lorakit-core.
