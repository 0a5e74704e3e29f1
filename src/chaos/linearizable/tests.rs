//! The checker against hand-written histories, simulated ones (correct and
//! corrupted), and an exhaustive search on small random histories.

use super::*;
use crate::chaos::history::{EventType, Operation};
use serde_json::json;
use EventType::{Fail, Info, Ok as Done};

fn op(
    process: u64,
    f: &str,
    value: Value,
    invoked_at: u64,
    completed_at: Option<u64>,
    outcome: EventType,
) -> Operation {
    let (input, output) = if f == "write" {
        (value.clone(), value)
    } else {
        (Value::Null, value)
    };
    Operation {
        process,
        f: f.into(),
        key: "k".into(),
        input,
        outcome,
        output,
        invoked_at,
        completed_at: if outcome == Info { None } else { completed_at },
        node: 1,
    }
}
fn w(p: u64, v: Value, a: u64, b: u64) -> Operation {
    op(p, "write", v, a, Some(b), Done)
}
fn r(p: u64, v: Value, a: u64, b: u64) -> Operation {
    op(p, "read", v, a, Some(b), Done)
}
fn w_info(p: u64, v: Value, a: u64) -> Operation {
    op(p, "write", v, a, None, Info)
}
fn w_fail(p: u64, v: Value, a: u64, b: u64) -> Operation {
    op(p, "write", v, a, Some(b), Fail)
}

fn check(ops: &[Operation]) -> Verdict {
    check_register(ops, &Value::Null, SearchLimits::default())
}

/// (name, history, linearizable?) with the register starting at `null`.
fn cases() -> Vec<(&'static str, Vec<Operation>, bool)> {
    let mut all = ordering_cases();
    all.extend(impossible_reads());
    all
}

/// How concurrent, unknown and failed operations may be ordered (all but
/// one linearizable).
fn ordering_cases() -> Vec<(&'static str, Vec<Operation>, bool)> {
    vec![
        (
            "sequential writes and reads",
            vec![
                r(1, json!(null), 0, 5),
                w(1, json!(1), 10, 20),
                r(2, json!(1), 30, 40),
                w(2, json!(2), 50, 60),
                r(1, json!(2), 70, 80),
            ],
            true,
        ),
        (
            "read concurrent with a write returns the old value",
            vec![w(1, json!(1), 0, 10), w(1, json!(2), 20, 40), r(2, json!(1), 25, 30)],
            true,
        ),
        (
            "read concurrent with a write returns the new value",
            vec![w(1, json!(1), 0, 10), w(1, json!(2), 20, 40), r(2, json!(2), 25, 30)],
            true,
        ),
        (
            "read sees a write that completes after the read",
            vec![w(1, json!(1), 0, 100), r(2, json!(1), 10, 20), r(3, json!(1), 30, 40)],
            true,
        ),
        (
            "invocation at another completion's instant is concurrent",
            vec![w(1, json!(1), 0, 10), r(2, json!(null), 10, 20)],
            true,
        ),
        (
            "info write that later reads observe",
            vec![
                w(1, json!(1), 0, 10),
                w_info(2, json!(2), 20),
                r(3, json!(2), 100, 110),
                r(3, json!(2), 120, 130),
            ],
            true,
        ),
        (
            "info write never observed",
            vec![w(1, json!(1), 0, 10), w_info(2, json!(2), 20), r(3, json!(1), 100, 110)],
            true,
        ),
        (
            "info write takes effect long after its invocation",
            vec![
                w(1, json!(1), 0, 10),
                w_info(2, json!(2), 20),
                w(3, json!(3), 30, 40),
                r(3, json!(3), 50, 60),
                r(3, json!(2), 70, 80),
            ],
            true,
        ),
        (
            "failed write never observed",
            vec![
                w(1, json!(1), 0, 10),
                w_fail(2, json!(2), 20, 30),
                r(3, json!(1), 40, 50),
            ],
            true,
        ),
        (
            "failed and unknown reads constrain nothing",
            vec![
                w(1, json!(1), 0, 10),
                op(2, "read", json!(99), 20, Some(30), Fail),
                op(3, "read", json!(98), 20, None, Info),
                r(4, json!(1), 40, 50),
            ],
            true,
        ),
        (
            "structured values compare as JSON",
            vec![
                w(1, json!({"a": 1, "b": [1, 2]}), 0, 10),
                r(2, json!({"b": [1, 2], "a": 1}), 20, 30),
            ],
            true,
        ),
        (
            "an unread write hides before a concurrent write whose value reads see",
            vec![w(1, json!(2), 0, 10), w(2, json!(9), 0, 15), r(3, json!(2), 16, 20)],
            true,
        ),
        (
            "an unread write cannot hide behind a write that completed before it began",
            vec![
                w(1, json!(2), 0, 10),
                r(2, json!(2), 11, 12),
                w(3, json!(9), 13, 20),
                r(2, json!(2), 21, 30),
            ],
            false,
        ),
        (
            // Reaches the same (set, value) by two routes whose hiding
            // options differ; a memo key without `cover` merges them
            // and wrongly rejects this.
            "of two writes of one value, the longer takes effect after a later write",
            vec![
                w(1, json!(1), 13, 37),
                w(2, json!(3), 41, 71),
                w(3, json!(1), 3, 63),
                r(4, json!(1), 89, 135),
            ],
            true,
        ),
        (
            // The unknown write must be kept for the last read; a memo
            // key that forgot which unknown writes were used would
            // merge the route that spent it early with the one that
            // did not, and wrongly reject this.
            "an unknown write is saved for a later read",
            vec![
                w_info(1, json!(2), 0),
                w(2, json!(2), 1, 50),
                r(3, json!(2), 10, 20),
                w(4, json!(3), 60, 70),
                r(3, json!(2), 80, 90),
            ],
            true,
        ),
    ]
}

