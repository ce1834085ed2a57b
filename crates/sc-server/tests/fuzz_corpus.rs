//! Replays every saved fuzz input (`fuzz/corpus/<target>`, `fuzz/regressions/<target>`) through
//! the fuzz targets' own entry points, which this test compiles from `fuzz/src/lib.rs`: every
//! crash the fuzzers found stays a regression test under `cargo test`.

#[path = "../../../fuzz/src/lib.rs"]
#[allow(dead_code, unreachable_pub, missing_docs)]
mod sc_fuzz;

use std::path::Path;

#[test]
fn every_saved_fuzz_input_replays_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut failures = Vec::new();
    let mut replayed = 0;
    for target in sc_fuzz::TARGETS {
        let mut per_target = 0;
        for kind in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(kind).join(target)) else {
                continue;
            };
            for entry in entries {
                let path = entry.expect("directory entry").path();
                let data = std::fs::read(&path).expect("readable input");
                if std::panic::catch_unwind(|| sc_fuzz::run(target, &data)).is_err() {
                    failures.push(path.display().to_string());
                }
                per_target += 1;
            }
        }
        assert!(
            per_target > 0,
            "no saved inputs for the fuzz target {target}"
        );
        replayed += per_target;
    }
    assert!(failures.is_empty(), "fuzz inputs that fail: {failures:#?}");
    eprintln!("replayed {replayed} fuzz inputs");
}
