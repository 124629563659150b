//! A causal LM base with an optional PEFT adapter, run on whole token sequences: the full `[batch, seq, vocab]`
//! logits that parity checks against torch compare (serving goes through `Model`).

use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;

use crate::base::{load_base, Backbone};
use crate::error::{Error, Result};
use crate::lora::{AdapterSource, LoraWeights};
use crate::models::decoder::DecoderInput;
use crate::runtime::Runtime;
use crate::task::{ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE};
use crate::tensors::{read_file, TensorStore};
use crate::LoadOptions;

/// A causal LM (`gemma3_text`, `qwen3`) loaded from an HF base directory, with a PEFT `CAUSAL_LM` adapter
/// directory (`adapter_config.json`, `adapter_model.safetensors`) applied at runtime or folded into the weights.
pub struct CausalLm {
    backbone: Arc<Backbone>,
    lora: Option<LoraWeights>,
    runtime: Runtime,
}

impl CausalLm {
    pub fn load(
        base_dir: &Path,
        adapter_dir: Option<&Path>,
        merged: bool,
        opts: &LoadOptions,
    ) -> Result<CausalLm> {
        let runtime = Runtime::new(opts)?;
        let source = match adapter_dir {
            Some(dir) => {
                let config = read_file(&dir.join(ADAPTER_CONFIG_FILE))?;
                let weights_path = dir.join(ADAPTER_WEIGHTS_FILE);
                let store = TensorStore::from_safetensors(
                    &read_file(&weights_path)?,
                    &weights_path.display().to_string(),
                    &runtime.device,
                )?;
                Some(RefCell::new(AdapterSource::parse(
                    &config,
                    store,
                    "CAUSAL_LM",
                    None,
                )?))
            }
            None => None,
        };
        let fold = if merged { source.as_ref() } else { None };
        let base = load_base(base_dir, &runtime.device, None, fold, runtime.precision)?;
        base.backbone.decoder()?;
        let lora = match source {
            Some(source) if !merged => {
                let mut source = source.into_inner();
                let lora = source.take_weights(&base.modules)?;
                source.finish(&[&base.modules])?;
                Some(lora)
            }
            Some(source) => {
                source.into_inner().finish(&[&base.modules])?;
                None
            }
            None => None,
        };
        Ok(CausalLm {
            backbone: base.backbone,
            lora,
            runtime,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.backbone.config.vocab_size()
    }

    /// Row-major `[batch, seq, vocab]` logits of `input_ids` `[batch, seq]`; `attention_mask` marks real tokens
    /// (1) and padding (0, left or right), and positions count real tokens only.
    pub fn logits(
        &self,
        input_ids: &[i64],
        attention_mask: &[i64],
        batch: usize,
        seq: usize,
    ) -> Result<Vec<f32>> {
        if batch == 0
            || seq == 0
            || input_ids.len() != batch * seq
            || attention_mask.len() != batch * seq
        {
            return Err(Error::Input(format!(
                "input_ids and attention_mask must both hold batch x seq = {batch} x {seq} > 0 values"
            )));
        }
        self.runtime.install(|| {
            let decoder = self.backbone.decoder()?;
            let mut cache = decoder.new_cache(batch);
            let input = DecoderInput {
                batch,
                q_len: seq,
                ids: input_ids,
                mask: attention_mask,
            };
            let hidden = decoder.forward(&input, &mut cache, self.lora.as_ref())?;
            Ok(decoder.logits(&hidden)?.flatten_all()?.to_vec1::<f32>()?)
        })
    }
}
