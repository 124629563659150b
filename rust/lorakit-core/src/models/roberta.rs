//! RoBERTa and XLM-RoBERTa: BERT's layers with position ids counted from the padding index, one token type,
//! and a `dense + tanh + out_proj` head (no pooler).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::bert::{BertConfig, BertEncoder};
use super::{parse_json, ArchConfig, Architecture, ArchitectureInfo, Encoder};
use crate::error::{Error, Result};
use crate::heads::{ClassificationHead, Pooling};
use crate::nn::Activation;
use crate::weights::Weights;

pub(crate) static ARCHITECTURE: Architecture = Architecture {
    info: ArchitectureInfo {
        model_type: "roberta",
        aliases: &["xlm-roberta"],
        default_target_modules: &["query", "key", "value", "dense"],
        head_modules: &["classifier"],
        token_head_modules: &["classifier"],
        pooling: "cls",
        causal_lm: false,
    },
    encoder_prefix: "roberta",
    anchor: "embeddings.word_embeddings.weight",
    base_head_modules: &[],
    unused: &["lm_head.", "classifier.", "pooler.", "roberta.pooler."],
    parse,
};

fn parse(bytes: &[u8], origin: &str) -> Result<Arc<dyn ArchConfig>> {
    let cfg: RobertaConfig = parse_json(bytes, origin)?;
    cfg.encoder.validate(origin)?;
    if cfg.pad_token_id < 0 || cfg.pad_token_id as usize + 1 >= cfg.encoder.max_position_embeddings
    {
        return Err(Error::Config(format!(
            "{origin}: pad_token_id {} leaves no positions below max_position_embeddings {}",
            cfg.pad_token_id, cfg.encoder.max_position_embeddings
        )));
    }
    Ok(Arc::new(cfg))
}

fn default_pad_token_id() -> i64 {
    1
}

/// RoBERTa `config.json`: BERT's fields plus `pad_token_id`, which positions are counted from.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub(crate) struct RobertaConfig {
    #[serde(flatten)]
    pub encoder: BertConfig,
    #[serde(default = "default_pad_token_id")]
    pub pad_token_id: i64,
}

impl ArchConfig for RobertaConfig {
    fn architecture(&self) -> &'static Architecture {
        &ARCHITECTURE
    }
    fn encoder_fingerprint(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
    fn vocab_size(&self) -> usize {
        self.encoder.vocab_size
    }
    fn hidden_size(&self) -> usize {
        self.encoder.hidden_size
    }
    /// Positions `padding_idx + 1 ..` must fit the position table.
    fn max_positions(&self) -> usize {
        self.encoder.max_position_embeddings - self.pad_token_id as usize - 1
    }
    fn load_encoder(&self, w: &Weights) -> Result<Box<dyn Encoder>> {
        Ok(Box::new(BertEncoder::load(
            w,
            &self.encoder,
            Some(self.pad_token_id),
        )?))
    }
    fn load_classification_head(
        &self,
        root: &Weights,
        _encoder: &Weights,
        num_labels: usize,
    ) -> Result<ClassificationHead> {
        let h = self.encoder.hidden_size;
        let head = root.pp("classifier");
        Ok(ClassificationHead {
            pooling: Pooling::Cls,
            dense: Some((head.pp("dense").linear(h, h, true)?, Activation::Tanh, None)),
            out: head.pp("out_proj").linear(h, num_labels, true)?,
        })
    }
}