/// Reads no order can explain: none is linearizable.
fn impossible_reads() -> Vec<(&'static str, Vec<Operation>, bool)> {
    vec![
        (
            "stale read after a completed write",
            vec![w(1, json!(1), 0, 10), w(1, json!(2), 20, 30), r(2, json!(1), 40, 50)],
            false,
        ),
        (
            "read of a value never written",
            vec![w(1, json!(1), 0, 10), r(2, json!(7), 20, 30)],
            false,
        ),
        (
            "initial value read after a completed write",
            vec![w(1, json!(1), 0, 10), r(2, json!(null), 20, 30)],
            false,
        ),
        (
            "sequential reads go backwards",
            vec![
                w(1, json!(1), 0, 10),
                w(1, json!(2), 20, 100),
                r(2, json!(2), 30, 40),
                r(2, json!(1), 50, 60),
            ],
            false,
        ),
        (
            "read observes a failed write",
            vec![
                w(1, json!(1), 0, 10),
                w_fail(2, json!(2), 20, 30),
                r(3, json!(2), 40, 50),
            ],
            false,
        ),
        (
            "info write observed before its invocation",
            vec![w(1, json!(1), 0, 10), r(2, json!(2), 20, 30), w_info(3, json!(2), 40)],
            false,
        ),
        (
            "info write takes effect at most once",
            vec![
                w(1, json!(1), 0, 10),
                w_info(2, json!(2), 20),
                r(3, json!(2), 30, 40),
                w(4, json!(3), 50, 60),
                r(3, json!(2), 70, 80),
            ],
            false,
        ),
        (
            "a string is not the number it spells",
            vec![w(1, json!(1), 0, 10), r(2, json!("1"), 20, 30)],
            false,
        ),
    ]
}

#[test]
fn known_histories() {
    for (name, history, linearizable) in cases() {
        let verdict = check(&history);
        assert_eq!(verdict.is_linearizable(), linearizable, "{name}: {verdict:?}");
        if !linearizable {
            assert!(
                matches!(verdict, Verdict::NotLinearizable { .. }),
                "{name}: {verdict:?}"
            );
        }
    }
}

#[test]
fn evidence_names_the_prefix_and_the_operation_that_cannot_go_next() {
    let history = [w(1, json!(1), 0, 10), w(1, json!(2), 20, 30), r(7, json!(1), 40, 50)];
    let Verdict::NotLinearizable { evidence } = check(&history) else {
        panic!("should fail")
    };
    assert!(
        evidence.contains("Longest linearizable prefix: 2 operations"),
        "{evidence}"
    );
    assert!(evidence.contains("register holds 2"), "{evidence}");
    assert!(
        evidence.contains("process 7 read 1 (invoked 40, completed 50)"),
        "{evidence}"
    );
    assert!(evidence.contains("reads 1 but the register holds 2"), "{evidence}");
}

