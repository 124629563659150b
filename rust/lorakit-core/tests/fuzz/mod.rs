//! The fuzzing harness of tests/fuzz_loaders.rs: inputs built from real fixture files (arbitrary bytes, byte
//! edits, JSON edits, safetensors-header edits), a bounded runner and a watchdog that turns a hang into a failure.
//!
//! `LORAKIT_FUZZ_CASES` (default 40) sets the cases per target; `LORAKIT_FUZZ_SECONDS` instead runs each target
//! for that long with fresh random seeds (scripts/fuzz.sh). `LORAKIT_FUZZ_SEED` replays one seed.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::Value;

/// One case longer than this is a hang.
const HANG_AFTER: Duration = Duration::from_secs(60);

/// How to damage a file.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Replace the file with these bytes.
    Raw(Vec<u8>),
    /// Edit the real bytes.
    Bytes(Vec<ByteEdit>),
    /// Edit the JSON document (the safetensors header for safetensors files).
    Json(Vec<JsonEdit>),
    /// Rewrite the safetensors length prefix.
    HeaderLength(u64),
    /// Edit tensor entries of a safetensors header so that the file stays valid safetensors (the damage reaches
    /// the loaders behind the format check).
    Tensors(Vec<(usize, TensorEdit)>),
}

#[derive(Debug, Clone)]
pub enum TensorEdit {
    /// Dimensions reversed (same element count, another shape).
    ReverseShape,
    /// Dimensions split or merged: `[a, b]` becomes `[a * b]` or `[1, a, b]`.
    Reshape(bool),
    Rename(String),
    /// Another dtype of the same width (F32 <-> I32 <-> U32).
    Dtype(&'static str),
}

#[derive(Debug, Clone)]
pub enum ByteEdit {
    Set(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
}

/// At the node reached by following `path` (each step picks child `step % len`): replace it, remove it from its
/// parent, or add a member.
#[derive(Debug, Clone)]
pub struct JsonEdit {
    pub path: Vec<usize>,
    pub op: JsonOp,
}

#[derive(Debug, Clone)]
pub enum JsonOp {
    Replace(Value),
    /// Replace with a value of the same type (a number by another number, a string by another string, ...).
    Tweak(u64),
    Remove,
    AddMember(String, Value),
}

const NUMBERS: [i64; 12] = [0, 1, -1, 2, 3, 4, 7, 16, 255, 1 << 31, 1 << 53, i64::MAX];
const WORDS: [&str; 26] = [
    "",
    "F32",
    "F16",
    "BF16",
    "I64",
    "U8",
    "bert",
    "lora",
    "none",
    "all",
    "LORA",
    "SEQ_CLS",
    "embedding",
    "token_classification",
    "sequence_classification",
    "mean",
    "cls",
    "..",
    "/",
    "classifier",
    "query",
    "[PAD]",
    "O",
    "B-PER",
    "gelu",
    "__metadata__",
];

/// Interesting JSON values: extremes, wrong types, the vocabulary the loaders look for.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        prop::sample::select(NUMBERS.to_vec()).prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        prop::sample::select(vec![0.5f64, -0.0, 1e300, -1e300, 1e-300, 3.5]).prop_map(Value::from),
        prop::sample::select(WORDS.to_vec()).prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    let op = prop_oneof![
        2 => json_value().prop_map(JsonOp::Replace),
        5 => any::<u64>().prop_map(JsonOp::Tweak),
        2 => Just(JsonOp::Remove),
        1 => ("[a-z_]{1,12}", json_value()).prop_map(|(k, v)| JsonOp::AddMember(k, v)),
    ];
    (prop::collection::vec(any::<usize>(), 0..5), op).prop_map(|(path, op)| JsonEdit { path, op })
}

fn tensor_edit() -> impl Strategy<Value = TensorEdit> {
    prop_oneof![
        Just(TensorEdit::ReverseShape),
        any::<bool>().prop_map(TensorEdit::Reshape),
        prop_oneof![
            Just("classifier.weight".to_string()),
            Just("base_model.model.classifier.weight".to_string()),
            "[a-z_.]{0,24}",
        ]
        .prop_map(TensorEdit::Rename),
        prop::sample::select(vec!["F32", "I32", "U32"]).prop_map(TensorEdit::Dtype),
    ]
}

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| ByteEdit::Set(p, b)),
        any::<usize>().prop_map(ByteEdit::Truncate),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(p, b)| ByteEdit::Insert(p, b)),
        (any::<usize>(), 1usize..64).prop_map(|(p, n)| ByteEdit::Delete(p, n)),
    ]
}

/// Every kind of mutation (`HeaderLength` only matters for safetensors; elsewhere it is a byte edit too).
pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..512).prop_map(Mutation::Raw),
        3 => prop::collection::vec(byte_edit(), 1..6).prop_map(Mutation::Bytes),
        5 => prop::collection::vec(json_edit(), 1..4).prop_map(Mutation::Json),
        1 => prop_oneof![
            Just(0u64), Just(1), Just(7), Just(u64::MAX), Just(1 << 40), any::<u64>()
        ].prop_map(Mutation::HeaderLength),
        3 => prop::collection::vec((any::<usize>(), tensor_edit()), 1..4).prop_map(Mutation::Tensors),
    ]
}

