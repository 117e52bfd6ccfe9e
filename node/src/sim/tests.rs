//! The simulation's seeds: a fixed set every `cargo test` runs, the
//! replay check, and the sweep and replay modes `scripts/simulate.sh`
//! drives.

use super::{Mix, Outcome, Scenario, run};

/// Seeds per fault mix in CI (6 mixes).
const CI_SEEDS_PER_MIX: u64 = 34;

/// Nodes in a run of `seed`: 3 or 4.
fn nodes_for(seed: u64) -> usize {
    3 + (seed % 2) as usize
}

fn run_seed(seed: u64, mix: Mix) -> Outcome {
    run(seed, mix, nodes_for(seed), Scenario::Steady)
}

/// Seeds per topology change in CI, each under a different fault mix.
const CI_SEEDS_PER_CHANGE: u64 = 6;

/// Runs CI seeds of a topology change; seeds 10000 + change * 1000 + i,
/// the fault mix cycling.
fn ci_change(scenario: Scenario) {
    let per = env_u64("SIM_SEEDS_PER_CHANGE").unwrap_or(CI_SEEDS_PER_CHANGE);
    let index = Scenario::CHANGES
        .iter()
        .position(|s| *s == scenario)
        .unwrap_or(0) as u64;
    let offset = 10_000 + index * 1_000;
    let mut failures = Vec::new();
    for seed in offset..offset + per {
        let mix = Mix::ALL[(seed % 6) as usize];
        let outcome = run(seed, mix, 4, scenario);
        if !outcome.violations.is_empty() {
            failures.push(format!(
                "seed {seed} ({}, {}): {}\n  replay: {}",
                scenario.name(),
                mix.name(),
                outcome.violations.join("; "),
                outcome.replay_command()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn seeds_with_a_join() {
    ci_change(Scenario::Join);
}

#[test]
fn seeds_with_a_decommission() {
    ci_change(Scenario::Decommission);
}

#[test]
fn seeds_with_a_removenode() {
    ci_change(Scenario::RemoveNode);
}

#[test]
fn seeds_with_a_replace() {
    ci_change(Scenario::Replace);
}

#[test]
fn seeds_with_churn() {
    ci_change(Scenario::Churn);
}

/// Seeds of a sweep that once found a defect, and what it was: each
/// must stay clean.
const REGRESSIONS: [(u64, Mix, Scenario, &str); 2] = [
    (
        400_011,
        Mix::Clock,
        Scenario::Churn,
        "a QUORUM read routed by the ring before a join, answered after cleanup freed the range",
    ),
    (
        500_004,
        Mix::Partition,
        Scenario::Churn,
        "the same, under a one-way partition",
    ),
];

#[test]
fn seeds_that_once_failed() {
    let mut failures = Vec::new();
    for (seed, mix, scenario, what) in REGRESSIONS {
        let outcome = run(seed, mix, 4, scenario);
        if !outcome.violations.is_empty() {
            failures.push(format!(
                "seed {seed} ({what}): {}\n  replay: {}",
                outcome.violations.join("; "),
                outcome.replay_command()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Runs `seeds` under `mix`; panics listing every failing seed with the
/// command that replays it.
fn run_all(mix: Mix, seeds: impl Iterator<Item = u64>) {
    let mut failures = Vec::new();
    for seed in seeds {
        let outcome = run_seed(seed, mix);
        if !outcome.violations.is_empty() {
            failures.push(format!(
                "seed {seed} ({}): {}\n  replay: {}",
                mix.name(),
                outcome.violations.join("; "),
                outcome.replay_command()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn ci(mix: Mix) {
    let per_mix = env_u64("SIM_SEEDS_PER_MIX").unwrap_or(CI_SEEDS_PER_MIX);
    // Mix i runs seeds i*1000.. (partition 0, crash 1000, ..., mixed 5000).
    let index = Mix::ALL.iter().position(|m| *m == mix).unwrap_or(0) as u64;
    let offset = index * 1_000;
    run_all(mix, offset..offset + per_mix);
}

#[test]
fn seeds_with_partitions() {
    ci(Mix::Partition);
}

#[test]
fn seeds_with_crashes() {
    ci(Mix::Crash);
}

#[test]
fn seeds_with_pauses() {
    ci(Mix::Pause);
}

#[test]
fn seeds_with_clock_skew() {
    ci(Mix::Clock);
}

#[test]
fn seeds_with_delay_and_loss() {
    ci(Mix::Lossy);
}

#[test]
fn seeds_with_every_fault() {
    ci(Mix::Mixed);
}

/// A seed replays exactly: the same history, event for event.
#[test]
fn a_seed_replays_the_identical_history() {
    for (seed, mix) in [(7, Mix::Mixed), (8, Mix::Crash)] {
        let first = run_seed(seed, mix);
        let second = run_seed(seed, mix);
        assert!(first.history.len() > 50, "a run does something");
        if first.history_hash() != second.history_hash() {
            let at = first
                .history
                .iter()
                .zip(&second.history)
                .position(|(a, b)| a != b)
                .unwrap_or(first.history.len().min(second.history.len()));
            panic!(
                "seed {seed} diverged at event {at}:\n  {:?}\n  {:?}",
                first.history.get(at),
                second.history.get(at)
            );
        }
    }
}

/// `scripts/simulate.sh --seeds N`: SIM_SEEDS seeds from SIM_FIRST_SEED,
/// under SIM_MIX (default: every mix in turn).
#[test]
#[ignore = "long: run by scripts/simulate.sh"]
fn sweep() {
    let count = env_u64("SIM_SEEDS").unwrap_or(1_000);
    let first = env_u64("SIM_FIRST_SEED").unwrap_or(100_000);
    let only = std::env::var("SIM_MIX").ok().and_then(|m| Mix::parse(&m));
    let change = std::env::var("SIM_CHANGE")
        .ok()
        .and_then(|c| Scenario::parse(&c))
        .unwrap_or(Scenario::Steady);
    let mut failures = Vec::new();
    for seed in first..first + count {
        let mix = only.unwrap_or(Mix::ALL[(seed % 6) as usize]);
        let outcome = match change {
            Scenario::Steady => run_seed(seed, mix),
            change => run(seed, mix, 4, change),
        };
        if !outcome.violations.is_empty() {
            let line = format!(
                "FAILED seed {seed} ({}): {}\n  replay: {}",
                mix.name(),
                outcome.violations.join("; "),
                outcome.replay_command()
            );
            eprintln!("{line}");
            failures.push(line);
        } else if (seed - first + 1).is_multiple_of(100) {
            eprintln!("{} seeds passed", seed - first + 1);
        }
    }
    assert!(failures.is_empty(), "{} seeds failed", failures.len());
}

/// `scripts/simulate.sh --replay SEED --mix MIX`: prints the run's history.
#[test]
#[ignore = "run by scripts/simulate.sh --replay"]
fn replay() {
    let seed = env_u64("SIM_SEED").unwrap_or(0);
    let mix = std::env::var("SIM_MIX")
        .ok()
        .and_then(|m| Mix::parse(&m))
        .unwrap_or(Mix::Mixed);
    let scenario = std::env::var("SIM_CHANGE")
        .ok()
        .and_then(|c| Scenario::parse(&c))
        .unwrap_or(Scenario::Steady);
    let outcome = match scenario {
        Scenario::Steady => run_seed(seed, mix),
        change => run(seed, mix, 4, change),
    };
    for event in &outcome.history {
        println!("{event}");
    }
    println!("history hash {:016x}", outcome.history_hash());
    for violation in &outcome.violations {
        println!("VIOLATION {violation}");
    }
    assert!(outcome.violations.is_empty(), "seed {seed} failed");
}
