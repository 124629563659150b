//! Caller input: batches, empty and huge texts, options, devices, and the result helpers.

mod common;

use common::*;
use lorakit_core::{Calibration, Classification, DeviceSpec, ErrorKind, LoadOptions, Model};

fn model() -> Model {
    Model::load(&fixture("tiny_bert_lora_a"), true, &opts()).unwrap()
}

#[test]
fn empty_batch_is_an_input_error() {
    let err = model().classify(&[], None).expect_err("empty batch");
    assert_eq!(err.kind(), ErrorKind::Input);
    assert_eq!(
        model().tokenize(&[], None).err().unwrap().kind(),
        ErrorKind::Input
    );
}

#[test]
fn batch_above_max_batch_is_an_input_error() {
    let small = LoadOptions {
        max_batch: 2,
        ..opts()
    };
    let m = Model::load(&fixture("tiny_bert_lora_a"), true, &small).unwrap();
    assert_eq!(m.classify(&["a", "b"], None).unwrap().num_texts, 2);
    let err = m.classify(&["a", "b", "c"], None).expect_err("too large");
    assert_eq!(err.kind(), ErrorKind::Input);
    assert!(err.to_string().contains("max_batch"), "{err}");
}

#[test]
fn empty_text_is_classified_from_special_tokens() {
    let c = model().classify(&[""], None).unwrap();
    assert_eq!(c.tokens_in, vec![2]);
    assert_eq!(c.tokens_used, vec![2]);
    assert!(c.logits.iter().all(|v| v.is_finite()));
}

#[test]
fn huge_text_is_truncated_and_reported() {
    let m = model();
    let huge = "payment ".repeat(200_000);
    let c = m.classify(&[huge.as_str(), "short text"], None).unwrap();
    assert_eq!(
        c.tokens_in[0], 200_002,
        "every word is one token, plus [CLS] and [SEP]"
    );
    assert_eq!(c.tokens_used[0], m.task_info(None).unwrap().max_seq_len);
    assert_eq!(c.tokens_in[1], c.tokens_used[1]);
    assert!(c.logits.iter().all(|v| v.is_finite()));
    // Truncation keeps the text's head: same result as a text cut to exactly max_seq_len tokens.
    let cut = "payment ".repeat(m.task_info(None).unwrap().max_seq_len - 2);
    let d = m.classify(&[cut.as_str()], None).unwrap();
    let worst = c.logits[..c.num_labels]
        .iter()
        .zip(&d.logits)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        worst <= 1e-5,
        "truncated text differs from its head by {worst}"
    );
}

#[test]
fn padding_does_not_change_a_row() {
    let m = model();
    let alone = m.classify(&["card declined"], None).unwrap();
    let long = "a much longer neighbour text that forces padding of the short one in this batch";
    let batched = m.classify(&[long, "card declined"], None).unwrap();
    let row = &batched.logits[batched.num_labels..];
    let worst = row
        .iter()
        .zip(&alone.logits)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst <= 1e-5, "padding changed logits by {worst}");
}

#[test]
fn tokenize_pads_right_with_the_pad_id() {
    let e = model()
        .tokenize(&["hello", "hello world again"], None)
        .unwrap();
    assert_eq!(e.num_texts, 2);
    assert_eq!(e.input_ids.len(), 2 * e.seq_len);
    let first_len = e.attention_mask[..e.seq_len]
        .iter()
        .filter(|&&m| m == 1)
        .count();
    assert!(first_len < e.seq_len);
    assert!(e.attention_mask[..first_len].iter().all(|&m| m == 1));
    assert!(
        e.input_ids[first_len..e.seq_len].iter().all(|&id| id == 0),
        "[PAD] is id 0 in this vocabulary"
    );
}

#[test]
fn bad_options_are_input_errors() {
    let zero_threads = LoadOptions {
        threads: Some(0),
        ..opts()
    };
    assert_eq!(
        Model::load(&fixture("tiny_bert_full"), true, &zero_threads)
            .err()
            .unwrap()
            .kind(),
        ErrorKind::Input
    );
    let zero_batch = LoadOptions {
        max_batch: 0,
        ..opts()
    };
    assert_eq!(
        Model::load(&fixture("tiny_bert_full"), true, &zero_batch)
            .err()
            .unwrap()
            .kind(),
        ErrorKind::Input
    );
    let one = LoadOptions {
        threads: Some(1),
        ..opts()
    };
    assert_eq!(
        Model::load(&fixture("tiny_bert_full"), true, &one)
            .unwrap()
            .threads(),
        1
    );
}

#[test]
fn missing_directory_is_an_io_error() {
    let err = Model::load(
        std::path::Path::new("/nonexistent/lorakit-model"),
        true,
        &opts(),
    )
    .err()
    .unwrap();
    assert_eq!(err.kind(), ErrorKind::Io);
}

