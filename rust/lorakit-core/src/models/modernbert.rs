//! modernbert: placeholder registry entry, replaced by the full implementation.

use std::sync::Arc;

use super::{ArchConfig, Architecture, ArchitectureInfo, Encoder};
use crate::error::{Error, Result};
use crate::heads::ClassificationHead;
use crate::weights::Weights;

pub(crate) static ARCHITECTURE: Architecture = Architecture {
    info: ArchitectureInfo {
        model_type: "modernbert",
        aliases: &[],
        default_target_modules: &["Wqkv", "Wo", "Wi"],
        head_modules: &["head", "classifier"],
        pooling: "cls",
    },
    encoder_prefix: "model",
    anchor: "embeddings.tok_embeddings.weight",
    base_head_modules: &[],
    unused: &["head.", "decoder.", "classifier."],
    parse,
};

fn parse(_bytes: &[u8], origin: &str) -> Result<Arc<dyn ArchConfig>> {
    Err(Error::Unsupported(format!("{origin}: modernbert is not implemented yet")))
}

#[allow(dead_code)]
fn unused(_: &Weights, _: ClassificationHead) -> Option<Box<dyn Encoder>> {
    None
}
