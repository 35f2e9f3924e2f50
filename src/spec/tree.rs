//! An owned TOML tree that remembers where every key and value is, so that validation after
//! parsing can still point at `file:line:col`.

use super::diagnostic::{Origin, SourceText, SpecError};
use std::sync::Arc;
use toml::de::{DeTable, DeValue};

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Array(Vec<Node>),
    Table(Table),
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub origin: Origin,
}

/// Entries in file order; each key keeps its own origin.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    pub entries: Vec<(String, Origin, Node)>,
}

impl Table {
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, _, n)| n)
    }

    pub fn key_origin(&self, key: &str) -> Option<&Origin> {
        self.entries
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, o, _)| o)
    }

    pub fn set(&mut self, key: &str, origin: Origin, node: Node) {
        match self.entries.iter_mut().find(|(k, _, _)| k == key) {
            Some(entry) => *entry = (key.to_string(), origin, node),
            None => self.entries.push((key.to_string(), origin, node)),
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _, _)| k.as_str())
    }
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Str(_) => "a string",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
        }
    }
}

/// Parse a whole TOML document.
pub fn parse_document(source: &Arc<SourceText>) -> Result<Table, SpecError> {
    let doc = DeTable::parse(&source.text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        SpecError::at(
            &Origin::file(source, span),
            format!("invalid TOML: {}", e.message()),
        )
    })?;
    convert_table(source, doc.get_ref())
}

/// Parse the right-hand side of a `--set key=value`: TOML if it parses as a value, else the
/// raw text as a string (so `--set dataset.root=/data/eyepacs` needs no quotes).
pub fn parse_cli_value(arg: &str, raw: &str) -> Result<Node, SpecError> {
    let origin = Origin::CommandLine {
        arg: arg.to_string(),
    };
    let wrapped = format!("v = {raw}");
    let source = Arc::new(SourceText {
        path: "--set".into(),
        text: wrapped,
    });
    match DeTable::parse(&source.text) {
        Ok(doc) => {
            let table = convert_table(&source, doc.get_ref())?;
            let mut node = table.get("v").cloned().expect("parsed 'v = ...'");
            relabel(&mut node, &origin);
            Ok(node)
        }
        Err(_) => Ok(Node {
            value: Value::Str(raw.to_string()),
            origin,
        }),
    }
}

fn relabel(node: &mut Node, origin: &Origin) {
    node.origin = origin.clone();
    match &mut node.value {
        Value::Array(items) => items.iter_mut().for_each(|n| relabel(n, origin)),
        Value::Table(t) => {
            for (_, o, n) in &mut t.entries {
                *o = origin.clone();
                relabel(n, origin);
            }
        }
        _ => {}
    }
}

fn convert_table(source: &Arc<SourceText>, table: &DeTable<'_>) -> Result<Table, SpecError> {
    let mut out = Table::default();
    for (key, value) in table.iter() {
        let key_origin = Origin::file(source, key.span());
        let node = convert_value(source, value.get_ref(), value.span())?;
        out.entries
            .push((key.get_ref().to_string(), key_origin, node));
    }
    Ok(out)
}

fn convert_value(
    source: &Arc<SourceText>,
    value: &DeValue<'_>,
    span: std::ops::Range<usize>,
) -> Result<Node, SpecError> {
    let origin = Origin::file(source, span);
    let value = match value {
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::String(s) => Value::Str(s.to_string()),
        DeValue::Integer(i) => {
            let digits = i.as_str().replace('_', "");
            let parsed = i64::from_str_radix(digits.trim_start_matches('+'), i.radix());
            Value::Int(parsed.map_err(|_| SpecError::at(&origin, "integer out of range"))?)
        }
        DeValue::Float(f) => {
            let text = f.as_str().replace('_', "");
            let parsed = match text.trim_start_matches('+') {
                "inf" => Ok(f64::INFINITY),
                "-inf" => Ok(f64::NEG_INFINITY),
                "nan" | "-nan" => Ok(f64::NAN),
                t => t.parse::<f64>(),
            };
            Value::Float(parsed.map_err(|_| SpecError::at(&origin, "invalid float"))?)
        }
        DeValue::Datetime(_) => {
            return Err(SpecError::at(
                &origin,
                "dates and times are not used by drpipe",
            ))
        }
        DeValue::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| convert_value(source, item.get_ref(), item.span()))
                .collect::<Result<_, _>>()?,
        ),
        DeValue::Table(t) => Value::Table(convert_table(source, t)?),
    };
    Ok(Node { value, origin })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(text: &str) -> Arc<SourceText> {
        Arc::new(SourceText {
            path: "t.toml".into(),
            text: text.into(),
        })
    }

    #[test]
    fn keeps_order_values_and_positions() {
        let s = src("b = 1\na = [true, 2.5]\n[t]\nx = \"hi\"\n");
        let t = parse_document(&s).unwrap();
        assert_eq!(t.keys().collect::<Vec<_>>(), ["b", "a", "t"]);
        assert_eq!(t.get("b").unwrap().value, Value::Int(1));
        let a = t.get("a").unwrap();
        assert_eq!(a.origin.describe(), "t.toml:2:5");
        let Value::Table(inner) = &t.get("t").unwrap().value else {
            panic!("not a table")
        };
        assert_eq!(inner.key_origin("x").unwrap().describe(), "t.toml:4:1");
        assert_eq!(inner.get("x").unwrap().value, Value::Str("hi".into()));
    }

    #[test]
    fn syntax_errors_point_at_the_line() {
        let err = parse_document(&src("a = 1\nb = = 2\n")).unwrap_err();
        assert!(err.location.starts_with("t.toml:2:"), "{err}");
    }

    #[test]
    fn cli_values_are_toml_or_bare_strings() {
        assert_eq!(
            parse_cli_value("lr=0.1", "0.1").unwrap().value,
            Value::Float(0.1)
        );
        assert_eq!(
            parse_cli_value("x=/a/b", "/a/b").unwrap().value,
            Value::Str("/a/b".into())
        );
        let arr = parse_cli_value("m=[1,2]", "[1, 2]").unwrap();
        assert!(matches!(arr.value, Value::Array(ref v) if v.len() == 2));
    }
}
