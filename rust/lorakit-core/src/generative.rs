//! Generative classification (docs/generative.md): a causal LM reads a prompt holding the labels and the document,
//! and every label's answer is scored by its summed log-probability after the prompt, so the result is always one
//! of the labels. Prompts are assembled from separately tokenized segments exactly as the contract writes them.
//!
//! The header (instruction and the manifest's labels) is run once per task and its KV cache reused by every
//! prompt that starts with it. Prompts of similar length run together after it, the label continuations of all of
//! them as one batch on their repeated caches, and only the rows that predict answer tokens go through the LM head
//! (one pass over the vocabulary table for all of them).

use std::sync::OnceLock;

use candle_core::Tensor;

use crate::base::Backbone;
use crate::error::{Error, Result};
use crate::lora::LoraWeights;
use crate::models::decoder::{Decoder, DecoderInput, KvCache, SpecialTokens};
use crate::prompt::fewshot_labels;
pub(crate) use crate::prompt::{FewShotExample, Prompt, PromptConfig};
use crate::task::Task;
use crate::tokenize::TextTokenizer;
use crate::{Classification, Embeddings, Encoding};

/// The tokenized, fixed parts of a task's prompts and the header's KV cache (computed on first use).
pub(crate) struct Generative {
    pub prompt: PromptConfig,
    tokens: SpecialTokens,
    pad_id: i64,
    document_prefix: Vec<i64>,
    answer_prefix: Vec<i64>,
    /// The manifest's labels and their header.
    labels: Vec<String>,
    header: Vec<i64>,
    /// `answer(l)` of each manifest label.
    answers: Vec<Vec<i64>>,
    header_cache: OnceLock<KvCache>,
}

impl Generative {
    pub fn new(
        prompt: PromptConfig,
        tokens: SpecialTokens,
        tokenizer: &TextTokenizer,
        labels: &[String],
    ) -> Result<Generative> {
        if prompt.add_bos && tokens.bos.is_none() {
            return Err(Error::Config(
                "prompt.add_bos is true, but the base's config.json has no bos_token_id".into(),
            ));
        }
        let mut g = Generative {
            // The contract's padding: config.json's pad_token_id, else its eos_token_id (the tokenizer's last).
            pad_id: tokens
                .pad
                .or(tokens.eos)
                .map_or(tokenizer.pad_id(), i64::from),
            document_prefix: tokenizer.encode_plain(&prompt.document_prefix)?,
            answer_prefix: tokenizer.encode_plain(&prompt.answer_prefix)?,
            labels: labels.to_vec(),
            header: Vec::new(),
            answers: Vec::new(),
            header_cache: OnceLock::new(),
            prompt,
            tokens,
        };
        g.header = g.header_ids(tokenizer, labels)?;
        g.answers = labels
            .iter()
            .map(|l| g.answer(tokenizer, l))
            .collect::<Result<_>>()?;
        Ok(g)
    }

    /// `[bos if add_bos] + tok(instruction + labels_prefix + label_separator.join(labels))`.
    fn header_ids(&self, tokenizer: &TextTokenizer, labels: &[String]) -> Result<Vec<i64>> {
        let p = &self.prompt;
        let text = format!(
            "{}{}{}",
            p.instruction,
            p.labels_prefix,
            labels.join(&p.label_separator)
        );
        let mut ids: Vec<i64> = match (p.add_bos, self.tokens.bos) {
            (true, Some(bos)) => vec![i64::from(bos)],
            _ => Vec::new(),
        };
        ids.extend(tokenizer.encode_plain(&text)?);
        Ok(ids)
    }

    /// `tok(label + answer_suffix)`; an answer must have at least one token to be scored.
    fn answer(&self, tokenizer: &TextTokenizer, label: &str) -> Result<Vec<i64>> {
        let ids = tokenizer.encode_plain(&format!("{label}{}", self.prompt.answer_suffix))?;
        if ids.is_empty() {
            return Err(Error::Input(format!(
                "label {label:?} with the answer suffix tokenizes to nothing"
            )));
        }
        Ok(ids)
    }

