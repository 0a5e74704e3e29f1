//! Test 8 of issue 16: every committed fuzz corpus and regression input
//! replays through the same `tessera::fuzzing` functions that cargo-fuzz
//! drives, on stable, so CI needs no sanitizer toolchain. A panic in any
//! of them fails the test and names the file.

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.expect("reading a corpus directory").path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

/// Runs `f` on every file of `dir`, reporting the first input that panics.
fn replay(name: &str, f: fn(&[u8]), dir: &Path) -> usize {
    let inputs = files(dir);
    for path in &inputs {
        let data = std::fs::read(path).expect("reading a corpus file");
        let outcome = std::panic::catch_unwind(|| f(&data));
        assert!(outcome.is_ok(), "fuzz target {name} panics on {}", path.display());
    }
    inputs.len()
}

#[test]
fn every_target_has_a_fuzz_target_file_and_a_seed_corpus() {
    for (name, _) in tessera::fuzzing::TARGETS {
        let target = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        assert!(target.is_file(), "{} is missing", target.display());
        let seeds = files(&fuzz_dir().join("corpus").join(name));
        assert!(!seeds.is_empty(), "fuzz/corpus/{name} has no seeds");
    }
    // And no target file lacks its entry point.
    for path in files(&fuzz_dir().join("fuzz_targets")) {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        assert!(
            tessera::fuzzing::TARGETS.iter().any(|(n, _)| *n == stem),
            "fuzz/fuzz_targets/{stem}.rs is not in tessera::fuzzing::TARGETS"
        );
    }
}

#[test]
fn corpora_and_regressions_replay_without_a_panic() {
    for (name, f) in tessera::fuzzing::TARGETS {
        let seeds = replay(name, *f, &fuzz_dir().join("corpus").join(name));
        let regressions = replay(name, *f, &fuzz_dir().join("regressions").join(name));
        eprintln!("{name}: {seeds} corpus inputs, {regressions} regressions replayed");
    }
}

/// The generated seeds (`tessera::fuzzing::seeds`) pass through their
/// targets too; with `TESSERA_WRITE_FUZZ_SEEDS=1` they are (re)written into
/// `fuzz/corpus/<target>/seed-<n>`, the committed seed corpora.
#[test]
fn generated_seeds_replay_and_can_be_written() {
    let write = std::env::var_os("TESSERA_WRITE_FUZZ_SEEDS").is_some();
    let mut n = std::collections::BTreeMap::<&str, usize>::new();
    for (name, data) in tessera::fuzzing::seeds() {
        let (_, f) = tessera::fuzzing::TARGETS
            .iter()
            .find(|(n, _)| *n == name)
            .expect("a seed names a known target");
        f(&data);
        let i = n.entry(name).or_default();
        if write {
            let dir = fuzz_dir().join("corpus").join(name);
            std::fs::create_dir_all(&dir).expect("creating a corpus directory");
            std::fs::write(dir.join(format!("seed-{i:03}")), &data).expect("writing a seed");
        }
        *i += 1;
    }
    assert_eq!(
        n.len(),
        tessera::fuzzing::TARGETS.len(),
        "every target has generated seeds"
    );
}
