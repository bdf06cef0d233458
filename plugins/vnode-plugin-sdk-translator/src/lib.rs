//! Implementation detail of `vnode-plugin-sdk`; use that crate instead.
//!
//! wit-bindgen puts every exported interface's glue macro at the crate root, named after the
//! interface. Both worlds export `vnode:plugin/plugin`, so generating both worlds in one crate
//! collides; the translator world therefore lives here, and `vnode-plugin-sdk` generates the
//! placement world reusing this crate's shared types (`types`, `host`).

#[doc(hidden)]
pub use wit_bindgen::rt as __rt;

wit_bindgen::generate!({
    path: "../../wit/v0.2.0",
    world: "vnode:plugin/translator-plugin@0.2.0",
    pub_export_macro: true,
    export_macro_name: "__export_translator_world",
    default_bindings_module: "vnode_plugin_sdk::translator_bindings",
    additional_derives: [PartialEq],
    generate_all,
});
