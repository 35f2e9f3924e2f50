//! Pipeline files (`pipelines/*.toml`): which stages exist, which built-in implementation each
//! uses, what it runs after, how often it runs, and which parameters it reads.

use super::diagnostic::{suggest, Origin, SourceText, SpecError};
use super::params;
use super::tree::{parse_document, Node, Table, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// How often a stage runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Shared by every cell whose declared parameters agree (e.g. the audit).
    Dataset,
    /// Once per matrix cell (e.g. training).
    Cell,
    /// Once per experiment, over all cells (e.g. the report).
    Experiment,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StageDecl {
    pub name: String,
    pub uses: String,
    pub after: Vec<String>,
    pub scope: Scope,
    /// Parameter names, plus `dataset` for the whole `[dataset]` table or `dataset.KEY` for
    /// one of its keys.
    pub params: Vec<String>,
    pub origin: Origin,
}

#[derive(Debug, Clone)]
pub struct Pipeline {
    pub path: PathBuf,
    /// In dependency order: every stage comes after those it runs after.
    pub stages: Vec<StageDecl>,
}

impl Pipeline {
    pub fn stage(&self, name: &str) -> Option<&StageDecl> {
        self.stages.iter().find(|s| s.name == name)
    }
}

const STAGE_KEYS: &[&str] = &["uses", "after", "scope", "params", "description"];

/// Parse and validate a pipeline file. `implementations` are the built-in stage names.
pub fn load(path: &Path, implementations: &[&str]) -> Result<Pipeline, SpecError> {
    let source = SourceText::read(path)?;
    let doc = parse_document(&source)?;
    let file_origin = Origin::file(&source, 0..0);
    for (key, origin, _) in &doc.entries {
        if key != "stages" && key != "description" {
            return Err(
                SpecError::at(origin, format!("unknown key `{key}` in a pipeline file"))
                    .help("a pipeline file has `description` and `[stages.NAME]` tables"),
            );
        }
    }
    let Some(stages_node) = doc.get("stages") else {
        return Err(SpecError::at(
            &file_origin,
            "no [stages.NAME] tables in this pipeline",
        ));
    };
    let stages_table = as_table(stages_node, "stages")?;
    let mut decls = Vec::new();
    for (name, key_origin, node) in &stages_table.entries {
        decls.push(parse_stage(name, key_origin, node, implementations)?);
    }
    let names: Vec<&str> = decls.iter().map(|d| d.name.as_str()).collect();
    for decl in &decls {
        for after in &decl.after {
            if !names.contains(&after.as_str()) {
                let err = SpecError::at(
                    &decl.origin,
                    format!("stage `{}` runs after unknown stage `{after}`", decl.name),
                );
                return Err(match suggest(after, names.iter().copied()) {
                    Some(s) => {
                        err.help(format!("did you mean `{s}`? stages: {}", names.join(", ")))
                    }
                    None => err.help(format!("stages in this pipeline: {}", names.join(", "))),
                });
            }
        }
    }
    for decl in decls.iter().filter(|d| d.scope != Scope::Experiment) {
        if let Some(after) = decl.after.iter().find(|a| {
            decls
                .iter()
                .any(|d| &d.name == *a && d.scope == Scope::Experiment)
        }) {
            return Err(SpecError::at(
                &decl.origin,
                format!(
                    "stage `{}` runs per cell but after `{after}`, which runs once per experiment",
                    decl.name
                ),
            )
            .help("a per-cell or dataset stage can only run after per-cell or dataset stages"));
        }
    }
    let stages = topological_order(decls)?;
    Ok(Pipeline {
        path: path.to_path_buf(),
        stages,
    })
}

fn as_table<'a>(node: &'a Node, what: &str) -> Result<&'a Table, SpecError> {
    match &node.value {
        Value::Table(t) => Ok(t),
        other => Err(SpecError::at(
            &node.origin,
            format!("`{what}` must be a table, found {}", other.type_name()),
        )),
    }
}

fn string_list(node: &Node, what: &str) -> Result<Vec<String>, SpecError> {
    let Value::Array(items) = &node.value else {
        return Err(SpecError::at(
            &node.origin,
            format!("`{what}` must be an array of strings"),
        ));
    };
    items
        .iter()
        .map(|item| match &item.value {
            Value::Str(s) => Ok(s.clone()),
            other => Err(SpecError::at(
                &item.origin,
                format!(
                    "`{what}` entries must be strings, found {}",
                    other.type_name()
                ),
            )),
        })
        .collect()
}

