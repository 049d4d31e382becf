//! The fuzz targets' properties (`drone_discord::fuzz_props`) on every
//! `cargo test`, without nightly or libFuzzer: each runs over its seed corpus
//! (`fuzz/corpus/<target>/`, which holds every input that ever found a bug,
//! plus the Drone fixtures for the renderer) and over a few hundred inputs
//! generated from those seeds by a fixed-seed mutator, so a failure replays.
//! `make fuzz` runs the same properties under libFuzzer for longer.
use std::path::{Path, PathBuf};

use drone_discord::fuzz_props::TARGETS;

/// Generated inputs per target on top of the corpus.
const GENERATED: usize = 300;

/// The seed directories of a target, as `scripts/fuzz-smoke.sh` passes them to libFuzzer.
fn seed_dirs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![root.join("fuzz/corpus").join(target)];
    if target == "drone_render" {
        dirs.push(root.join("test/fixtures/drone"));
        dirs.push(root.join("test/fixtures/synthetic"));
    }
    dirs
}

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in seed_dirs(target) {
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) => panic!("seed directory {} unreadable: {e}", dir.display()),
        };
        entries.sort();
        for path in entries {
            if path.extension().is_some_and(|e| e == "py" || e == "md") || !path.is_file() {
                continue;
            }
            match std::fs::read(&path) {
                Ok(bytes) => out.push((path, bytes)),
                Err(e) => panic!("seed {} unreadable: {e}", path.display()),
            }
        }
    }
    out
}

/// xorshift64*: the mutator's fixed-seed randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A seed with a few bytes replaced, inserted, removed or duplicated, or pure noise.
fn mutate(rng: &mut Rng, seeds: &[(PathBuf, Vec<u8>)]) -> Vec<u8> {
    let Some((_, seed)) = seeds.get(rng.below(seeds.len() + 1)) else {
        return (0..rng.below(512)).map(|_| rng.next() as u8).collect();
    };
    let mut b = seed.clone();
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(b.len() + 1);
        match rng.below(4) {
            0 if at < b.len() => b[at] = rng.next() as u8,
            1 => b.insert(at, rng.next() as u8),
            2 if at < b.len() => {
                b.remove(at);
            }
            _ => {
                let end = (at + rng.below(32)).min(b.len());
                let copy = b[at..end].to_vec();
                b.splice(at..at, copy);
            }
        }
    }
    b
}

#[test]
fn every_target_holds_over_its_seeds_and_generated_inputs() {
    for (index, (target, check)) in TARGETS.iter().enumerate() {
        let seeds = seeds(target);
        assert!(!seeds.is_empty(), "{target} has no seed corpus");
        for (path, bytes) in &seeds {
            let result = std::panic::catch_unwind(|| check(bytes));
            assert!(
                result.is_ok(),
                "{target}: seed {} breaks the property",
                path.display()
            );
        }
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ index as u64);
        for round in 0..GENERATED {
            let input = mutate(&mut rng, &seeds);
            let result = std::panic::catch_unwind(|| check(&input));
            assert!(
                result.is_ok(),
                "{target}: generated input {round} breaks the property: {input:?}"
            );
        }
        println!(
            "{target}: {} seeds and {GENERATED} generated inputs hold",
            seeds.len()
        );
    }
}
