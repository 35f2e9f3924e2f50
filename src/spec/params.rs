//! The experiment parameters drpipe knows: their types, defaults and meaning. Validation of a
//! value turns a located TOML node into a canonical JSON value, which is what cache keys hash
//! and manifests record.

use super::diagnostic::{suggest, SpecError};
use super::tree::{Node, Value};
use serde_json::Value as Json;

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Bool,
    /// Integer >= min.
    Int {
        min: i64,
    },
    /// Float within [min, max].
    Float {
        min: f64,
        max: f64,
    },
    /// Any string.
    Str,
    /// One of a fixed set of strings.
    Choice(&'static [&'static str]),
    /// `true`, `false`, or a path to a .safetensors / .pth file.
    Pretrained,
    /// A scheme name or an explicit list of 5 non-negative numbers.
    ClassWeights,
    /// "auto", "cpu" or "cuda:N".
    Device,
}

pub struct ParamDef {
    pub name: &'static str,
    pub kind: Kind,
    /// The default, as a TOML/JSON literal.
    pub default: &'static str,
    pub help: &'static str,
}

pub const MODELS: &[&str] = &["resnet18", "resnet50"];
pub const OPTIMIZERS: &[&str] = &["sgd", "adam", "adamw"];
pub const CHECKPOINTS: &[&str] = &["best", "best_test", "last"];
pub const SELECTION_METRICS: &[&str] = &["val_qwk", "val_acc", "val_loss"];
/// Seeds of replicate `r` of a cell with seed `s` are `s + REPLICATE_SEED_STEP * r`: apart
/// enough that a seed axis of small numbers never collides with a replicate.
pub const REPLICATE_SEED_STEP: u64 = 1000;
pub const CLASS_WEIGHT_SCHEMES: &[&str] =
    &["none", "inverse_frequency", "balanced", "effective_number"];

/// Every parameter an experiment's `[params]` and `[matrix]` may set.
pub const PARAMS: &[ParamDef] = &[
    ParamDef { name: "model", kind: Kind::Choice(MODELS), default: "\"resnet18\"", help: "architecture" },
    ParamDef { name: "pretrained", kind: Kind::Pretrained, default: "false", help: "ImageNet weights from the Hugging Face Hub (true), none (false), or a weights file path" },
    ParamDef { name: "class_weights", kind: Kind::ClassWeights, default: "\"none\"", help: "class weights for the loss: none, inverse_frequency, balanced, effective_number, or a list of 5" },
    ParamDef { name: "class_weight_beta", kind: Kind::Float { min: 0.0, max: 0.999_999 }, default: "0.999", help: "beta of the effective_number scheme" },
    ParamDef { name: "batch_size", kind: Kind::Int { min: 1 }, default: "64", help: "images per training step" },
    ParamDef { name: "epochs", kind: Kind::Int { min: 1 }, default: "25", help: "total epochs (feature extraction + fine-tuning)" },
    ParamDef { name: "freeze_epochs", kind: Kind::Int { min: 0 }, default: "5", help: "first epochs in which only fc trains" },
    ParamDef { name: "optimizer", kind: Kind::Choice(OPTIMIZERS), default: "\"sgd\"", help: "sgd (the study's), adam or adamw, with PyTorch's update rules and default betas" },
    ParamDef { name: "lr", kind: Kind::Float { min: 0.0, max: 10.0 }, default: "0.001", help: "learning rate" },
    ParamDef { name: "momentum", kind: Kind::Float { min: 0.0, max: 0.999_999 }, default: "0.9", help: "SGD momentum (Adam's betas are PyTorch's 0.9, 0.999)" },
    ParamDef { name: "weight_decay", kind: Kind::Float { min: 0.0, max: 1.0 }, default: "0.0005", help: "weight decay (L2 in the gradient for sgd and adam, decoupled for adamw)" },
    ParamDef { name: "nesterov", kind: Kind::Bool, default: "false", help: "Nesterov momentum (sgd only)" },
    ParamDef { name: "lr_schedule", kind: Kind::Choice(&["constant", "cosine", "step"]), default: "\"constant\"", help: "learning-rate schedule" },
    ParamDef { name: "warmup_epochs", kind: Kind::Int { min: 0 }, default: "0", help: "linear warm-up epochs" },
    ParamDef { name: "step_epochs", kind: Kind::Int { min: 1 }, default: "10", help: "step schedule: epochs between decays" },
    ParamDef { name: "gamma", kind: Kind::Float { min: 0.0, max: 1.0 }, default: "0.1", help: "step schedule: decay factor" },
    ParamDef { name: "label_smoothing", kind: Kind::Float { min: 0.0, max: 0.999 }, default: "0.0", help: "label smoothing of the cross-entropy" },
    ParamDef { name: "image_size", kind: Kind::Int { min: 16 }, default: "224", help: "side of the square the model sees" },
    ParamDef { name: "cache_size", kind: Kind::Int { min: 0 }, default: "0", help: "side of the decoded image cache (0: image_size * 256/224, as the study)" },
    ParamDef { name: "preprocess", kind: Kind::Choice(&["none", "graham"]), default: "\"none\"", help: "preprocessing applied once when decoding" },
    ParamDef { name: "augment", kind: Kind::Bool, default: "true", help: "the study's training augmentation (crop, rotation, flips)" },
    ParamDef { name: "device", kind: Kind::Device, default: "\"auto\"", help: "auto, cpu or cuda:N" },
    ParamDef { name: "seed", kind: Kind::Int { min: 0 }, default: "0", help: "seed of initialisation, shuffling and augmentation" },
    ParamDef { name: "tta", kind: Kind::Bool, default: "false", help: "evaluate with horizontal-flip test-time augmentation" },
    ParamDef { name: "checkpoint", kind: Kind::Choice(CHECKPOINTS), default: "\"best\"", help: "weights to evaluate: best on the validation split (selection_metric), best_test (the study's choice: best test accuracy, selected on test), or the last epoch" },
    ParamDef { name: "selection_metric", kind: Kind::Choice(SELECTION_METRICS), default: "\"val_qwk\"", help: "validation metric that checkpoint = \"best\" and early stopping follow" },
    ParamDef { name: "early_stopping_patience", kind: Kind::Int { min: 0 }, default: "0", help: "stop after this many epochs without a better selection_metric (0: never)" },
    ParamDef { name: "replicates", kind: Kind::Int { min: 1 }, default: "1", help: "run each cell with this many seeds (seed, seed+1000, ...); the report groups them" },
    ParamDef { name: "compare_to", kind: Kind::Str, default: "\"\"", help: "the cell every other is compared with in the paired-difference table (default: the first; report only)" },
    ParamDef { name: "title", kind: Kind::Str, default: "\"\"", help: "report title (report only)" },
];

