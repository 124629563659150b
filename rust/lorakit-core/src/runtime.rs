//! Where and how compute runs: device, a compute thread pool shared by every model of one thread count, and the batched classification path shared by
//! merged models and adapters on a shared base.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use candle_core::Device;
use rayon::ThreadPool;

use crate::base::Backbone;
use crate::entities::decode;
use crate::error::{Error, Result};
use crate::heads::Head;
use crate::kernels::AttentionMask;
use crate::manifest::TaskKind;
use crate::models::EncoderInput;
use crate::outputs::softmax;
use crate::task::Task;
use crate::tokenize::{Spans, TokenizedText};
use crate::{Classification, DeviceSpec, Embeddings, LoadOptions, Precision, TokenClassification};

/// Upper bound on `rows * seq_len` per forward pass: keeps attention buffers bounded for large batches.
const TOKENS_PER_CHUNK: usize = 8192;

pub(crate) struct Runtime {
    pub device: Device,
    pool: Arc<ThreadPool>,
    pub max_batch: usize,
    pub verify_checksums: bool,
    pub precision: Precision,
}

impl Runtime {
    pub fn new(opts: &LoadOptions) -> Result<Runtime> {
        if opts.max_batch == 0 {
            return Err(Error::Input("max_batch must be at least 1".into()));
        }
        let threads = match opts.threads {
            Some(0) => return Err(Error::Input("threads must be at least 1".into())),
            Some(n) => n,
            // Physical cores (or RAYON_NUM_THREADS), as candle counts them.
            None => candle_core::utils::get_num_threads(),
        };
        let pool = shared_pool(threads)?;
        Ok(Runtime {
            device: make_device(opts.device)?,
            pool,
            max_batch: opts.max_batch,
            verify_checksums: opts.verify_checksums,
            precision: opts.precision,
        })
    }

    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Runs `f` on this runtime's threads (candle's matmuls and the tokenizer use the current rayon pool).
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }

    pub fn check_batch(&self, n: usize) -> Result<()> {
        if n == 0 {
            return Err(Error::Input("empty batch: pass at least one text".into()));
        }
        if n > self.max_batch {
            return Err(Error::Input(format!(
                "batch of {n} texts exceeds max_batch {}",
                self.max_batch
            )));
        }
        Ok(())
    }

    /// Tokenizes `texts` for `task` (with token offsets when its head needs them).
    pub fn tokenize(&self, task: &Task, texts: &[&str]) -> Result<Vec<TokenizedText>> {
        let spans = match task.head.kind() {
            TaskKind::TokenClassification => Spans::Keep,
            _ => Spans::Skip,
        };
        task.tokenizer.encode_all(texts, task.max_seq_len, spans)
    }

    /// Tokenizes and classifies `texts` with `backbone` + a sequence-classification `task`.
    pub fn classify(
        &self,
        backbone: &Backbone,
        task: &Task,
        texts: &[&str],
    ) -> Result<Classification> {
        if task.generative.is_some() {
            self.check_batch(texts.len())?;
            return self.install(|| crate::generative::classify(backbone, task, texts));
        }
        expect_kind(task, TaskKind::SequenceClassification, "classify")?;
        self.check_batch(texts.len())?;
        self.install(|| {
            let rows = self.tokenize(task, texts)?;
            let logits = self.outputs(backbone, task, &rows)?.concat();
            Ok(Classification {
                labels: task.labels.clone(),
                num_texts: texts.len(),
                num_labels: task.labels.len(),
                logits,
                unsafe_labels: task.unsafe_labels.clone(),
                tokens_in: rows.iter().map(|r| r.tokens_in).collect(),
                tokens_used: rows.iter().map(|r| r.ids.len()).collect(),
                calibration: task.calibration,
            })
        })
    }

    /// Token logits and entity spans of a token-classification `task`.
    pub fn extract_entities(
        &self,
        backbone: &Backbone,
        task: &Task,
        texts: &[&str],
    ) -> Result<TokenClassification> {
        expect_kind(task, TaskKind::TokenClassification, "extract_entities")?;
        self.check_batch(texts.len())?;
        self.install(|| {
            let rows = self.tokenize(task, texts)?;
            let token_logits = self.outputs(backbone, task, &rows)?;
            Ok(token_result(task, texts, &rows, token_logits))
        })
    }

    /// Sentence embeddings of an embedding `task`.
    pub fn embed(&self, backbone: &Backbone, task: &Task, texts: &[&str]) -> Result<Embeddings> {
        expect_kind(task, TaskKind::Embedding, "embed")?;
        self.check_batch(texts.len())?;
        self.install(|| {
            let rows = self.tokenize(task, texts)?;
            let values = self.outputs(backbone, task, &rows)?.concat();
            Ok(Embeddings {
                num_texts: texts.len(),
                dim: backbone.config.hidden_size(),
                values,
                tokens_in: rows.iter().map(|r| r.tokens_in).collect(),
                tokens_used: rows.iter().map(|r| r.ids.len()).collect(),
            })
        })
    }

    /// The head's output per text, in input order: logits `[C]`, token logits `[tokens_used * C]` or an
    /// embedding `[D]`. Rows are sorted by length and run in buckets of similar length (`length_buckets`), each
    /// padded only to its own longest row.
    pub fn outputs(
        &self,
        backbone: &Backbone,
        task: &Task,
        rows: &[TokenizedText],
    ) -> Result<Vec<Vec<f32>>> {
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| rows[i].ids.len());
        let mut out = vec![Vec::new(); rows.len()];
        let lengths: Vec<usize> = order.iter().map(|&i| rows[i].ids.len()).collect();
        for std::ops::Range { start, end } in length_buckets(&lengths) {
            let chunk: Vec<&TokenizedText> = order[start..end].iter().map(|&i| &rows[i]).collect();
            let enc = task.tokenizer.pad(&chunk);
            let mask = AttentionMask::new(
                &enc.attention_mask,
                enc.num_texts,
                enc.seq_len,
                &self.device,
            )?;
            let input = EncoderInput::new(
                &enc.input_ids,
                &mask,
                enc.num_texts,
                enc.seq_len,
                backbone.config.vocab_size(),
                &self.device,
            )?;
            let hidden =
                backbone
                    .encoder()?
                    .forward(&input, task.lora.as_ref(), task.head.rows())?;
            let output = task.head.forward(&hidden, &mask)?;
            match task.head {
                Head::TokenClassification(_) => {
                    for (k, token_rows) in output.to_vec3::<f32>()?.into_iter().enumerate() {
                        let used = chunk[k].ids.len();
                        out[order[start + k]] =
                            token_rows.into_iter().take(used).flatten().collect();
                    }
                }
                _ => {
                    for (k, row) in output.to_vec2::<f32>()?.into_iter().enumerate() {
                        out[order[start + k]] = row;
                    }
                }
            }
        }
        Ok(out)
    }
}

