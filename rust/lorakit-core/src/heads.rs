//! Task heads on top of an encoder. BERT sequence classification: pooler dense + tanh, then classifier.

use std::collections::HashMap;

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::lora::LoraWeights;
use crate::models::bert::first_token;
use crate::nn::Linear;
use crate::tensors::{check_shape, TensorStore};

const CLASSIFIER: &str = "classifier";

#[derive(Clone)]
pub(crate) struct SequenceClassificationHead {
    pooler: Linear,
    classifier: Linear,
    /// LoRA site of the pooler dense layer (adapters may target it: it is a `dense` module).
    pooler_site: usize,
}

impl SequenceClassificationHead {
    /// Pooler under `{prefix}pooler.dense` and `classifier.*` of a merged `BertForSequenceClassification` file.
    pub fn load_merged(
        store: &mut TensorStore,
        prefix: &str,
        hidden: usize,
        num_labels: usize,
        pooler_site: usize,
    ) -> Result<Self> {
        let pooler = load_pooler(store, prefix, hidden)?.ok_or_else(|| {
            Error::Format(format!(
                "{}: missing head weights ({prefix}pooler.dense)",
                store.origin()
            ))
        })?;
        if !store.contains(&format!("{CLASSIFIER}.weight")) {
            return Err(Error::Format(format!(
                "{}: missing head weights (classifier.weight)",
                store.origin()
            )));
        }
        let classifier = Linear::load(store, CLASSIFIER, hidden, num_labels)?;
        Ok(SequenceClassificationHead {
            pooler,
            classifier,
            pooler_site,
        })
    }

    /// Head of a PEFT adapter: the base pooler (or the adapter's saved copy) and the adapter's saved classifier.
    pub fn from_adapter(
        base_pooler: Option<&Linear>,
        mut saved: HashMap<String, Tensor>,
        pooler_path: &str,
        hidden: usize,
        num_labels: usize,
        pooler_site: usize,
    ) -> Result<Self> {
        let mut take = |key: &str, shape: &[usize]| -> Result<Option<Tensor>> {
            match saved.remove(key) {
                Some(t) => {
                    check_shape(&t, shape, key, "adapter_model.safetensors").map(|_| Some(t))
                }
                None => Ok(None),
            }
        };
        let pooler = match take(&format!("{pooler_path}.weight"), &[hidden, hidden])? {
            Some(w) => {
                let b = take(&format!("{pooler_path}.bias"), &[hidden])?.ok_or_else(|| {
                    Error::Format(format!("adapter_model.safetensors: missing {pooler_path}.bias"))
                })?;
                Linear::new(&w, b)?
            }
            None => base_pooler.cloned().ok_or_else(|| {
                Error::Format("missing head weights: the base has no pooler and the adapter does not save one".into())
            })?,
        };
        let missing =
            |what: &str| Error::Format(format!("missing head weights: adapter has no {what}"));
        let weight = take("classifier.weight", &[num_labels, hidden])?
            .ok_or_else(|| missing("classifier.weight"))?;
        let bias =
            take("classifier.bias", &[num_labels])?.ok_or_else(|| missing("classifier.bias"))?;
        if let Some(extra) = saved.keys().next() {
            return Err(Error::Unsupported(format!(
                "modules_to_save tensor {extra:?}: only the classifier and pooler can be replaced"
            )));
        }
        Ok(SequenceClassificationHead {
            pooler,
            classifier: Linear::new(&weight, bias)?,
            pooler_site,
        })
    }

    /// `hidden` is `[batch, seq, hidden]`; returns logits `[batch, num_labels]`.
    pub fn forward(&self, hidden: &Tensor, lora: Option<&LoraWeights>) -> Result<Tensor> {
        let cls = first_token(hidden)?;
        let mut pooled = self.pooler.forward(&cls)?;
        if let Some(l) = lora {
            pooled = l.add_delta(self.pooler_site, &cls, pooled)?;
        }
        self.classifier.forward(&pooled.tanh()?)
    }

    /// The same head with the adapter's pooler LoRA folded in.
    pub fn with_lora_folded(&self, lora: &LoraWeights) -> Result<Self> {
        Ok(SequenceClassificationHead {
            pooler: lora.fold(self.pooler_site, &self.pooler)?,
            classifier: self.classifier.clone(),
            pooler_site: self.pooler_site,
        })
    }
}

/// The pooler dense layer of a checkpoint, if it has one.
pub(crate) fn load_pooler(
    store: &mut TensorStore,
    prefix: &str,
    hidden: usize,
) -> Result<Option<Linear>> {
    let module = format!("{prefix}pooler.dense");
    if !store.contains(&format!("{module}.weight")) {
        return Ok(None);
    }
    Linear::load(store, &module, hidden, hidden).map(Some)
}