    /// `tok(document_prefix) + doc(d) + tok(answer_prefix)`, with the document's token counts.
    fn block(&self, tokenizer: &TextTokenizer, document: &str) -> Result<(Vec<i64>, usize, usize)> {
        let mut doc = tokenizer.encode_plain(document)?;
        let tokens_in = doc.len();
        doc.truncate(self.prompt.max_document_tokens);
        let used = doc.len();
        let mut ids = self.document_prefix.clone();
        ids.extend(doc);
        ids.extend_from_slice(&self.answer_prefix);
        Ok((ids, tokens_in, used))
    }

    /// `prompt(d, examples)` for the label set `labels`.
    fn assemble(
        &self,
        tokenizer: &TextTokenizer,
        labels: &[String],
        examples: &[FewShotExample],
        document: &str,
    ) -> Result<Prompt> {
        let mut ids = if labels == self.labels.as_slice() {
            self.header.clone()
        } else {
            self.header_ids(tokenizer, labels)?
        };
        for e in examples {
            ids.extend(self.block(tokenizer, &e.document)?.0);
            ids.extend(self.answer(tokenizer, &e.label)?);
        }
        let (block, tokens_in, tokens_used) = self.block(tokenizer, document)?;
        ids.extend(block);
        Ok(Prompt {
            ids,
            tokens_in,
            tokens_used,
        })
    }
}

/// The generative state of `task`, or an Input error naming the right call.
pub(crate) fn state<'t>(task: &'t Task, call: &str) -> Result<&'t Generative> {
    task.generative.as_ref().ok_or_else(|| {
        Error::Input(format!(
            "{call} needs a generative_classification model; this task is {}",
            task.head.kind().name()
        ))
    })
}

/// What one generative call works with.
struct Scorer<'a> {
    decoder: &'a dyn Decoder,
    lora: Option<&'a LoraWeights>,
    gen: &'a Generative,
    task: &'a Task,
}