/// The process-wide compute pool of `threads` threads, started on first use and reused by every later model.
/// A pool per model would start new threads on every load, and glibc keeps each thread's malloc arena after
/// the thread exits: a server that reloads its models would grow by those arenas on every reload.
fn shared_pool(threads: usize) -> Result<Arc<ThreadPool>> {
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<ThreadPool>>>> = OnceLock::new();
    let mut pools = POOLS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(pool) = pools.get(&threads) {
        return Ok(Arc::clone(pool));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(move |i| format!("lorakit-compute-{threads}-{i}"))
        .build()
        .map_err(|e| Error::Internal(format!("cannot start {threads} compute threads: {e}")))?;
    let pool = Arc::new(pool);
    pools.insert(threads, Arc::clone(&pool));
    Ok(pool)
}

fn expect_kind(task: &Task, kind: TaskKind, call: &str) -> Result<()> {
    let actual = task.head.kind();
    if actual == kind {
        return Ok(());
    }
    let right = match actual {
        TaskKind::SequenceClassification => "classify",
        TaskKind::TokenClassification => "extract_entities",
        TaskKind::Embedding => "embed",
        TaskKind::GenerativeClassification => "classify",
    };
    Err(Error::Input(format!(
        "{call} needs a {} model; this task is {}: use {right}",
        kind.name(),
        actual.name()
    )))
}

/// Entities decoded from the token logits of each text.
pub(crate) fn token_result(
    task: &Task,
    texts: &[&str],
    rows: &[TokenizedText],
    token_logits: Vec<Vec<f32>>,
) -> TokenClassification {
    let num_labels = task.labels.len();
    let entities = match &task.tags {
        Some(tags) => texts
            .iter()
            .zip(rows)
            .zip(&token_logits)
            .map(|((text, row), logits)| {
                let probs: Vec<f32> = logits.chunks(num_labels.max(1)).flat_map(softmax).collect();
                decode(tags, text, &probs, &row.spans)
            })
            .collect(),
        None => vec![Vec::new(); texts.len()],
    };
    TokenClassification {
        labels: task.labels.clone(),
        num_texts: texts.len(),
        num_labels,
        token_logits,
        offsets: rows
            .iter()
            .map(|r| r.spans.iter().map(|&(o, _)| o).collect())
            .collect(),
        entities,
        tokens_in: rows.iter().map(|r| r.tokens_in).collect(),
        tokens_used: rows.iter().map(|r| r.ids.len()).collect(),
    }
}

/// A forward pass costs about this many padded tokens on top of its tokens: every pass streams all the weights
/// (their bytes over memory bandwidth, against two FLOPs per weight per token), whatever the model's size.
const PASS_COST_TOKENS: usize = 16;

/// Consecutive runs of `lengths` (sorted ascending) to run as one padded pass each, at least cost: every run pays
/// `rows * longest` padded tokens plus PASS_COST_TOKENS, and stays within TOKENS_PER_CHUNK (a single longer row
/// runs alone). Mixed lengths so split into buckets of similar length instead of padding all to the longest.
fn length_buckets(lengths: &[usize]) -> Vec<std::ops::Range<usize>> {
    let n = lengths.len();
    // best[j]: the least cost of the first j rows; cut[j]: where the last run of that solution starts.
    let (mut best, mut cut) = (vec![0usize; n + 1], vec![0usize; n + 1]);
    for j in 1..=n {
        best[j] = usize::MAX;
        for i in (0..j).rev() {
            let padded = (j - i) * lengths[j - 1];
            if padded > TOKENS_PER_CHUNK && j - i > 1 {
                break;
            }
            let cost = best[i] + padded + PASS_COST_TOKENS;
            if cost < best[j] {
                (best[j], cut[j]) = (cost, i);
            }
        }
    }
    let mut runs = Vec::new();
    let mut j = n;
    while j > 0 {
        runs.push(cut[j]..j);
        j = cut[j];
    }
    runs.reverse();
    runs
}

pub(crate) fn make_device(spec: DeviceSpec) -> Result<Device> {
    match spec {
        DeviceSpec::Cpu => Ok(Device::Cpu),
        #[cfg(feature = "cuda")]
        DeviceSpec::Cuda(ordinal) => Device::new_cuda(ordinal)
            .map_err(|e| Error::Unsupported(format!("cannot open CUDA device {ordinal}: {e}"))),
        #[cfg(not(feature = "cuda"))]
        DeviceSpec::Cuda(ordinal) => Err(Error::Unsupported(format!(
            "CUDA device {ordinal} requested, but lorakit-core was built without the `cuda` feature"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_threads(threads: usize) -> Runtime {
        Runtime::new(&LoadOptions {
            threads: Some(threads),
            ..LoadOptions::default()
        })
        .unwrap()
    }

    fn padded(lengths: &[usize], runs: &[std::ops::Range<usize>]) -> usize {
        runs.iter().map(|r| r.len() * lengths[r.end - 1]).sum()
    }

    #[test]
    fn length_buckets_cover_every_row_once_in_order() {
        for lengths in [vec![], vec![5], vec![3; 40], (1..=200).collect::<Vec<_>>()] {
            let runs = length_buckets(&lengths);
            let covered: Vec<usize> = runs.iter().flat_map(|r| r.clone()).collect();
            assert_eq!(covered, (0..lengths.len()).collect::<Vec<_>>());
            assert!(runs
                .iter()
                .all(|r| r.len() * lengths[r.end - 1] <= TOKENS_PER_CHUNK || r.len() == 1));
        }
    }

    #[test]
    fn mixed_lengths_split_and_equal_lengths_stay_whole() {
        // Equal lengths: one pass (splitting only adds pass costs).
        assert_eq!(length_buckets(&[128; 32]), vec![0..32]);
        // 28 short texts and 4 long ones: the short ones are not padded to the long length.
        let mut lengths = vec![12; 28];
        lengths.extend([60; 4]);
        let runs = length_buckets(&lengths);
        assert_eq!(runs, vec![0..28, 28..32]);
        assert!(padded(&lengths, &runs) < lengths.len() * 60 / 2);
        // Batches beyond the token budget are cut to fit it.
        let long = vec![512; 40];
        assert!(length_buckets(&long)
            .iter()
            .all(|r| r.len() * 512 <= TOKENS_PER_CHUNK));
    }

    #[test]
    fn runtimes_of_one_thread_count_share_one_pool() {
        let (a, b) = (with_threads(3), with_threads(3));
        assert!(Arc::ptr_eq(&a.pool, &b.pool));
        assert_eq!(a.threads(), 3);
        let other = with_threads(2);
        assert!(!Arc::ptr_eq(&a.pool, &other.pool));
        assert_eq!(other.threads(), 2);
    }

    #[test]
    fn dropping_every_runtime_keeps_the_pool_for_the_next_load() {
        let first = Arc::as_ptr(&with_threads(5).pool);
        let again = with_threads(5);
        assert_eq!(first, Arc::as_ptr(&again.pool));
    }
}
