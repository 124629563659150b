//! PEFT LoRA adapters as stock `peft` saves them: config validation, key mapping, scaling, and the two ways to
//! apply them (folded into the weights at load, or `W x + s * B (A x)` at runtime).

use std::collections::HashMap;

use candle_core::Tensor;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::tensors::{check_shape, TensorStore};
use crate::weights::ModuleTable;

mod deltas;
use deltas::RuntimeDelta;
pub(crate) use deltas::{LoraDelta, LoraWeights, PackedDelta};

/// `{pattern: value}` in file order (PEFT uses the first pattern that matches).
#[derive(Debug, Default)]
struct OrderedPatterns(Vec<(String, f64)>);

impl<'de> Deserialize<'de> for OrderedPatterns {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct PatternVisitor;
        impl<'de> Visitor<'de> for PatternVisitor {
            type Value = OrderedPatterns;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map from module pattern to number, or null")
            }
            fn visit_unit<E>(self) -> std::result::Result<OrderedPatterns, E> {
                Ok(OrderedPatterns::default())
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<OrderedPatterns, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, f64>()? {
                    out.push((k, v));
                }
                Ok(OrderedPatterns(out))
            }
        }
        d.deserialize_any(PatternVisitor)
    }
}

/// The fields of `adapter_config.json` that decide the math (others are ignored).
#[derive(Debug, Deserialize)]
struct RawAdapterConfig {
    peft_type: Option<String>,
    task_type: Option<String>,
    r: usize,
    lora_alpha: f64,
    #[serde(default)]
    use_rslora: bool,
    #[serde(default)]
    use_dora: bool,
    #[serde(default)]
    lora_bias: bool,
    #[serde(default = "default_bias")]
    bias: String,
    #[serde(default)]
    fan_in_fan_out: bool,
    #[serde(default = "default_init")]
    init_lora_weights: Value,
    #[serde(default)]
    target_modules: Value,
    #[serde(default)]
    exclude_modules: Value,
    #[serde(default)]
    modules_to_save: Option<Vec<String>>,
    #[serde(default)]
    rank_pattern: OrderedPatterns,
    #[serde(default)]
    alpha_pattern: OrderedPatterns,
    // Features whose saved weights are not plain `W + s * B @ A` on the listed modules.
    #[serde(default)]
    layers_to_transform: Value,
    #[serde(default)]
    layer_replication: Value,
    #[serde(default)]
    target_parameters: Value,
    #[serde(default)]
    trainable_token_indices: Value,
    #[serde(default)]
    alora_invocation_tokens: Value,
    #[serde(default)]
    use_qalora: Value,
    #[serde(default)]
    use_bdlora: Value,
}

fn default_bias() -> String {
    "none".into()
}
fn default_init() -> Value {
    Value::Bool(true)
}

/// True for null, false, 0, "", [] and {}: the "feature off" values PEFT writes.
fn is_off(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// String-or-list module selector (`target_modules`, `exclude_modules`) with PEFT matching rules.
enum ModuleSelector {
    None,
    AllLinear,
    Regex(regex::Regex),
    Names(Vec<String>),
}

impl ModuleSelector {
    fn parse(v: &Value, field: &str) -> Result<ModuleSelector> {
        match v {
            Value::Null => Ok(ModuleSelector::None),
            Value::String(s) if s.eq_ignore_ascii_case("all-linear") => {
                Ok(ModuleSelector::AllLinear)
            }
            Value::String(s) => Ok(ModuleSelector::Regex(anchored_regex(
                &format!("^(?:{s})$"),
                s,
            )?)),
            Value::Array(items) => items
                .iter()
                .map(|i| {
                    i.as_str().map(str::to_string).ok_or_else(|| {
                        Error::Config(format!("adapter_config.json: {field} must hold strings"))
                    })
                })
                .collect::<Result<Vec<_>>>()
                .map(ModuleSelector::Names),
            _ => Err(Error::Config(format!(
                "adapter_config.json: {field} must be a string or a list"
            ))),
        }
    }

    /// PEFT: a regex string must match the whole path; a list entry matches the path or a dotted suffix of it.
    fn matches(&self, path: &str, is_linear: bool) -> bool {
        match self {
            ModuleSelector::None => false,
            ModuleSelector::AllLinear => is_linear,
            ModuleSelector::Regex(re) => re.is_match(path),
            ModuleSelector::Names(names) => names.iter().any(|n| suffix_match(path, n)),
        }
    }
}

fn suffix_match(path: &str, name: &str) -> bool {
    path == name || (path.ends_with(name) && path[..path.len() - name.len()].ends_with('.'))
}

fn anchored_regex(pattern: &str, original: &str) -> Result<regex::Regex> {
    regex::Regex::new(pattern).map_err(|e| {
        Error::Unsupported(format!(
            "adapter_config.json: pattern {original:?} is not supported: {e}"
        ))
    })
}

/// First pattern (file order) matching `path` the way PEFT's `get_pattern_key` does: `(.*\.)?(pattern)$`.
fn pattern_value(patterns: &OrderedPatterns, path: &str) -> Result<Option<f64>> {
    for (pattern, value) in &patterns.0 {
        if anchored_regex(&format!(r"^(?:.*\.)?(?:{pattern})$"), pattern)?.is_match(path) {
            return Ok(Some(*value));
        }
    }
    Ok(None)
}

/// Summary of the adapter config, for consistency checks against the manifest.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AdapterSummary {
    pub r: usize,
    pub lora_alpha: f64,
    pub use_rslora: bool,
}

