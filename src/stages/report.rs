//! `report`: the experiment's cells side by side: tables (polars), figures (plotters) and an
//! HTML page.

use super::evaluate::METRICS;
use super::{Stage, StageCtx};
use crate::cache::Manifest;
use crate::report::{self, CellResult};
use anyhow::{Context, Result};

pub struct ReportStage;

impl Stage for ReportStage {
    fn name(&self) -> &'static str {
        "report"
    }

    fn version(&self) -> u32 {
        1
    }

    fn run(&self, ctx: &StageCtx) -> Result<String> {
        let title: String = ctx.param("title")?;
        let title = if title.is_empty() {
            ctx.experiment.to_string()
        } else {
            title
        };
        let trains = ctx.upstream_all("train");
        let mut cells = Vec::new();
        for ev in ctx.upstream_all("evaluate") {
            let cell = ev.cell.clone().unwrap_or_default();
            let metrics_path = ev.dir.join(METRICS);
            let metrics = serde_json::from_slice(
                &std::fs::read(&metrics_path)
                    .with_context(|| format!("cannot read {}", metrics_path.display()))?,
            )
            .with_context(|| format!("malformed {}", metrics_path.display()))?;
            let train = trains
                .iter()
                .find(|t| t.cell == ev.cell)
                .with_context(|| format!("no training result for cell {cell}"))?;
            let history = crate::train::history::read(&train.dir.join("history.csv"))?;
            let model = Manifest::read(&train.dir)?
                .params
                .get("model")
                .and_then(|m| m.as_str().map(String::from))
                .unwrap_or_default();
            let params = ev
                .varying
                .iter()
                .map(|(k, v)| (k.clone(), crate::spec::params::display(v)))
                .collect();
            cells.push(CellResult {
                name: cell,
                params,
                metrics,
                history,
                model,
            });
        }
        let files = report::write_report(&title, &cells, ctx.out)?;
        std::fs::write(
            ctx.out.join(crate::cli::show::TABLE_FILE),
            &files.table_text,
        )?;
        Ok(format!(
            "{} cells, {} files",
            cells.len(),
            files.files.len()
        ))
    }
}