impl<'a> Scorer<'a> {
    fn new(backbone: &'a Backbone, task: &'a Task, call: &str) -> Result<Scorer<'a>> {
        Ok(Scorer {
            decoder: backbone.decoder()?,
            lora: task.lora.as_ref(),
            gen: state(task, call)?,
            task,
        })
    }

    fn run(&self, ids: &[i64], cache: &mut KvCache) -> Result<Tensor> {
        let mask = vec![1i64; ids.len()];
        let input = DecoderInput {
            batch: 1,
            q_len: ids.len(),
            ids,
            mask: &mask,
        };
        self.decoder.forward(&input, cache, self.lora)
    }

    fn header_cache(&self) -> Result<&'a KvCache> {
        if let Some(cache) = self.gen.header_cache.get() {
            return Ok(cache);
        }
        let mut cache = self.decoder.new_cache(1);
        if !self.gen.header.is_empty() {
            self.run(&self.gen.header, &mut cache)?;
        }
        // Two threads may both compute it; they compute the same cache and one is kept.
        Ok(self.gen.header_cache.get_or_init(|| cache))
    }

    /// Runs whole prompts as one batch on the header cache, for the tokens they all share with it (each after its
    /// shared part, right padded); returns their cache and each prompt's last hidden state `[n, hidden]`.
    fn prefill(&self, prompts: &[&[i64]]) -> Result<(KvCache, Tensor)> {
        if prompts.iter().any(|p| p.is_empty()) {
            return Err(Error::Input("the prompt is empty".into()));
        }
        let header = &self.gen.header;
        // At least each prompt's last token runs now: its hidden state is the one the answer is read from.
        let reuse = prompts
            .iter()
            .map(|ids| {
                let shared = header.iter().zip(*ids).take_while(|(a, b)| a == b).count();
                shared.min(ids.len() - 1)
            })
            .min()
            .unwrap_or(0);
        let start = if reuse == 0 {
            self.decoder.new_cache(1)
        } else if reuse == header.len() {
            self.header_cache()?.clone()
        } else {
            self.header_cache()?.truncated(reuse)?
        };
        let n = prompts.len();
        let mut cache = start.repeat_each(n)?;
        let width = prompts.iter().map(|p| p.len() - reuse).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(n * width);
        let mut mask = Vec::with_capacity(n * width);
        let mut last = Vec::with_capacity(n);
        for (i, p) in prompts.iter().enumerate() {
            let rest = &p[reuse..];
            ids.extend_from_slice(rest);
            ids.extend(std::iter::repeat_n(self.gen.pad_id, width - rest.len()));
            mask.extend(std::iter::repeat_n(1, rest.len()));
            mask.extend(std::iter::repeat_n(0, width - rest.len()));
            last.push((i * width + rest.len() - 1) as u32);
        }
        let input = DecoderInput {
            batch: n,
            q_len: width,
            ids: &ids,
            mask: &mask,
        };
        let hidden = self.decoder.forward(&input, &mut cache, self.lora)?;
        let last = Tensor::from_vec(last, n, hidden.device())?;
        Ok((cache, hidden.index_select(&last, 0)?))
    }

    fn check_length(&self, prompt: &Prompt, answers: &[Vec<i64>]) -> Result<()> {
        let longest = answers.iter().map(Vec::len).max().unwrap_or(0);
        let total = prompt.ids.len() + longest;
        if total > self.task.max_seq_len {
            return Err(Error::Input(format!(
                "the prompt is {} tokens and the longest answer {longest}: {total} exceeds max_seq_len {} \
                 (pass fewer or shorter examples, or a shorter document)",
                prompt.ids.len(),
                self.task.max_seq_len
            )));
        }
        Ok(())
    }

    /// The hidden states whose LM-head rows score `answers` after each prompt (one batch): the prompt's last
    /// token (row 0, the first answer token of every label), then its continuation rows (`answer(l)[..len-1]`
    /// after the prompt, all labels of all prompts as one batch on the repeated prompt caches; row t predicts
    /// `answer(l)[t + 1]`).
    fn answer_rows(&self, prompts: &[&Prompt], answers: &[Vec<i64>]) -> Result<Vec<AnswerRows>> {
        for prompt in prompts {
            self.check_length(prompt, answers)?;
        }
        let vocab = self.decoder.spec().vocab_size as i64;
        if let Some(id) = answers.iter().flatten().find(|&&i| i < 0 || i >= vocab) {
            return Err(Error::Input(format!(
                "answer token id {id} outside the vocabulary (size {vocab})"
            )));
        }
        let ids: Vec<&[i64]> = prompts.iter().map(|p| p.ids.as_slice()).collect();
        let (cache, last) = self.prefill(&ids)?;
        let first: Vec<(usize, usize, i64)> = answers
            .iter()
            .enumerate()
            .map(|(l, a)| (0, l, a[0]))
            .collect();
        let (n, c) = (prompts.len(), answers.len());
        let width = answers.iter().map(|a| a.len() - 1).max().unwrap_or(0);
        if width == 0 {
            return (0..n)
                .map(|i| {
                    Ok(AnswerRows {
                        hidden: last.narrow(0, i, 1)?,
                        targets: first.clone(),
                        labels: c,
                    })
                })
                .collect();
        }
        // One prompt's continuation rows, the same for every prompt: (row in its [c * width] block, target).
        let mut ids = Vec::with_capacity(c * width);
        let mut mask = Vec::with_capacity(c * width);
        let mut rows = Vec::new();
        let mut targets = first;
        for (l, a) in answers.iter().enumerate() {
            for t in 0..width {
                let real = t + 1 < a.len();
                ids.push(if real { a[t] } else { self.gen.pad_id });
                mask.push(i64::from(real));
                if real {
                    targets.push((1 + rows.len(), l, a[t + 1]));
                    rows.push((l * width + t) as u32);
                }
            }
        }
        let mut cache = cache.repeat_each(c)?;
        let input = DecoderInput {
            batch: n * c,
            q_len: width,
            ids: &ids.repeat(n),
            mask: &mask.repeat(n),
        };
        let hidden = self.decoder.forward(&input, &mut cache, self.lora)?;
        let block = (c * width) as u32;
        (0..n)
            .map(|i| {
                let index: Vec<u32> = rows.iter().map(|r| i as u32 * block + r).collect();
                let index = Tensor::from_vec(index, rows.len(), hidden.device())?;
                let picked = hidden.index_select(&index, 0)?;
                Ok(AnswerRows {
                    hidden: Tensor::cat(&[&last.narrow(0, i, 1)?, &picked], 0)?,
                    targets: targets.clone(),
                    labels: c,
                })
            })
            .collect()
    }

    /// `score(l) = sum_t log p(answer(l)[t] | prompt, answer(l)[:t])` of every item, with one LM-head pass over
    /// all their rows (the head streams the whole vocabulary table, so rows are batched, in bounded chunks).
    fn scores(&self, items: &[AnswerRows]) -> Result<Vec<Vec<f32>>> {
        let hidden: Vec<&Tensor> = items.iter().map(|i| &i.hidden).collect();
        let hidden = Tensor::cat(&hidden, 0)?;
        // Per LM-head row: (index into `picked`, target id) of the tokens it scores.
        let mut by_row: Vec<Vec<(usize, i64)>> = vec![Vec::new(); hidden.dim(0)?];
        let (mut k, mut offset) = (0, 0);
        for item in items {
            for &(row, _, target) in &item.targets {
                by_row[offset + row].push((k, target));
                k += 1;
            }
            offset += item.hidden.dim(0)?;
        }
        let mut picked = vec![0f32; k];
        let mut log_z = Vec::with_capacity(by_row.len());
        self.lm_rows(&hidden, |row, logits| {
            log_z.push(log_sum_exp(logits));
            for &(k, target) in &by_row[row] {
                picked[k] = logits[target as usize];
            }
        })?;
        let mut out = Vec::with_capacity(items.len());
        let (mut k, mut offset) = (0, 0);
        for item in items {
            let mut scores = vec![0f64; item.labels];
            for &(row, label, _) in &item.targets {
                scores[label] += f64::from(picked[k]) - log_z[offset + row];
                k += 1;
            }
            offset += item.hidden.dim(0)?;
            out.push(scores.into_iter().map(|s| s as f32).collect());
        }
        Ok(out)
    }

    /// The label scores of every prompt, in order: prompts of similar length run together in bounded groups.
    fn score_prompts(&self, prompts: &[Prompt], answers: &[Vec<i64>]) -> Result<Vec<Vec<f32>>> {
        let longest = answers.iter().map(Vec::len).max().unwrap_or(0);
        let mut out = vec![Vec::new(); prompts.len()];
        for group in groups(prompts, answers.len(), longest) {
            let members: Vec<&Prompt> = group.iter().map(|&i| &prompts[i]).collect();
            let items = self.answer_rows(&members, answers)?;
            for (&i, scores) in group.iter().zip(self.scores(&items)?) {
                out[i] = scores;
            }
        }
        Ok(out)
    }

    /// Calls `f(row, logits)` for every row of `hidden` `[rows, hidden]`, in order, computing the logits in
    /// chunks of `LM_HEAD_ROWS`.
    fn lm_rows(&self, hidden: &Tensor, mut f: impl FnMut(usize, &[f32])) -> Result<()> {
        let rows = hidden.dim(0)?;
        let mut start = 0;
        while start < rows {
            let len = LM_HEAD_ROWS.min(rows - start);
            let logits = self.decoder.logits(&hidden.narrow(0, start, len)?)?;
            let values = logits.flatten_all()?.to_vec1::<f32>()?;
            let vocab = values.len() / len;
            for (i, row) in values.chunks(vocab.max(1)).enumerate() {
                f(start + i, row);
            }
            start += len;
        }
        Ok(())
    }
}