const PEFT_PREFIX: &str = "base_model.model.";

/// A PEFT adapter being applied: each dense layer of the model asks for its own delta by module path (the way
/// peft's `lora.Linear` wraps its base layer), the head takes the `modules_to_save` tensors, and `finish` refuses
/// whatever no layer claimed.
pub(crate) struct AdapterSource {
    cfg: RawAdapterConfig,
    targets: ModuleSelector,
    excluded: ModuleSelector,
    saved_patterns: Vec<regex::Regex>,
    /// `lora_A` / `lora_B` tensors not yet claimed.
    lora: TensorStore,
    /// Full tensors of `modules_to_save`, keyed by module path (e.g. `classifier.weight`).
    saved: HashMap<String, Tensor>,
    adapted: usize,
    /// Module-path prefix PEFT did not see: `bert.` for an adapter on the bare encoder (embedding tasks).
    bare_prefix: Option<String>,
    pub summary: AdapterSummary,
}

impl AdapterSource {
    /// Validates `adapter_config.json` against what this runtime reproduces exactly and sorts the tensors of
    /// `adapter_model.safetensors` into LoRA factors and `modules_to_save`.
    /// `task_type` is the PEFT task type the model directory's task implies; `bare_prefix` is the encoder
    /// prefix (e.g. `bert`) when PEFT wrapped the bare encoder rather than a task model.
    pub fn parse(
        config_json: &[u8],
        mut store: TensorStore,
        task_type: &str,
        bare_prefix: Option<&str>,
    ) -> Result<AdapterSource> {
        let cfg: RawAdapterConfig = serde_json::from_slice(config_json)
            .map_err(|e| Error::Format(format!("adapter_config.json: {e}")))?;
        validate(&cfg, task_type)?;
        let targets = ModuleSelector::parse(&cfg.target_modules, "target_modules")?;
        let excluded = ModuleSelector::parse(&cfg.exclude_modules, "exclude_modules")?;
        let saved_patterns = cfg
            .modules_to_save
            .clone()
            .unwrap_or_default()
            .iter()
            .map(|m| anchored_regex(&format!(r"^(?:.*\.)?(?:{m})(?:$|\..*)"), m))
            .collect::<Result<Vec<_>>>()?;
        let mut saved = HashMap::new();
        let keys: Vec<String> = store.keys().cloned().collect();
        for key in keys {
            let Some(path) = key.strip_prefix(PEFT_PREFIX) else {
                continue;
            };
            let path = path.replace(".modules_to_save.default.", ".");
            let module = path.rsplit_once('.').map_or("", |(m, _)| m);
            if !path.contains(".lora_") && saved_patterns.iter().any(|re| re.is_match(module)) {
                saved.insert(path, store.take_any_shape(&key)?);
            }
        }
        let summary = AdapterSummary {
            r: cfg.r,
            lora_alpha: cfg.lora_alpha,
            use_rslora: cfg.use_rslora,
        };
        Ok(AdapterSource {
            cfg,
            targets,
            excluded,
            saved_patterns,
            lora: store,
            saved,
            adapted: 0,
            bare_prefix: bare_prefix.map(|p| format!("{p}.")),
            summary,
        })
    }