#[test]
fn unsupported_or_malformed_operations_are_unknown() {
    let cas = op(1, "cas", json!(1), 0, Some(10), Done);
    assert!(matches!(check(&[cas]), Verdict::Unknown { .. }));
    let backwards = w(1, json!(1), 10, 5);
    assert!(matches!(check(&[backwards]), Verdict::Unknown { .. }));
    assert_eq!(check(&[]), Verdict::Linearizable);
}

/// `writers` concurrent writes, each read by a concurrent read, then two
/// reads that each need a different write to have been the last one: no
/// order works, and proving it means visiting every subset of the writes.
fn pathological(writers: u64) -> Vec<Operation> {
    let mut h: Vec<Operation> = (0..writers).map(|i| w(i, json!(i), 0, 100)).collect();
    h.extend((0..writers).map(|i| r(100 + i, json!(i), 0, 100)));
    h.push(r(1000, json!(0), 200, 210));
    h.push(r(1000, json!(1), 220, 230));
    h
}

#[test]
fn the_state_limit_stops_the_search() {
    let verdict = check_register(&pathological(14), &Value::Null, SearchLimits { max_states: 1000 });
    let Verdict::Unknown { reason } = verdict else {
        panic!("expected Unknown, got {verdict:?}")
    };
    assert!(reason.contains("limit 1000"), "{reason}");
    assert!(matches!(check(&pathological(10)), Verdict::NotLinearizable { .. }));
}

/// splitmix64: a tiny deterministic generator, so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A history produced by a real register: `clients` sequential clients
/// with random overlapping intervals, each operation taking effect at a
/// random instant inside its interval (or, for unknown outcomes, at any
/// later instant or never). Linearizable by construction; values written
/// are unique.
fn simulate(seed: u64, clients: usize, n: usize) -> Vec<Operation> {
    simulate_with(seed, clients, n, None)
}

/// [`simulate`], with written values drawn from `1..=k` when `values` is
/// `Some(k)` (so values repeat) instead of unique.
fn simulate_with(seed: u64, clients: usize, n: usize, values: Option<u64>) -> Vec<Operation> {
    let mut rng = Rng(seed);
    let mut free_at = vec![0u64; clients];
    let mut process: Vec<u64> = (0..clients as u64).collect();
    let mut next_process = clients as u64;
    let mut ops = Vec::with_capacity(n);
    // (instant it takes effect, op index)
    let mut effects: Vec<(u64, usize)> = Vec::new();
    for i in 0..n {
        let c = rng.below(clients as u64) as usize;
        let invoke = free_at[c] + rng.below(20);
        let complete = invoke + 1 + rng.below(60);
        let at = invoke + rng.below(complete - invoke + 1);
        free_at[c] = complete;
        let is_write = rng.chance(50);
        let roll = rng.below(100);
        let outcome = if roll < 85 {
            Done
        } else if roll < 92 {
            Fail
        } else {
            Info
        };
        let value = match (is_write, values) {
            (false, _) => Value::Null,
            (true, None) => json!(i),
            (true, Some(k)) => json!(1 + rng.below(k)),
        };
        ops.push(op(
            process[c],
            if is_write { "write" } else { "read" },
            value,
            invoke,
            Some(complete),
            outcome,
        ));
        match (is_write, outcome) {
            (_, Done) => effects.push((at, i)),
            (true, Info) if rng.chance(50) => effects.push((invoke + rng.below(300), i)),
            _ => {}
        }
        if outcome == Info {
            process[c] = next_process;
            next_process += 1;
        }
    }
    effects.sort_unstable();
    let mut register = Value::Null;
    for (_, i) in effects {
        if ops[i].f == "write" {
            register = ops[i].input.clone();
        } else {
            ops[i].output = register.clone();
        }
    }
    ops
}

fn done(o: &Operation) -> u64 {
    o.completed_at.unwrap_or(u64::MAX)
}