/// Upper bound on cached tokens of one batched pass (prompts x labels x (prompt + answer)): bounds KV memory.
const TOKENS_PER_GROUP: usize = 4096;

/// Prompt indices in groups of similar length (sorted, shortest first), each holding at most
/// `TOKENS_PER_GROUP` tokens once repeated for `copies` labels with `extra` answer tokens (always one prompt at
/// least).
fn groups(prompts: &[Prompt], copies: usize, extra: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..prompts.len()).collect();
    order.sort_by_key(|&i| prompts[i].ids.len());
    let mut out: Vec<Vec<usize>> = Vec::new();
    for i in order {
        let cost = |n: usize| n * copies.max(1) * (prompts[i].ids.len() + extra);
        match out.last_mut() {
            Some(group) if cost(group.len() + 1) <= TOKENS_PER_GROUP => group.push(i),
            _ => out.push(vec![i]),
        }
    }
    out
}

/// Rows of logits one LM-head call computes at most (`rows * vocab` floats live at once).
const LM_HEAD_ROWS: usize = 64;

/// The LM-head rows one prompt needs (`answer_rows`): `[rows, hidden]` and per scored token its
/// (row, label, target id).
struct AnswerRows {
    hidden: Tensor,
    targets: Vec<(usize, usize, i64)>,
    labels: usize,
}

