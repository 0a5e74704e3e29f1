//! The nemesis: a seeded random schedule of faults, and how each fault is
//! applied to and healed on a [`Backend`]. Faults run one at a time, each
//! for a few seconds followed by a quiet gap, so every fault's effect and
//! recovery can be read off the timeline. The same seed, node count,
//! duration and rate give the same schedule.

use std::time::Duration;

use anyhow::Result;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::Backend;

/// Kinds of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// SIGKILL a random node; restart it when the fault heals.
    Kill,
    /// SIGSTOP a random node; SIGCONT it when the fault heals.
    Pause,
    /// Split the nodes into two random sides that cannot talk.
    Partition,
    /// Cut the current leader off from every other node.
    LeaderIsolate,
    /// Kill every node at once, then restart them all.
    RestartAll,
    /// Remove a random follower and add a brand-new node in its place.
    Membership,
}

impl FaultKind {
    /// Every kind, as `--faults` lists them by default.
    pub const ALL: [FaultKind; 6] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::LeaderIsolate,
        FaultKind::RestartAll,
        FaultKind::Membership,
    ];

    /// The kind's name in `--faults` and in reports.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::LeaderIsolate => "leader-isolate",
            FaultKind::RestartAll => "restart-all",
            FaultKind::Membership => "membership",
        }
    }

    /// Parses `--faults`' comma-separated list.
    pub fn parse_list(s: &str) -> Result<Vec<FaultKind>> {
        let mut out = Vec::new();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match FaultKind::ALL.iter().find(|f| f.name() == name) {
                Some(f) => out.push(*f),
                None => anyhow::bail!(
                    "unknown fault {name:?}; use kill, pause, partition, leader-isolate, restart-all, membership"
                ),
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// One scheduled fault. Times are offsets from the start of the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduledFault {
    /// What the fault does.
    pub kind: FaultKind,
    /// When it starts.
    pub start_ms: u64,
    /// How long until it is healed.
    pub duration_ms: u64,
    /// A random number the fault uses to pick its victims, so that victims
    /// too follow from the seed (given the same cluster state).
    pub pick: u64,
}

/// The schedule for a run: faults of the given kinds, about `per_minute`
/// a minute, each lasting 2–8 s, none in the first 3 s or the last 5 s,
/// never overlapping.
pub fn schedule(seed: u64, kinds: &[FaultKind], duration: Duration, per_minute: f64) -> Vec<ScheduledFault> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    if kinds.is_empty() || per_minute <= 0.0 {
        return out;
    }
    let end = duration.as_millis() as u64;
    let mean_gap = (60_000.0 / per_minute) as u64;
    let mut t = 3_000u64;
    loop {
        let duration_ms = rng.random_range(2_000..=8_000u64);
        if t + duration_ms + 5_000 > end {
            break;
        }
        let kind = kinds[rng.random_range(0..kinds.len())];
        out.push(ScheduledFault {
            kind,
            start_ms: t,
            duration_ms,
            pick: rng.random(),
        });
        let gap = rng.random_range(mean_gap / 2..=mean_gap.max(1) * 3 / 2).max(1_000);
        t += duration_ms + gap;
    }
    out
}

/// What a fault did, for healing it and for the report.
#[derive(Debug, Clone, Serialize)]
pub struct AppliedFault {
    /// The kind of fault applied.
    pub kind: FaultKind,
    /// Nodes the fault acted on (killed, paused, isolated, removed...).
    pub nodes: Vec<u64>,
    /// For partitions: the two sides.
    pub sides: Option<(Vec<u64>, Vec<u64>)>,
    /// For membership: the node added.
    pub added: Option<u64>,
    /// A line for people ("kill node 2"), also the report's label for its window.
    pub description: String,
}

