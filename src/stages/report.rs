//! `report`: the experiment's cells side by side: tables (polars), figures (plotters) and an
//! HTML page. Replicates (cells that differ only in seed) are grouped into one row; every row
//! gets bootstrap intervals and its paired difference from the reference row.

use super::evaluate::{read_predictions, Evaluation};
use super::{Stage, StageCtx};
use crate::cache::Manifest;
use crate::metrics::bootstrap;
use crate::report::{self, Replicate};
use anyhow::{Context, Result};

pub struct ReportStage;

impl Stage for ReportStage {
    fn name(&self) -> &'static str {
        "report"
    }

    /// 2: replicate groups, intervals and paired differences. 3: the accuracy figure's ring
    /// marks the tested epoch.
    fn version(&self) -> u32 {
        3
    }

    fn run(&self, ctx: &StageCtx) -> Result<String> {
        let title: String = ctx.param("title")?;
        let title = if title.is_empty() {
            ctx.experiment.to_string()
        } else {
            title
        };
        let compare_to: String = ctx.param("compare_to")?;
        let trains = ctx.upstream_all("train");
        let evaluates = ctx.upstream_all("evaluate");
        // Cells that differ only in seed are replicates of one configuration.
        let seedless = |ev: &super::Upstream| -> Vec<(String, serde_json::Value)> {
            ev.varying
                .iter()
                .filter(|(k, _)| k != "seed")
                .cloned()
                .collect()
        };
        let mut per_config = std::collections::HashMap::new();
        for ev in &evaluates {
            *per_config
                .entry(format!("{:?}", seedless(ev)))
                .or_insert(0usize) += 1;
        }
        let mut cells = Vec::new();
        for ev in &evaluates {
            let cell = ev.cell.clone().unwrap_or_default();
            let evaluation = Evaluation::read(&ev.dir)?;
            let predictions = read_predictions(&ev.dir)?;
            let train = trains
                .iter()
                .find(|t| t.cell == ev.cell)
                .with_context(|| format!("no training result for cell {cell}"))?;
            let history = crate::train::history::read(&train.dir.join("history.csv"))?;
            let summary: serde_json::Value = std::fs::read(train.dir.join("train.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            let model = Manifest::read(&train.dir)?
                .params
                .get("model")
                .and_then(|m| m.as_str().map(String::from))
                .unwrap_or_default();
            let config = seedless(ev);
            let replicated = per_config[&format!("{config:?}")] > 1;
            let shown = if replicated {
                config.clone()
            } else {
                ev.varying.clone()
            };
            let display = |v: &[(String, serde_json::Value)]| -> Vec<(String, String)> {
                v.iter()
                    .map(|(k, v)| (k.clone(), crate::spec::params::display(v)))
                    .collect()
            };
            cells.push(Replicate {
                group: if replicated {
                    crate::spec::matrix::cell_name(&config)
                } else {
                    cell.clone()
                },
                cell,
                params: display(&shown),
                seed: ev
                    .varying
                    .iter()
                    .find(|(k, _)| k == "seed")
                    .map(|(_, v)| v.to_string())
                    .unwrap_or_default(),
                model,
                metrics: evaluation.metrics,
                history,
                selected_on: evaluation.selected_on,
                selected_epoch: summary
                    .get("best_epoch")
                    .and_then(|e| e.as_u64())
                    .map(|e| e as usize),
                names: predictions.names,
                patients: predictions.patients,
                labels: predictions.labels,
                probs: predictions.probs,
            });
        }
        let n_cells = cells.len();
        let rows = report::rows(cells, &compare_to, bootstrap::RESAMPLES)?;
        let files = report::write_report(&title, &rows, ctx.out)?;
        std::fs::write(ctx.out.join(report::TABLE_FILE), &files.table_text)?;
        Ok(format!(
            "{n_cells} cells in {} rows, {} files",
            rows.len(),
            files.files.len()
        ))
    }
}
