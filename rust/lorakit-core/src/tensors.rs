//! Reading safetensors files into named f32 tensors, with strict bookkeeping of what was used.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Reads a whole file (one read serves both checksum and parsing).
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Named tensors of one checkpoint. `take` removes a tensor so that leftovers can be reported.
pub(crate) struct TensorStore {
    origin: String,
    tensors: HashMap<String, Tensor>,
}

impl TensorStore {
    pub fn from_safetensors(bytes: &[u8], origin: &str, device: &Device) -> Result<TensorStore> {
        let tensors = candle_core::safetensors::load_buffer(bytes, device)
            .map_err(|e| Error::Format(format!("{origin}: not a valid safetensors file: {e}")))?;
        Ok(TensorStore {
            origin: origin.to_string(),
            tensors,
        })
    }

    /// A store over tensors already in memory (e.g. an adapter's saved head modules).
    pub fn from_map(origin: &str, tensors: HashMap<String, Tensor>) -> TensorStore {
        TensorStore {
            origin: origin.to_string(),
            tensors,
        }
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn contains(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.tensors.keys()
    }

    /// Removes `key` and returns it as f32 with exactly `shape`.
    pub fn take(&mut self, key: &str, shape: &[usize]) -> Result<Tensor> {
        let tensor = self
            .tensors
            .remove(key)
            .ok_or_else(|| Error::Format(format!("{}: missing tensor {key:?}", self.origin)))?;
        check_shape(&tensor, shape, key, &self.origin)?;
        to_f32(tensor, key, &self.origin)
    }

    /// Removes `key` without a shape check (the caller validates it against other tensors).
    pub fn take_any_shape(&mut self, key: &str) -> Result<Tensor> {
        let tensor = self
            .tensors
            .remove(key)
            .ok_or_else(|| Error::Format(format!("{}: missing tensor {key:?}", self.origin)))?;
        to_f32(tensor, key, &self.origin)
    }

    /// Drops tensors that are known not to be parameters (e.g. HF `position_ids` buffers).
    pub fn discard_where(&mut self, unused: impl Fn(&str) -> bool) {
        self.tensors.retain(|k, _| !unused(k));
    }

    /// Fails when tensors were left unused: a checkpoint is never half-applied silently.
    pub fn finish(self) -> Result<()> {
        if self.tensors.is_empty() {
            return Ok(());
        }
        let mut left: Vec<&String> = self.tensors.keys().collect();
        left.sort();
        let shown: Vec<&str> = left.iter().take(8).map(|s| s.as_str()).collect();
        Err(Error::Format(format!(
            "{}: {} unexpected tensor(s): {}{}",
            self.origin,
            left.len(),
            shown.join(", "),
            if left.len() > shown.len() {
                ", ..."
            } else {
                ""
            }
        )))
    }
}

pub(crate) fn check_shape(tensor: &Tensor, shape: &[usize], key: &str, origin: &str) -> Result<()> {
    if tensor.dims() != shape {
        return Err(Error::Shape(format!(
            "{origin}: tensor {key:?} has shape {:?}, expected {shape:?}",
            tensor.dims()
        )));
    }
    Ok(())
}

fn to_f32(tensor: Tensor, key: &str, origin: &str) -> Result<Tensor> {
    match tensor.dtype() {
        DType::F32 => Ok(tensor),
        DType::F16 | DType::BF16 | DType::F64 => Ok(tensor.to_dtype(DType::F32)?),
        other => Err(Error::Format(format!(
            "{origin}: tensor {key:?} has dtype {other:?}, expected a float type"
        ))),
    }
}