pub fn lookup(name: &str) -> Option<&'static ParamDef> {
    PARAMS.iter().find(|p| p.name == name)
}

pub fn names() -> impl Iterator<Item = &'static str> {
    PARAMS.iter().map(|p| p.name)
}

pub fn default_value(def: &ParamDef) -> Json {
    serde_json::from_str(def.default).expect("built-in defaults are valid JSON")
}

/// An error for a key that is not a parameter, with a suggestion.
pub fn unknown_param(name: &str, origin: &super::diagnostic::Origin) -> SpecError {
    let err = SpecError::at(origin, format!("unknown parameter `{name}`"));
    match suggest(name, names()) {
        Some(s) => err.help(format!(
            "did you mean `{s}`? (see README: experiment schema)"
        )),
        None => err.help(format!(
            "valid parameters: {}",
            names().collect::<Vec<_>>().join(", ")
        )),
    }
}

/// Check `node` against `def` and return its canonical JSON form.
pub fn validate(def: &ParamDef, node: &Node) -> Result<Json, SpecError> {
    let wrong = |expected: &str| {
        SpecError::at(
            &node.origin,
            format!(
                "`{}` must be {expected}, found {}",
                def.name,
                node.value.type_name()
            ),
        )
    };
    match (def.kind, &node.value) {
        (Kind::Bool, Value::Bool(b)) => Ok(Json::Bool(*b)),
        (Kind::Bool, _) => Err(wrong("true or false")),
        (Kind::Int { min }, Value::Int(i)) if *i >= min => Ok(Json::from(*i)),
        (Kind::Int { min }, Value::Int(i)) => Err(SpecError::at(
            &node.origin,
            format!("`{}` must be at least {min}, found {i}", def.name),
        )),
        (Kind::Int { min }, _) => Err(wrong(&format!("an integer >= {min}"))),
        (Kind::Float { min, max }, Value::Int(_) | Value::Float(_)) => {
            let x = match node.value {
                Value::Int(i) => i as f64,
                Value::Float(f) => f,
                _ => unreachable!(),
            };
            if x.is_finite() && x >= min && x <= max {
                Ok(Json::from(x))
            } else {
                Err(SpecError::at(
                    &node.origin,
                    format!("`{}` must be between {min} and {max}, found {x}", def.name),
                ))
            }
        }
        (Kind::Float { .. }, _) => Err(wrong("a number")),
        (Kind::Str, Value::Str(s)) => Ok(Json::from(s.as_str())),
        (Kind::Str, _) => Err(wrong("a string")),
        (Kind::Choice(options), Value::Str(s)) if options.contains(&s.as_str()) => {
            Ok(Json::from(s.as_str()))
        }
        (Kind::Choice(options), Value::Str(s)) => Err(choice_error(def.name, s, options, node)),
        (Kind::Choice(options), _) => Err(wrong(&format!("one of {}", quoted(options)))),
        (Kind::Pretrained, Value::Bool(b)) => Ok(Json::Bool(*b)),
        (Kind::Pretrained, Value::Str(s)) if !s.is_empty() => Ok(Json::from(s.as_str())),
        (Kind::Pretrained, _) => Err(wrong("true, false or a path to a .safetensors/.pth file")),
        (Kind::ClassWeights, Value::Str(s)) if CLASS_WEIGHT_SCHEMES.contains(&s.as_str()) => {
            Ok(Json::from(s.as_str()))
        }
        (Kind::ClassWeights, Value::Str(s)) => {
            Err(
                choice_error(def.name, s, CLASS_WEIGHT_SCHEMES, node).help(format!(
                    "use one of {} or a list of 5 numbers",
                    quoted(CLASS_WEIGHT_SCHEMES)
                )),
            )
        }
        (Kind::ClassWeights, Value::Array(items)) => {
            let mut out = Vec::new();
            for item in items {
                let x = match item.value {
                    Value::Int(i) => i as f64,
                    Value::Float(f) => f,
                    _ => return Err(SpecError::at(&item.origin, "class weights must be numbers")),
                };
                if !(x.is_finite() && x >= 0.0) {
                    return Err(SpecError::at(
                        &item.origin,
                        "class weights must be finite and >= 0",
                    ));
                }
                out.push(Json::from(x));
            }
            if out.len() != crate::data::NUM_CLASSES {
                return Err(SpecError::at(
                    &node.origin,
                    format!(
                        "an explicit class-weight list needs 5 numbers (grades 0-4), found {}",
                        out.len()
                    ),
                ));
            }
            Ok(Json::Array(out))
        }
        (Kind::ClassWeights, _) => Err(wrong("a scheme name or a list of 5 numbers")),
        (Kind::Device, Value::Str(s)) if valid_device(s) => Ok(Json::from(s.as_str())),
        (Kind::Device, _) => Err(wrong("\"auto\", \"cpu\" or \"cuda:N\"")),
    }
}

