//! Errors in experiment and pipeline files that point at the exact place: `file:line:col`, the
//! key, what is wrong, and what would be valid.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a value came from: a span in a file, or a `--set` argument.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    File {
        source: Arc<SourceText>,
        span: Range<usize>,
    },
    CommandLine {
        arg: String,
    },
    /// A built-in default.
    Default,
}

/// A file's text, kept to turn byte offsets into line and column.
#[derive(Debug, PartialEq)]
pub struct SourceText {
    pub path: PathBuf,
    pub text: String,
}

impl SourceText {
    pub fn read(path: &Path) -> Result<Arc<SourceText>, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|e| SpecError {
            location: path.display().to_string(),
            message: format!("cannot read {}: {e}", path.display()),
            help: None,
        })?;
        Ok(Arc::new(SourceText {
            path: path.to_path_buf(),
            text,
        }))
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        (line, before[line_start..].chars().count() + 1)
    }
}

impl Origin {
    pub fn file(source: &Arc<SourceText>, span: Range<usize>) -> Origin {
        Origin::File {
            source: source.clone(),
            span,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Origin::File { source, span } => {
                let (line, col) = source.line_col(span.start);
                format!("{}:{line}:{col}", source.path.display())
            }
            Origin::CommandLine { arg } => format!("--set {arg}"),
            Origin::Default => "(built-in default)".to_string(),
        }
    }
}

/// A validation error with its location. Displayed as
/// `experiments/x.toml:12:5: error: ...` followed by an indented `help:` line.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecError {
    pub location: String,
    pub message: String,
    pub help: Option<String>,
}

impl SpecError {
    pub fn at(origin: &Origin, message: impl Into<String>) -> SpecError {
        SpecError {
            location: origin.describe(),
            message: message.into(),
            help: None,
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> SpecError {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecError {}

/// "did you mean ...?" for a misspelt key.
pub fn suggest<'a>(given: &str, valid: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    valid
        .into_iter()
        .map(|v| (edit_distance(given, v), v))
        .filter(|(d, v)| *d <= 2.max(v.len() / 4))
        .min()
        .map(|(_, v)| v)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let s = SourceText {
            path: "x.toml".into(),
            text: "a = 1\nbb = 2\n".into(),
        };
        assert_eq!(s.line_col(0), (1, 1));
        assert_eq!(s.line_col(6), (2, 1));
        assert_eq!(s.line_col(11), (2, 6));
    }

    #[test]
    fn suggests_close_keys_only() {
        assert_eq!(suggest("lrr", ["lr", "model", "seed"]), Some("lr"));
        assert_eq!(
            suggest("batchsize", ["batch_size", "model"]),
            Some("batch_size")
        );
        assert_eq!(suggest("zzzzzz", ["lr", "model"]), None);
    }
}
