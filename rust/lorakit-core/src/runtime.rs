//! Where and how compute runs: device, a dedicated thread pool, and the batched classification path shared by
//! merged models and adapters on a shared base.

use candle_core::Device;
use rayon::ThreadPool;

use crate::base::Backbone;
use crate::error::{Error, Result};
use crate::heads::Head;
use crate::kernels::AttentionMask;
use crate::models::EncoderInput;
use crate::task::Task;
use crate::tokenize::TokenizedText;
use crate::{Classification, DeviceSpec, LoadOptions};

/// Upper bound on `rows * seq_len` per forward pass: keeps attention buffers bounded for large batches.
const TOKENS_PER_CHUNK: usize = 8192;

pub(crate) struct Runtime {
    pub device: Device,
    pool: ThreadPool,
    pub max_batch: usize,
    pub verify_checksums: bool,
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
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("lorakit-compute-{i}"))
            .build()
            .map_err(|e| Error::Internal(format!("cannot start {threads} compute threads: {e}")))?;
        Ok(Runtime {
            device: make_device(opts.device)?,
            pool,
            max_batch: opts.max_batch,
            verify_checksums: opts.verify_checksums,
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

    /// Tokenizes and classifies `texts` with `backbone` + `task`.
    pub fn classify(
        &self,
        backbone: &Backbone,
        task: &Task,
        texts: &[&str],
    ) -> Result<Classification> {
        self.check_batch(texts.len())?;
        self.install(|| {
            let rows = task.tokenizer.encode_all(texts, task.max_seq_len)?;
            let logits = self.logits(backbone, task, &rows)?;
            Ok(Classification {
                labels: task.labels.clone(),
                num_texts: texts.len(),
                num_labels: task.labels.len(),
                logits,
                tokens_in: rows.iter().map(|r| r.tokens_in).collect(),
                tokens_used: rows.iter().map(|r| r.ids.len()).collect(),
            })
        })
    }

    /// Row-major logits for already tokenized rows. Rows are sorted by length and run in chunks, each padded
    /// only to its own longest row; results come back in input order.
    pub fn logits(
        &self,
        backbone: &Backbone,
        task: &Task,
        rows: &[TokenizedText],
    ) -> Result<Vec<f32>> {
        let Head::SequenceClassification(head) = &task.head;
        let num_labels = task.labels.len();
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| rows[i].ids.len());
        let mut out = vec![0f32; rows.len() * num_labels];
        let mut start = 0;
        while start < order.len() {
            let mut end = start + 1;
            while end < order.len()
                && (end + 1 - start) * rows[order[end]].ids.len() <= TOKENS_PER_CHUNK
            {
                end += 1;
            }
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
            let hidden = backbone
                .encoder
                .forward(&input, task.lora.as_ref(), head.rows())?;
            let logits = head.forward(&hidden, &mask)?.to_vec2::<f32>()?;
            for (k, &i) in order[start..end].iter().enumerate() {
                out[i * num_labels..(i + 1) * num_labels].copy_from_slice(&logits[k]);
            }
            start = end;
        }
        Ok(out)
    }
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