/// `log(sum(exp(row)))`, accumulated in f64.
fn log_sum_exp(row: &[f32]) -> f64 {
    let max = f64::from(row.iter().copied().fold(f32::NEG_INFINITY, f32::max));
    let sum: f64 = row.iter().map(|&v| (f64::from(v) - max).exp()).sum();
    max + sum.ln()
}

/// `classify` of a generative task: the manifest's labels scored after `prompt(text, [])` for each text.
pub(crate) fn classify(backbone: &Backbone, task: &Task, texts: &[&str]) -> Result<Classification> {
    let s = Scorer::new(backbone, task, "classify")?;
    let prompts = texts
        .iter()
        .map(|t| s.gen.assemble(&task.tokenizer, &task.labels, &[], t))
        .collect::<Result<Vec<_>>>()?;
    let logits = s.score_prompts(&prompts, &s.gen.answers)?.concat();
    let tokens_in = prompts.iter().map(|p| p.tokens_in).collect();
    let tokens_used = prompts.iter().map(|p| p.tokens_used).collect();
    Ok(Classification {
        labels: task.labels.clone(),
        num_texts: texts.len(),
        num_labels: task.labels.len(),
        logits,
        unsafe_labels: task.unsafe_labels.clone(),
        tokens_in,
        tokens_used,
        calibration: task.calibration,
    })
}

/// One text classified with labelled examples in the prompt.
pub(crate) fn classify_fewshot(
    backbone: &Backbone,
    task: &Task,
    text: &str,
    examples: &[FewShotExample],
    labels: Option<&[String]>,
) -> Result<Classification> {
    let s = Scorer::new(backbone, task, "classify_fewshot")?;
    let labels = fewshot_labels(task, examples, labels)?;
    let answers = if labels == task.labels {
        s.gen.answers.clone()
    } else {
        labels
            .iter()
            .map(|l| s.gen.answer(&task.tokenizer, l))
            .collect::<Result<Vec<_>>>()?
    };
    let prompt = s.gen.assemble(&task.tokenizer, &labels, examples, text)?;
    let logits = s
        .score_prompts(std::slice::from_ref(&prompt), &answers)?
        .concat();
    // Unsafe labels keep their meaning by name in another label set.
    let unsafe_labels = task.unsafe_labels.as_ref().map(|idx| {
        idx.iter()
            .filter_map(|&i| labels.iter().position(|l| *l == task.labels[i]))
            .collect()
    });
    Ok(Classification {
        num_texts: 1,
        num_labels: labels.len(),
        labels,
        logits,
        unsafe_labels,
        tokens_in: vec![prompt.tokens_in],
        tokens_used: vec![prompt.tokens_used],
        calibration: task.calibration,
    })
}

