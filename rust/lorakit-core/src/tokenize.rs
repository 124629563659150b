//! Tokenization from `tokenizer.json`, matching the Python tokenizer called with
//! `truncation=True, max_length=max_seq_len, padding=True` (right truncation, right padding to the longest).

use rayon::prelude::*;
use tokenizers::{PostProcessor, Tokenizer, TruncationDirection};

use crate::error::{Error, Result};
use crate::Encoding;

/// One text after truncation, before padding.
pub(crate) struct TokenizedText {
    pub ids: Vec<i64>,
    /// Tokens the text produced (specials included) before truncation.
    pub tokens_in: usize,
    /// Per token (with `Spans::Keep`): `(start, end)` in characters of the original text and the index of the word
    /// it belongs to (None for special tokens).
    pub spans: Vec<((usize, usize), Option<u32>)>,
}

/// Whether token offsets and word ids are needed (token classification) or not (faster).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spans {
    Skip,
    Keep,
}

pub(crate) struct TextTokenizer {
    inner: Tokenizer,
    pad_id: i64,
    /// Special tokens the post-processor adds around a single text ([CLS] ... [SEP] = 2).
    added_tokens: usize,
}

impl TextTokenizer {
    /// `tokenizer_config` (optional) names the pad token exactly as Python's `tokenizer.pad_token_id` sees it.
    pub fn from_bytes(
        tokenizer_json: &[u8],
        tokenizer_config: Option<&[u8]>,
    ) -> Result<TextTokenizer> {
        crate::tokenizer_check::check_post_processor(tokenizer_json)?;
        let mut inner = Tokenizer::from_bytes(tokenizer_json)
            .map_err(|e| Error::Format(format!("tokenizer.json: {e}")))?;
        // Truncation and padding are applied here, per call; the file's own settings must not interfere.
        let file_pad_id = inner.get_padding().map(|p| p.pad_id);
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| Error::Format(format!("tokenizer.json: {e}")))?;
        let pad_id = match tokenizer_config.map(pad_token_name).transpose()?.flatten() {
            Some(token) => inner.token_to_id(&token).ok_or_else(|| {
                Error::Config(format!("pad token {token:?} is not in the vocabulary"))
            })?,
            None => file_pad_id
                .or_else(|| inner.token_to_id("[PAD]"))
                .ok_or_else(|| Error::Config("the tokenizer defines no pad token".into()))?,
        };
        let added_tokens = inner
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(false));
        let tokenizer = TextTokenizer {
            inner,
            pad_id: pad_id as i64,
            added_tokens,
        };
        // A tokenizer that cannot encode a plain text is a damaged file: say so at load, not on the first call.
        tokenizer
            .encode("a probe", usize::MAX, Spans::Keep)
            .map_err(|e| {
                Error::Format(format!("tokenizer.json cannot tokenize a probe text: {e}"))
            })?;
        Ok(tokenizer)
    }

    /// Tokenizes one text, truncating from the right so that the result (specials included) fits `max_len`.
    /// A panic inside the tokenizers crate (inconsistent files it does not check) becomes an error.
    pub fn encode(&self, text: &str, max_len: usize, spans: Spans) -> Result<TokenizedText> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.encode_unguarded(text, max_len, spans)
        }))
        .unwrap_or_else(|_| {
            Err(Error::Format(
                "tokenizer.json: the tokenizer failed inside the tokenizers library".into(),
            ))
        })
    }

    fn encode_unguarded(&self, text: &str, max_len: usize, spans: Spans) -> Result<TokenizedText> {
        if max_len <= self.added_tokens {
            return Err(Error::Config(format!(
                "max_seq_len {max_len} leaves no room next to {} special tokens",
                self.added_tokens
            )));
        }
        let tok_err = |e| Error::Input(format!("tokenization failed: {e}"));
        let mut raw = self.inner.encode_fast(text, false).map_err(tok_err)?;
        let tokens_in = raw.len() + self.added_tokens;
        if tokens_in > max_len {
            raw.truncate(max_len - self.added_tokens, 0, TruncationDirection::Right);
        }
        let full = self.inner.post_process(raw, None, true).map_err(tok_err)?;
        let ids = full.get_ids().iter().map(|&i| i as i64).collect();
        let spans = match spans {
            Spans::Skip => Vec::new(),
            Spans::Keep => {
                // Offsets from one full pass: post-processors that trim offsets (byte-level BPE) must run once.
                let spanned = self
                    .inner
                    .encode_char_offsets(text, true)
                    .map_err(tok_err)?;
                let mut content = spanned
                    .get_offsets()
                    .iter()
                    .zip(spanned.get_word_ids())
                    .zip(spanned.get_special_tokens_mask())
                    .filter(|(_, &special)| special == 0)
                    .map(|((&offsets, &word), _)| (offsets, word));
                full.get_special_tokens_mask()
                    .iter()
                    .map(|&special| match special {
                        0 => content.next().unwrap_or(((0, 0), None)),
                        _ => ((0, 0), None),
                    })
                    .collect()
            }
        };
        Ok(TokenizedText {
            ids,
            tokens_in,
            spans,
        })
    }

    /// The ids of `text` without special tokens (`tokenizer(text, add_special_tokens=False)`).
    pub fn encode_plain(&self, text: &str) -> Result<Vec<i64>> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.inner
                .encode_fast(text, false)
                .map(|e| e.get_ids().iter().map(|&i| i64::from(i)).collect())
                .map_err(|e| Error::Input(format!("tokenization failed: {e}")))
        }))
        .unwrap_or_else(|_| {
            Err(Error::Format(
                "tokenizer.json: the tokenizer failed inside the tokenizers library".into(),
            ))
        })
    }

    /// Text of `ids`, special tokens skipped.
    pub fn decode(&self, ids: &[i64]) -> Result<String> {
        let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
        self.inner
            .decode(&ids, true)
            .map_err(|e| Error::Compute(format!("decoding failed: {e}")))
    }

    pub fn pad_id(&self) -> i64 {
        self.pad_id
    }

    /// Tokenizes a batch in parallel (on the caller's thread pool).
    pub fn encode_all(
        &self,
        texts: &[&str],
        max_len: usize,
        spans: Spans,
    ) -> Result<Vec<TokenizedText>> {
        texts
            .par_iter()
            .map(|t| self.encode(t, max_len, spans))
            .collect()
    }

    /// Right-pads `rows` to the longest one.
    pub fn pad(&self, rows: &[&TokenizedText]) -> Encoding {
        let seq_len = rows.iter().map(|r| r.ids.len()).max().unwrap_or(0);
        let mut input_ids = Vec::with_capacity(rows.len() * seq_len);
        let mut attention_mask = Vec::with_capacity(rows.len() * seq_len);
        for row in rows {
            let pad = seq_len - row.ids.len();
            input_ids.extend_from_slice(&row.ids);
            input_ids.extend(std::iter::repeat_n(self.pad_id, pad));
            attention_mask.extend(std::iter::repeat_n(1, row.ids.len()));
            attention_mask.extend(std::iter::repeat_n(0, pad));
        }
        Encoding {
            num_texts: rows.len(),
            seq_len,
            input_ids,
            attention_mask,
        }
    }
}

/// `pad_token` of tokenizer_config.json: a string, or an AddedToken object with `content`.
fn pad_token_name(config: &[u8]) -> Result<Option<String>> {
    let v: serde_json::Value = serde_json::from_slice(config)
        .map_err(|e| Error::Format(format!("tokenizer_config.json: {e}")))?;
    Ok(match v.get("pad_token") {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Object(o)) => o
            .get("content")
            .and_then(|c| c.as_str())
            .map(str::to_string),
        _ => None,
    })
}
