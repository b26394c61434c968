//! The generated host bindings, one module per supported interface version. Nothing here leaves
//! the plugin host: `input` and `edit` convert to and from `model` types.

/// `rosterflow:plugin@0.1.0`, frozen in `wit/v0.1.0/`.
pub(crate) mod v0_1_0 {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.1.0",
        world: "rosterflow:plugin/plugin@0.1.0",
    });

    /// The package, as `plugin check` prints it.
    pub(crate) const PACKAGE: &str = "rosterflow:plugin@0.1.0";

    pub(crate) use self::rosterflow::plugin::log::Level;
    pub(crate) use self::rosterflow::plugin::types as wire;
}

/// Packages of the plugin interface that this host runs, newest last.
pub(crate) const SUPPORTED: &[&str] = &[v0_1_0::PACKAGE];

/// The prefix every version's transform export shares: how a component built against an
/// unsupported version is recognised (and named in the error).
pub(crate) const EXPORT_PREFIX: &str = "rosterflow:plugin/transform@";
