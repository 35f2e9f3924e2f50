//! Expanding `[params]` and `[matrix]` into cells: the cartesian product of the axes, minus
//! `exclude`, plus `include`. Each cell is named after the values that vary across cells.

use super::diagnostic::{Origin, SpecError};
use super::params;
use super::tree::{Node, Table, Value};
use serde_json::Value as Json;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    pub name: String,
    pub values: Vec<Json>,
    pub origin: Origin,
}

/// One combination of parameters: every parameter has a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub name: String,
    pub params: BTreeMap<String, Json>,
    /// The parameters that differ between cells, in axis order, with this cell's values.
    pub varying: Vec<(String, Json)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Matrix {
    pub axes: Vec<Axis>,
    pub include: Vec<BTreeMap<String, Json>>,
    pub exclude: Vec<BTreeMap<String, Json>>,
}

/// Validate the `[matrix]` table.
pub fn parse(table: &Table) -> Result<Matrix, SpecError> {
    let mut m = Matrix::default();
    for (key, key_origin, node) in &table.entries {
        match key.as_str() {
            "include" | "exclude" => {
                let list = combos(key, node)?;
                if key == "include" {
                    m.include = list
                } else {
                    m.exclude = list
                }
            }
            name => {
                let def =
                    params::lookup(name).ok_or_else(|| params::unknown_param(name, key_origin))?;
                m.axes.push(axis(def, node)?);
            }
        }
    }
    Ok(m)
}

pub fn axis(def: &params::ParamDef, node: &Node) -> Result<Axis, SpecError> {
    let Value::Array(items) = &node.value else {
        return Err(SpecError::at(
            &node.origin,
            format!("matrix axis `{}` must be an array of values", def.name),
        )
        .help(format!(
            "write {} = [a, b], or set a single value in [params]",
            def.name
        )));
    };
    if items.is_empty() {
        return Err(
            SpecError::at(&node.origin, format!("matrix axis `{}` is empty", def.name))
                .help("give at least one value, or remove the axis"),
        );
    }
    // A class-weight list is itself an array: `class_weights = [[1,2,3,4,5], "none"]` works,
    // a bare list of 5 numbers would be ambiguous and is read as 5 axis values (then fails).
    let values = items
        .iter()
        .map(|item| params::validate(def, item))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Axis {
        name: def.name.to_string(),
        values,
        origin: node.origin.clone(),
    })
}

fn combos(key: &str, node: &Node) -> Result<Vec<BTreeMap<String, Json>>, SpecError> {
    let Value::Array(items) = &node.value else {
        return Err(SpecError::at(
            &node.origin,
            format!("matrix.{key} must be an array of tables"),
        ));
    };
    items
        .iter()
        .map(|item| {
            let Value::Table(t) = &item.value else {
                return Err(SpecError::at(
                    &item.origin,
                    format!("matrix.{key} entries must be tables like {{ model = \"resnet50\" }}"),
                ));
            };
            if t.entries.is_empty() {
                return Err(SpecError::at(
                    &item.origin,
                    format!("empty matrix.{key} entry"),
                ));
            }
            t.entries
                .iter()
                .map(|(k, ko, n)| {
                    let def = params::lookup(k).ok_or_else(|| params::unknown_param(k, ko))?;
                    Ok((k.clone(), params::validate(def, n)?))
                })
                .collect()
        })
        .collect()
}

