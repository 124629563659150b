//! Times `Model::classify` on a cases file, the Rust reference for the Go binding's overhead:
//!
//! ```text
//! bench_classify --model DIR --threads N --cases FILE --json OUT [--runtime] [--warmup 3] [--repeats 30]
//!                [--budget 10s]
//! ```
//!
//! FILE is a JSON list of `{"name", "batch", "seq_len", "texts"}` (exactly `batch` texts each). The timing loop
//! is `lorakit-bench --mode native`'s: `--warmup` untimed calls, then up to `--repeats` timed calls, stopping
//! once the timed calls took `--budget` in all; the median is reported. OUT receives one row per case,
//! `{"backend": "native-rust" | "native-rust-runtime", "case", "batch", "seq_len", "median_ms", "seq_per_s"}`;
//! a short table goes to stderr. Exit status 2 for usage errors, 1 when a case fails.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use lorakit_core::{LoadOptions, Model};
use serde::Serialize;
use serde_json::Value;

struct Config {
    model: PathBuf,
    threads: usize,
    cases: PathBuf,
    out: PathBuf,
    runtime: bool,
    warmup: usize,
    repeats: usize,
    budget: Duration,
}

/// One output row, fields in the order `lorakit-bench` writes them.
#[derive(Serialize)]
struct Row {
    backend: &'static str,
    case: String,
    batch: usize,
    seq_len: usize,
    median_ms: f64,
    seq_per_s: f64,
}

struct Case {
    name: String,
    batch: usize,
    seq_len: usize,
    texts: Vec<String>,
}

const USAGE: &str =
    "usage: bench_classify --model DIR --threads N --cases FILE --json OUT [--runtime] \
                     [--warmup 3] [--repeats 30] [--budget 10s]";

