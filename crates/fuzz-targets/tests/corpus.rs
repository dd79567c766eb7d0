//! Replays every fuzz target's corpus (`corpus/TARGET/*`, kept in the repository and grown by
//! `cargo xtask fuzz`) through the same functions libFuzzer ran: what the fuzzer found
//! interesting stays tested on stable, on every CI run. A panic in a target fails the test and
//! names the input.

use std::path::Path;

#[test]
fn every_corpus_input_replays_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut total = 0;
    for (name, target) in steward_fuzz_targets::TARGETS {
        let dir = root.join(name);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<Vec<_>, _>>()
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        assert!(!entries.is_empty(), "{}: empty corpus", dir.display());
        for path in entries {
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{name}: {} panicked", path.display());
            total += 1;
        }
    }
    assert!(total >= steward_fuzz_targets::TARGETS.len());
    println!("replayed {total} corpus inputs");
}
