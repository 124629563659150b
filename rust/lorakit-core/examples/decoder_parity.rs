//! Parity of a real causal LM base with torch: `decoder_parity BASE REF_DIR`, where REF_DIR was written by
//! `scripts/decoder_fixtures.py --real BASE REF_DIR`. Prints max |diff| of the short prompt's full logits and of the
//! long text's next-token logits, for the base and for base + LoRA (runtime and merged), with timings; exits 1
//! when one exceeds the tolerance (default 1e-3, `LORAKIT_PARITY_TOLERANCE`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use lorakit_core::{CausalLm, LoadOptions};
use safetensors::SafeTensors;

fn ints(st: &SafeTensors, name: &str) -> Vec<i64> {
    st.tensor(name)
        .unwrap()
        .data()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn floats(st: &SafeTensors, name: &str) -> Vec<f32> {
    st.tensor(name)
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(
            0.0,
            |m, d| if d.is_nan() { f32::INFINITY } else { m.max(d) },
        )
}

fn check(model: &CausalLm, st: &SafeTensors, prefix: &str, tolerance: f32) -> bool {
    let vocab = model.vocab_size();
    let short = ints(st, "short_input_ids");
    let started = Instant::now();
    let got = model
        .logits(&short, &vec![1; short.len()], 1, short.len())
        .unwrap();
    let short_time = started.elapsed();
    let d_short = max_diff(&got, &floats(st, &format!("{prefix}_short_logits")));
    let long = ints(st, "long_input_ids");
    let started = Instant::now();
    let got = model
        .logits(&long, &vec![1; long.len()], 1, long.len())
        .unwrap();
    let long_time = started.elapsed();
    let last = &got[(long.len() - 1) * vocab..];
    let d_long = max_diff(last, &floats(st, &format!("{prefix}_long_last_logits")));
    println!(
        "{prefix}: short ({} tokens, all logits) max |diff| {d_short:.3e} in {short_time:.2?}; long ({} tokens, \
         next-token) max |diff| {d_long:.3e} in {long_time:.2?}",
        short.len(),
        long.len()
    );
    d_short <= tolerance && d_long <= tolerance
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: decoder_parity BASE_DIR REFERENCE_DIR");
        std::process::exit(2);
    }
    let (base, reference) = (Path::new(&args[1]), PathBuf::from(&args[2]));
    let tolerance: f32 = std::env::var("LORAKIT_PARITY_TOLERANCE")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(1e-3);
    let bytes = std::fs::read(reference.join("reference.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let opts = LoadOptions::default();
    let adapter = reference.join("adapter");
    let mut ok = true;
    for (what, adapter, merged) in [
        ("base", None, false),
        ("lora", Some(adapter.as_path()), false),
        ("lora", Some(adapter.as_path()), true),
    ] {
        let started = Instant::now();
        let model = CausalLm::load(base, adapter, merged, &opts).unwrap();
        println!(
            "loaded {what} (merged={merged}) in {:.2?}",
            started.elapsed()
        );
        ok &= check(&model, &st, what, tolerance);
    }
    if !ok {
        eprintln!("max |diff| above {tolerance}");
        std::process::exit(1);
    }
}