    /// The module path as PEFT named it.
    fn peft_path<'p>(&self, path: &'p str) -> &'p str {
        match &self.bare_prefix {
            Some(prefix) => path.strip_prefix(prefix.as_str()).unwrap_or(path),
            None => path,
        }
    }

    fn is_saved(&self, path: &str) -> bool {
        self.saved_patterns.iter().any(|re| re.is_match(path))
    }

    fn selects(&self, path: &str, is_linear: bool) -> bool {
        let path = self.peft_path(path);
        self.targets.matches(path, is_linear)
            && !self.excluded.matches(path, is_linear)
            && !self.is_saved(path)
    }

    /// The delta of the dense layer at `path`, when the config targets it (its factors must then be present).
    pub fn take_delta(
        &mut self,
        path: &str,
        in_features: usize,
        out_features: usize,
    ) -> Result<Option<LoraDelta>> {
        if !self.selects(path, true) {
            return Ok(None);
        }
        let path = self.peft_path(path).to_string();
        let path = path.as_str();
        let a = take_factor(&mut self.lora, path, "lora_A")?;
        let b = take_factor(&mut self.lora, path, "lora_B")?;
        let rank = match pattern_value(&self.cfg.rank_pattern, path)? {
            Some(r) if r >= 1.0 && r.fract() == 0.0 => r as usize,
            Some(r) => return Err(Error::Config(format!("rank_pattern gives {r} for {path}"))),
            None => self.cfg.r,
        };
        let alpha = pattern_value(&self.cfg.alpha_pattern, path)?.unwrap_or(self.cfg.lora_alpha);
        let origin = self.lora.origin();
        check_shape(&a, &[rank, in_features], &format!("{path}.lora_A"), origin)?;
        check_shape(&b, &[out_features, rank], &format!("{path}.lora_B"), origin)?;
        let scale = if self.cfg.use_rslora {
            alpha / (rank as f64).sqrt()
        } else {
            alpha / rank as f64
        };
        self.adapted += 1;
        Ok(Some(LoraDelta {
            a_t: a.t()?.contiguous()?,
            b_t: b.t()?.contiguous()?,
            scale,
        }))
    }

    /// Runtime factors for every dense layer of a loaded base, by site.
    pub fn take_weights(&mut self, modules: &ModuleTable) -> Result<LoraWeights> {
        let deltas = modules
            .linears
            .iter()
            .map(|m| {
                Ok(
                    match self.take_delta(&m.path, m.in_features, m.out_features)? {
                        Some(d) if d.a_t.device().is_cpu() => {
                            Some(RuntimeDelta::Packed(PackedDelta::new(&d)?))
                        }
                        Some(d) => Some(RuntimeDelta::Tensors(d)),
                        None => None,
                    },
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(LoraWeights { deltas })
    }

    /// The `modules_to_save` tensors (the task head), keyed by module path.
    pub fn take_saved(&mut self) -> HashMap<String, Tensor> {
        std::mem::take(&mut self.saved)
    }

    /// After every module of the model asked for its delta: refuse targets this runtime cannot apply (non-dense
    /// modules, names the architecture does not have, nothing at all) and factors no layer claimed.
    pub fn finish(self, tables: &[&ModuleTable]) -> Result<()> {
        let others = tables.iter().flat_map(|t| t.others.iter());
        if let Some(path) = others.clone().find(|p| self.selects(p, false)) {
            return Err(Error::Unsupported(format!(
                "target_modules selects {path:?}: only LoRA on dense layers is supported"
            )));
        }
        if let ModuleSelector::Names(names) = &self.targets {
            let all: Vec<&str> = tables
                .iter()
                .flat_map(|t| t.all_paths())
                .map(|p| self.peft_path(p))
                .collect();
            for n in names {
                if !all.iter().any(|p| suffix_match(p, n)) {
                    return Err(Error::Unsupported(format!(
                        "unknown target module {n:?} for this architecture"
                    )));
                }
            }
        }
        if self.adapted == 0 {
            return Err(Error::Config(
                "adapter_config.json: target_modules selects no dense layer".into(),
            ));
        }
        // Whatever is left matched neither a selected dense layer nor modules_to_save.
        self.lora
            .finish()
            .map_err(|e| Error::Format(format!("unmatched adapter tensors: {e}")))
    }
}

/// Removes `base_model.model.<path>.<which>[.default].weight`.
fn take_factor(store: &mut TensorStore, path: &str, which: &str) -> Result<Tensor> {
    let plain = format!("{PEFT_PREFIX}{path}.{which}.weight");
    let named = format!("{PEFT_PREFIX}{path}.{which}.default.weight");
    let key = if store.contains(&plain) { plain } else { named };
    if !store.contains(&key) {
        return Err(Error::Format(format!(
            "{}: missing {which} for targeted module {path:?}",
            store.origin()
        )));
    }
    store.take_any_shape(&key)
}

fn validate(cfg: &RawAdapterConfig, task_type: &str) -> Result<()> {
    let unsupported =
        |what: String| Err(Error::Unsupported(format!("adapter_config.json: {what}")));
    if let Some(t) = &cfg.peft_type {
        if t != "LORA" {
            return unsupported(format!("peft_type {t:?} (only LORA)"));
        }
    }
    if let Some(t) = &cfg.task_type {
        if t != task_type {
            return unsupported(format!(
                "task_type {t:?} (the model directory's task needs {task_type:?})"
            ));
        }
    }
    if cfg.r == 0 {
        return Err(Error::Config(
            "adapter_config.json: r must be positive".into(),
        ));
    }
    if !cfg.lora_alpha.is_finite() {
        return Err(Error::Config(
            "adapter_config.json: lora_alpha must be a number".into(),
        ));
    }
    if cfg.use_dora {
        return unsupported("use_dora (DoRA rescales the weight norm)".into());
    }
    if cfg.bias != "none" {
        return unsupported(format!("bias {:?} (only \"none\")", cfg.bias));
    }
    if cfg.lora_bias {
        return unsupported("lora_bias".into());
    }
    if cfg.fan_in_fan_out {
        return unsupported("fan_in_fan_out (BERT dense layers are not Conv1D)".into());
    }
    // The init only shapes the starting point; the saved A/B are what counts. Inits that also rewrite the base
    // weights (PiSSA, OLoRA, LoftQ, CorDA, EVA, ...) cannot be reproduced from the stock base.
    match &cfg.init_lora_weights {
        Value::Bool(_) => {}
        Value::String(s) if s == "gaussian" => {}
        other => {
            return unsupported(format!(
                "init_lora_weights {other} (only true, false, \"gaussian\")"
            ))
        }
    }
    for (field, v) in [
        ("layers_to_transform", &cfg.layers_to_transform),
        ("layer_replication", &cfg.layer_replication),
        ("target_parameters", &cfg.target_parameters),
        ("trainable_token_indices", &cfg.trainable_token_indices),
        ("alora_invocation_tokens", &cfg.alora_invocation_tokens),
        ("use_qalora", &cfg.use_qalora),
        ("use_bdlora", &cfg.use_bdlora),
    ] {
        if !is_off(v) {
            return unsupported(format!("{field} = {v}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_targets_match_whole_dotted_suffixes() {
        assert!(suffix_match(
            "bert.encoder.layer.0.attention.self.query",
            "query"
        ));
        assert!(suffix_match(
            "bert.encoder.layer.0.attention.self.query",
            "self.query"
        ));
        assert!(suffix_match("classifier", "classifier"));
        assert!(!suffix_match(
            "bert.encoder.layer.0.attention.self.query",
            "uery"
        ));
        assert!(!suffix_match("bert.pooler.dense", "pooler"));
    }

    #[test]
    fn patterns_follow_peft_get_pattern_key() {
        let p = OrderedPatterns(vec![
            ("layer.1.attention.self.value".into(), 2.0),
            ("value".into(), 6.0),
        ]);
        assert_eq!(
            pattern_value(&p, "bert.encoder.layer.1.attention.self.value").unwrap(),
            Some(2.0)
        );
        assert_eq!(
            pattern_value(&p, "bert.encoder.layer.0.attention.self.value").unwrap(),
            Some(6.0)
        );
        // `layer.1` must not match `layer.11`: the pattern is anchored at a dot boundary.
        assert_eq!(
            pattern_value(&p, "bert.encoder.layer.11.attention.self.query").unwrap(),
            None
        );
        let first_wins = OrderedPatterns(vec![
            ("value".into(), 6.0),
            ("layer.1.attention.self.value".into(), 2.0),
        ]);
        assert_eq!(
            pattern_value(&first_wins, "bert.encoder.layer.1.attention.self.value").unwrap(),
            Some(6.0)
        );
    }

    #[test]
    fn ordered_patterns_keep_file_order_and_accept_null() {
        let p: OrderedPatterns = serde_json::from_str(r#"{"z": 1, "a": 2}"#).unwrap();
        assert_eq!(p.0, vec![("z".to_string(), 1.0), ("a".to_string(), 2.0)]);
        let empty: OrderedPatterns = serde_json::from_str("null").unwrap();
        assert!(empty.0.is_empty());
    }

    #[test]
    fn off_values() {
        for v in [
            Value::Null,
            Value::Bool(false),
            serde_json::json!([]),
            serde_json::json!({}),
            serde_json::json!(""),
        ] {
            assert!(is_off(&v), "{v}");
        }
        assert!(!is_off(&serde_json::json!([0])));
        assert!(!is_off(&Value::Bool(true)));
    }
}
