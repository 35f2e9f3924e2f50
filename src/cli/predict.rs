//! `drpipe predict`: grade images with trained weights; CSV on stdout. An unreadable image is
//! reported on stderr, the others still get their rows, and the exit status is then 1.

use super::{args::PredictArgs, CliError, CliResult, Env, EXIT_FAILED, EXIT_USAGE};
use crate::cache::Manifest;
use crate::data::audit::as_audited;
use crate::data::augment::test_transform;
use crate::data::image_cache::{square_from_bytes, Preprocess};
use crate::model::{self, Arch};
use crate::stages::images::cache_side;
use anyhow::Context;
use std::path::PathBuf;

struct Resolved {
    arch: Arch,
    weights: PathBuf,
    size: u32,
    /// The decoded side and preprocessing the cell's images were cached with.
    cache_size: u32,
    preprocess: Preprocess,
    /// Mirror averaging and device: the cell's own with `--cell`, else off and `auto`.
    tta: bool,
    device: String,
}

fn resolve(args: &PredictArgs) -> Result<Resolved, CliError> {
    let usage = |m: String| CliError {
        message: format!("error: {m}"),
        code: EXIT_USAGE,
    };
    if let Some(cell) = &args.cell {
        let train = cell.join("train");
        let m = Manifest::read(&train).map_err(|e| {
            usage(format!(
                "{e:#}; --cell expects outputs/experiments/NAME/cells/CELL"
            ))
        })?;
        let arch = m
            .params
            .get("model")
            .and_then(|v| v.as_str())
            .unwrap_or("resnet18");
        let size = m
            .params
            .get("image_size")
            .and_then(|v| v.as_u64())
            .unwrap_or(224) as u32;
        // Grade as the cell was evaluated: same weights, cache side, preprocessing, mirror
        // averaging and device, so that its predictions.csv is reproduced.
        let evaluate = Manifest::read(&cell.join("evaluate")).ok();
        let eval_param = |key: &str| evaluate.as_ref().and_then(|m| m.params.get(key).cloned());
        let checkpoint = eval_param("checkpoint")
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_else(|| "best".into());
        let tta = eval_param("tta").and_then(|v| v.as_bool()).unwrap_or(false);
        let device = eval_param("device")
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_else(|| "auto".into());
        let images = Manifest::read(&cell.join("images")).map_err(|e| usage(format!("{e:#}")))?;
        let cache_size = images
            .params
            .get("cache_size")
            .and_then(|v| v.as_u64())
            .unwrap_or(0) as u32;
        let preprocess = images
            .params
            .get("preprocess")
            .and_then(|v| v.as_str())
            .unwrap_or("none");
        let size = args.size.unwrap_or(size);
        return Ok(Resolved {
            arch: arch.parse().map_err(|e| usage(format!("{e}")))?,
            weights: train.join(format!("{checkpoint}.safetensors")),
            size,
            cache_size: cache_side(size, cache_size),
            preprocess: preprocess
                .parse::<Preprocess>()
                .map_err(|e| usage(e.to_string()))?,
            tta,
            device,
        });
    }
    let arch = args
        .arch
        .as_deref()
        .ok_or_else(|| usage("--arch is required with --weights".into()))?;
    let size = args.size.unwrap_or(224);
    Ok(Resolved {
        arch: arch.parse().map_err(|e| usage(format!("{e}")))?,
        weights: args
            .weights
            .clone()
            .ok_or_else(|| usage("give --cell or --weights".into()))?,
        size,
        cache_size: cache_side(size, 0),
        preprocess: Preprocess::None,
        tta: false,
        device: "auto".into(),
    })
}

/// Decode, resize the short side and centre-crop as the image cache does, then the test
/// transform: the same path an image takes through the evaluate stage.
/// A damaged file is read as the audit would: repaired where that loses nothing, refused
/// with the audit's reason where it would be dropped.
fn load_image(path: &std::path::Path, r: &Resolved) -> anyhow::Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let bytes =
        as_audited(bytes).map_err(|why| anyhow::anyhow!("the audit would drop it: {why}"))?;
    let rgb = square_from_bytes(&bytes, r.cache_size, r.preprocess)?;
    let mut out = vec![0f32; 3 * (r.size * r.size) as usize];
    test_transform(&rgb, r.cache_size, r.size, &mut out);
    Ok(out)
}

pub fn run(_env: &Env, args: PredictArgs) -> CliResult {
    let r = resolve(&args)?;
    let device = model::select_device(&r.device)?;
    let net = model::load_for_inference(r.arch, &r.weights, &device)?;
    let prefix = if args.logits { "logit" } else { "p" };
    println!(
        "image,pred,{}",
        (0..5)
            .map(|i| format!("{prefix}{i}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut failures = 0;
    for path in &args.images {
        let row = load_image(path, &r).and_then(|x| {
            if args.logits {
                model::predict_logits(&net, &x, 1, r.size as usize, &device, r.tta)
            } else {
                model::predict_probs(&net, &x, 1, r.size as usize, &device, r.tta)
            }
        });
        match row {
            Ok(rows) => {
                let v = rows[0];
                let pred = crate::metrics::argmax(&v);
                println!(
                    "{},{pred},{}",
                    path.display(),
                    v.iter()
                        .map(|x| format!("{x:.6}"))
                        .collect::<Vec<_>>()
                        .join(",")
                );
            }
            Err(e) => {
                failures += 1;
                eprintln!("error: {}: {e:#}", path.display());
            }
        }
    }
    if failures > 0 {
        return Err(CliError {
            message: format!(
                "error: {failures} of {} image(s) could not be graded",
                args.images.len()
            ),
            code: EXIT_FAILED,
        });
    }
    Ok(())
}
