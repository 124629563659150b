//! A prefix builder over a tensor store, in the spirit of candle's `VarBuilder`: architectures take tensors by
//! their checkpoint keys, every module is recorded under its PEFT module path, and each dense layer receives its
//! LoRA site (and, when folding, its delta) here, so no architecture keeps a table of adapter sites.

use std::cell::RefCell;
use std::collections::BTreeSet;

use candle_core::Tensor;

use crate::error::Result;
use crate::lora::AdapterSource;
use crate::nn::{LayerNorm, Linear};
use crate::tensors::TensorStore;
use crate::Precision;

/// A dense layer of a loaded checkpoint; its index in `ModuleTable::linears` is its LoRA site.
#[derive(Debug, Clone)]
pub(crate) struct LinearModule {
    pub path: String,
    pub in_features: usize,
    pub out_features: usize,
}

/// Every module a checkpoint load visited: the dense layers (LoRA sites) and all other module paths (norms,
/// embeddings and their containers), for matching an adapter's `target_modules`.
#[derive(Debug, Clone, Default)]
pub(crate) struct ModuleTable {
    pub linears: Vec<LinearModule>,
    pub others: BTreeSet<String>,
}

impl ModuleTable {
    fn record_other(&mut self, module: &str) {
        let mut path = module;
        loop {
            self.others.insert(path.to_string());
            match path.rsplit_once('.') {
                Some((parent, _)) => path = parent,
                None => break,
            }
        }
    }

    /// Every module path, dense layers included.
    pub fn all_paths(&self) -> impl Iterator<Item = &str> {
        self.linears
            .iter()
            .map(|l| l.path.as_str())
            .chain(self.others.iter().map(String::as_str))
    }
}

/// The shared state of one load: the tensors, the modules seen so far, and an adapter to fold in (merged loads).
pub(crate) struct LoadContext<'a> {
    store: RefCell<TensorStore>,
    modules: RefCell<ModuleTable>,
    fold: Option<&'a RefCell<AdapterSource>>,
}

impl<'a> LoadContext<'a> {
    pub fn new(store: TensorStore, fold: Option<&'a RefCell<AdapterSource>>) -> LoadContext<'a> {
        LoadContext {
            store: RefCell::new(store),
            modules: RefCell::new(ModuleTable::default()),
            fold,
        }
    }

    /// A builder whose keys and module paths both start at the checkpoint root.
    pub fn root(&self) -> Weights<'_> {
        Weights {
            ctx: self,
            key: String::new(),
            path: String::new(),
            precision: Precision::F32,
        }
    }

    pub fn contains(&self, key: &str) -> bool {
        self.store.borrow().contains(key)
    }

    pub fn into_parts(self) -> (TensorStore, ModuleTable) {
        (self.store.into_inner(), self.modules.into_inner())
    }
}

fn join(prefix: &str, name: &str) -> String {
    match (prefix.is_empty(), name.is_empty()) {
        (true, _) => name.to_string(),
        (_, true) => prefix.to_string(),
        _ => format!("{prefix}.{name}"),
    }
}

/// A position in the checkpoint: `key` prefixes tensor names in the file, `path` prefixes PEFT module paths.
/// They differ when a bare encoder checkpoint (`embeddings.*`) serves a task model (`bert.embeddings.*`).
#[derive(Clone)]
pub(crate) struct Weights<'a> {
    ctx: &'a LoadContext<'a>,
    key: String,
    path: String,
    /// Of the dense layers built from here (heads and everything outside the encoder stay f32).
    precision: Precision,
}

impl<'a> Weights<'a> {
    /// The sub-module `name` (dotted names allowed).
    pub fn pp(&self, name: &str) -> Weights<'a> {
        Weights {
            ctx: self.ctx,
            key: join(&self.key, name),
            path: join(&self.path, name),
            precision: self.precision,
        }
    }

    /// Like `pp`, but the checkpoint keys stay where they are (module path `name.*`, keys unprefixed).
    pub fn with_path_prefix(&self, name: &str) -> Weights<'a> {
        Weights {
            ctx: self.ctx,
            key: self.key.clone(),
            path: join(&self.path, name),
            precision: self.precision,
        }
    }

    /// This builder with its dense layers (and those of its sub-modules) in `precision`.
    pub fn with_precision(self, precision: Precision) -> Weights<'a> {
        Weights { precision, ..self }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.ctx.contains(&join(&self.key, name))
    }

    /// Takes tensor `name` with exactly `shape`, as f32.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let full = join(&self.path, name);
        let module = full.rsplit_once('.').map_or("", |(m, _)| m);
        if !module.is_empty() {
            self.ctx.modules.borrow_mut().record_other(module);
        }
        self.ctx
            .store
            .borrow_mut()
            .take(&join(&self.key, name), shape)
    }

    /// This module as a dense layer `[out, in]` (HF layout), with or without a bias. Folds the adapter's delta
    /// in when the load has one to fold.
    pub fn linear(&self, in_features: usize, out_features: usize, bias: bool) -> Result<Linear> {
        let weight = self
            .ctx
            .store
            .borrow_mut()
            .take(&join(&self.key, "weight"), &[out_features, in_features])?;
        let bias = if bias {
            self.ctx
                .store
                .borrow_mut()
                .take(&join(&self.key, "bias"), &[out_features])?
        } else {
            Tensor::zeros(out_features, weight.dtype(), weight.device())?
        };
        let mut weight_t = weight.t()?;
        if let Some(source) = self.ctx.fold {
            if let Some(delta) =
                source
                    .borrow_mut()
                    .take_delta(&self.path, in_features, out_features)?
            {
                weight_t = (weight_t + delta.dense_delta_t()?)?;
            }
        }
        let mut modules = self.ctx.modules.borrow_mut();
        let site = modules.linears.len();
        modules.linears.push(LinearModule {
            path: self.path.clone(),
            in_features,
            out_features,
        });
        if let Some((parent, _)) = self.path.rsplit_once('.') {
            modules.record_other(parent);
        }
        Linear::new(weight_t, bias, site)?.with_precision(self.precision)
    }

    /// This module as a layer norm of `size` (bias optional).
    pub fn layer_norm(&self, size: usize, eps: f64, bias: bool) -> Result<LayerNorm> {
        let weight = self.tensor("weight", &[size])?;
        let bias = if bias {
            Some(self.tensor("bias", &[size])?)
        } else {
            None
        };
        LayerNorm::new(weight, bias, eps)
    }
}
