//! `config.json` of a BERT-family checkpoint, mirroring the Hugging Face field names.

use serde::Deserialize;

use crate::error::{Error, Result};

/// Activation of the feed-forward block, resolved from `hidden_act`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `gelu`: the exact erf form (torch.nn.functional.gelu default).
    GeluErf,
    /// `gelu_new` / `gelu_pytorch_tanh`: the tanh approximation.
    GeluTanh,
    Relu,
    Silu,
}

impl Activation {
    pub fn from_hf_name(name: &str) -> Result<Activation> {
        match name {
            "gelu" => Ok(Activation::GeluErf),
            "gelu_new" | "gelu_pytorch_tanh" => Ok(Activation::GeluTanh),
            "relu" => Ok(Activation::Relu),
            "silu" | "swish" => Ok(Activation::Silu),
            other => Err(Error::Unsupported(format!("hidden_act {other:?}"))),
        }
    }
}

/// BERT `config.json`; unknown fields are ignored, missing ones take the HF defaults.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default)]
pub struct BertConfig {
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub pad_token_id: Option<i64>,
    pub position_embedding_type: String,
    /// `id2label` keyed by the stringified index, as HF writes it.
    pub id2label: Option<std::collections::BTreeMap<String, String>>,
}

impl Default for BertConfig {
    fn default() -> Self {
        BertConfig {
            model_type: "bert".into(),
            vocab_size: 30522,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: "gelu".into(),
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            pad_token_id: Some(0),
            position_embedding_type: "absolute".into(),
            id2label: None,
        }
    }
}

impl BertConfig {
    pub fn from_json(bytes: &[u8], origin: &str) -> Result<BertConfig> {
        let cfg: BertConfig = serde_json::from_slice(bytes)
            .map_err(|e| Error::Format(format!("{origin}: invalid config.json: {e}")))?;
        cfg.validate(origin)?;
        Ok(cfg)
    }

    fn validate(&self, origin: &str) -> Result<()> {
        if self.model_type != "bert" {
            return Err(Error::Unsupported(format!(
                "{origin}: model_type {:?} (expected \"bert\")",
                self.model_type
            )));
        }
        if self.position_embedding_type != "absolute" {
            return Err(Error::Unsupported(format!(
                "{origin}: position_embedding_type {:?}",
                self.position_embedding_type
            )));
        }
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(Error::Config(format!("{origin}: {field} must be positive")));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(Error::Config(format!(
                "{origin}: hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            )));
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return Err(Error::Config(format!(
                "{origin}: layer_norm_eps must be a positive number"
            )));
        }
        Activation::from_hf_name(&self.hidden_act)?;
        Ok(())
    }

    pub fn activation(&self) -> Activation {
        // validate() already rejected unknown names.
        Activation::from_hf_name(&self.hidden_act).unwrap_or(Activation::GeluErf)
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// True when both configs describe the same encoder (shapes and math), head fields aside.
    pub fn same_encoder(&self, other: &BertConfig) -> bool {
        self.vocab_size == other.vocab_size
            && self.hidden_size == other.hidden_size
            && self.num_hidden_layers == other.num_hidden_layers
            && self.num_attention_heads == other.num_attention_heads
            && self.intermediate_size == other.intermediate_size
            && self.hidden_act == other.hidden_act
            && self.max_position_embeddings == other.max_position_embeddings
            && self.type_vocab_size == other.type_vocab_size
            && self.layer_norm_eps == other.layer_norm_eps
    }

    /// Labels in index order from `id2label`, when present and dense.
    pub fn labels(&self) -> Option<Vec<String>> {
        let map = self.id2label.as_ref()?;
        (0..map.len())
            .map(|i| map.get(&i.to_string()).cloned())
            .collect()
    }
}
