//! The user's own defaults, for what belongs to a person or a cluster rather than to an
//! experiment: today the `[executor]` table (account, partition, the GPU flag the cluster
//! wants). Read from `$DRPIPE_CONFIG`, else `$XDG_CONFIG_HOME/drpipe/config.toml`, else
//! `~/.config/drpipe/config.toml`; an experiment's own `[executor]` keys win over it, table
//! by table. Like the experiment's `[executor]`, none of it enters a cache key.

use super::diagnostic::{SourceText, SpecError};
use super::tree::{parse_document, Node, Table, Value};
use std::path::PathBuf;

/// Where the user config is looked for (it need not exist); None when `DRPIPE_CONFIG=""`.
pub fn path() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("DRPIPE_CONFIG") {
        return (!p.is_empty()).then(|| PathBuf::from(p));
    }
    // An empty or relative XDG_CONFIG_HOME is to be ignored (XDG Base Directory spec).
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("drpipe").join("config.toml"))
}

/// The experiment's `[executor]` node over the user config's.
pub fn with_user_executor(experiment: Option<&Node>) -> Result<Option<Node>, SpecError> {
    let user = match path().filter(|p| p.is_file()) {
        Some(p) => {
            let doc = parse_document(&SourceText::read(&p)?)?;
            if let Some((key, origin, _)) = doc.entries.iter().find(|(k, ..)| k != "executor") {
                return Err(SpecError::at(
                    origin,
                    format!("unknown key `{key}` in the user config"),
                )
                .help("the user config holds only an [executor] table"));
            }
            doc.get("executor").cloned()
        }
        None => None,
    };
    Ok(match (user, experiment) {
        (None, e) => e.cloned(),
        (Some(u), None) => Some(u),
        (Some(u), Some(e)) => Some(merge(&u, e)),
    })
}

/// `over` with the keys of `base` it lacks; tables present in both are merged the same way.
pub fn merge(base: &Node, over: &Node) -> Node {
    let (Value::Table(b), Value::Table(o)) = (&base.value, &over.value) else {
        return over.clone();
    };
    let mut out: Table = o.clone();
    for (key, origin, node) in &b.entries {
        match out.entries.iter_mut().find(|(k, ..)| k == key) {
            Some((_, _, mine)) => *mine = merge(node, mine),
            None => out
                .entries
                .push((key.clone(), origin.clone(), node.clone())),
        }
    }
    Node {
        value: Value::Table(out),
        origin: over.origin.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str, name: &str, dir: &std::path::Path) -> Table {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        parse_document(&SourceText::read(&p).unwrap()).unwrap()
    }

    #[test]
    fn the_experiment_wins_key_by_key_over_the_user_config() {
        let d = tempfile::tempdir().unwrap();
        let user = doc(
            "[executor]\nkind = \"slurm\"\n[executor.slurm]\naccount = \"lab\"\npartition = \"cpu\"\n",
            "config.toml",
            d.path(),
        );
        let exp = doc(
            "[executor.slurm]\npartition = \"gpu\"\n[executor.slurm.stages.train]\ngpus = \"1\"\n",
            "e.toml",
            d.path(),
        );
        let merged = merge(user.get("executor").unwrap(), exp.get("executor").unwrap());
        let spec = super::super::executor::parse(Some(&merged)).unwrap();
        assert_eq!(spec.kind, Some(super::super::executor::ExecutorKind::Slurm));
        let train = spec.slurm.resources("train");
        assert_eq!(train.account.as_deref(), Some("lab"));
        assert_eq!(train.partition.as_deref(), Some("gpu"));
        assert_eq!(train.gpu_count(), 1);
    }
}
