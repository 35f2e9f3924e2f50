//! The typed readers of `[executor]` values, each error naming the key and its place.

use crate::spec::diagnostic::SpecError;
use crate::spec::tree::{Node, Table, Value};

pub(super) fn table<'a>(node: &'a Node, name: &str) -> Result<&'a Table, SpecError> {
    match &node.value {
        Value::Table(t) => Ok(t),
        _ => Err(SpecError::at(
            &node.origin,
            format!("`{name}` must be a table"),
        )),
    }
}

pub(super) fn string(node: &Node, name: &str) -> Result<String, SpecError> {
    match &node.value {
        Value::Str(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        _ => Err(SpecError::at(
            &node.origin,
            format!("{name} must be a non-empty string"),
        )),
    }
}

pub(super) fn integer(node: &Node, name: &str) -> Result<i64, SpecError> {
    match node.value {
        Value::Int(n) if n >= 0 => Ok(n),
        _ => Err(SpecError::at(
            &node.origin,
            format!("{name} must be a whole number >= 0"),
        )),
    }
}

pub(super) fn positive(node: &Node, name: &str) -> Result<i64, SpecError> {
    match integer(node, name)? {
        0 => Err(SpecError::at(
            &node.origin,
            format!("{name} must be at least 1"),
        )),
        n => Ok(n),
    }
}

pub(super) fn seconds(node: &Node, name: &str) -> Result<f64, SpecError> {
    const DAY: f64 = 86_400.0;
    match node.value {
        Value::Int(n) if n > 0 && n as f64 <= DAY => Ok(n as f64),
        Value::Float(f) if f > 0.0 && f <= DAY => Ok(f),
        _ => Err(SpecError::at(
            &node.origin,
            format!("{name} must be a positive number of seconds, at most a day (86400)"),
        )),
    }
}
