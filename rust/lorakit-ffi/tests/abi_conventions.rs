//! The ABI conventions checked on the sources and the generated header, so a new export cannot quietly skip
//! one: every exported body runs under the panic guard, and every opaque type has a `_free`.

use std::path::Path;

const CRATE: &str = env!("CARGO_MANIFEST_DIR");

/// Exports that need no guard, because they cannot panic: dropping a `CString`, matching an integer to a
/// static string.
const UNGUARDED: [&str; 2] = ["lorakit_string_free", "lorakit_status_string"];

/// (name, body) of every `extern "C" fn` in the crate's sources.
fn exports() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(Path::new(CRATE).join("src")).unwrap() {
        let source = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        // Unit tests follow `#[cfg(test)]` and export nothing.
        let source = source.split("#[cfg(test)]").next().unwrap();
        for chunk in source.split("#[no_mangle]").skip(1) {
            let signature = chunk.split('{').next().unwrap();
            let name = signature
                .split("fn ")
                .nth(1)
                .and_then(|rest| rest.split('(').next())
                .expect("an exported fn")
                .trim()
                .to_string();
            assert!(
                signature.contains("extern \"C\""),
                "{name} is not extern \"C\""
            );
            out.push((name, chunk.to_string()));
        }
    }
    out
}

#[test]
fn every_export_runs_under_the_panic_guard() {
    let exports = exports();
    assert!(exports.len() > 20, "found only {} exports", exports.len());
    for (name, body) in exports {
        let guarded = [
            "guarded(",
            "guarded_out(",
            "guarded_value(",
            "catch_unwind(",
        ]
        .iter()
        .any(|g| body.contains(g));
        assert!(
            guarded || UNGUARDED.contains(&name.as_str()),
            "{name} does not run under catch_unwind"
        );
    }
}

#[test]
fn every_opaque_type_has_a_free_and_sizes_are_size_t() {
    let header = std::fs::read_to_string(Path::new(CRATE).join("include/lorakit.h")).unwrap();
    let opaque: Vec<&str> = header
        .lines()
        .filter_map(|l| l.strip_prefix("typedef struct "))
        .filter(|l| !l.contains('{'))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(opaque.contains(&"LorakitModel"), "{opaque:?}");
    for name in opaque {
        let snake: String = name
            .trim_start_matches("Lorakit")
            .chars()
            .enumerate()
            .flat_map(|(i, c)| {
                let sep = (i > 0 && c.is_ascii_uppercase()).then_some('_');
                sep.into_iter()
                    .chain(std::iter::once(c.to_ascii_lowercase()))
            })
            .collect();
        let free = format!("void lorakit_{snake}_free(struct {name} *");
        assert!(header.contains(&free), "{name} has no `{free}...)`");
    }
    for word in ["unsigned long", "uintptr_t", "uint32_t len", "int count"] {
        assert!(
            !header.contains(word),
            "the header uses {word:?}; sizes are size_t"
        );
    }
}