fn parse_stage(
    name: &str,
    origin: &Origin,
    node: &Node,
    implementations: &[&str],
) -> Result<StageDecl, SpecError> {
    let table = as_table(node, &format!("stages.{name}"))?;
    for (key, key_origin, _) in &table.entries {
        if !STAGE_KEYS.contains(&key.as_str()) {
            let err = SpecError::at(
                key_origin,
                format!("unknown key `{key}` in [stages.{name}]"),
            );
            return Err(err.help(format!("valid keys: {}", STAGE_KEYS.join(", "))));
        }
    }
    let uses = match table.get("uses") {
        Some(Node {
            value: Value::Str(s),
            ..
        }) => s.clone(),
        Some(n) => return Err(SpecError::at(&n.origin, "`uses` must be a string")),
        None => name.to_string(),
    };
    if !implementations.contains(&uses.as_str()) {
        let at = table.get("uses").map(|n| &n.origin).unwrap_or(origin);
        return Err(
            SpecError::at(at, format!("unknown stage implementation `{uses}`")).help(format!(
                "built-in implementations: {}",
                implementations.join(", ")
            )),
        );
    }
    let scope = match table.get("scope") {
        None => Scope::Cell,
        Some(n) => match &n.value {
            Value::Str(s) if s == "dataset" => Scope::Dataset,
            Value::Str(s) if s == "cell" => Scope::Cell,
            Value::Str(s) if s == "experiment" => Scope::Experiment,
            _ => {
                return Err(SpecError::at(&n.origin, "invalid `scope`")
                    .help("scope is \"dataset\" (shared by cells), \"cell\" or \"experiment\""))
            }
        },
    };
    let after = table
        .get("after")
        .map(|n| string_list(n, "after"))
        .transpose()?
        .unwrap_or_default();
    let params = match table.get("params") {
        None => Vec::new(),
        Some(n) => {
            let list = string_list(n, "params")?;
            let Value::Array(items) = &n.value else {
                unreachable!()
            };
            for (param, item) in list.iter().zip(items) {
                let dataset_key = param.strip_prefix("dataset.");
                if let Some(key) = dataset_key {
                    if !super::dataset::KEYS.contains(&key) {
                        return Err(SpecError::at(
                            &item.origin,
                            format!("unknown dataset key `{param}`"),
                        )
                        .help(format!("dataset keys: {}", super::dataset::KEYS.join(", "))));
                    }
                } else if param != "dataset" && params::lookup(param).is_none() {
                    return Err(params::unknown_param(param, &item.origin));
                }
            }
            list
        }
    };
    Ok(StageDecl {
        name: name.to_string(),
        uses,
        after,
        scope,
        params,
        origin: origin.clone(),
    })
}

/// Kahn's algorithm, keeping file order among ready stages; a cycle is an error naming it.
fn topological_order(decls: Vec<StageDecl>) -> Result<Vec<StageDecl>, SpecError> {
    let index: HashMap<String, usize> = decls
        .iter()
        .enumerate()
        .map(|(i, d)| (d.name.clone(), i))
        .collect();
    let mut done = vec![false; decls.len()];
    let mut order = Vec::new();
    while order.len() < decls.len() {
        let next =
            (0..decls.len()).find(|&i| !done[i] && decls[i].after.iter().all(|a| done[index[a]]));
        match next {
            Some(i) => {
                done[i] = true;
                order.push(i);
            }
            None => {
                let stuck: Vec<usize> = (0..decls.len()).filter(|&i| !done[i]).collect();
                let cycle = find_cycle(&decls, &index, &stuck);
                let first = &decls[cycle[0]];
                let path: Vec<&str> = cycle
                    .iter()
                    .chain(std::iter::once(&cycle[0]))
                    .map(|&i| decls[i].name.as_str())
                    .collect();
                return Err(SpecError::at(
                    &first.origin,
                    format!("stages form a cycle: {}", path.join(" -> ")),
                )
                .help("remove one of these `after` entries"));
            }
        }
    }
    let mut slots: Vec<Option<StageDecl>> = decls.into_iter().map(Some).collect();
    Ok(order
        .into_iter()
        .map(|i| slots[i].take().expect("each stage once"))
        .collect())
}

fn find_cycle(decls: &[StageDecl], index: &HashMap<String, usize>, stuck: &[usize]) -> Vec<usize> {
    // Every stuck stage waits on another stuck stage: walking "after" edges must revisit one.
    let mut path = vec![stuck[0]];
    loop {
        let cur = *path.last().expect("non-empty");
        let next = decls[cur]
            .after
            .iter()
            .map(|a| index[a])
            .find(|i| stuck.contains(i))
            .expect("stuck stage waits on a stuck one");
        if let Some(pos) = path.iter().position(|&p| p == next) {
            let mut cycle = path[pos..].to_vec();
            cycle.reverse(); // report in run order: a -> b means b runs after a
            return cycle;
        }
        path.push(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMPLS: &[&str] = &["audit", "stats", "train", "report"];

    fn load_text(text: &str) -> Result<Pipeline, SpecError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, text).unwrap();
        load(&path, IMPLS).map_err(|mut e| {
            e.location = e.location.replace(&dir.path().display().to_string(), "DIR");
            e
        })
    }

    #[test]
    fn orders_stages_by_dependency() {
        let p = load_text(
            "[stages.train]\nafter = [\"stats\"]\nparams = [\"lr\"]\n[stages.stats]\nuses = \"stats\"\nscope = \"dataset\"\n",
        )
        .unwrap();
        let names: Vec<_> = p.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["stats", "train"]);
        assert_eq!(p.stage("stats").unwrap().scope, Scope::Dataset);
        assert_eq!(p.stage("train").unwrap().params, ["lr"]);
    }

    #[test]
    fn reports_cycles_unknown_stages_params_and_keys_with_positions() {
        let e =
            load_text("[stages.audit]\nafter = [\"train\"]\n[stages.train]\nafter = [\"audit\"]\n")
                .unwrap_err();
        assert!(e.message.contains("cycle"), "{e}");
        assert!(e.location.starts_with("DIR/p.toml:"), "{e}");
        let e = load_text("[stages.train]\nafter = [\"stat\"]\n[stages.stats]\n").unwrap_err();
        assert!(e.message.contains("unknown stage `stat`") && e.help.unwrap().contains("stats"));
        let e = load_text("[stages.train]\nparams = [\"lr\", \"lrr\"]\n").unwrap_err();
        assert_eq!(e.location, "DIR/p.toml:2:17");
        let e = load_text("[stages.train]\nuses = \"fit\"\n").unwrap_err();
        assert_eq!(e.location, "DIR/p.toml:2:8");
        let e = load_text("[stages.train]\nafterr = []\n").unwrap_err();
        assert_eq!(e.location, "DIR/p.toml:2:1");
    }
}
