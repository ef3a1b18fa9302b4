//! Replays the fuzz corpora (`fuzz/corpus/<target>/`) through the very checks the
//! cargo-fuzz targets run (`scim_bridge::fuzzing`), on stable Rust: every input the
//! fuzzer kept, and every crash it ever found, stays a test.

use std::path::{Path, PathBuf};

use scim_bridge::fuzzing::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_input_passes_its_fuzz_check() {
    let mut failures = Vec::new();
    for &(target, check) in TARGETS {
        let inputs = files(&fuzz_dir().join("corpus").join(target));
        assert!(!inputs.is_empty(), "fuzz/corpus/{target}/ has no inputs");
        for input in inputs {
            let data = std::fs::read(&input).expect("corpus file");
            if let Err(panic) = std::panic::catch_unwind(|| check(&data)) {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                failures.push(format!("{}: {message}", input.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The fuzz crate has exactly one target per check, each calling its check, and every
/// corpus directory belongs to a target.
#[test]
fn fuzz_targets_and_corpora_match_the_checks() {
    let dir = fuzz_dir();
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("fuzz/Cargo.toml");
    for &(target, _) in TARGETS {
        let source = std::fs::read_to_string(dir.join("fuzz_targets").join(format!("{target}.rs")))
            .unwrap_or_else(|e| panic!("fuzz/fuzz_targets/{target}.rs: {e}"));
        assert!(
            source.contains(&format!("scim_bridge::fuzzing::{target}(data)")),
            "fuzz/fuzz_targets/{target}.rs does not call scim_bridge::fuzzing::{target}"
        );
        assert!(
            manifest.contains(&format!("name = \"{target}\"")),
            "fuzz/Cargo.toml has no [[bin]] {target}"
        );
    }
    for path in files(&dir.join("fuzz_targets")) {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        assert!(
            TARGETS.iter().any(|&(t, _)| t == stem),
            "{}: no check in scim_bridge::fuzzing::TARGETS",
            path.display()
        );
    }
    for entry in std::fs::read_dir(dir.join("corpus")).expect("fuzz/corpus") {
        let name = entry.expect("directory entry").file_name();
        let name = name.to_string_lossy();
        assert!(
            TARGETS.iter().any(|&(t, _)| t == name),
            "fuzz/corpus/{name}: no such fuzz target"
        );
    }
}