#[test]
fn device_specs_parse() {
    assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
    assert_eq!("cuda".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
    assert_eq!("CUDA:1".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(1));
    for bad in ["gpu", "cuda:", "cuda:x", ""] {
        assert_eq!(
            bad.parse::<DeviceSpec>().err().unwrap().kind(),
            ErrorKind::Input,
            "{bad:?}"
        );
    }
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_without_the_feature_is_unsupported() {
    let cuda = LoadOptions {
        device: DeviceSpec::Cuda(0),
        ..opts()
    };
    let err = Model::load(&fixture("tiny_bert_full"), true, &cuda)
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
}

#[test]
fn probabilities_and_top_k() {
    let c = Classification {
        labels: vec!["a".into(), "b".into(), "c".into()],
        num_texts: 2,
        num_labels: 3,
        logits: vec![1.0, 3.0, 2.0, 1000.0, 0.0, -1000.0],
        unsafe_labels: Some(vec![1, 2]),
        tokens_in: vec![3, 3],
        tokens_used: vec![3, 3],
        calibration: Calibration::default(),
    };
    let p = c.probabilities();
    for row in p.chunks(3) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(row.iter().all(|v| v.is_finite()));
    }
    let top = c.top_k(0, 2);
    assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 2]);
    assert!((top[0].1 - p[1]).abs() < 1e-7);
    assert_eq!(c.top_k(1, 10).len(), 3, "k is capped at num_labels");
    assert_eq!(c.top_k(1, 1)[0].0, 0);
    assert!(c.top_k(2, 1).is_empty(), "row out of range");
    // Verdicts come from the declared label indices, never from label text.
    assert_eq!(c.is_unsafe(0), Some(true));
    assert!((c.unsafe_score(0).unwrap() - (p[1] + p[2])).abs() < 1e-6);
    assert_eq!(c.is_unsafe(1), Some(false));
    assert_eq!(c.is_unsafe(2), None);
    let undeclared = Classification {
        unsafe_labels: None,
        ..c
    };
    assert_eq!(undeclared.is_unsafe(0), None);
    assert_eq!(undeclared.unsafe_score(0), None);
    assert!(
        !undeclared.needs_review(0),
        "no threshold: nothing needs review"
    );
}

#[test]
fn calibrated_probabilities_drive_top_k_unsafe_scores_and_review() {
    let plain = Classification {
        labels: vec!["a".into(), "b".into(), "c".into()],
        num_texts: 2,
        num_labels: 3,
        logits: vec![1.0, 3.0, 2.0, 0.2, 0.0, 0.1],
        unsafe_labels: Some(vec![1, 2]),
        tokens_in: vec![3, 3],
        tokens_used: vec![3, 3],
        calibration: Calibration::default(),
    };
    let calibration = Calibration {
        temperature: 2.0,
        review_threshold: Some(0.5),
    };
    let c = Classification {
        calibration,
        ..plain.clone()
    };
    let p = c.probabilities();
    // softmax(logits / 2) of row 0, by hand.
    let e: Vec<f32> = [1.0f32, 3.0, 2.0].iter().map(|v| (v / 2.0).exp()).collect();
    let sum: f32 = e.iter().sum();
    for (j, &ej) in e.iter().enumerate() {
        assert!((p[j] - ej / sum).abs() < 1e-6, "{p:?}");
    }
    assert_eq!(c.logits, plain.logits, "logits stay raw");
    assert!(c.top_probability(0).unwrap() < plain.top_probability(0).unwrap());
    assert_eq!(
        c.top_k(0, 1)[0].0,
        plain.top_k(0, 1)[0].0,
        "the argmax is unchanged"
    );
    assert!((c.top_k(0, 1)[0].1 - p[1]).abs() < 1e-7);
    assert!((c.unsafe_score(0).unwrap() - (p[1] + p[2])).abs() < 1e-6);
    // Row 0: top 0.51 (confident enough); row 1: a near-uniform row.
    assert!(c.top_probability(0).unwrap() >= 0.5 && !c.needs_review(0));
    assert!(c.needs_review(1));
    assert!(!c.needs_review(2), "out of range");
    assert!(!plain.needs_review(1), "no threshold");
}

#[test]
fn metadata_accessors() {
    let m = model();
    assert_eq!(
        m.task_info(None).unwrap().labels,
        ["negative", "neutral", "positive"]
    );
    assert_eq!(m.task_info(None).unwrap().task, "sequence_classification");
    assert_eq!(m.name(), "tiny_bert_lora_a");
    assert_eq!(m.task_info(None).unwrap().max_seq_len, 32);
}
