//! Helpers shared by the tests that drive the real binary on the shipped pipeline.
#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The quickstart experiment with every size turned down.
pub fn tiny_experiment(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("experiments/quickstart.toml")).unwrap();
    let pipeline = repo().join("pipelines/retinopathy.toml");
    let text = text
        .replace(
            "\"../pipelines/retinopathy.toml\"",
            &format!("{:?}", pipeline.display().to_string()),
        )
        .replace("images = 1000", "images = 60")
        .replace("size = 128", "size = 64")
        .replace("image_size = 64", "image_size = 32")
        .replace("batch_size = 16", "batch_size = 8")
        .replace("epochs = 9", "epochs = 2");
    assert!(
        text.contains("images = 60") && text.contains("epochs = 2"),
        "quickstart.toml changed shape: update this test"
    );
    let path = dir.join("quickstart.toml");
    std::fs::write(&path, text).unwrap();
    path
}

pub fn drpipe(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_drpipe"))
        .current_dir(dir)
        .args(args)
        .env("DRPIPE_OUTPUTS", dir.join("outputs"))
        .env("HF_HUB_OFFLINE", "1")
        // The developer's own ~/.config/drpipe/config.toml must not steer the tests.
        .env("DRPIPE_CONFIG", "")
        .output()
        .unwrap();
    out
}

pub fn ok(out: Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "drpipe failed: {}\n{stderr}",
        out.status
    );
    String::from_utf8_lossy(&out.stdout).into_owned() + &stderr
}