/// Makes one successful read return the value of a write that was
/// overwritten, in real time, before the read began: write `w`
/// completes, then write `w2` runs entirely, then the read starts. With
/// unique values no linearization can explain it.
fn corrupt_stale(ops: &mut [Operation], rng: &mut Rng) -> bool {
    let ok_writes: Vec<usize> = (0..ops.len())
        .filter(|&i| ops[i].f == "write" && ops[i].outcome == Done)
        .collect();
    let reads: Vec<usize> = (0..ops.len())
        .filter(|&i| ops[i].f == "read" && ops[i].outcome == Done)
        .collect();
    for _ in 0..1000 {
        let ri = reads[rng.below(reads.len() as u64) as usize];
        let w2 = ok_writes[rng.below(ok_writes.len() as u64) as usize];
        if done(&ops[w2]) >= ops[ri].invoked_at {
            continue;
        }
        let older: Vec<usize> = ok_writes
            .iter()
            .copied()
            .filter(|&w| done(&ops[w]) < ops[w2].invoked_at)
            .collect();
        if let Some(&w) = older.last() {
            ops[ri].output = ops[w].input.clone();
            return true;
        }
    }
    false
}

/// Makes one successful read return the value of a write invoked only
/// after the read completed.
fn corrupt_future(ops: &mut [Operation], rng: &mut Rng) -> bool {
    for _ in 0..1000 {
        let ri = rng.below(ops.len() as u64) as usize;
        let wi = rng.below(ops.len() as u64) as usize;
        if ops[ri].f == "read"
            && ops[ri].outcome == Done
            && ops[wi].f == "write"
            && ops[wi].outcome != Fail
            && ops[wi].invoked_at > done(&ops[ri])
        {
            ops[ri].output = ops[wi].input.clone();
            return true;
        }
    }
    false
}

#[test]
fn simulated_histories_pass_and_corrupted_ones_fail() {
    for seed in 0..20 {
        let ops = simulate(seed, 1 + (seed as usize % 10), 500);
        let verdict = check(&ops);
        assert!(verdict.is_linearizable(), "seed {seed}: {verdict:?}");
        let mut rng = Rng(seed ^ 0xC0FFEE);
        for corrupt in [corrupt_stale, corrupt_future] {
            let mut bad = ops.clone();
            assert!(corrupt(&mut bad, &mut rng), "seed {seed}: no read to corrupt");
            let verdict = check(&bad);
            assert!(
                matches!(verdict, Verdict::NotLinearizable { .. }),
                "seed {seed}: {verdict:?}"
            );
        }
    }
}

/// 5000 operations from 20 always-busy clients on one register (about
/// fifteen operations in flight at any time, half of them writes). The
/// state budgets make the efficiency check deterministic: plain WGL
/// needs millions of states here; this search about two per operation
/// to accept, and a few hundred thousand to refute. Times are printed
/// (`--nocapture`) for the record.
#[test]
fn large_history_checks_within_a_small_state_budget() {
    let ops = simulate(42, 20, 5000);
    #[allow(clippy::disallowed_methods)] // timing a test, not the state machine
    let start = std::time::Instant::now();
    let verdict = check_register(&ops, &Value::Null, SearchLimits { max_states: 20_000 });
    let took = start.elapsed();
    assert!(verdict.is_linearizable(), "{verdict:?}");
    let mut bad = ops.clone();
    assert!(corrupt_stale(&mut bad, &mut Rng(7)));
    #[allow(clippy::disallowed_methods)]
    let start_bad = std::time::Instant::now();
    let verdict = check_register(&bad, &Value::Null, SearchLimits { max_states: 1_000_000 });
    let took_bad = start_bad.elapsed();
    assert!(matches!(verdict, Verdict::NotLinearizable { .. }), "{verdict:?}");
    eprintln!("5000 ops, 20 clients: linearizable in {took:?}, corrupted rejected in {took_bad:?}");
}