/// The damaged bytes of `original`. Byte positions fall within the first `hot` bytes (the safetensors header,
/// where a flipped byte matters; the whole file for JSON).
pub fn apply(original: &[u8], mutation: &Mutation, safetensors: bool) -> Vec<u8> {
    match mutation {
        Mutation::Raw(bytes) => bytes.clone(),
        Mutation::Bytes(edits) => {
            let hot = if safetensors {
                header_len(original).map_or(original.len(), |n| (8 + n + 64).min(original.len()))
            } else {
                original.len()
            };
            let mut out = original.to_vec();
            for edit in edits {
                let at = |p: usize| p % (hot.min(out.len()) + 1);
                match edit {
                    ByteEdit::Set(p, b) => {
                        let i = at(*p);
                        if i < out.len() {
                            out[i] = *b;
                        }
                    }
                    ByteEdit::Truncate(p) => out.truncate(at(*p)),
                    ByteEdit::Insert(p, bytes) => {
                        let i = at(*p);
                        out.splice(i..i, bytes.iter().copied());
                    }
                    ByteEdit::Delete(p, n) => {
                        let i = at(*p);
                        out.drain(i..(i + n).min(out.len()));
                    }
                }
            }
            out
        }
        Mutation::Json(edits) if safetensors => with_header(original, |header| {
            edits.iter().for_each(|e| edit_json(header, e));
        }),
        Mutation::Tensors(edits) if safetensors => with_header(original, |header| {
            let Some(tensors) = header.as_object_mut() else {
                return;
            };
            let names: Vec<String> = tensors
                .keys()
                .filter(|k| *k != "__metadata__")
                .cloned()
                .collect();
            for (index, edit) in edits {
                let Some(name) = names.get(index % names.len().max(1)) else {
                    return;
                };
                edit_tensor(tensors, name, edit);
            }
        }),
        Mutation::Tensors(_) => original.to_vec(),
        Mutation::Json(edits) => match serde_json::from_slice::<Value>(original) {
            Ok(mut doc) => {
                edits.iter().for_each(|e| edit_json(&mut doc, e));
                serde_json::to_vec_pretty(&doc).expect("a Value serialises")
            }
            Err(_) => original.to_vec(),
        },
        Mutation::HeaderLength(len) => {
            let mut out = original.to_vec();
            if out.len() >= 8 {
                out[..8].copy_from_slice(&len.to_le_bytes());
            }
            out
        }
    }
}

/// `original` with its safetensors header rewritten by `edit` (unchanged when it has no readable header).
fn with_header(original: &[u8], edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let Some(n) = header_len(original) else {
        return original.to_vec();
    };
    let Ok(mut header) = serde_json::from_slice::<Value>(&original[8..8 + n]) else {
        return original.to_vec();
    };
    edit(&mut header);
    let header = serde_json::to_vec(&header).expect("a Value serialises");
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&header);
    out.extend_from_slice(&original[8 + n..]);
    out
}

fn edit_tensor(tensors: &mut serde_json::Map<String, Value>, name: &str, edit: &TensorEdit) {
    if let TensorEdit::Rename(new_name) = edit {
        if let Some(entry) = tensors.remove(name) {
            tensors.insert(new_name.clone(), entry);
        }
        return;
    }
    let Some(entry) = tensors.get_mut(name) else {
        return;
    };
    match edit {
        TensorEdit::ReverseShape => {
            if let Some(shape) = entry.get_mut("shape").and_then(Value::as_array_mut) {
                shape.reverse();
            }
        }
        TensorEdit::Reshape(merge) => {
            let dims: Vec<u64> = entry["shape"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default();
            let shape: Vec<u64> = if *merge {
                vec![dims.iter().product()]
            } else {
                std::iter::once(1).chain(dims).collect()
            };
            entry["shape"] = Value::from(shape);
        }
        TensorEdit::Dtype(dtype) => entry["dtype"] = Value::from(*dtype),
        TensorEdit::Rename(_) => {}
    }
}

fn header_len(bytes: &[u8]) -> Option<usize> {
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?) as usize;
    (bytes.len() >= 8 + n).then_some(n)
}

fn edit_json(doc: &mut Value, edit: &JsonEdit) {
    // Walk to the parent of the target, remembering which child the last step chose.
    let mut node = doc;
    let mut steps = edit.path.iter().peekable();
    while let Some(&step) = steps.next() {
        let last = steps.peek().is_none();
        let len = match &*node {
            Value::Array(a) => a.len(),
            Value::Object(o) => o.len(),
            _ => 0,
        };
        if len == 0 {
            break;
        }
        let index = step % len;
        if last {
            match (&edit.op, &mut *node) {
                (JsonOp::Remove, Value::Array(a)) => {
                    a.remove(index);
                }
                (JsonOp::Remove, Value::Object(o)) => {
                    let key = o.keys().nth(index).cloned().unwrap_or_default();
                    o.remove(&key);
                }
                (op, parent) => apply_at(child(parent, index), op),
            }
            return;
        }
        node = child(node, index);
    }
    apply_at(node, &edit.op);
}

