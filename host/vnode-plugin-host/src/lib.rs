//! The plugin contract in Rust: loading, validating, running and hot-reloading Wasm component plugins.
