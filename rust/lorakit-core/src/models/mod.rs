//! Encoder architectures, one file each.

pub(crate) mod bert;
