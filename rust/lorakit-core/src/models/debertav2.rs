//! deberta-v2: placeholder registry entry, replaced by the full implementation.

use std::sync::Arc;

use super::{ArchConfig, Architecture, ArchitectureInfo, Encoder};
use crate::error::{Error, Result};
use crate::heads::ClassificationHead;
use crate::weights::Weights;

pub(crate) static ARCHITECTURE: Architecture = Architecture {
    info: ArchitectureInfo {
        model_type: "deberta-v2",
        aliases: &[],
        default_target_modules: &["query_proj", "key_proj", "value_proj", "output.dense", "intermediate.dense"],
        head_modules: &["pooler", "classifier"],
        pooling: "cls",
    },
    encoder_prefix: "deberta",
    anchor: "embeddings.word_embeddings.weight",
    base_head_modules: &[],
    unused: &["lm_predictions.", "mask_predictions.", "pooler.", "classifier."],
    parse,
};

fn parse(_bytes: &[u8], origin: &str) -> Result<Arc<dyn ArchConfig>> {
    Err(Error::Unsupported(format!("{origin}: deberta-v2 is not implemented yet")))
}

#[allow(dead_code)]
fn unused(_: &Weights, _: ClassificationHead) -> Option<Box<dyn Encoder>> {
    None
}