fn valid_device(s: &str) -> bool {
    s == "auto"
        || s == "cpu"
        || s.strip_prefix("cuda:")
            .is_some_and(|n| n.parse::<u32>().is_ok())
}

fn quoted(options: &[&str]) -> String {
    options
        .iter()
        .map(|o| format!("\"{o}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

fn choice_error(name: &str, given: &str, options: &[&str], node: &Node) -> SpecError {
    let err = SpecError::at(&node.origin, format!("unknown {name} \"{given}\""));
    match suggest(given, options.iter().copied()) {
        Some(s) => err.help(format!("did you mean \"{s}\"? valid: {}", quoted(options))),
        None => err.help(format!("valid: {}", quoted(options))),
    }
}

/// A short text form of a value for cell names and tables.
pub fn display(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        Json::Array(items) => items.iter().map(display).collect::<Vec<_>>().join("_"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::diagnostic::Origin;

    fn node(value: Value) -> Node {
        Node {
            value,
            origin: Origin::CommandLine { arg: "x".into() },
        }
    }

    #[test]
    fn defaults_are_valid_for_their_own_kind() {
        for def in PARAMS {
            let json = default_value(def);
            let value = match &json {
                Json::Bool(b) => Value::Bool(*b),
                Json::Number(n) if n.is_i64() => Value::Int(n.as_i64().unwrap()),
                Json::Number(n) => Value::Float(n.as_f64().unwrap()),
                Json::String(s) => Value::Str(s.clone()),
                other => panic!("unexpected default {other}"),
            };
            assert_eq!(validate(def, &node(value)).unwrap(), json, "{}", def.name);
        }
    }

    #[test]
    fn rejects_wrong_types_and_values_with_help() {
        let model = lookup("model").unwrap();
        let err = validate(model, &node(Value::Str("resnet51".into()))).unwrap_err();
        assert!(err.message.contains("resnet51"));
        assert!(err.help.unwrap().contains("resnet50"));
        assert!(validate(lookup("batch_size").unwrap(), &node(Value::Int(0))).is_err());
        assert!(validate(lookup("lr").unwrap(), &node(Value::Str("fast".into()))).is_err());
        let cw = lookup("class_weights").unwrap();
        let four = Value::Array((0..4).map(|i| node(Value::Int(i))).collect());
        assert!(validate(cw, &node(four))
            .unwrap_err()
            .message
            .contains("5 numbers"));
        assert!(validate(lookup("device").unwrap(), &node(Value::Str("gpu".into()))).is_err());
        assert_eq!(
            validate(
                lookup("device").unwrap(),
                &node(Value::Str("cuda:1".into()))
            )
            .unwrap(),
            "cuda:1"
        );
        assert_eq!(
            validate(lookup("lr").unwrap(), &node(Value::Int(1))).unwrap(),
            Json::from(1.0)
        );
    }
}
