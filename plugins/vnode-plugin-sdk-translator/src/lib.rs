//! Implementation detail of `vnode-plugin-sdk`; use that crate instead.
//!
//! wit-bindgen puts every exported interface's glue macro at the crate root, named after the
//! interface. Both worlds export `vnode:plugin/plugin`, so generating both worlds in one crate
//! collides; the translator world therefore lives here, and `vnode-plugin-sdk` generates the
//! placement world reusing this crate's shared types (`types`, `host`).
//!
//! Every generated type derives `serde::Serialize`/`Deserialize`: in contract 0.3.0 a decision's
//! input and answer cross the boundary as one postcard-encoded buffer of these types
//! (`wit/README.md`, "The encoding of 0.3.0"), which `vnode-plugin-sdk` encodes and decodes.

#[doc(hidden)]
pub use wit_bindgen::rt as __rt;

wit_bindgen::generate!({
    path: "../../wit/v0.3.0",
    world: "vnode:plugin/translator-plugin@0.3.0",
    pub_export_macro: true,
    export_macro_name: "__export_translator_world",
    default_bindings_module: "vnode_plugin_sdk::translator_bindings",
    additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
    generate_all,
    // 0.3.0's functions take bytes, so no function names the records: generate them anyway.
    generate_unused_types: true,
});
