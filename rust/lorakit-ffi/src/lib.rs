//! C ABI over lorakit-core.
//!
//! Conventions (DESIGN.md section 5):
//! - Every function returns a [`LorakitStatus`] (0 = ok, otherwise the core `ErrorKind` value) and, on failure,
//!   stores an owned message in `*err_out` (when `err_out` is not NULL) that the caller releases with
//!   [`lorakit_string_free`]. On success `*err_out` is set to NULL.
//! - Objects are opaque handles; each has a `lorakit_*_free` that accepts NULL. One handle type,
//!   `LorakitModel`, serves every task: calls that run a task take an `adapter` name, NULL for the default one,
//!   and each task kind has its call (classify, extract_entities, embed; classify_fewshot and next_token_logits
//!   for generative classification; the wrong one is `LORAKIT_INPUT`).
//! - Sizes are `size_t`. Strings are UTF-8; NULL pointers and invalid UTF-8 give `LORAKIT_INPUT`.
//! - Every body runs inside `catch_unwind`: a Rust panic becomes `LORAKIT_INTERNAL`, never an abort.
//! - Model handles may be used from many threads at once; a handle must not be freed while another
//!   thread is still using it (bindings enforce this, e.g. the Go package's Close).

mod base;
mod embeddings;
mod entities;
mod generative;
mod guard;
mod model;
mod options;
mod results;
mod tasks;
mod texts;

pub use base::*;
pub use embeddings::*;
pub use entities::*;
pub use generative::*;
pub use guard::*;
pub use model::*;
pub use options::*;
pub use results::*;
pub use tasks::*;
pub use texts::*;

use std::ffi::{c_char, CString};
use std::sync::OnceLock;

/// Library version as a static NUL-terminated string (never freed).
#[no_mangle]
pub extern "C" fn lorakit_version() -> *const c_char {
    static VERSION: OnceLock<CString> = OnceLock::new();
    VERSION
        .get_or_init(|| {
            std::panic::catch_unwind(|| CString::new(lorakit_core::version()).ok())
                .ok()
                .flatten()
                .unwrap_or_else(|| CString::from(c"unknown"))
        })
        .as_ptr()
}