/// Applies `f` to the backend. `leader` is the current leader, if known.
pub async fn apply(backend: &mut dyn Backend, f: &ScheduledFault, leader: Option<u64>) -> Result<AppliedFault> {
    let ids = backend.node_ids();
    let victim = ids[(f.pick % ids.len() as u64) as usize];
    let mut applied = AppliedFault {
        kind: f.kind,
        nodes: vec![],
        sides: None,
        added: None,
        description: String::new(),
    };
    match f.kind {
        FaultKind::Kill => {
            backend.kill(victim).await?;
            applied.nodes = vec![victim];
            applied.description = format!("kill -9 node {victim}");
        }
        FaultKind::Pause => {
            backend.pause(victim).await?;
            applied.nodes = vec![victim];
            applied.description = format!("pause node {victim}");
        }
        FaultKind::Partition => {
            let mut rng = rand::rngs::StdRng::seed_from_u64(f.pick);
            let mut shuffled = ids.clone();
            for i in (1..shuffled.len()).rev() {
                shuffled.swap(i, rng.random_range(0..=i));
            }
            let cut = rng.random_range(1..shuffled.len().max(2));
            let (a, b) = shuffled.split_at(cut.min(shuffled.len()));
            let (a, b) = (a.to_vec(), b.to_vec());
            backend.partition(&a, &b).await?;
            applied.description = format!("partition {a:?} | {b:?}");
            applied.sides = Some((a, b));
        }
        FaultKind::LeaderIsolate => {
            let l = leader.unwrap_or(victim);
            let rest: Vec<u64> = ids.iter().copied().filter(|i| *i != l).collect();
            backend.partition(&[l], &rest).await?;
            applied.nodes = vec![l];
            applied.description = format!("isolate leader {l}");
            applied.sides = Some((vec![l], rest));
        }
        FaultKind::RestartAll => {
            for id in &ids {
                backend.kill(*id).await?;
            }
            for id in &ids {
                backend.start(*id).await?;
            }
            applied.nodes = ids.clone();
            applied.description = "kill -9 and restart every node".into();
        }
        FaultKind::Membership => {
            let followers: Vec<u64> = ids.iter().copied().filter(|i| Some(*i) != leader).collect();
            let out = followers[(f.pick % followers.len().max(1) as u64) as usize % followers.len().max(1)];
            let added = backend.remove_and_replace(out).await?;
            applied.nodes = vec![out];
            applied.added = Some(added);
            applied.description = format!("remove node {out}, add node {added}");
        }
    }
    Ok(applied)
}

/// Undoes what [`apply`] did (a removed node stays removed).
pub async fn heal(backend: &mut dyn Backend, a: &AppliedFault) -> Result<()> {
    match a.kind {
        FaultKind::Kill => {
            for id in &a.nodes {
                backend.start(*id).await?;
            }
        }
        FaultKind::Pause => {
            for id in &a.nodes {
                backend.resume(*id).await?;
            }
        }
        FaultKind::Partition | FaultKind::LeaderIsolate => backend.heal_network().await?,
        FaultKind::RestartAll | FaultKind::Membership => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_reproducible_bounded_and_sequential() {
        let kinds = FaultKind::parse_list("kill,pause,partition").unwrap();
        let a = schedule(7, &kinds, Duration::from_secs(120), 6.0);
        let b = schedule(7, &kinds, Duration::from_secs(120), 6.0);
        assert_eq!(a, b, "same seed, same schedule");
        assert_ne!(a, schedule(8, &kinds, Duration::from_secs(120), 6.0));
        assert!(a.len() >= 5, "{} faults", a.len());
        for w in a.windows(2) {
            assert!(w[0].start_ms + w[0].duration_ms < w[1].start_ms, "faults never overlap");
        }
        let last = a.last().unwrap();
        assert!(
            last.start_ms + last.duration_ms + 5_000 <= 120_000,
            "healed before the end"
        );
        assert!(a.iter().all(|f| kinds.contains(&f.kind)));
        assert!(FaultKind::parse_list("kill,meteor").is_err());
    }
}
