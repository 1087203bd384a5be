//! SVG plots: one horizontal bar chart per table, each bar a row's ratio to
//! the table's baseline, with a line at 1.0 (the baseline) and the absolute
//! value written next to the bar. SVG needs no fonts on the machine.

use std::path::Path;

use plotters::prelude::*;

use crate::{
    machine::Machine,
    report::{fmt_value, Table},
};

pub fn ratio_bars(t: &Table, machine: &Machine, path: &Path) -> anyhow::Result<()> {
    let rows: Vec<_> = t
        .rows
        .iter()
        .filter_map(|r| Some((r.label.as_str(), r.ratio?, r.value?)))
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let n = rows.len();
    let max = rows.iter().map(|r| r.1).fold(1.0_f64, f64::max) * 1.3;
    let height = 140 + 42 * n as u32;
    let root = SVGBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE)
        .map_err(|e| anyhow::anyhow!("drawing: {e}"))?;
    let labels: Vec<String> = rows.iter().map(|r| r.0.to_string()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(&t.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(260)
        .build_cartesian_2d(0.0..max, -0.5..(n as f64 - 0.5))
        .map_err(|e| anyhow::anyhow!("chart: {e}"))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|y| {
            let i = y.round();
            if (y - i).abs() < 0.01 && i >= 0.0 && (i as usize) < labels.len() {
                labels[i as usize].clone()
            } else {
                String::new()
            }
        })
        .x_desc(format!(
            "ratio to \"{}\" ({})  -  {}",
            t.baseline, t.ratio_meaning, machine.kernel
        ))
        .draw()
        .map_err(|e| anyhow::anyhow!("mesh: {e}"))?;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, r)| {
            let y = i as f64;
            let color = if r.0 == t.baseline {
                RGBColor(150, 150, 150)
            } else {
                RGBColor(60, 110, 180)
            };
            Rectangle::new([(0.0, y - 0.32), (r.1, y + 0.32)], color.filled())
        }))
        .map_err(|e| anyhow::anyhow!("bars: {e}"))?;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, r)| {
            Text::new(
                format!("{:.2}x  ({} {})", r.1, fmt_value(r.2), t.unit),
                (r.1 + max * 0.01, i as f64 + 0.1),
                ("sans-serif", 13),
            )
        }))
        .map_err(|e| anyhow::anyhow!("labels: {e}"))?;
    chart
        .draw_series(LineSeries::new(
            vec![(1.0, -0.5), (1.0, n as f64 - 0.5)],
            BLACK.stroke_width(1),
        ))
        .map_err(|e| anyhow::anyhow!("baseline line: {e}"))?;
    root.present()
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    Ok(())
}
