//! What the runtime returns, one type per task, plus tokenization and golden-check reports.

use crate::calibration::Calibration;
use crate::entities::Entity;

/// Numerically stable softmax of one row.
pub(crate) fn softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = row.iter().map(|&v| (v - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

/// Result of classifying a batch: row-major logits `[num_texts, num_labels]` plus truncation facts.
#[derive(Debug, Clone)]
pub struct Classification {
    /// Label names in index order.
    pub labels: Vec<String>,
    pub num_texts: usize,
    pub num_labels: usize,
    /// Row-major `[num_texts, num_labels]` f32 logits, uncalibrated.
    pub logits: Vec<f32>,
    /// Indices of the labels the manifest declares unsafe; None when it declares none.
    pub unsafe_labels: Option<Vec<usize>>,
    /// Per text: tokens the text produced (specials included) before truncation.
    pub tokens_in: Vec<usize>,
    /// Per text: tokens actually used (<= max_seq_len).
    pub tokens_used: Vec<usize>,
    /// The manifest's calibration: every probability below is `softmax(logits / temperature)`.
    pub calibration: Calibration,
}

impl Classification {
    /// Calibrated probabilities, row-major like `logits`.
    pub fn probabilities(&self) -> Vec<f32> {
        self.logits
            .chunks(self.num_labels.max(1))
            .flat_map(|row| self.calibration.probabilities(row))
            .collect()
    }

    /// Calibrated probabilities of row `i` (None out of range).
    pub fn row_probabilities(&self, i: usize) -> Option<Vec<f32>> {
        let n = self.num_labels;
        if i >= self.num_texts || n == 0 {
            return None;
        }
        Some(
            self.calibration
                .probabilities(self.logits.get(i * n..(i + 1) * n)?),
        )
    }

    /// The largest calibrated probability of row `i` (None out of range).
    pub fn top_probability(&self, i: usize) -> Option<f32> {
        self.top_k(i, 1).first().map(|&(_, p)| p)
    }

    /// True when row `i`'s top calibrated probability is below the manifest's review threshold; always false
    /// without a threshold (and out of range).
    pub fn needs_review(&self, i: usize) -> bool {
        self.top_probability(i)
            .is_some_and(|p| self.calibration.needs_review(p))
    }

    /// Summed calibrated probability of the unsafe labels in row `i` (None without a declaration or out of
    /// range).
    pub fn unsafe_score(&self, i: usize) -> Option<f32> {
        let unsafe_labels = self.unsafe_labels.as_ref()?;
        let probs = self.row_probabilities(i)?;
        Some(unsafe_labels.iter().map(|&l| probs[l]).sum())
    }

    /// True when the top label of row `i` is unsafe (None without a declaration or out of range).
    pub fn is_unsafe(&self, i: usize) -> Option<bool> {
        let unsafe_labels = self.unsafe_labels.as_ref()?;
        let best = self.top_k(i, 1).first()?.0;
        Some(unsafe_labels.contains(&best))
    }

    /// The `k` best (label index, calibrated probability) pairs of row `i`, best first.
    /// Out-of-range `i` gives an empty list; `k` is capped at `num_labels`.
    pub fn top_k(&self, i: usize, k: usize) -> Vec<(usize, f32)> {
        let Some(probs) = self.row_probabilities(i) else {
            return Vec::new();
        };
        let mut ranked: Vec<(usize, f32)> = probs.into_iter().enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.truncate(k.min(self.num_labels));
        ranked
    }
}

/// Token ids of a batch as the model sees them: row-major `[num_texts, seq_len]`, right padded.
#[derive(Debug, Clone)]
pub struct Encoding {
    pub num_texts: usize,
    pub seq_len: usize,
    pub input_ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
}

/// Outcome of recomputing golden.safetensors.
#[derive(Debug, Clone)]
pub struct GoldenReport {
    pub num_texts: usize,
    pub ids_equal: bool,
    /// Discrete outputs agree: the argmax per text (per token for token classification; always true for
    /// embeddings).
    pub argmax_equal: bool,
    /// Token classification: the same entities (type, start, end, text; score within the tolerance). True for
    /// other tasks.
    pub entities_equal: bool,
    pub max_abs_diff: f32,
    pub tolerance: f32,
    /// (row, column, expected, got) of the largest difference.
    pub worst: (usize, usize, f32, f32),
    /// Generative classification: the largest label-probability difference (`label_probs` and the `fewshot`
    /// entries) and its tolerance (`prob_tolerance`); None for other tasks.
    /// Sequence classification with golden `probabilities` (calibrated): the same fields compare them, with
    /// the logits' tolerance.
    pub prob_max_abs_diff: Option<f32>,
    pub prob_tolerance: Option<f32>,
    /// Sequence classification: the golden `review_threshold` equals the manifest's, and `needs_review` agrees
    /// with the golden probabilities for every text whose top probability is not within the tolerance of the
    /// threshold. True when the golden file carries no probabilities (and for other tasks).
    pub review_equal: bool,
    pub ok: bool,
}

/// Result of token classification (PII / NER): token logits and the entities decoded from them.
#[derive(Debug, Clone)]
pub struct TokenClassification {
    /// Tag names (IOB2) in index order.
    pub labels: Vec<String>,
    pub num_texts: usize,
    pub num_labels: usize,
    /// Per text: row-major `[tokens_used, num_labels]` logits, special tokens included.
    pub token_logits: Vec<Vec<f32>>,
    /// Per text and token: `(start, end)` in characters of the input (`(0, 0)` for special tokens).
    pub offsets: Vec<Vec<(usize, usize)>>,
    /// Per text: the entities, in order of appearance.
    pub entities: Vec<Vec<Entity>>,
    pub tokens_in: Vec<usize>,
    pub tokens_used: Vec<usize>,
}

/// Sentence embeddings, row-major `[num_texts, dim]`, pooled and normalised as the manifest says.
#[derive(Debug, Clone)]
pub struct Embeddings {
    pub num_texts: usize,
    pub dim: usize,
    pub values: Vec<f32>,
    pub tokens_in: Vec<usize>,
    pub tokens_used: Vec<usize>,
}

impl Embeddings {
    /// Row `i`, empty when out of range.
    pub fn row(&self, i: usize) -> &[f32] {
        self.values
            .get(i * self.dim..(i + 1) * self.dim)
            .unwrap_or(&[])
    }
}
