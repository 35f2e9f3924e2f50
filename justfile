# drpipe's everyday commands. `just --list` shows them.

set positional-arguments

# Run an experiment: only the stages whose inputs changed.
run file *args:
    cargo run --release --quiet -- run "$@"

# Show what `run` would do and why.
plan file *args:
    cargo run --release --quiet -- plan "$@"

# Print an experiment's results table (or list experiments).
show *args:
    cargo run --release --quiet -- show "$@"

# Delete cache entries no experiment file references (--dry-run to preview).
gc *args:
    cargo run --release --quiet -- gc "$@"

# Every test (the fast kind: tiny images, few steps).
test *args:
    cargo test "$@"

# Formatting and clippy, warnings denied.
lint:
    cargo fmt --check
    cargo clippy --all-targets -- -D warnings

# Benchmarks side by side with the PyTorch/Pillow reference: `just bench data`, `just bench train`.
bench what="all":
    bench/run {{what}}