/// The cells of an experiment, named and deduplicated, in a stable order.
pub fn expand(
    base: &BTreeMap<String, Json>,
    m: &Matrix,
    origin: &Origin,
) -> Result<Vec<Cell>, SpecError> {
    // With no axes, `include` alone lists the cells (the base cell is not one of them).
    let mut combos: Vec<BTreeMap<String, Json>> = if m.axes.is_empty() && !m.include.is_empty() {
        Vec::new()
    } else {
        vec![base.clone()]
    };
    for axis in &m.axes {
        combos = combos
            .into_iter()
            .flat_map(|c| {
                axis.values.iter().map(move |v| {
                    let mut c = c.clone();
                    c.insert(axis.name.clone(), v.clone());
                    c
                })
            })
            .collect();
    }
    combos.retain(|c| {
        !m.exclude
            .iter()
            .any(|ex| ex.iter().all(|(k, v)| c.get(k) == Some(v)))
    });
    for inc in &m.include {
        let mut c = base.clone();
        c.extend(inc.clone());
        combos.push(c);
    }
    let mut unique: Vec<BTreeMap<String, Json>> = Vec::new();
    for c in combos {
        if !unique.contains(&c) {
            unique.push(c);
        }
    }
    if unique.is_empty() {
        return Err(SpecError::at(
            origin,
            "the matrix has no cells left after `exclude`",
        ));
    }
    // Varying parameters: axis order first, then parameters that only `include` changes.
    let mut order: Vec<String> = m.axes.iter().map(|a| a.name.clone()).collect();
    for inc in &m.include {
        order.extend(
            inc.keys()
                .filter(|k| !order.contains(k))
                .cloned()
                .collect::<Vec<_>>(),
        );
    }
    order.retain(|k| unique.iter().any(|c| c.get(k) != unique[0].get(k)));
    let mut cells: Vec<Cell> = unique
        .into_iter()
        .map(|params| {
            let varying: Vec<(String, Json)> = order
                .iter()
                .map(|k| (k.clone(), params[k].clone()))
                .collect();
            let name = cell_name(&varying);
            Cell {
                name,
                params,
                varying,
            }
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    for cell in &mut cells {
        if !seen.insert(cell.name.clone()) {
            // Two cells whose values print alike (e.g. 0.1 and 0.10 cannot, but paths can).
            let mut i = 2;
            while !seen.insert(format!("{}-{i}", cell.name)) {
                i += 1;
            }
            cell.name = format!("{}-{i}", cell.name);
        }
    }
    Ok(replicate(cells))
}

/// Each cell with `replicates = N > 1` becomes N cells `NAME-rep1`..`NAME-repN` whose seeds
/// are `seed + REPLICATE_SEED_STEP * r` (the first keeps the cell's own seed, so its cache
/// entries are shared with an unreplicated run). `seed` joins their varying parameters; the
/// report groups cells that differ only in seed.
fn replicate(cells: Vec<Cell>) -> Vec<Cell> {
    let mut out = Vec::new();
    for cell in cells {
        let n = cell
            .params
            .get("replicates")
            .and_then(Json::as_u64)
            .unwrap_or(1);
        if n <= 1 {
            out.push(cell);
            continue;
        }
        let seed = cell.params.get("seed").and_then(Json::as_u64).unwrap_or(0);
        for r in 0..n {
            let mut c = cell.clone();
            let s = Json::from(seed + params::REPLICATE_SEED_STEP * r);
            c.params.insert("seed".into(), s.clone());
            match c.varying.iter_mut().find(|(k, _)| k == "seed") {
                Some(v) => v.1 = s,
                None => c.varying.push(("seed".into(), s)),
            }
            c.name = if cell.varying.is_empty() {
                format!("rep{}", r + 1)
            } else {
                format!("{}-rep{}", cell.name, r + 1)
            };
            out.push(c);
        }
    }
    out
}

/// `resnet50-pretrained-cw_inverse_frequency`: readable, stable, filesystem-safe.
pub fn cell_name(varying: &[(String, Json)]) -> String {
    if varying.is_empty() {
        return "default".to_string();
    }
    let parts: Vec<String> = varying
        .iter()
        .map(|(k, v)| {
            let shown = params::display(v);
            let part = match (k.as_str(), v) {
                ("model", _) => shown,
                ("pretrained", Json::Bool(true)) => "pretrained".into(),
                ("pretrained", Json::Bool(false)) => "scratch".into(),
                ("pretrained", Json::String(p)) => format!(
                    "pt_{}",
                    std::path::Path::new(p)
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default()
                ),
                ("class_weights", _) => format!("cw_{shown}"),
                ("batch_size", _) => format!("bs{shown}"),
                ("image_size", _) => format!("px{shown}"),
                ("epochs", _) => format!("ep{shown}"),
                ("lr", _) => format!("lr{shown}"),
                ("seed", _) => format!("seed{shown}"),
                (_, Json::Bool(true)) => k.clone(),
                (_, Json::Bool(false)) => format!("no_{k}"),
                _ => format!("{k}_{shown}"),
            };
            sanitize(&part)
        })
        .collect();
    parts.join("-")
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> BTreeMap<String, Json> {
        params::PARAMS
            .iter()
            .map(|d| (d.name.to_string(), params::default_value(d)))
            .collect()
    }

    fn ax(name: &str, values: Vec<Json>) -> Axis {
        Axis {
            name: name.into(),
            values,
            origin: Origin::Default,
        }
    }

    #[test]
    fn product_exclude_include_and_names() {
        let m = Matrix {
            axes: vec![
                ax("model", vec![json!("resnet18"), json!("resnet50")]),
                ax("pretrained", vec![json!(true), json!(false)]),
            ],
            exclude: vec![BTreeMap::from([
                ("model".into(), json!("resnet50")),
                ("pretrained".into(), json!(false)),
            ])],
            include: vec![BTreeMap::from([
                ("model".into(), json!("resnet50")),
                ("class_weights".into(), json!("inverse_frequency")),
            ])],
        };
        let cells = expand(&base(), &m, &Origin::Default).unwrap();
        let names: Vec<_> = cells.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "resnet18-pretrained-cw_none",
                "resnet18-scratch-cw_none",
                "resnet50-pretrained-cw_none",
                "resnet50-scratch-cw_inverse_frequency"
            ]
        );
        assert_eq!(cells[3].params["pretrained"], json!(false));
        assert_eq!(cells[0].params["lr"], json!(0.001));
    }

    #[test]
    fn single_cell_is_default_and_empty_result_is_an_error() {
        let cells = expand(&base(), &Matrix::default(), &Origin::Default).unwrap();
        assert_eq!(cells.len(), 1);
        assert_eq!(cells[0].name, "default");
        let m = Matrix {
            axes: vec![ax("model", vec![json!("resnet18")])],
            exclude: vec![BTreeMap::from([("model".into(), json!("resnet18"))])],
            include: vec![],
        };
        assert!(expand(&base(), &m, &Origin::Default).is_err());
    }

    #[test]
    fn replicates_become_seeded_cells_that_share_the_first_seed() {
        let mut b = base();
        b.insert("replicates".into(), json!(3));
        b.insert("seed".into(), json!(7));
        let m = Matrix {
            axes: vec![ax("class_weights", vec![json!("none"), json!("balanced")])],
            ..Matrix::default()
        };
        let cells = expand(&b, &m, &Origin::Default).unwrap();
        let names: Vec<_> = cells.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "cw_none-rep1",
                "cw_none-rep2",
                "cw_none-rep3",
                "cw_balanced-rep1",
                "cw_balanced-rep2",
                "cw_balanced-rep3"
            ]
        );
        let seeds: Vec<_> = cells.iter().map(|c| c.params["seed"].clone()).collect();
        assert_eq!(seeds[..3], [json!(7), json!(1007), json!(2007)]);
        assert_eq!(
            cells[4].varying,
            [
                ("class_weights".to_string(), json!("balanced")),
                ("seed".to_string(), json!(1007))
            ]
        );
        // One replicate is the plain cell.
        b.insert("replicates".into(), json!(1));
        let plain = expand(&b, &m, &Origin::Default).unwrap();
        assert_eq!(plain[0].name, "cw_none");
        assert_eq!(
            plain[0].params,
            cells[0]
                .params
                .clone()
                .into_iter()
                .map(|(k, v)| if k == "replicates" {
                    (k, json!(1))
                } else {
                    (k, v)
                })
                .collect()
        );
    }

    #[test]
    fn names_of_numbers_and_lists() {
        let v = vec![
            ("batch_size".to_string(), json!(16)),
            (
                "class_weights".to_string(),
                json!([1.0, 2.5, 1.0, 1.0, 1.0]),
            ),
            ("lr".to_string(), json!(0.01)),
        ];
        assert_eq!(cell_name(&v), "bs16-cw_1.0_2.5_1.0_1.0_1.0-lr0.01");
    }
}
