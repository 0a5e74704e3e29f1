//! The run directory's report: `summary.json` and `report.html`, a
//! timeline of throughput, errors and latency with the fault windows
//! shaded, as in Jepsen's latency plots (SVG drawn with `plotters`).

use std::path::Path;

use anyhow::Result;
use plotters::prelude::*;
use serde::Serialize;

use super::checkers::{Availability, CheckResult};
use super::history::{EventType, Operation};

/// A fault window on the timeline, in seconds since the start.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    /// What happened in the window (the fault's description).
    pub label: String,
    /// When the fault started.
    pub start_s: f64,
    /// When it was healed.
    pub end_s: f64,
}

/// p99 latency (ms) of completed operations, per second of completion.
fn p99_per_second(ops: &[Operation]) -> Vec<(f64, f64)> {
    let mut buckets: std::collections::BTreeMap<u64, Vec<u64>> = std::collections::BTreeMap::new();
    for o in ops {
        if let Some(done) = o.completed_at {
            buckets
                .entry(done / 1_000_000_000)
                .or_default()
                .push((done - o.invoked_at) / 1_000_000);
        }
    }
    buckets
        .into_iter()
        .map(|(s, mut v)| {
            v.sort_unstable();
            let i = ((v.len() as f64) * 0.99).ceil() as usize;
            (s as f64, v[i.saturating_sub(1).min(v.len() - 1)] as f64)
        })
        .collect()
}

fn chart(avail: &Availability, ops: &[Operation], windows: &[Window]) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1100, 620)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
        let (top, bottom) = root.split_vertically(320);
        let secs = avail.per_second.len().max(1) as f64;
        let max_ops = avail
            .per_second
            .iter()
            .map(|(_, o, f, i)| (o + f + i) as f64)
            .fold(1.0, f64::max);
        let mut c = ChartBuilder::on(&top)
            .caption("operations per second", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..secs, 0f64..max_ops * 1.1)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        c.configure_mesh()
            .x_desc("seconds")
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for w in windows {
            c.draw_series(std::iter::once(Rectangle::new(
                [(w.start_s, 0.0), (w.end_s, max_ops * 1.1)],
                RGBColor(255, 200, 200).mix(0.5).filled(),
            )))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let series = |pick: fn(&(u64, u64, u64, u64)) -> u64| {
            avail
                .per_second
                .iter()
                .map(move |p| (p.0 as f64, pick(p) as f64))
                .collect::<Vec<_>>()
        };
        c.draw_series(LineSeries::new(series(|p| p.1), &GREEN))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label("ok")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
        c.draw_series(LineSeries::new(series(|p| p.2), &RED))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label("fail")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        c.draw_series(LineSeries::new(series(|p| p.3), &BLUE))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label("info (unknown)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
        c.configure_series_labels()
            .border_style(BLACK)
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;

        let lat = p99_per_second(ops);
        let max_lat = lat.iter().map(|p| p.1).fold(1.0, f64::max);
        let mut l = ChartBuilder::on(&bottom)
            .caption(
                "p99 latency (ms) of operations completing each second",
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..secs, 0f64..max_lat * 1.1)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        l.configure_mesh()
            .x_desc("seconds")
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for w in windows {
            l.draw_series(std::iter::once(Rectangle::new(
                [(w.start_s, 0.0), (w.end_s, max_lat * 1.1)],
                RGBColor(255, 200, 200).mix(0.5).filled(),
            )))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        l.draw_series(LineSeries::new(lat, &BLACK))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(svg)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Writes `report.html` into `dir`.
pub fn write_html(
    dir: &Path,
    title: &str,
    checks: &[CheckResult],
    avail: &Availability,
    ops: &[Operation],
    windows: &[Window],
) -> Result<()> {
    let svg = chart(avail, ops, windows)?;
    let mut rows = String::new();
    for c in checks {
        rows.push_str(&format!(
            "<tr><td>{}</td><td style=\"color:{}\"><b>{}</b></td><td>{}</td></tr>\n",
            escape(&c.name),
            if c.passed { "green" } else { "red" },
            if c.passed { "PASS" } else { "FAIL" },
            escape(&c.evidence)
        ));
    }
    let mut faults = String::new();
    for r in &avail.recoveries {
        faults.push_str(&format!(
            "<tr><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td><td>{}</td></tr>\n",
            escape(&r.fault),
            r.start_ms as f64 / 1000.0,
            r.healed_ms as f64 / 1000.0,
            r.first_write_after_start_ms
                .map(|v| format!("{v} ms"))
                .unwrap_or_else(|| "-".into()),
            r.first_write_after_heal_ms
                .map(|v| format!("{v} ms"))
                .unwrap_or_else(|| "-".into()),
        ));
    }
    let counts = |k: EventType| ops.iter().filter(|o| o.outcome == k).count();
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:sans-serif;margin:2em}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}\
         table{{border-collapse:collapse;margin-bottom:1.5em}}</style></head><body>\
         <h1>{t}</h1><p>{n} operations: {ok} ok, {fail} fail, {info} info (unknown outcome). \
         Shaded: fault windows.</p>{svg}<h2>Checkers</h2><table><tr><th>checker</th><th>result</th><th>evidence</th></tr>{rows}</table>\
         <h2>Faults and recovery</h2><table><tr><th>fault</th><th>start (s)</th><th>healed (s)</th>\
         <th>first write after start</th><th>first write after heal</th></tr>{faults}</table></body></html>",
        t = escape(title),
        n = ops.len(),
        ok = counts(EventType::Ok),
        fail = counts(EventType::Fail),
        info = counts(EventType::Info),
    );
    std::fs::write(dir.join("report.html"), html)?;
    Ok(())
}
