//! Token classification output: IOB2 tags decoded into entity spans with the `first` strategy of docs/FORMAT.md
//! ("Tasks"), in character offsets of the original text.

use crate::error::{Error, Result};

/// One entity found in a text. `start`/`end` count Unicode code points of the original input.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    /// The entity type (`PERSON` for the tags `B-PERSON` / `I-PERSON`).
    pub label: String,
    pub start: usize,
    pub end: usize,
    /// `text[start..end]` of the original input.
    pub text: String,
    /// Mean over the entity's words of the probability of each word's tag.
    pub score: f32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tag {
    Outside,
    Begin(usize),
    Inside(usize),
}

/// The tag set of a token-classification head, by label index.
pub(crate) struct TagScheme {
    tags: Vec<Tag>,
    types: Vec<String>,
}

impl TagScheme {
    /// Labels must be IOB2: `O`, `B-<type>`, `I-<type>`. Label 0 is never assumed to be `O`.
    pub fn parse(labels: &[String]) -> Result<TagScheme> {
        let mut types: Vec<String> = Vec::new();
        let mut type_index = |name: &str| match types.iter().position(|t| t == name) {
            Some(i) => i,
            None => {
                types.push(name.to_string());
                types.len() - 1
            }
        };
        let mut tags = Vec::with_capacity(labels.len());
        for label in labels {
            let tag = match label.split_once('-') {
                _ if label == "O" => Tag::Outside,
                Some(("B", t)) if !t.is_empty() => Tag::Begin(type_index(t)),
                Some(("I", t)) if !t.is_empty() => Tag::Inside(type_index(t)),
                _ => {
                    return Err(Error::Config(format!(
                        "token label {label:?} is not IOB2 (O, B-<type>, I-<type>)"
                    )))
                }
            };
            tags.push(tag);
        }
        Ok(TagScheme { tags, types })
    }
}

/// A word: its first token's tag and probability, and its character span.
struct Word {
    tag: Tag,
    score: f32,
    start: usize,
    end: usize,
}

/// Entities of one text. `probs` is row-major `[tokens, num_labels]` softmax probabilities; `spans` gives each
/// token's character offsets and word index (None for special tokens).
pub(crate) fn decode(
    scheme: &TagScheme,
    text: &str,
    probs: &[f32],
    spans: &[((usize, usize), Option<u32>)],
) -> Vec<Entity> {
    let num_labels = scheme.tags.len();
    let mut words: Vec<Word> = Vec::new();
    let mut current: Option<u32> = None;
    for (t, &((start, end), word)) in spans.iter().enumerate() {
        let Some(word) = word else {
            current = None;
            continue;
        };
        if current == Some(word) {
            if let Some(w) = words.last_mut() {
                w.end = end;
            }
            continue;
        }
        current = Some(word);
        let row = &probs[t * num_labels..(t + 1) * num_labels];
        let best = argmax(row);
        words.push(Word {
            tag: scheme.tags[best],
            score: row[best],
            start,
            end,
        });
    }

    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let slice = |start: usize, end: usize| -> String {
        let byte = |c: usize| chars.get(c).map_or(text.len(), |&(b, _)| b);
        text[byte(start)..byte(end.max(start))].to_string()
    };
    let mut entities = Vec::new();
    // (type, first word, last word) of the entity being built.
    let mut open: Option<(usize, usize, usize)> = None;
    let close = |open: &mut Option<(usize, usize, usize)>, entities: &mut Vec<Entity>| {
        if let Some((kind, first, last)) = open.take() {
            let scores = &words[first..=last];
            let score = scores.iter().map(|w| w.score).sum::<f32>() / scores.len() as f32;
            let (start, end) = (words[first].start, words[last].end);
            entities.push(Entity {
                label: scheme.types[kind].clone(),
                start,
                end,
                text: slice(start, end),
                score,
            });
        }
    };
    for (i, word) in words.iter().enumerate() {
        match word.tag {
            Tag::Outside => close(&mut open, &mut entities),
            Tag::Inside(kind) if matches!(open, Some((k, _, _)) if k == kind) => {
                if let Some(o) = open.as_mut() {
                    o.2 = i;
                }
            }
            Tag::Begin(kind) | Tag::Inside(kind) => {
                close(&mut open, &mut entities);
                open = Some((kind, i, i));
            }
        }
    }
    close(&mut open, &mut entities);
    entities
}

