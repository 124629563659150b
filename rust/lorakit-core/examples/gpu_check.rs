//! Native side of `scripts/gpu_check.py`: golden vectors and classify throughput on one device (build with
//! `--features cuda` for `cuda:N`). Prints one JSON object per line.
//!
//!   gpu_check golden DEVICE MODEL_DIR...                      golden.safetensors of each dir, merged and runtime
//!   gpu_check bench DEVICE MODEL_DIR TEXTS_JSON BATCH REPEATS  median classify time of the first BATCH texts

use std::path::Path;
use std::time::Instant;

use lorakit_core::{resolve_base, DeviceSpec, LoadOptions, Model};
use serde_json::{json, Value};

const WARMUP: usize = 3;

fn options(device: DeviceSpec) -> LoadOptions {
    LoadOptions {
        device,
        ..LoadOptions::default()
    }
}

/// One golden report line for `dir` loaded merged or with its adapter applied at runtime.
fn golden_line(dir: &Path, merged: bool, device: DeviceSpec) -> Value {
    let mode = if merged { "merged" } else { "runtime" };
    let base = json!({"kind": "golden", "dir": dir.display().to_string(), "mode": mode});
    let report = Model::load(dir, merged, &options(device)).and_then(|m| m.verify_golden(None));
    let mut line = base.as_object().cloned().unwrap_or_default();
    match report {
        Ok(r) => {
            line.extend([
                ("ok".into(), json!(r.ok)),
                ("num_texts".into(), json!(r.num_texts)),
                ("max_abs_diff".into(), json!(r.max_abs_diff)),
                ("tolerance".into(), json!(r.tolerance)),
                ("ids_equal".into(), json!(r.ids_equal)),
                ("argmax_equal".into(), json!(r.argmax_equal)),
                ("entities_equal".into(), json!(r.entities_equal)),
                ("prob_max_abs_diff".into(), json!(r.prob_max_abs_diff)),
                ("prob_tolerance".into(), json!(r.prob_tolerance)),
            ]);
        }
        Err(e) => {
            line.insert("ok".into(), json!(false));
            line.insert("error".into(), json!(e.to_string()));
        }
    }
    Value::Object(line)
}

fn golden(device: DeviceSpec, dirs: &[String]) -> Vec<Value> {
    let mut lines = Vec::new();
    for dir in dirs.iter().map(Path::new) {
        if dir.join("model.safetensors").is_file() {
            lines.push(golden_line(dir, true, device));
        }
        if dir.join("adapter_model.safetensors").is_file() {
            // The runtime adapter needs its base; a machine without it says so instead of failing the check.
            match resolve_base(dir) {
                Ok(_) => lines.push(golden_line(dir, false, device)),
                Err(e) => lines.push(json!({
                    "kind": "golden", "dir": dir.display().to_string(), "mode": "runtime",
                    "skipped": format!("base not found: {e}"),
                })),
            }
        }
    }
    lines
}

fn bench(device: DeviceSpec, args: &[String]) -> Result<Value, String> {
    let [dir, texts, batch, repeats] = args else {
        return Err("bench needs MODEL_DIR TEXTS_JSON BATCH REPEATS".into());
    };
    let batch: usize = batch.parse().map_err(|e| format!("BATCH {batch:?}: {e}"))?;
    let repeats: usize = repeats
        .parse()
        .map_err(|e| format!("REPEATS {repeats:?}: {e}"))?;
    let all: Vec<String> = std::fs::read(texts)
        .map_err(|e| format!("{texts}: {e}"))
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| format!("{texts}: {e}")))?;
    if all.len() < batch || batch == 0 || repeats == 0 {
        return Err(format!(
            "{texts} holds {} texts; BATCH {batch} and REPEATS {repeats} must be 1..",
            all.len()
        ));
    }
    let texts: Vec<&str> = all.iter().take(batch).map(String::as_str).collect();
    let model = Model::load(Path::new(dir), true, &options(device)).map_err(|e| e.to_string())?;
    let mut times = Vec::with_capacity(repeats);
    let mut out = None;
    for i in 0..WARMUP + repeats {
        // classify returns host logits, so each call includes the device's work and the copy back.
        let started = Instant::now();
        let c = model.classify(&texts, None).map_err(|e| e.to_string())?;
        if i >= WARMUP {
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
        out = Some(c);
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let c = out.ok_or("no classify call ran")?;
    Ok(json!({
        "kind": "bench", "batch": batch, "seq_len": c.tokens_used.iter().max(), "repeats": repeats,
        "median_ms": median, "min_ms": times[0], "seq_per_s": batch as f64 / median * 1e3,
        "num_labels": c.num_labels, "logits": c.logits,
    }))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: gpu_check golden DEVICE MODEL_DIR... | gpu_check bench DEVICE MODEL_DIR TEXTS_JSON BATCH REPEATS";
    let (Some(cmd), Some(device)) = (args.first(), args.get(1)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let device: DeviceSpec = match device.parse() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let lines = match cmd.as_str() {
        "golden" => Ok(golden(device, &args[2..])),
        "bench" => bench(device, &args[2..]).map(|v| vec![v]),
        _ => Err(usage.to_string()),
    };
    match lines {
        Ok(lines) => lines.iter().for_each(|l| println!("{l}")),
        Err(e) => {
            eprintln!("gpu_check: {e}");
            std::process::exit(1);
        }
    }
}