/// A duration as Go writes one ("10s", "500ms", "1m", "250us") or plain seconds ("2.5").
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let scale = match unit {
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        _ => return Err(format!("duration {s:?}: unknown unit {unit:?}")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("duration {s:?} is not a number with a unit"))?;
    if !value.is_finite() || value <= 0.0 {
        return Err(format!("duration {s:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

fn parse_args(args: &[String]) -> Result<Config, String> {
    let mut cfg = Config {
        model: PathBuf::new(),
        threads: 0,
        cases: PathBuf::new(),
        out: PathBuf::new(),
        runtime: false,
        warmup: 3,
        repeats: 30,
        budget: Duration::from_secs(10),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let name = flag.trim_start_matches('-');
        if name == "runtime" {
            cfg.runtime = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let count = || -> Result<usize, String> {
            value
                .parse()
                .map_err(|_| format!("{flag} {value:?} is not a non-negative integer"))
        };
        match name {
            "model" => cfg.model = value.into(),
            "threads" => cfg.threads = count()?,
            "cases" => cfg.cases = value.into(),
            "json" => cfg.out = value.into(),
            "warmup" => cfg.warmup = count()?,
            "repeats" => cfg.repeats = count()?,
            "budget" => cfg.budget = parse_duration(value)?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    for (flag, path) in [
        ("--model", &cfg.model),
        ("--cases", &cfg.cases),
        ("--json", &cfg.out),
    ] {
        if path.as_os_str().is_empty() {
            return Err(format!("{flag} is required"));
        }
    }
    if cfg.repeats == 0 {
        return Err("--repeats must be positive".into());
    }
    Ok(cfg)
}

fn read_cases(path: &PathBuf) -> Result<Vec<Case>, String> {
    let data = std::fs::read_to_string(path).map_err(|e| format!("reading cases: {e}"))?;
    let list: Vec<Value> =
        serde_json::from_str(&data).map_err(|e| format!("cases {}: {e}", path.display()))?;
    if list.is_empty() {
        return Err(format!("cases {}: no cases", path.display()));
    }
    list.iter()
        .enumerate()
        .map(|(i, v)| {
            let name = v["name"].as_str().unwrap_or_default().to_string();
            let size = |key: &str| v[key].as_u64().filter(|&n| n > 0).map(|n| n as usize);
            let texts: Option<Vec<String>> = v["texts"]
                .as_array()
                .map(|a| a.iter().map(|t| t.as_str().map(str::to_string)).collect())
                .unwrap_or(None);
            match (name.is_empty(), size("batch"), size("seq_len"), texts) {
                (true, ..) => Err(format!("cases {}: case {i} has no name", path.display())),
                (_, Some(batch), Some(seq_len), Some(texts)) if texts.len() == batch => Ok(Case {
                    name,
                    batch,
                    seq_len,
                    texts,
                }),
                (_, Some(batch), Some(_), Some(texts)) => Err(format!(
                    "case {name}: {} texts for a batch of {batch}",
                    texts.len()
                )),
                _ => Err(format!(
                    "case {name}: batch and seq_len must be positive and texts a list of strings"
                )),
            }
        })
        .collect()
}

fn median(times: &[Duration]) -> Duration {
    let mut s = times.to_vec();
    s.sort();
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2
    }
}

/// `warmup` untimed calls, then up to `repeats` timed ones until they used `budget`; (median, calls timed).
fn time_calls(
    mut call: impl FnMut() -> lorakit_core::Result<()>,
    warmup: usize,
    repeats: usize,
    budget: Duration,
) -> lorakit_core::Result<(Duration, usize)> {
    for _ in 0..warmup {
        call()?;
    }
    let mut times = Vec::with_capacity(repeats);
    let mut spent = Duration::ZERO;
    for _ in 0..repeats {
        let start = Instant::now();
        call()?;
        let d = start.elapsed();
        times.push(d);
        spent += d;
        if spent >= budget {
            break;
        }
    }
    Ok((median(&times), times.len()))
}

fn ms(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1e6
}

fn bench(cfg: &Config, cases: &[Case]) -> Result<Vec<Row>, String> {
    let opts = LoadOptions {
        threads: (cfg.threads != 0).then_some(cfg.threads),
        ..LoadOptions::default()
    };
    let model = Model::load(&cfg.model, !cfg.runtime, &opts)
        .map_err(|e| format!("loading {}: {e}", cfg.model.display()))?;
    let backend = if cfg.runtime {
        "native-rust-runtime"
    } else {
        "native-rust"
    };
    let mut rows = Vec::new();
    for c in cases {
        eprintln!("{backend}: {} ...", c.name);
        let texts: Vec<&str> = c.texts.iter().map(String::as_str).collect();
        let (med, n) = time_calls(
            || model.classify(std::hint::black_box(&texts), None).map(drop),
            cfg.warmup,
            cfg.repeats,
            cfg.budget,
        )
        .map_err(|e| format!("case {}: {e}", c.name))?;
        eprintln!(
            "{backend}: {}: median {:.2} ms of {n} calls",
            c.name,
            ms(med)
        );
        rows.push(Row {
            backend,
            case: c.name.clone(),
            batch: c.batch,
            seq_len: c.seq_len,
            median_ms: ms(med),
            seq_per_s: c.batch as f64 / med.as_secs_f64(),
        });
    }
    Ok(rows)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cfg, cases) = match parse_args(&args).and_then(|cfg| Ok((read_cases(&cfg.cases)?, cfg))) {
        Ok((cases, cfg)) => (cfg, cases),
        Err(e) => {
            eprintln!("bench_classify: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let rows = match bench(&cfg, &cases) {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("bench_classify: {e}");
            return ExitCode::from(1);
        }
    };
    let text = serde_json::to_string_pretty(&rows).expect("rows are plain JSON");
    if let Err(e) = std::fs::write(&cfg.out, text + "\n") {
        eprintln!("bench_classify: writing {}: {e}", cfg.out.display());
        return ExitCode::from(1);
    }
    eprintln!(
        "{:<20} {:<16} {:>6} {:>7} {:>10} {:>10}",
        "backend", "case", "batch", "seq_len", "median_ms", "seq/s"
    );
    for r in &rows {
        eprintln!(
            "{:<20} {:<16} {:>6} {:>7} {:>10.2} {:>10.1}",
            r.backend, r.case, r.batch, r.seq_len, r.median_ms, r.seq_per_s
        );
    }
    ExitCode::SUCCESS
}