fn child(node: &mut Value, index: usize) -> &mut Value {
    match node {
        Value::Array(a) => &mut a[index],
        Value::Object(o) => o.values_mut().nth(index).expect("index < len"),
        other => other,
    }
}

fn apply_at(node: &mut Value, op: &JsonOp) {
    match op {
        JsonOp::Replace(v) => *node = v.clone(),
        JsonOp::Tweak(seed) => tweak(node, *seed),
        JsonOp::Remove => *node = Value::Null,
        JsonOp::AddMember(k, v) => match node {
            Value::Object(o) => {
                o.insert(k.clone(), v.clone());
            }
            Value::Array(a) => a.push(v.clone()),
            other => *other = v.clone(),
        },
    }
}

fn tweak(node: &mut Value, seed: u64) {
    let pick = seed as usize;
    match node {
        Value::Number(_) | Value::Null => {
            *node = match seed % 4 {
                0 => Value::from(0.5 + (seed % 7) as f64),
                1 => Value::from(u64::MAX),
                _ => Value::from(NUMBERS[pick % NUMBERS.len()]),
            }
        }
        Value::String(s) => *s = WORDS[pick % WORDS.len()].to_string(),
        Value::Bool(b) => *b = !*b,
        Value::Array(a) if seed.is_multiple_of(2) => {
            a.pop();
        }
        Value::Array(a) => {
            if let Some(last) = a.last().cloned() {
                a.push(last);
            }
        }
        Value::Object(o) => {
            if let Some(key) = o.keys().nth(pick % o.len().max(1)).cloned() {
                o.remove(&key);
            }
        }
    }
}

static CASE_STARTED_MS: AtomicU64 = AtomicU64::new(0);
static CASE: Mutex<String> = Mutex::new(String::new());

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A hang cannot be unwound: the watchdog prints the case and ends the test process.
fn start_watchdog() {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        std::thread::spawn(|| loop {
            std::thread::sleep(Duration::from_secs(1));
            let started = CASE_STARTED_MS.load(Ordering::SeqCst);
            if started != 0 && now_ms().saturating_sub(started) > HANG_AFTER.as_millis() as u64 {
                let case = CASE.lock().map(|c| c.clone()).unwrap_or_default();
                eprintln!("fuzz case ran over {HANG_AFTER:?} (a hang): {case}");
                std::process::exit(101);
            }
        });
    });
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
    )
}

/// Runs `check` on inputs from `strategy`: a bounded, seeded count by default, or for LORAKIT_FUZZ_SECONDS with
/// a new seed per round. A panic (or an `Err` from `check`) fails the test with the shrunk input and the seed.
pub fn fuzz<S: Strategy>(target: &str, strategy: S, check: impl Fn(S::Value) -> Result<(), String>)
where
    S::Value: std::fmt::Debug,
{
    start_watchdog();
    let seconds = env_number("LORAKIT_FUZZ_SECONDS");
    let cases = env_number("LORAKIT_FUZZ_CASES").unwrap_or(40) as u32;
    let deadline = Instant::now() + Duration::from_secs(seconds.unwrap_or(0));
    let mut seed = env_number("LORAKIT_FUZZ_SEED").unwrap_or(0x0104_ac17);
    let (mut rounds, mut total) = (0u64, 0u64);
    loop {
        let config = Config {
            cases,
            failure_persistence: None,
            max_shrink_iters: 256,
            ..Config::default()
        };
        let mut seed_bytes = [0u8; 32];
        seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
        let mut runner = TestRunner::new_with_rng(config, rng);
        let outcome = runner.run(&strategy, |input| {
            let described = format!("{input:?}");
            *CASE.lock().unwrap_or_else(|p| p.into_inner()) = format!(
                "{target} seed {seed}: {}",
                &described[..described.len().min(4000)]
            );
            CASE_STARTED_MS.store(now_ms(), Ordering::SeqCst);
            let result = check(input);
            CASE_STARTED_MS.store(0, Ordering::SeqCst);
            result.map_err(TestCaseError::fail)
        });
        if let Err(failure) = outcome {
            CASE_STARTED_MS.store(0, Ordering::SeqCst);
            panic!("{target}: seed {seed} (LORAKIT_FUZZ_SEED={seed} replays it): {failure}");
        }
        rounds += 1;
        total += u64::from(cases);
        if seconds.is_none() || Instant::now() >= deadline {
            break;
        }
        seed = now_ms() ^ (rounds << 32);
    }
    eprintln!("fuzz {target}: {total} cases in {rounds} rounds, no failure");
}
