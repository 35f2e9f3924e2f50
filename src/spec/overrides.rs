//! `--set KEY=VALUE`: one value of an experiment file replaced or added before validation,
//! with the argument as its origin, so that a bad value is reported like a file's.

use super::dataset;
use super::diagnostic::{Origin, SpecError};
use super::params;
use super::tree::{parse_cli_value, Node, Table, Value};

/// Apply one `--set KEY=VALUE` to the document before validation, so that its errors are
/// reported like a file's (with `--set KEY=VALUE` as the location).
pub(super) fn apply(doc: &mut Table, arg: &str) -> Result<(), SpecError> {
    let origin = Origin::CommandLine {
        arg: arg.to_string(),
    };
    let Some((key, raw)) = arg.split_once('=') else {
        return Err(SpecError::at(&origin, "expected KEY=VALUE")
            .help("e.g. --set lr=0.01 or --set dataset.root=/data/eyepacs"));
    };
    let key = key.trim();
    let node = parse_cli_value(arg, raw.trim())?;
    let (table, field) = match key.split_once('.') {
        Some((t @ ("dataset" | "params" | "matrix"), field)) => (t, field),
        Some(("executor", path)) => {
            let parts: Vec<&str> = std::iter::once("executor")
                .chain(path.split('.').map(str::trim))
                .collect();
            if parts.iter().any(|p| p.is_empty()) {
                return Err(SpecError::at(&origin, format!("`{key}` has an empty part"))
                    .help("e.g. --set executor.kind=slurm or --set executor.slurm.partition=gpu"));
            }
            // The executor's own parser then checks every key, naming this argument.
            return set_path(doc, &parts, origin, node);
        }
        Some((other, _)) => {
            return Err(
                SpecError::at(&origin, format!("unknown key `{key}`")).help(format!(
                    "`{other}` is not a table: use params.NAME, dataset.NAME, matrix.NAME \
                     or executor.KEY"
                )),
            )
        }
        None if ["pipeline", "name", "description"].contains(&key) => {
            doc.set(key, origin.clone(), node);
            return Ok(());
        }
        None => ("params", key),
    };
    match table {
        "dataset" if !dataset::KEYS.contains(&field) => {
            let err = SpecError::at(&origin, format!("unknown key `dataset.{field}`"));
            return Err(err.help(format!("valid dataset keys: {}", dataset::KEYS.join(", "))));
        }
        "params" | "matrix" if params::lookup(field).is_none() => {
            return Err(params::unknown_param(field, &origin))
        }
        _ => {}
    }
    if table == "params" {
        // Setting a parameter that is a matrix axis pins it: the axis goes away.
        if let Some(Node {
            value: Value::Table(m),
            ..
        }) = doc
            .entries
            .iter_mut()
            .find(|(k, _, _)| k == "matrix")
            .map(|(_, _, n)| n)
        {
            m.entries.retain(|(k, _, _)| k != field);
        }
    }
    set_path(doc, &[table, field], origin, node)
}

/// Sets `path` (`["executor", "slurm", "stages", "train", "gpus"]`) in `doc` to `node`,
/// making the tables on the way where the file has none.
fn set_path(doc: &mut Table, path: &[&str], origin: Origin, node: Node) -> Result<(), SpecError> {
    let (leaf, tables) = path.split_last().expect("a key has a name");
    let mut table = doc;
    for (depth, part) in tables.iter().enumerate() {
        if table.get(part).is_none() {
            let empty = Node {
                value: Value::Table(Table::default()),
                origin: origin.clone(),
            };
            table.set(part, origin.clone(), empty);
        }
        let (_, _, n) = table
            .entries
            .iter_mut()
            .find(|(k, _, _)| k == part)
            .expect("just set");
        table = match &mut n.value {
            Value::Table(t) => t,
            other => {
                let walked = tables[..=depth].join(".");
                return Err(SpecError::at(
                    &n.origin,
                    format!("`{walked}` is a {}, not a table", other.type_name()),
                ));
            }
        };
    }
    table.set(leaf, origin, node);
    Ok(())
}
