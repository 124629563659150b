//! The one error type of the native core. Bindings map `ErrorKind` to their own idiom.

/// Stable error categories, shared by every binding (Python exception classes, C status codes, Go sentinels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum ErrorKind {
    /// A file could not be read (missing, permissions).
    Io = 1,
    /// A file exists but is malformed (bad JSON, corrupt safetensors, checksum mismatch).
    Format = 2,
    /// The configuration is invalid or inconsistent (config.json, adapter_config.json, manifest).
    Config = 3,
    /// Tensor shapes do not agree (weights vs config, adapter vs base).
    Shape = 4,
    /// Valid input that this runtime cannot reproduce exactly (DoRA, unknown target modules, ...).
    Unsupported = 5,
    /// Bad caller input (empty batch, unknown adapter name, batch too large).
    Input = 6,
    /// A numerical/backend failure: the compute library failed, or an output is NaN or Inf (unless
    /// `LoadOptions::allow_non_finite`).
    Compute = 7,
    /// An internal bug (a caught panic).
    Internal = 8,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("io error: {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("format error: {0}")]
    Format(String),
    #[error("config error: {0}")]
    Config(String),
    #[error("shape error: {0}")]
    Shape(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("invalid input: {0}")]
    Input(String),
    #[error("compute error: {0}")]
    Compute(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { .. } => ErrorKind::Io,
            Error::Format(_) => ErrorKind::Format,
            Error::Config(_) => ErrorKind::Config,
            Error::Shape(_) => ErrorKind::Shape,
            Error::Unsupported(_) => ErrorKind::Unsupported,
            Error::Input(_) => ErrorKind::Input,
            Error::Compute(_) => ErrorKind::Compute,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }

    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Compute(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Error>;