/// The next-token logits `[texts, vocab]` after each text's `prompt(text, [])`.
pub(crate) fn next_token_logits(
    backbone: &Backbone,
    task: &Task,
    texts: &[&str],
) -> Result<Embeddings> {
    let s = Scorer::new(backbone, task, "next_token_logits")?;
    let vocab = backbone.config.vocab_size();
    let prompts = texts
        .iter()
        .map(|t| s.gen.assemble(&task.tokenizer, &task.labels, &[], t))
        .collect::<Result<Vec<_>>>()?;
    let mut last = vec![None; prompts.len()];
    for group in groups(&prompts, 1, 0) {
        let ids: Vec<&[i64]> = group.iter().map(|&i| prompts[i].ids.as_slice()).collect();
        let hidden = s.prefill(&ids)?.1;
        for (k, &i) in group.iter().enumerate() {
            last[i] = Some(hidden.narrow(0, k, 1)?);
        }
    }
    let last: Vec<Tensor> = last.into_iter().flatten().collect();
    let mut values = Vec::with_capacity(texts.len() * vocab);
    s.lm_rows(&Tensor::cat(&last, 0)?, |_, row| {
        values.extend_from_slice(row)
    })?;
    let tokens_in = prompts.iter().map(|p| p.tokens_in).collect();
    let tokens_used = prompts.iter().map(|p| p.tokens_used).collect();
    Ok(Embeddings {
        num_texts: texts.len(),
        dim: vocab,
        values,
        tokens_in,
        tokens_used,
    })
}

/// `prompt(text, [])` of each text, left padded with the pad id (golden `input_ids`).
pub(crate) fn tokenize(task: &Task, texts: &[&str]) -> Result<Encoding> {
    let gen = state(task, "tokenize")?;
    let rows = texts
        .iter()
        .map(|t| Ok(gen.assemble(&task.tokenizer, &task.labels, &[], t)?.ids))
        .collect::<Result<Vec<_>>>()?;
    let seq_len = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut input_ids = Vec::with_capacity(rows.len() * seq_len);
    let mut attention_mask = Vec::with_capacity(rows.len() * seq_len);
    for row in &rows {
        let pad = seq_len - row.len();
        input_ids.extend(std::iter::repeat_n(gen.pad_id, pad));
        input_ids.extend_from_slice(row);
        attention_mask.extend(std::iter::repeat_n(0, pad));
        attention_mask.extend(std::iter::repeat_n(1, row.len()));
    }
    Ok(Encoding {
        num_texts: rows.len(),
        seq_len,
        input_ids,
        attention_mask,
    })
}

/// Greedy decoding of up to `max_new_tokens` after `prompt(text, examples)` with the KV cache; stops at EOS.
pub(crate) fn generate(
    backbone: &Backbone,
    task: &Task,
    text: &str,
    examples: &[FewShotExample],
    labels: Option<&[String]>,
    max_new_tokens: usize,
) -> Result<String> {
    let s = Scorer::new(backbone, task, "generate")?;
    let labels = fewshot_labels(task, examples, labels)?;
    let prompt = s.gen.assemble(&task.tokenizer, &labels, examples, text)?;
    if prompt.ids.len() + max_new_tokens > task.max_seq_len {
        return Err(Error::Input(format!(
            "the prompt is {} tokens: {max_new_tokens} more exceed max_seq_len {}",
            prompt.ids.len(),
            task.max_seq_len
        )));
    }
    let (mut cache, mut last) = s.prefill(&[&prompt.ids])?;
    let mut out = Vec::new();
    for _ in 0..max_new_tokens {
        let row = s.decoder.logits(&last)?.flatten_all()?.to_vec1::<f32>()?;
        let next = argmax(&row) as i64;
        if s.gen.tokens.eos.is_some_and(|e| i64::from(e) == next) {
            break;
        }
        out.push(next);
        last = s.run(&[next], &mut cache)?;
    }
    task.tokenizer.decode(&out)
}

fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}