/// An independent, exhaustive checker for tiny histories: tries every
/// order (and every subset of unknown writes) directly, with no entry
/// list, memo table or pruning.
fn brute_force(ops: &[Operation], initial: &Value) -> bool {
    struct Item<'a> {
        write: bool,
        value: &'a Value,
        invoke: u64,
        deadline: Option<u64>,
    }
    let items: Vec<Item> = ops
        .iter()
        .filter_map(|o| match (o.f.as_str(), o.outcome) {
            ("write", Done) => Some(Item {
                write: true,
                value: &o.input,
                invoke: o.invoked_at,
                deadline: o.completed_at,
            }),
            ("write", Info) => Some(Item {
                write: true,
                value: &o.input,
                invoke: o.invoked_at,
                deadline: None,
            }),
            ("read", Done) => Some(Item {
                write: false,
                value: &o.output,
                invoke: o.invoked_at,
                deadline: o.completed_at,
            }),
            _ => None,
        })
        .collect();
    fn go(items: &[Item], placed: &mut Vec<bool>, state: &Value) -> bool {
        if items
            .iter()
            .zip(placed.iter())
            .all(|(it, &p)| p || it.deadline.is_none())
        {
            return true;
        }
        for i in 0..items.len() {
            if placed[i] {
                continue;
            }
            let blocked = (0..items.len())
                .any(|j| j != i && !placed[j] && items[j].deadline.is_some_and(|d| d < items[i].invoke));
            if blocked || (!items[i].write && items[i].value != state) {
                continue;
            }
            placed[i] = true;
            let next = if items[i].write { items[i].value } else { state };
            if go(items, placed, next) {
                return true;
            }
            placed[i] = false;
        }
        false
    }
    go(&items, &mut vec![false; items.len()], initial)
}

/// A small history of `n` operations: either arbitrary (`real` false:
/// random intervals, values and outcomes, mostly not linearizable) or
/// simulated by a real register and then, half the time, one read
/// changed to a random value (mostly linearizable or nearly so, which is
/// where a search that wrongly prunes would say no).
fn small_history(rng: &mut Rng, n: u64, span: u64, values: u64, real: bool) -> Vec<Operation> {
    let value = |rng: &mut Rng| match rng.below(values + 1) {
        0 => Value::Null,
        x => json!(x),
    };
    if real {
        let mut ops = simulate_with(rng.next(), 1 + rng.below(4) as usize, n as usize, Some(values));
        if rng.chance(50) {
            let reads: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].f == "read").collect();
            if !reads.is_empty() {
                let i = reads[rng.below(reads.len() as u64) as usize];
                ops[i].output = value(rng);
            }
        }
        return ops;
    }
    (0..n)
        .map(|p| {
            let invoke = rng.below(span);
            let complete = invoke + rng.below(span / 2);
            let outcome = match rng.below(100) {
                0..70 => Done,
                70..85 => Fail,
                _ => Info,
            };
            if rng.chance(50) {
                let v = value(rng);
                op(p, "write", v, invoke, Some(complete), outcome)
            } else {
                let v = value(rng);
                op(p, "read", v, invoke, Some(complete), outcome)
            }
        })
        .collect()
}

#[test]
fn agrees_with_brute_force_on_small_random_histories() {
    // (cases, max operations, time span, distinct values, simulated)
    let configs = [
        (1500, 7, 30, 3, false),
        (1500, 8, 12, 2, false),
        (1500, 8, 0, 3, true),
        (800, 9, 0, 5, true),
    ];
    for (config, &(cases, max_ops, span, values, real)) in configs.iter().enumerate() {
        let mut rng = Rng(2024 + config as u64);
        let mut verdicts = [0usize; 2];
        for case in 0..cases {
            let n = 2 + rng.below(max_ops - 1);
            let ops = small_history(&mut rng, n, span, values, real);
            let expected = brute_force(&ops, &Value::Null);
            let verdict = check(&ops);
            assert_eq!(
                verdict.is_linearizable(),
                expected,
                "config {config} case {case}: {ops:#?}\n{verdict:?}"
            );
            if !expected {
                assert!(
                    matches!(verdict, Verdict::NotLinearizable { .. }),
                    "case {case}: {verdict:?}"
                );
            }
            verdicts[usize::from(expected)] += 1;
        }
        // Both verdicts must be well represented, or the comparison proves little.
        assert!(
            verdicts[0] > cases / 8 && verdicts[1] > cases / 8,
            "config {config}: {verdicts:?}"
        );
    }
}
