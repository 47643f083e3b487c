# Recipes for slokit; each one is a thin alias of `cargo xtask …` (which
# needs nothing but the Rust toolchain), for those who use `just`.

# Build everything (release).
build:
    cargo build --release --workspace

# What CI runs: prerequisites, fmt check, clippy -D warnings, every test.
test:
    cargo xtask test

# Criterion benchmarks of every crate.
bench:
    cargo xtask bench

# The main job on the embedded defaults.
demo *ARGS:
    cargo xtask demo {{ARGS}}

# Formatting and lints only.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Install (or check) the system packages slokit needs.
setup:
    cargo xtask setup