/// The first index of the largest value (as torch's argmax).
fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// `text` with every entity span replaced by `[TYPE]`; overlapping or out-of-range spans are skipped.
pub fn mask_entities(text: &str, entities: &[Entity]) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut sorted: Vec<&Entity> = entities.iter().collect();
    sorted.sort_by_key(|e| (e.start, e.end));
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for e in sorted {
        if e.start < at || e.end > chars.len() || e.start > e.end {
            continue;
        }
        out.extend(&chars[at..e.start]);
        out.push('[');
        out.push_str(&e.label);
        out.push(']');
        at = e.end;
    }
    out.extend(&chars[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheme(labels: &[&str]) -> TagScheme {
        TagScheme::parse(&labels.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    /// One-hot probabilities: token t gets label `tags[t]` with probability 0.9.
    fn probs(tags: &[usize], n: usize) -> Vec<f32> {
        tags.iter()
            .flat_map(|&t| (0..n).map(move |i| if i == t { 0.9 } else { 0.1 / (n - 1) as f32 }))
            .collect()
    }

    #[test]
    fn iob2_words_become_entities_in_character_offsets() {
        // Label 0 is a real tag here: "O" is found by name.
        let s = scheme(&["B-PER", "O", "I-PER", "B-LOC"]);
        let text = "Zoë Ångström lives in Örebro";
        // [CLS] Zo ##ë Ång ##ström lives in Ö ##rebro [SEP]
        let spans = [
            ((0, 0), None),
            ((0, 2), Some(0)),
            ((2, 3), Some(0)),
            ((4, 7), Some(1)),
            ((7, 12), Some(1)),
            ((13, 18), Some(2)),
            ((19, 21), Some(3)),
            ((22, 23), Some(4)),
            ((23, 28), Some(4)),
            ((0, 0), None),
        ];
        // Second sub-tokens carry other tags: only the first sub-token of a word counts.
        let tags = [1, 0, 3, 2, 1, 1, 1, 3, 0, 1];
        let found = decode(&s, text, &probs(&tags, 4), &spans);
        let got: Vec<(&str, usize, usize, &str)> = found
            .iter()
            .map(|e| (e.label.as_str(), e.start, e.end, e.text.as_str()))
            .collect();
        assert_eq!(
            got,
            [("PER", 0, 12, "Zoë Ångström"), ("LOC", 22, 28, "Örebro")]
        );
        assert!((found[0].score - 0.9).abs() < 1e-6);
    }

    #[test]
    fn inside_after_outside_or_another_type_starts_an_entity() {
        let s = scheme(&["O", "B-A", "I-A", "I-B"]);
        let spans: Vec<((usize, usize), Option<u32>)> = (0..5)
            .map(|i| ((2 * i, 2 * i + 1), Some(i as u32)))
            .collect();
        let found = decode(&s, "a b c d e", &probs(&[2, 2, 3, 0, 1], 4), &spans);
        let got: Vec<(&str, usize, usize)> = found
            .iter()
            .map(|e| (e.label.as_str(), e.start, e.end))
            .collect();
        assert_eq!(got, [("A", 0, 3), ("B", 4, 5), ("A", 8, 9)]);
    }

    #[test]
    fn labels_must_be_iob2() {
        for bad in ["PER", "B-", "X-PER", "o"] {
            assert!(TagScheme::parse(&[bad.to_string()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn masking_replaces_spans_by_type() {
        let e = |label: &str, start, end| Entity {
            label: label.into(),
            start,
            end,
            text: String::new(),
            score: 1.0,
        };
        let text = "Zoë lives in Örebro.";
        let masked = mask_entities(text, &[e("LOC", 13, 19), e("PER", 0, 3)]);
        assert_eq!(masked, "[PER] lives in [LOC].");
        assert_eq!(mask_entities(text, &[e("X", 5, 40)]), text);
    }
}
